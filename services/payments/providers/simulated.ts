import crypto from "node:crypto";
import { QueryTypes, type Sequelize, type Transaction } from "sequelize";
import { isUniqueViolation } from "../../../lib/errors";
import {
	ProviderRejectedError,
	type ChargeRequest,
	type ChargeResult,
	type ListEventsOptions,
	type PaymentProvider,
	type ProviderEvent,
	type ProviderIntent,
	type RefundRequest,
	type RefundResult
} from "./types";

/** Stripe's test payment methods and what they do (https://docs.stripe.com/testing). */
export const TEST_PAYMENT_METHODS: Record<string, { status: "succeeded" | "requires_payment_method" | "requires_action"; code?: string }> = {
	pm_card_visa: { status: "succeeded" },
	pm_card_visa_debit: { status: "succeeded" },
	pm_card_mastercard: { status: "succeeded" },
	pm_card_mastercard_debit: { status: "succeeded" },
	pm_card_amex: { status: "succeeded" },
	pm_card_discover: { status: "succeeded" },
	pm_card_diners: { status: "succeeded" },
	pm_card_jcb: { status: "succeeded" },
	pm_card_unionpay: { status: "succeeded" },
	pm_card_chargeDeclined: { status: "requires_payment_method", code: "card_declined" },
	pm_card_chargeDeclinedInsufficientFunds: { status: "requires_payment_method", code: "insufficient_funds" },
	pm_card_chargeDeclinedLostCard: { status: "requires_payment_method", code: "lost_card" },
	pm_card_chargeDeclinedStolenCard: { status: "requires_payment_method", code: "stolen_card" },
	pm_card_chargeDeclinedFraudulent: { status: "requires_payment_method", code: "fraudulent" },
	pm_card_chargeDeclinedExpiredCard: { status: "requires_payment_method", code: "expired_card" },
	pm_card_chargeDeclinedIncorrectCvc: { status: "requires_payment_method", code: "incorrect_cvc" },
	pm_card_chargeDeclinedProcessingError: { status: "requires_payment_method", code: "processing_error" },
	pm_card_authenticationRequired: { status: "requires_action", code: "authentication_required" }
};

const DECLINE_MESSAGES: Record<string, string> = {
	card_declined: "Your card was declined.",
	insufficient_funds: "Your card has insufficient funds.",
	lost_card: "Your card was declined.",
	stolen_card: "Your card was declined.",
	fraudulent: "Your card was declined.",
	expired_card: "Your card has expired.",
	incorrect_cvc: "Your card's security code is incorrect.",
	processing_error: "An error occurred while processing your card. Try again in a little bit.",
	authentication_required: "Your card requires authentication, which this payment flow cannot complete."
};

interface IntentRow {
	id: string;
	idempotency_key: string;
	request_hash: string;
	amount: number;
	currency: string;
	payment_method: string;
	description: string | null;
	status: string;
	failure_code: string | null;
	amount_refunded: number;
	metadata: string;
	created_at: Date | string;
}

interface RefundRow {
	id: string;
	request_hash: string;
	payment_intent: string;
	amount: number;
}

const INSERT_INTENT = `INSERT INTO sim_payment_intents (id, idempotency_key, request_hash, amount, currency, payment_method, description, status, failure_code, amount_refunded, metadata, created_at)
	VALUES (:id, :idempotency_key, :request_hash, :amount, :currency, :payment_method, :description, :status, :failure_code, 0, :metadata, :created_at)`;
const INSERT_EVENT = "INSERT INTO sim_events (id, type, created, payload) VALUES (:eid, :etype, :created, :payload)";

const randomId = (prefix: string) => `${prefix}_sim_${crypto.randomBytes(12).toString("hex")}`;
const hash = (value: unknown) => crypto.createHash("sha256").update(JSON.stringify(value)).digest("hex");
const unix = (d: Date | string) => Math.floor(new Date(d).getTime() / 1000);

/**
 * A built-in stand-in for Stripe test mode: it honours Stripe's test payment methods, keeps its
 * PaymentIntents, refunds and events in the service's own database, and honours idempotency keys
 * (the same key and parameters return the first result; other parameters are refused, as Stripe does).
 */
export class SimulatedProvider implements PaymentProvider {
	readonly name = "simulated" as const;

	constructor(private readonly db: () => Sequelize) {}

	private get forUpdate(): string {
		return this.db().getDialect() === "postgres" ? " FOR UPDATE" : "";
	}

	/**
	 * Creates the PaymentIntent and its event. Most keys are new, so it inserts without reading first: a
	 * key used before fails the insert (or, on PostgreSQL, inserts nothing) and its intent is replayed.
	 */
	async charge(req: ChargeRequest): Promise<ChargeResult> {
		const requestHash = hash({ a: req.amount, c: req.currency, pm: req.paymentMethod, d: req.description ?? null });
		const behaviour = TEST_PAYMENT_METHODS[req.paymentMethod];
		if (!behaviour) {
			const existing = await this.intentByKey(req.idempotencyKey);
			if (existing) return this.replayCharge(existing, requestHash);
			return { outcome: "invalid", field: "payment_method", message: `No such PaymentMethod: '${req.paymentMethod}'` };
		}
		const intent: IntentRow = {
			id: randomId("pi"),
			idempotency_key: req.idempotencyKey,
			request_hash: requestHash,
			amount: req.amount,
			currency: req.currency,
			payment_method: req.paymentMethod,
			description: req.description ?? null,
			status: behaviour.status,
			failure_code: behaviour.code ?? null,
			amount_refunded: 0,
			metadata: JSON.stringify(req.metadata),
			created_at: new Date()
		};
		const type =
			intent.status === "succeeded" ? "payment_intent.succeeded" : intent.status === "requires_action" ? "payment_intent.requires_action" : "payment_intent.payment_failed";
		const event = this.event(type, this.intentObject(intent));
		let created = true;
		try {
			if (this.db().getDialect() === "postgres") {
				// One statement, so no transaction: the event is inserted only with the intent.
				const rows = await this.db().query(
					`WITH i AS (${INSERT_INTENT} ON CONFLICT (idempotency_key) DO NOTHING RETURNING id)
					 INSERT INTO sim_events (id, type, created, payload) SELECT :eid, :etype, :created, :payload FROM i RETURNING id`,
					{ replacements: { ...intent, ...event }, type: QueryTypes.SELECT }
				);
				created = rows.length === 1;
			} else {
				await this.db().transaction(async t => {
					await this.db().query(INSERT_INTENT, { replacements: { ...intent }, transaction: t });
					await this.db().query(INSERT_EVENT, { replacements: { ...event }, transaction: t });
				});
			}
		} catch (err) {
			// The same key sent twice at once: the first insert wins and both answer with its intent.
			if (!isUniqueViolation(err)) throw err;
			created = false;
		}
		if (created) return this.chargeResult(intent);
		const winner = await this.intentByKey(req.idempotencyKey);
		if (!winner) throw new Error(`the PaymentIntent of ${req.idempotencyKey} was neither created nor found`);
		return this.replayCharge(winner, requestHash);
	}

	async refund(req: RefundRequest): Promise<RefundResult> {
		const requestHash = hash({ pi: req.intentId, a: req.amount });
		const replay = async (): Promise<RefundResult | null> => {
			const [row] = await this.db().query<RefundRow>("SELECT id, request_hash, payment_intent, amount FROM sim_refunds WHERE idempotency_key = :key", {
				replacements: { key: req.idempotencyKey },
				type: QueryTypes.SELECT
			});
			if (!row) return null;
			if (row.request_hash !== requestHash) {
				throw new ProviderRejectedError("Keys for idempotent requests can only be used with the same parameters they were first used with.", "idempotency_error");
			}
			return { refundId: row.id, amount: Number(row.amount), status: "succeeded" };
		};
		const first = await replay();
		if (first) return first;
		const id = randomId("re");
		try {
			await this.db().transaction(async t => {
				const [intent] = await this.db().query<IntentRow>(`SELECT * FROM sim_payment_intents WHERE id = :id${this.forUpdate}`, {
					replacements: { id: req.intentId },
					type: QueryTypes.SELECT,
					transaction: t
				});
				if (!intent) throw new ProviderRejectedError(`No such payment_intent: '${req.intentId}'`, "resource_missing");
				if (intent.status !== "succeeded") throw new ProviderRejectedError("This PaymentIntent has no successful charge to refund.", "charge_not_refundable");
				const total = Number(intent.amount_refunded) + req.amount;
				if (req.amount < 1 || total > Number(intent.amount)) {
					throw new ProviderRejectedError(`Refund amount (${req.amount}) is greater than the unrefunded amount on the charge.`, "amount_too_large");
				}
				await this.db().query(
					"INSERT INTO sim_refunds (id, idempotency_key, request_hash, payment_intent, amount, created_at) VALUES (:id, :key, :hash, :pi, :amount, :now)",
					{ replacements: { id, key: req.idempotencyKey, hash: requestHash, pi: intent.id, amount: req.amount, now: new Date() }, transaction: t }
				);
				await this.db().query("UPDATE sim_payment_intents SET amount_refunded = :total WHERE id = :id", { replacements: { total, id: intent.id }, transaction: t });
				await this.addEvent(t, "charge.refunded", this.chargeObject({ ...intent, amount_refunded: total }));
			});
		} catch (err) {
			if (!isUniqueViolation(err)) throw err;
			const winner = await replay();
			if (!winner) throw err;
			return winner;
		}
		return { refundId: id, amount: req.amount, status: "succeeded" };
	}

	async retrieveIntent(id: string): Promise<ProviderIntent | null> {
		const [row] = await this.db().query<IntentRow>("SELECT * FROM sim_payment_intents WHERE id = :id", { replacements: { id }, type: QueryTypes.SELECT });
		if (!row) return null;
		return {
			id: row.id,
			status: row.status,
			amount: Number(row.amount),
			currency: row.currency,
			amountRefunded: Number(row.amount_refunded),
			failureReason: row.failure_code,
			metadata: JSON.parse(row.metadata)
		};
	}

	async listEvents(opts: ListEventsOptions = {}): Promise<{ events: ProviderEvent[]; hasMore: boolean }> {
		const limit = Math.min(Math.max(opts.limit ?? 10, 1), 100);
		const where: string[] = [];
		const replacements: Record<string, unknown> = { limit: limit + 1 };
		if (opts.types?.length) {
			where.push("type IN (:types)");
			replacements.types = opts.types;
		}
		if (opts.createdAfter !== undefined) {
			where.push("created > :after");
			replacements.after = opts.createdAfter;
		}
		if (opts.startingAfter) {
			// Newest first, as Stripe lists them: the page after an event holds older ones.
			where.push("seq < (SELECT seq FROM sim_events WHERE id = :startingAfter)");
			replacements.startingAfter = opts.startingAfter;
		}
		const rows = await this.db().query<{ payload: string }>(
			`SELECT payload FROM sim_events${where.length ? " WHERE " + where.join(" AND ") : ""} ORDER BY seq DESC LIMIT :limit`,
			{ replacements, type: QueryTypes.SELECT }
		);
		return { events: rows.slice(0, limit).map(r => JSON.parse(r.payload) as ProviderEvent), hasMore: rows.length > limit };
	}

	private async intentByKey(key: string): Promise<IntentRow | null> {
		const [row] = await this.db().query<IntentRow>("SELECT * FROM sim_payment_intents WHERE idempotency_key = :key", { replacements: { key }, type: QueryTypes.SELECT });
		return row ?? null;
	}

	private replayCharge(intent: IntentRow, requestHash: string): ChargeResult {
		if (intent.request_hash !== requestHash) {
			throw new ProviderRejectedError("Keys for idempotent requests can only be used with the same parameters they were first used with.", "idempotency_error");
		}
		return this.chargeResult(intent);
	}

	private chargeResult(intent: IntentRow): ChargeResult {
		if (intent.status === "succeeded") return { outcome: "succeeded", intentId: intent.id };
		const reason = intent.failure_code ?? "card_declined";
		return { outcome: "declined", intentId: intent.id, reason, message: DECLINE_MESSAGES[reason] ?? "Your card was declined." };
	}

	private intentObject(intent: IntentRow): Record<string, unknown> {
		return {
			id: intent.id,
			object: "payment_intent",
			amount: Number(intent.amount),
			amount_received: intent.status === "succeeded" ? Number(intent.amount) : 0,
			currency: intent.currency,
			status: intent.status,
			created: unix(intent.created_at),
			description: intent.description,
			metadata: JSON.parse(intent.metadata),
			latest_charge: `ch_${intent.id.slice(3)}`,
			last_payment_error: intent.failure_code ? { code: intent.failure_code, message: DECLINE_MESSAGES[intent.failure_code] } : null
		};
	}

	private chargeObject(intent: IntentRow): Record<string, unknown> {
		return {
			id: `ch_${intent.id.slice(3)}`,
			object: "charge",
			amount: Number(intent.amount),
			amount_refunded: Number(intent.amount_refunded),
			currency: intent.currency,
			payment_intent: intent.id,
			refunded: Number(intent.amount_refunded) >= Number(intent.amount),
			metadata: JSON.parse(intent.metadata)
		};
	}

	/** An event's row values (`eid`, `etype`, `created`, `payload`), for INSERT_EVENT. */
	private event(type: string, object: Record<string, unknown>): { eid: string; etype: string; created: number; payload: string } {
		const id = randomId("evt");
		const created = Math.floor(Date.now() / 1000);
		const event: ProviderEvent = { id, type, created, data: { object } };
		return { eid: id, etype: type, created, payload: JSON.stringify({ object: "event", ...event }) };
	}

	private async addEvent(t: Transaction, type: string, object: Record<string, unknown>): Promise<void> {
		await this.db().query(INSERT_EVENT, { replacements: this.event(type, object), transaction: t });
	}
}
