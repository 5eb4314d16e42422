import { Op, type Model, type Sequelize, type Transaction } from "sequelize";
import type { Logger } from "moleculer";
import { isUniqueViolation } from "../../lib/errors";
import { deleteExpiredKeys, type StoredResponse } from "./idempotency";
import type { PaymentModels, PaymentRow } from "./models";
import { chargeRequest, type PaymentProvider, type ProviderEvent, type ProviderIntent } from "./providers";
import { targetOfCharge, type Target } from "./state";
import { effectOf, type EventEffect } from "./webhooks";

// Reconciliation and clean-up for the jobs service: drift is fixed through the service's own state
// machine (apply → applyTarget, with its outbox events), never by writing states directly.

type PaymentInstance = Model<PaymentRow, any> & PaymentRow;

/** What these functions use of the payments service instance. */
export interface ReconcileHost {
	sequelize: Sequelize;
	models: PaymentModels;
	provider: PaymentProvider;
	logger: Logger;
	transaction<T>(fn: (t: Transaction) => Promise<T>): Promise<T>;
	apply(t: Transaction, payment: PaymentInstance, target: Target, requestId: string | null | undefined): Promise<number>;
	finalizeCharge(paymentId: string, target: Target | null, userId: string, key: string, requestId: string | null): Promise<StoredResponse>;
	lockPaymentForEvent(t: Transaction, effect: EventEffect): Promise<PaymentInstance | null>;
	settlePending(intentId: string, requestId: string | null | undefined): Promise<void>;
	kickOutbox(): void;
}

/** The handled event types (the ones effectOf maps). */
export const HANDLED_EVENTS = ["payment_intent.succeeded", "payment_intent.payment_failed", "charge.refunded"];

/** Where the provider's PaymentIntent says the payment is; null while it is not settled. */
export function targetOf(intent: ProviderIntent): Target | null {
	if (intent.status === "succeeded") {
		return intent.amountRefunded > 0 ? { kind: "refunded", totalRefunded: intent.amountRefunded, intentId: intent.id } : { kind: "succeeded", intentId: intent.id };
	}
	if (intent.status === "requires_payment_method" || intent.status === "canceled") {
		return { kind: "failed", reason: intent.failureReason ?? "card_declined", intentId: intent.id };
	}
	return null;
}

export async function candidates(host: ReconcileHost, opts: { processingOlderThanS: number; recentDays: number; limit: number }, now = new Date()): Promise<string[]> {
	const rows = await host.models.Payment.findAll({
		attributes: ["id"],
		where: {
			[Op.or]: [
				{ status: "processing", updated_at: { [Op.lte]: new Date(now.getTime() - opts.processingOlderThanS * 1000) } },
				{ status: { [Op.in]: ["succeeded", "partially_refunded"] }, updated_at: { [Op.gte]: new Date(now.getTime() - opts.recentDays * 86400000) } }
			]
		},
		order: [["updated_at", "ASC"]],
		limit: opts.limit
	});
	return rows.map(r => r.id);
}

export interface ReconcileResult {
	id: string;
	fixed: boolean;
	mismatch?: { id: string; was: string; provider: string; now: string; amount_refunded?: number };
}

/** Asks the provider about one payment and moves it where the provider says it is. */
export async function reconcileOne(host: ReconcileHost, id: string, requestId: string | null): Promise<ReconcileResult> {
	const p = await host.models.Payment.findByPk(id);
	if (!p) return { id, fixed: false };
	const was = p.status;
	let target: Target | null;
	let providerStatus: string;
	const key = await host.models.IdempotencyKey.findOne({ where: { payment_id: id, status: "in_progress" } });
	if (!p.provider_payment_id) {
		if (p.status !== "processing") return { id, fixed: false };
		// A charge that stopped before it learnt its PaymentIntent: the same provider key reaches the same intent.
		const result = await host.provider.charge(chargeRequest(p));
		if (result.outcome === "invalid") return { id, fixed: false, mismatch: { id, was, provider: "invalid", now: was } };
		providerStatus = result.outcome;
		target = targetOfCharge(result);
		if (result.intentId) {
			const intent = await host.provider.retrieveIntent(result.intentId);
			const t2 = intent ? targetOf(intent) : null;
			if (t2) target = t2;
		}
	} else {
		const intent = await host.provider.retrieveIntent(p.provider_payment_id);
		if (!intent) return { id, fixed: false, mismatch: { id, was, provider: "missing", now: was } };
		providerStatus = intent.amountRefunded > 0 ? `${intent.status} (refunded ${intent.amountRefunded})` : intent.status;
		target = targetOf(intent);
	}
	if (!target) return { id, fixed: false };

	if (key && p.status === "processing") {
		// The charge's own ending: state, outbox event and the key's stored answer, in one transaction.
		await host.finalizeCharge(id, target, key.user_id, key.idem_key, requestId);
	} else {
		const written = await host.transaction(async t => {
			const locked = (await host.models.Payment.findByPk(id, { transaction: t, lock: t.LOCK.UPDATE })) as PaymentInstance;
			return host.apply(t, locked, target!, requestId);
		});
		if (written) host.kickOutbox();
	}
	const after = (await host.models.Payment.findByPk(id))!;
	const fixed = after.status !== was || Number(after.amount_refunded) !== Number(p.amount_refunded);
	if (!fixed) return { id, fixed };
	host.logger.warn(`Reconciled payment ${id}: ${was} → ${after.status} (provider: ${providerStatus})`);
	return { id, fixed, mismatch: { id, was, provider: providerStatus, now: after.status, amount_refunded: Number(after.amount_refunded) } };
}

/**
 * Stores and applies one provider event: the webhook's path (with the raw body it was signed over as
 * `payload`) and reconciliation's for events whose webhook never came. `fresh` when it was new.
 */
export async function ingestEvent(
	host: ReconcileHost,
	event: ProviderEvent,
	requestId: string | null,
	payload = JSON.stringify(event)
): Promise<{ fresh: boolean; applied: boolean }> {
	const effect = effectOf(event);
	let pendingFor: string | null = null;
	let written = 0;
	let fresh = false;
	await host
		.transaction(async t => {
			const seen = await host.models.WebhookEvent.findByPk(event.id, { transaction: t, lock: t.LOCK.UPDATE });
			if (seen) return;
			fresh = true;
			const now = new Date();
			const row = await host.models.WebhookEvent.create(
				{ id: event.id, type: event.type, payment_intent: effect?.intentId ?? null, payload, received_at: now, processed_at: effect ? null : now },
				{ transaction: t }
			);
			if (!effect) return;
			const payment = await host.lockPaymentForEvent(t, effect);
			if (!payment) {
				// Not ours yet: the charge that creates it has not committed. Applied when it does.
				pendingFor = effect.intentId;
				return;
			}
			written += await host.apply(t, payment, effect.target, requestId);
			await row.update({ processed_at: now }, { transaction: t });
		})
		.catch(async err => {
			// The same event delivered twice at once: the other delivery recorded (and applied) it.
			if (isUniqueViolation(err) && (await host.models.WebhookEvent.count({ where: { id: event.id } }))) return;
			throw err;
		});
	if (written) host.kickOutbox();
	if (pendingFor) await host.settlePending(pendingFor, requestId);
	return { fresh, applied: written > 0 };
}

/** Provider events of the last `hours` whose webhook never came: stored and applied. */
export async function syncEvents(host: ReconcileHost, hours: number, requestId: string | null, maxPages = 20): Promise<{ fetched: number; missing: number; applied: number }> {
	const createdAfter = Math.floor(Date.now() / 1000) - hours * 3600;
	let startingAfter: string | undefined;
	let fetched = 0;
	let missing = 0;
	let applied = 0;
	const events: ProviderEvent[] = [];
	for (let page = 0; page < maxPages; page++) {
		const { events: batch, hasMore } = await host.provider.listEvents({ types: HANDLED_EVENTS, createdAfter, limit: 100, startingAfter });
		events.push(...batch);
		if (!hasMore || !batch.length) break;
		startingAfter = batch[batch.length - 1].id;
	}
	// Oldest first, as they happened.
	for (const event of events.reverse()) {
		fetched++;
		const r = await ingestEvent(host, event, requestId);
		if (r.fresh) missing++;
		if (r.applied) applied++;
	}
	return { fetched, missing, applied };
}

export async function cleanup(host: ReconcileHost, webhookDays: number, now = new Date()): Promise<{ idempotency_keys: number; webhook_events: number }> {
	const keys = await deleteExpiredKeys(host.models, now);
	const events = await host.models.WebhookEvent.destroy({
		where: { processed_at: { [Op.ne]: null }, received_at: { [Op.lt]: new Date(now.getTime() - webhookDays * 86400000) } }
	});
	return { idempotency_keys: keys, webhook_events: events };
}
