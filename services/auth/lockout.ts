import type { Sequelize } from "sequelize";
import { upsertReturning } from "../../lib/db";

export interface LockoutPolicy {
	maxFailures: number;
	windowMs: number;
}

const SELECT = "SELECT failures, window_started_at FROM login_failures WHERE email = :email";

export interface FailureRow {
	failures: number;
	window_started_at: string | Date;
}

/** Seconds until the account may try again, or 0 when it is not locked: `row` is its login_failures row. */
export function secondsToWait(row: FailureRow | undefined, p: LockoutPolicy, now: Date): number {
	if (!row || Number(row.failures) < p.maxFailures) return 0;
	const until = new Date(row.window_started_at).getTime() + p.windowMs;
	return until > now.getTime() ? Math.ceil((until - now.getTime()) / 1000) : 0;
}

/** Counts one attempt in a single upsert, so concurrent attempts on any replica all count. */
const UPSERT = `INSERT INTO login_failures (email, failures, window_started_at) VALUES (:email, 1, :now)
	ON CONFLICT (email) DO UPDATE SET
	  failures = CASE WHEN login_failures.window_started_at < :cutoff THEN 1 ELSE login_failures.failures + 1 END,
	  window_started_at = CASE WHEN login_failures.window_started_at < :cutoff THEN :now ELSE login_failures.window_started_at END`;

/**
 * Counts an attempt as a failure before its password is checked and returns the seconds to wait when
 * it is over the limit (0: go ahead). Every attempt is counted before it reads the count, so the k-th
 * attempt to be counted reads at least k: a burst of concurrent guesses cannot all pass a check made
 * before any of them is counted. A right password then clears the count; an attempt that fails for a
 * reason of ours is released.
 * On PostgreSQL the upsert returns the count it wrote (exactly k), one statement; on SQLite it is the
 * upsert and then a read, without a transaction (which would add BEGIN and COMMIT, and a turn in the
 * process's queue of transactions, lib/db.ts). A read there may also see attempts counted after this
 * one (at least k, never less).
 */
export async function reserveAttempt(sequelize: Sequelize, email: string, p: LockoutPolicy, now = new Date()): Promise<number> {
	const row = await upsertReturning<FailureRow>(sequelize, UPSERT, "failures, window_started_at", SELECT, {
		replacements: { email, now, cutoff: new Date(now.getTime() - p.windowMs) }
	});
	// This attempt is already counted: it is over the limit once the count exceeds maxFailures.
	return secondsToWait(row, { ...p, maxFailures: p.maxFailures + 1 }, now);
}

/** Takes back one attempt counted by reserveAttempt. */
export async function releaseAttempt(sequelize: Sequelize, email: string): Promise<void> {
	await sequelize.query("UPDATE login_failures SET failures = failures - 1 WHERE email = :email AND failures > 0", { replacements: { email } });
}

export async function clearFailures(sequelize: Sequelize, email: string): Promise<void> {
	await sequelize.query("DELETE FROM login_failures WHERE email = :email", { replacements: { email } });
}
