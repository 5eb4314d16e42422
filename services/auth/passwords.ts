import { QueryTypes, type Sequelize } from "sequelize";
import type { FieldError } from "../../lib/errors";
import { BcryptPool } from "./bcrypt-pool";

/** One pool per process, shared by every auth service in it. */
const pool = new BcryptPool();

export const MIN_PASSWORD_BYTES = 8;
export const MAX_PASSWORD_BYTES = 72;

/** bcrypt reads at most 72 bytes, so longer passwords are refused rather than silently truncated. */
export function passwordProblem(password: string): FieldError | null {
	const bytes = Buffer.byteLength(password, "utf8");
	if (bytes < MIN_PASSWORD_BYTES || bytes > MAX_PASSWORD_BYTES) {
		return { field: "password", message: `password must be ${MIN_PASSWORD_BYTES} to ${MAX_PASSWORD_BYTES} bytes (UTF-8)` };
	}
	return null;
}

/** How long after another request the pool keeps a core free (BCRYPT_SPARE_CORE_MS; 0 = never). */
export function setSpareCoreMs(ms: number): void {
	pool.spareMs = ms;
}

/** Off the event loop, on low-priority worker threads (bcrypt-pool.ts). */
export function hashPassword(password: string, cost: number): Promise<string> {
	return pool.hash(password, cost);
}

export function checkPassword(password: string, hash: string): Promise<boolean> {
	return pool.compare(password, hash);
}

const dummies = new Map<number, Promise<string>>();

/** A hash to compare against when the account does not exist, so both cases take the same time. */
export function dummyHash(cost: number): Promise<string> {
	let dummy = dummies.get(cost);
	if (!dummy) dummies.set(cost, (dummy = pool.hash("not-a-real-password", cost)));
	return dummy;
}

/** The stored hash of a user's password, or null when the user has none (an OAuth-only account). One plain SELECT: every login reads it. */
export async function storedHash(sequelize: Sequelize, userId: string): Promise<string | null> {
	const rows = await sequelize.query<{ password_hash: string }>("SELECT password_hash FROM credentials WHERE user_id = :userId", {
		replacements: { userId },
		type: QueryTypes.SELECT
	});
	return rows[0]?.password_hash ?? null;
}
