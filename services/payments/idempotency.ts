import crypto from "node:crypto";
import { Op, type Sequelize, type Transaction } from "sequelize";
import { conflict, isUniqueViolation, unprocessable, type FieldError } from "../../lib/errors";
import type { PaymentModels, PaymentView } from "./models";

// The IETF Idempotency-Key draft (draft-ietf-httpapi-idempotency-key-header): one row per (user, key)
// holding the fingerprint of the body, the state of the first request and, once done, its answer.

/** The answer a charge gave, kept to replay it: a payment, or a problem (decline, …). */
export type StoredResponse =
	| { status: number; body: PaymentView }
	| { status: number; problem: { detail: string; errors?: FieldError[]; extensions?: Record<string, unknown> } };

export type Begun<P = unknown> =
	/** A new key: the payment row was inserted with it (both committed); `payment` is what `createPayment` returned. */
	| { kind: "new"; paymentId: string; payment: P }
	/** A key whose first request stopped before it finished (a crash, an unknown provider outcome): carry on with its payment. */
	| { kind: "resume"; paymentId: string }
	/** Done before: the first answer, to give again. */
	| { kind: "replay"; response: StoredResponse };

/** JSON with object keys sorted at every level, so equal bodies have equal text whatever their key order. */
export function canonicalJson(value: unknown): string {
	if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
	if (value && typeof value === "object") {
		const entries = Object.entries(value as Record<string, unknown>)
			.filter(([, v]) => v !== undefined)
			.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
		return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`;
	}
	return JSON.stringify(value) ?? "null";
}

/** The request fingerprint: SHA-256 of the canonical JSON of the body. */
export function fingerprint(body: unknown): string {
	return crypto.createHash("sha256").update(canonicalJson(body)).digest("hex");
}

export interface BeginOptions<P> {
	userId: string;
	key: string;
	fingerprint: string;
	ttlSeconds: number;
	/** An in-progress key whose lock is older than this is taken to be abandoned and may be resumed. */
	lockMs: number;
	/** The id for a new payment, and how to insert it (in the key's transaction). */
	paymentId: string;
	createPayment(t: Transaction): Promise<P>;
}

/**
 * Claims a key for a request. New: the key (in progress, locked) and the payment are committed together.
 * Same key, other body: 422. Same key still running: 409. Same key done: its answer to replay.
 * Same key in progress but its lock is stale or released: resumed.
 *
 * Most keys are new, so the first try inserts the key without reading it first; a key that exists fails
 * that insert on its primary key, and the next try reads and locks it.
 */
export async function beginIdempotent<P>(sequelize: Sequelize, models: PaymentModels, opts: BeginOptions<P>): Promise<Begun<P>> {
	const { IdempotencyKey } = models;
	const where = { user_id: opts.userId, idem_key: opts.key };
	const insert = async (t: Transaction, now: Date): Promise<Begun<P>> => {
		await IdempotencyKey.create(
			{
				...where,
				fingerprint: opts.fingerprint,
				status: "in_progress",
				payment_id: opts.paymentId,
				locked_at: now,
				expires_at: new Date(now.getTime() + opts.ttlSeconds * 1000)
			},
			{ transaction: t }
		);
		return { kind: "new", paymentId: opts.paymentId, payment: await opts.createPayment(t) };
	};
	for (let attempt = 0; ; attempt++) {
		try {
			return await sequelize.transaction(async (t): Promise<Begun<P>> => {
				const now = new Date();
				if (attempt === 0) return insert(t, now);
				let row = await IdempotencyKey.findOne({ where, transaction: t, lock: t.LOCK.UPDATE });
				if (row && new Date(row.expires_at) <= now) {
					await row.destroy({ transaction: t });
					row = null;
				}
				if (!row) return insert(t, now);
				if (row.fingerprint !== opts.fingerprint) {
					throw unprocessable("this Idempotency-Key was already used with a different request body");
				}
				if (row.status === "done") {
					return { kind: "replay", response: JSON.parse(row.response_body ?? "null") as StoredResponse };
				}
				const lockedAt = row.locked_at ? new Date(row.locked_at).getTime() : 0;
				if (!row.payment_id || now.getTime() - lockedAt < opts.lockMs) {
					throw conflict("a request with this Idempotency-Key is still being processed; retry later");
				}
				await row.update({ locked_at: now }, { transaction: t });
				return { kind: "resume", paymentId: row.payment_id };
			});
		} catch (err) {
			// The key exists (the first try), or two first requests with one key ran at once: the next try reads the winner's row.
			if (isUniqueViolation(err) && attempt < 3) continue;
			throw err;
		}
	}
}

/** Records the answer of the request that holds the key (in the transaction of the payment's final state). */
export async function completeIdempotent(models: PaymentModels, t: Transaction, userId: string, key: string, paymentId: string, response: StoredResponse): Promise<void> {
	await models.IdempotencyKey.update(
		{ status: "done", response_status: response.status, response_body: JSON.stringify(response), locked_at: null },
		{ where: { user_id: userId, idem_key: key, payment_id: paymentId, status: "in_progress" }, transaction: t }
	);
}

/** Lets the next retry resume at once (the provider's outcome is unknown; the derived provider key makes the retry safe). */
export async function releaseIdempotent(models: PaymentModels, userId: string, key: string, paymentId: string): Promise<void> {
	await models.IdempotencyKey.update(
		{ locked_at: null },
		{ where: { user_id: userId, idem_key: key, payment_id: paymentId, status: "in_progress" } }
	);
}

/** Forgets a key whose request was refused before anything was charged, so the client may fix the body and use it again. */
export async function forgetIdempotent(models: PaymentModels, t: Transaction, userId: string, key: string, paymentId: string): Promise<void> {
	await models.IdempotencyKey.destroy({ where: { user_id: userId, idem_key: key, payment_id: paymentId }, transaction: t });
}

/** Deletes expired keys (for the clean-up job); returns how many. */
export async function deleteExpiredKeys(models: PaymentModels, now = new Date()): Promise<number> {
	return models.IdempotencyKey.destroy({ where: { expires_at: { [Op.lte]: now }, status: "done" } });
}
