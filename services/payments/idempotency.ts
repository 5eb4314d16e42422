import crypto from "node:crypto";
import { Op, QueryTypes, type Sequelize, type Transaction } from "sequelize";
import { conflict, isUniqueViolation, unprocessable, type FieldError } from "../../lib/errors";
import type { PaymentModels, PaymentRow, PaymentView } from "./models";

// The IETF Idempotency-Key draft (draft-ietf-httpapi-idempotency-key-header): one row per (user, key)
// holding the fingerprint of the body, the state of the first request and, once done, its answer.

/** The answer a charge gave, kept to replay it: a payment, or a problem (decline, …). */
export type StoredResponse =
	| { status: number; body: PaymentView }
	| { status: number; problem: { detail: string; errors?: FieldError[]; extensions?: Record<string, unknown> } };

export type Begun =
	/** A new key: the payment row was inserted with it (both committed); `payment` is that row. */
	| { kind: "new"; paymentId: string; payment: PaymentRow }
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

/** A payment to insert with a new key (in `processing`). */
export type NewPayment = Pick<PaymentRow, "id" | "user_id" | "amount" | "currency" | "description" | "payment_method" | "provider">;

export interface BeginOptions {
	userId: string;
	key: string;
	fingerprint: string;
	ttlSeconds: number;
	/** An in-progress key whose lock is older than this is taken to be abandoned and may be resumed. */
	lockMs: number;
	/** The payment a new key is inserted with. */
	payment: NewPayment;
}

/**
 * On PostgreSQL a new key and its payment are one statement, so they commit together without a
 * transaction of their own; a key that exists inserts nothing and returns no row.
 */
const INSERT_KEY_AND_PAYMENT = `WITH k AS (
	INSERT INTO idempotency_keys (user_id, idem_key, fingerprint, status, payment_id, locked_at, expires_at, created_at, updated_at)
	VALUES (:user_id, :idem_key, :fingerprint, 'in_progress', :id, :now, :expires_at, :now, :now)
	ON CONFLICT (user_id, idem_key) DO NOTHING RETURNING payment_id)
INSERT INTO payments (id, user_id, amount, currency, description, payment_method, status, provider, amount_refunded, created_at, updated_at)
SELECT payment_id, :user_id, :amount, :currency, :description, :payment_method, 'processing', :provider, 0, :now, :now FROM k
RETURNING *`;

/**
 * Claims a key for a request. New: the key (in progress, locked) and the payment are committed together.
 * Same key, other body: 422. Same key still running: 409. Same key done: its answer to replay.
 * Same key in progress but its lock is stale or released: resumed.
 *
 * Most keys are new, so the first try inserts the key without reading it first; a key that exists
 * inserts nothing (PostgreSQL) or fails that insert on its primary key, and the next try reads and locks it.
 */
export async function beginIdempotent(sequelize: Sequelize, models: PaymentModels, opts: BeginOptions): Promise<Begun> {
	const { IdempotencyKey } = models;
	const where = { user_id: opts.userId, idem_key: opts.key };
	const paymentId = opts.payment.id;
	const expiresAt = (now: Date) => new Date(now.getTime() + opts.ttlSeconds * 1000);
	const insert = async (t: Transaction, now: Date): Promise<Begun> => {
		await IdempotencyKey.create(
			{ ...where, fingerprint: opts.fingerprint, status: "in_progress", payment_id: paymentId, locked_at: now, expires_at: expiresAt(now) },
			{ transaction: t }
		);
		const payment = await models.Payment.create({ ...opts.payment, status: "processing" }, { transaction: t });
		return { kind: "new", paymentId, payment: payment.get({ plain: true }) };
	};
	for (let attempt = 0; ; attempt++) {
		try {
			if (attempt === 0 && sequelize.getDialect() === "postgres") {
				const now = new Date();
				const [payment] = await sequelize.query<PaymentRow>(INSERT_KEY_AND_PAYMENT, {
					replacements: { ...opts.payment, idem_key: opts.key, fingerprint: opts.fingerprint, now, expires_at: expiresAt(now) },
					type: QueryTypes.SELECT
				});
				if (payment) return { kind: "new", paymentId, payment };
				continue;
			}
			return await sequelize.transaction(async (t): Promise<Begun> => {
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
export async function completeIdempotent(sequelize: Sequelize, t: Transaction, userId: string, key: string, paymentId: string, response: StoredResponse): Promise<void> {
	await sequelize.query(
		`UPDATE idempotency_keys SET status = 'done', response_status = :status, response_body = :body, locked_at = NULL, updated_at = :now
		 WHERE user_id = :userId AND idem_key = :key AND payment_id = :paymentId AND status = 'in_progress'`,
		{ replacements: { status: response.status, body: JSON.stringify(response), now: new Date(), userId, key, paymentId }, transaction: t }
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
