import { QueryTypes, type Sequelize } from "sequelize";

export interface LockoutPolicy {
	maxFailures: number;
	windowMs: number;
}

/** Seconds until the account may try again, or 0 when it is not locked. */
export async function lockedFor(sequelize: Sequelize, email: string, p: LockoutPolicy, now = new Date()): Promise<number> {
	const rows = await sequelize.query<{ failures: number; window_started_at: string | Date }>(
		"SELECT failures, window_started_at FROM login_failures WHERE email = :email",
		{ replacements: { email }, type: QueryTypes.SELECT }
	);
	const row = rows[0];
	if (!row || row.failures < p.maxFailures) return 0;
	const until = new Date(row.window_started_at).getTime() + p.windowMs;
	return until > now.getTime() ? Math.ceil((until - now.getTime()) / 1000) : 0;
}

/** Counts one failed login in a single upsert, so concurrent failures on any replica all count. */
export async function recordFailure(sequelize: Sequelize, email: string, p: LockoutPolicy, now = new Date()): Promise<void> {
	const cutoff = new Date(now.getTime() - p.windowMs);
	await sequelize.query(
		`INSERT INTO login_failures (email, failures, window_started_at) VALUES (:email, 1, :now)
		 ON CONFLICT (email) DO UPDATE SET
		   failures = CASE WHEN login_failures.window_started_at < :cutoff THEN 1 ELSE login_failures.failures + 1 END,
		   window_started_at = CASE WHEN login_failures.window_started_at < :cutoff THEN :now ELSE login_failures.window_started_at END`,
		{ replacements: { email, now, cutoff } }
	);
}

export async function clearFailures(sequelize: Sequelize, email: string): Promise<void> {
	await sequelize.query("DELETE FROM login_failures WHERE email = :email", { replacements: { email } });
}
