import { QueryTypes, type Sequelize, type Transaction } from "sequelize";

export interface LockoutPolicy {
	maxFailures: number;
	windowMs: number;
}

/** Seconds until the account may try again, or 0 when it is not locked. */
export async function lockedFor(sequelize: Sequelize, email: string, p: LockoutPolicy, now = new Date(), transaction?: Transaction): Promise<number> {
	const rows = await sequelize.query<{ failures: number; window_started_at: string | Date }>(
		"SELECT failures, window_started_at FROM login_failures WHERE email = :email",
		{ replacements: { email }, type: QueryTypes.SELECT, transaction }
	);
	const row = rows[0];
	if (!row || row.failures < p.maxFailures) return 0;
	const until = new Date(row.window_started_at).getTime() + p.windowMs;
	return until > now.getTime() ? Math.ceil((until - now.getTime()) / 1000) : 0;
}

/** Counts one failed login in a single upsert, so concurrent failures on any replica all count. */
export async function recordFailure(sequelize: Sequelize, email: string, p: LockoutPolicy, now = new Date(), transaction?: Transaction): Promise<void> {
	const cutoff = new Date(now.getTime() - p.windowMs);
	await sequelize.query(
		`INSERT INTO login_failures (email, failures, window_started_at) VALUES (:email, 1, :now)
		 ON CONFLICT (email) DO UPDATE SET
		   failures = CASE WHEN login_failures.window_started_at < :cutoff THEN 1 ELSE login_failures.failures + 1 END,
		   window_started_at = CASE WHEN login_failures.window_started_at < :cutoff THEN :now ELSE login_failures.window_started_at END`,
		{ replacements: { email, now, cutoff }, transaction }
	);
}

/**
 * Counts an attempt as a failure before its password is checked and returns the seconds to wait when
 * it is over the limit (0: go ahead). Count and check are one transaction (the upsert holds the row),
 * so a burst of concurrent guesses cannot all pass a check made before any of them is counted.
 * A right password then clears the count; an attempt that fails for a reason of ours is released.
 */
export async function reserveAttempt(sequelize: Sequelize, email: string, p: LockoutPolicy, now = new Date()): Promise<number> {
	return sequelize.transaction(async t => {
		await recordFailure(sequelize, email, p, now, t);
		// This attempt is already counted: it is over the limit once the count exceeds maxFailures.
		return lockedFor(sequelize, email, { ...p, maxFailures: p.maxFailures + 1 }, now, t);
	});
}

/** Takes back one attempt counted by reserveAttempt. */
export async function releaseAttempt(sequelize: Sequelize, email: string): Promise<void> {
	await sequelize.query("UPDATE login_failures SET failures = failures - 1 WHERE email = :email AND failures > 0", { replacements: { email } });
}

export async function clearFailures(sequelize: Sequelize, email: string): Promise<void> {
	await sequelize.query("DELETE FROM login_failures WHERE email = :email", { replacements: { email } });
}
