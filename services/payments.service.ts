import crypto from "node:crypto";
import { STATUS_CODES } from "node:http";
import { Errors, type Context, type ServiceSchema } from "moleculer";
import { dbMixin, type DbMethods, type DbVars } from "../mixins/db.mixin";
import { outboxMixin, type OutboxMethods } from "../mixins/outbox.mixin";
import { PAGE_PARAMS, requireOwnerOrStaff, requireUser, SAFE_TO_RETRY } from "../lib/access";
import { config } from "../lib/config";
import { failpoint } from "../lib/failpoints";
import { badRequest, conflict, forbidden, notFound, unprocessable } from "../lib/errors";
import type { AppMeta } from "../lib/types";
import { CURRENCIES } from "./payments/currencies";
import { defineModels, toPayment, type PaymentModels, type PaymentRow, type PaymentView, type WebhookEventRow } from "./payments/models";
import { migrations } from "./payments/migrations";
import { beginIdempotent, completeIdempotent, fingerprint, forgetIdempotent, releaseIdempotent, type StoredResponse } from "./payments/idempotency";
import { chargeRequest, createProvider, ProviderRejectedError, type ChargeResult, type PaymentProvider } from "./payments/providers";
import { applyTarget, targetOfCharge, type Target } from "./payments/state";
import { effectOf, verifyWebhook, type EventEffect } from "./payments/webhooks";
import { candidates as reconcileCandidates, cleanup as cleanupPayments, ingestEvent, reconcileOne, syncEvents as syncProviderEvents, type ReconcileHost } from "./payments/reconcile";
import { QueryTypes, type Model, type Transaction } from "sequelize";
import { dayList, dayStart } from "../lib/days";

type PaymentMeta = AppMeta;
type Ctx<P = any> = Context<P, PaymentMeta>;
type PaymentInstance = Model<PaymentRow, any> & PaymentRow;
type WebhookEventInstance = Model<WebhookEventRow, any> & WebhookEventRow;

interface ChargeParams {
	amount: number;
	currency: string;
	payment_method: string;
	description?: string;
	user_id?: string;
}

interface Vars {
	provider: PaymentProvider;
	webhookSecret?: string;
	idempotencyTtlS: number;
	idempotencyLockMs: number;
}

type Methods = DbMethods &
	OutboxMethods & {
		processCharge(ctx: Ctx, paymentId: string, userId: string, key: string, created?: PaymentRow): Promise<StoredResponse>;
		finalizeCharge(paymentId: string, target: Target | null, userId: string, key: string, requestId: string | null): Promise<StoredResponse>;
		answer(ctx: Ctx, response: StoredResponse, replayed: boolean): PaymentView | Record<string, unknown>;
		apply(t: Transaction, payment: PaymentInstance, target: Target, requestId: string | null | undefined): Promise<number>;
		applyPendingEvents(t: Transaction, payment: PaymentInstance, requestId: string | null | undefined, pending: WebhookEventInstance[]): Promise<number>;
		pendingEvents(t: Transaction, intentId: string | null | undefined): Promise<WebhookEventInstance[]>;
		settlePending(intentId: string, requestId: string | null | undefined): Promise<void>;
		lockPaymentForEvent(t: Transaction, effect: EventEffect): Promise<PaymentInstance | null>;
		findOwned(ctx: Ctx, id: string): Promise<PaymentInstance>;
	};
type This = DbVars<PaymentModels> & Methods & Vars & { broker: import("moleculer").ServiceBroker; logger: import("moleculer").Logger };

const uuid = { type: "uuid" } as const;
const money = { type: "number", integer: true, min: 1, max: 99999999 } as const;
const CHARGE_PATH = "/api/v1/payments/charge";
/** Payments that have (had) money taken, so a receipt exists. */
const RECEIPTED = new Set(["succeeded", "partially_refunded", "refunded"]);

const unavailable = (detail: string) => new Errors.MoleculerError(detail, 503, "SERVICE_UNAVAILABLE");

/** The answer a payment in this state gives to the charge that made it. */
function responseFor(p: PaymentRow): StoredResponse {
	if (p.status === "failed") {
		return {
			status: 402,
			problem: {
				detail: `the payment was declined: ${p.failure_reason ?? "card_declined"}`,
				extensions: { payment_id: p.id, failure_reason: p.failure_reason ?? "card_declined" }
			}
		};
	}
	return { status: 201, body: toPayment(p) };
}

const PaymentsService: ServiceSchema<Record<string, never>, Methods, This> = {
	name: "payments",
	mixins: [dbMixin({ service: "payments", primary: "Payment", models: defineModels, migrations }), outboxMixin()],

	actions: {
		// ---- Public (aliased by the gateway) ----
		charge: {
			// The provider call may take seconds; a charge is never retried blindly (the Idempotency-Key is the retry).
			timeout: 30000,
			params: {
				$$strict: true,
				amount: { ...money, messages: { number: "amount must be an integer number of minor units", numberInteger: "amount must be an integer number of minor units" } },
				currency: { type: "enum", values: CURRENCIES, messages: { enumValue: "currency must be a lowercase ISO 4217 code this service supports" } },
				payment_method: { type: "string", min: 1, max: 255 },
				description: { type: "string", max: 500, optional: true },
				user_id: { ...uuid, optional: true }
			},
			async handler(this: This, ctx: Ctx<ChargeParams>) {
				const me = requireUser(ctx);
				const key = ctx.meta.idempotencyKey;
				if (typeof key !== "string" || key.length === 0) throw badRequest("the Idempotency-Key header is required");
				if (key.length > 255) throw badRequest("the Idempotency-Key header must be 1 to 255 characters");
				if (ctx.params.user_id !== undefined && ctx.params.user_id !== me.id) throw forbidden("you may only charge your own account");

				const { amount, currency, payment_method, description } = ctx.params;
				const paymentId = crypto.randomUUID();
				const begun = await beginIdempotent(this.sequelize, this.models, {
					userId: me.id,
					key,
					fingerprint: fingerprint(ctx.params),
					ttlSeconds: this.idempotencyTtlS,
					lockMs: this.idempotencyLockMs,
					payment: { id: paymentId, user_id: me.id, amount, currency, description: description ?? null, payment_method, provider: this.provider.name }
				});
				if (begun.kind === "replay") return this.answer(ctx, begun.response, true);
				const created = begun.kind === "new" ? begun.payment : undefined;
				return this.answer(ctx, await this.processCharge(ctx, begun.paymentId, me.id, key, created), false);
			}
		},

		list: {
			...SAFE_TO_RETRY,
			params: {
				$$strict: true,
				...PAGE_PARAMS
			},
			async handler(this: This, ctx: Ctx<{ limit: number; offset: number }>) {
				const me = requireUser(ctx);
				const { limit, offset } = ctx.params;
				const { rows, count } = await this.models.Payment.findAndCountAll({
					where: { user_id: me.id },
					order: [["created_at", "DESC"], ["id", "DESC"]],
					limit,
					offset
				});
				return { items: rows.map(toPayment), total: count, limit, offset };
			}
		},

		get: {
			...SAFE_TO_RETRY,
			params: { $$strict: true, id: uuid },
			async handler(this: This, ctx: Ctx<{ id: string }>) {
				return toPayment(await this.findOwned(ctx, ctx.params.id));
			}
		},

		receipt: {
			...SAFE_TO_RETRY,
			params: { $$strict: true, id: uuid },
			async handler(this: This, ctx: Ctx<{ id: string }>) {
				const p = await this.findOwned(ctx, ctx.params.id);
				if (!RECEIPTED.has(p.status) || !p.receipt_number) {
					throw notFound(`this payment has no receipt: its status is ${p.status}; receipts exist once a payment has succeeded`);
				}
				let customer: { name: string | null; email: string | null } = { name: null, email: null };
				try {
					const user = await ctx.call<{ name: string; email: string }, { id: string }>("users.get", { id: p.user_id });
					customer = { name: user.name, email: user.email };
				} catch (err) {
					if ((err as { code?: number }).code !== 404) throw err;
				}
				return {
					receipt_number: p.receipt_number,
					payment_id: p.id,
					amount: Number(p.amount),
					currency: p.currency,
					issued_at: new Date(p.receipt_issued_at ?? p.updated_at).toISOString(),
					customer,
					description: p.description ?? null
				};
			}
		},

		/** Stripe's webhook: the gateway passes the raw body and the Stripe-Signature header, unparsed. */
		stripeWebhook: {
			params: { $$strict: true, payload: { type: "string" }, signature: { type: "string" } },
			async handler(this: This, ctx: Ctx<{ payload: string; signature: string }>) {
				if (!this.webhookSecret) throw badRequest("webhooks are not configured");
				const event = verifyWebhook(ctx.params.payload, ctx.params.signature, this.webhookSecret);
				await ingestEvent(this as unknown as ReconcileHost, event, ctx.requestID ?? null, ctx.params.payload);
				return { received: true };
			}
		},

		// ---- Internal (other services only; `public` is never published through the gateway) ----
		refund: {
			visibility: "public",
			timeout: 30000,
			params: {
				$$strict: true,
				id: uuid,
				amount: { ...money, optional: true },
				reason: { type: "string", max: 500, optional: true },
				actor_id: { ...uuid, optional: true }
			},
			async handler(this: This, ctx: Ctx<{ id: string; amount?: number; reason?: string; actor_id?: string }>) {
				const p = await this.models.Payment.findByPk(ctx.params.id);
				if (!p) throw notFound("payment not found");
				if (p.status !== "succeeded" && p.status !== "partially_refunded") throw conflict(`a ${p.status} payment cannot be refunded`);
				if (!p.provider_payment_id) throw conflict("the payment has no provider payment to refund");
				const soFar = Number(p.amount_refunded);
				const remaining = Number(p.amount) - soFar;
				const amount = ctx.params.amount ?? remaining;
				if (amount > remaining) throw unprocessable(`amount must be at most ${remaining}`, [{ field: "amount", message: `amount must be at most ${remaining}, what is left to refund` }]);

				let refund;
				try {
					refund = await this.provider.refund({
						intentId: p.provider_payment_id,
						amount,
						// Derived from what was refunded before: a retry of this refund reaches the same provider refund.
						idempotencyKey: `refund:${p.id}:${soFar}`,
						metadata: { payment_id: p.id, ...(ctx.params.reason ? { reason: ctx.params.reason } : {}) }
					});
				} catch (err) {
					if (err instanceof ProviderRejectedError) throw conflict(`the provider refused the refund: ${err.message}`);
					this.logger.warn(`Refund of ${p.id} failed: ${(err as Error).message}`);
					throw unavailable("the payment provider is unavailable; try the refund again");
				}
				const view = await this.transaction(async t => {
					const locked = (await this.models.Payment.findByPk(p.id, { transaction: t, lock: t.LOCK.UPDATE }))!;
					const known = await this.models.Refund.findOne({ where: { provider_refund_id: refund.refundId }, transaction: t });
					if (!known) {
						await this.models.Refund.create(
							{
								payment_id: p.id,
								amount,
								total_refunded: soFar + amount,
								reason: ctx.params.reason ?? null,
								actor_id: ctx.params.actor_id ?? null,
								provider_refund_id: refund.refundId,
								request_id: ctx.requestID ?? null
							},
							{ transaction: t }
						);
					}
					await this.apply(t, locked, { kind: "refunded", totalRefunded: soFar + amount }, ctx.requestID);
					return toPayment(locked);
				});
				this.kickOutbox();
				return view;
			}
		},

		// ---- Internal, for the admin service ----
		/** Every user's payments, newest first, filtered by user and status. */
		adminList: {
			visibility: "public",
			...SAFE_TO_RETRY,
			params: {
				$$strict: true,
				user_id: { ...uuid, optional: true },
				status: { type: "enum", values: ["processing", "succeeded", "failed", "refunded", "partially_refunded"], optional: true },
				...PAGE_PARAMS
			},
			async handler(this: This, ctx: Ctx<{ user_id?: string; status?: string; limit: number; offset: number }>) {
				const { user_id, status, limit, offset } = ctx.params;
				const { rows, count } = await this.models.Payment.findAndCountAll({
					where: { ...(user_id ? { user_id } : {}), ...(status ? { status } : {}) },
					order: [["created_at", "DESC"], ["id", "DESC"]],
					limit,
					offset
				});
				return { items: rows.map(toPayment), total: count, limit, offset };
			}
		},

		/** One payment by id, whoever owns it (404 when unknown). */
		adminGet: {
			visibility: "public",
			...SAFE_TO_RETRY,
			params: { $$strict: true, id: uuid },
			async handler(this: This, ctx: Ctx<{ id: string }>) {
				const p = await this.models.Payment.findByPk(ctx.params.id);
				if (!p) throw notFound("payment not found");
				return toPayment(p);
			}
		},

		/**
		 * Payments per UTC day of creation over the last `days` days (the admin dashboard): `succeeded` counts
		 * payments that took money (refunded later or not), `refunded` those refunded in full or in part.
		 */
		dailyStats: {
			visibility: "public",
			...SAFE_TO_RETRY,
			params: { $$strict: true, days: { type: "number", integer: true, min: 1, max: 366, default: 14, convert: true } },
			async handler(this: This, ctx: Ctx<{ days: number }>) {
				const from = dayStart(ctx.params.days);
				const day = this.sequelize.getDialect() === "postgres" ? "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')" : "substr(created_at, 1, 10)";
				const rows = (await this.sequelize.query(
					`SELECT ${day} AS day, status, currency, COUNT(*) AS n, SUM(amount) AS amount FROM payments WHERE created_at >= :from GROUP BY 1, 2, 3`,
					{ replacements: { from }, type: QueryTypes.SELECT }
				)) as { day: string; status: string; currency: string; n: string | number; amount: string | number }[];
				const out = dayList(ctx.params.days).map(d => ({ day: d, succeeded: 0, failed: 0, refunded: 0, amount_succeeded: {} as Record<string, number> }));
				const byDay = new Map(out.map(o => [o.day, o]));
				for (const r of rows) {
					const o = byDay.get(r.day);
					if (!o) continue;
					const n = Number(r.n);
					if (RECEIPTED.has(r.status)) {
						o.succeeded += n;
						o.amount_succeeded[r.currency] = (o.amount_succeeded[r.currency] ?? 0) + Number(r.amount);
					}
					if (r.status === "failed") o.failed += n;
					if (r.status === "refunded" || r.status === "partially_refunded") o.refunded += n;
				}
				return { payments: out };
			}
		},

		// ---- Internal, for the jobs service: reconciliation and clean-up (the tables stay this service's) ----
		reconcileCandidates: {
			visibility: "public",
			...SAFE_TO_RETRY,
			params: {
				$$strict: true,
				processing_older_than_s: { type: "number", integer: true, min: 0, default: 120, convert: true },
				recent_days: { type: "number", integer: true, min: 0, max: 90, default: 3, convert: true },
				limit: { type: "number", integer: true, min: 1, max: 5000, default: 500, convert: true }
			},
			async handler(this: This, ctx: Ctx<{ processing_older_than_s: number; recent_days: number; limit: number }>) {
				const { processing_older_than_s, recent_days, limit } = ctx.params;
				return { ids: await reconcileCandidates(this as unknown as ReconcileHost, { processingOlderThanS: processing_older_than_s, recentDays: recent_days, limit }) };
			}
		},

		/** Asks the provider about one payment and applies any drift through the state machine. */
		reconcile: {
			visibility: "public",
			timeout: 30000,
			params: { $$strict: true, id: uuid },
			handler(this: This, ctx: Ctx<{ id: string }>) {
				return reconcileOne(this as unknown as ReconcileHost, ctx.params.id, ctx.requestID ?? null);
			}
		},

		/** Fetches the provider's recent events and applies those whose webhook never came. */
		syncEvents: {
			visibility: "public",
			timeout: 60000,
			params: { $$strict: true, hours: { type: "number", integer: true, min: 1, max: 720, default: 72, convert: true } },
			handler(this: This, ctx: Ctx<{ hours: number }>) {
				return syncProviderEvents(this as unknown as ReconcileHost, ctx.params.hours, ctx.requestID ?? null);
			}
		},

		/** Deletes expired idempotency keys and handled webhook ids older than `webhook_days`. */
		cleanup: {
			visibility: "public",
			params: { $$strict: true, webhook_days: { type: "number", integer: true, min: 1, max: 365, default: 30, convert: true } },
			handler(this: This, ctx: Ctx<{ webhook_days: number }>) {
				return cleanupPayments(this as unknown as ReconcileHost, ctx.params.webhook_days);
			}
		}
	},

	methods: {
		/**
		 * Charges a claimed payment through the provider (outside any transaction), then records the outcome.
		 * `created` is the payment as this request just inserted it; a resumed one is read again.
		 */
		async processCharge(this: This, ctx: Ctx, paymentId: string, userId: string, key: string, created?: PaymentRow) {
			const p = created ?? (await this.models.Payment.findByPk(paymentId));
			if (!p) throw conflict("the payment of this Idempotency-Key is gone; use a new key");
			if (p.status !== "processing") return this.finalizeCharge(paymentId, null, userId, key, ctx.requestID);

			let result: ChargeResult;
			try {
				result = await this.provider.charge(chargeRequest(p));
			} catch (err) {
				// Unknown outcome: the payment stays processing and the key is released for an immediate, safe retry.
				this.logger.warn(`Charge ${p.id} did not reach a result: ${(err as Error).message}`);
				await releaseIdempotent(this.models, userId, key, paymentId).catch(() => undefined);
				throw unavailable("the payment provider is unavailable; retry with the same Idempotency-Key");
			}

			if (result.outcome === "invalid") {
				// Refused before anything was created: no payment, and the key is free to use with a corrected body.
				await this.transaction(async t => {
					await this.models.Payment.destroy({ where: { id: paymentId, status: "processing", provider_payment_id: null }, transaction: t });
					await forgetIdempotent(this.models, t, userId, key, paymentId);
				});
				throw unprocessable(`${result.field} was refused by the payment provider: ${result.message}`, [
					{ field: result.field, message: `${result.field} is not valid: ${result.message}` }
				]);
			}
			return this.finalizeCharge(paymentId, targetOfCharge(result), userId, key, ctx.requestID);
		},

		/** One transaction: the payment's final state (where `target` takes it), its outbox event, and the key's stored answer. */
		async finalizeCharge(this: This, paymentId: string, target: Target | null, userId: string, key: string, requestId: string | null) {
			let intentId: string | null = null;
			const response = await this.transaction(async t => {
				const p = (await this.models.Payment.findByPk(paymentId, { transaction: t, lock: t.LOCK.UPDATE })) as PaymentInstance;
				// Read before `apply`, which takes the year's receipt counter: every charge queues on that row
				// until its transaction commits, so the round trips after it are kept few. An event stored
				// after this read is applied by settlePending below.
				const pending = await this.pendingEvents(t, p.provider_payment_id ?? target?.intentId);
				if (target) await this.apply(t, p, target, requestId);
				await this.applyPendingEvents(t, p, requestId, pending);
				intentId = p.provider_payment_id;
				const answer = responseFor(p);
				await completeIdempotent(this.sequelize, t, userId, key, paymentId, answer);
				return answer;
			});
			// Tests kill the process here: committed, not yet relayed (the relay must pick it up after a restart).
			failpoint("payments.after-commit");
			this.logger.info(`Charge of payment ${paymentId} finished: ${response.status}`);
			this.kickOutbox();
			// An event stored while this transaction ran is applied now (the webhook checks again after it stores one too).
			if (intentId) await this.settlePending(intentId, requestId);
			return response;
		},

		answer(this: This, ctx: Ctx, response: StoredResponse, replayed: boolean) {
			ctx.meta.$statusCode = response.status;
			if (replayed) ctx.meta.$responseHeaders = { "Idempotent-Replayed": "true" };
			if ("body" in response) {
				ctx.meta.$location = `/api/v1/payments/${response.body.id}`;
				return response.body;
			}
			const { detail, errors, extensions } = response.problem;
			if (!replayed) {
				throw new Errors.MoleculerClientError(detail, response.status, response.status === 402 ? "PAYMENT_REQUIRED" : "CLIENT_ERROR", { errors, extensions });
			}
			// A replayed problem is an answer, not an error, so it can carry the Idempotent-Replayed header.
			ctx.meta.$responseType = "application/problem+json";
			ctx.meta.$responseHeaders = { "Idempotent-Replayed": "true", "Cache-Control": "no-store" };
			return {
				type: "about:blank",
				title: STATUS_CODES[response.status] ?? "Error",
				status: response.status,
				detail,
				instance: CHARGE_PATH,
				request_id: ctx.requestID,
				...(errors?.length ? { errors } : {}),
				...(extensions ?? {})
			};
		},

		async apply(this: This, t: Transaction, payment: PaymentInstance, target: Target, requestId: string | null | undefined) {
			const written = await applyTarget({ sequelize: this.sequelize, addToOutbox: (tx, e) => this.addToOutbox(tx, e) }, t, payment, target, requestId);
			return written.length;
		},

		/** The webhook events stored for a payment intent and not applied yet, oldest first. */
		async pendingEvents(this: This, t: Transaction, intentId: string | null | undefined) {
			if (!intentId) return [];
			return this.models.WebhookEvent.findAll({
				where: { payment_intent: intentId, processed_at: null },
				order: [["received_at", "ASC"], ["id", "ASC"]],
				transaction: t
			});
		},

		/** Applies, in order, the stored events (`pendingEvents`) of the payment's PaymentIntent that were waiting for it. */
		async applyPendingEvents(this: This, t: Transaction, payment: PaymentInstance, requestId: string | null | undefined, pending: WebhookEventInstance[]) {
			let written = 0;
			for (const row of pending) {
				const effect = effectOf(JSON.parse(row.payload));
				if (effect) written += await this.apply(t, payment, effect.target, requestId);
				await row.update({ processed_at: new Date() }, { transaction: t });
			}
			return written;
		},

		async settlePending(this: This, intentId: string, requestId: string | null | undefined) {
			const [{ n }] = await this.sequelize.query<{ n: number | string }>(
				"SELECT count(*) AS n FROM webhook_events WHERE payment_intent = :intentId AND processed_at IS NULL",
				{ replacements: { intentId }, type: QueryTypes.SELECT }
			);
			if (!Number(n)) return;
			const written = await this.transaction(async t => {
				const p = await this.models.Payment.findOne({ where: { provider_payment_id: intentId }, transaction: t, lock: t.LOCK.UPDATE });
				return p ? this.applyPendingEvents(t, p as PaymentInstance, requestId, await this.pendingEvents(t, intentId)) : 0;
			});
			if (written) this.kickOutbox();
		},

		/** The payment an event is about, locked: by its PaymentIntent id, else by the payment id in the intent's metadata. */
		async lockPaymentForEvent(this: This, t: Transaction, effect: EventEffect) {
			const byIntent = await this.models.Payment.findOne({ where: { provider_payment_id: effect.intentId }, transaction: t, lock: t.LOCK.UPDATE });
			if (byIntent) return byIntent as PaymentInstance;
			if (!effect.paymentId) return null;
			const byId = await this.models.Payment.findByPk(effect.paymentId, { transaction: t, lock: t.LOCK.UPDATE });
			if (!byId || (byId.provider_payment_id && byId.provider_payment_id !== effect.intentId)) return null;
			return byId as PaymentInstance;
		},

		/** A payment the caller may see: their own, or any for support and admin. 404 when missing. */
		async findOwned(this: This, ctx: Ctx, id: string) {
			const me = requireUser(ctx);
			const p = await this.models.Payment.findByPk(id);
			if (!p) throw notFound("payment not found");
			requireOwnerOrStaff(me, p.user_id);
			return p as PaymentInstance;
		}
	},

	created(this: This) {
		const cfg = config();
		this.provider = createProvider(cfg, () => this.sequelize);
		this.webhookSecret = cfg.STRIPE_WEBHOOK_SECRET;
		this.idempotencyTtlS = cfg.IDEMPOTENCY_TTL_S;
		this.idempotencyLockMs = cfg.IDEMPOTENCY_LOCK_MS;
	}
};

export default PaymentsService;
