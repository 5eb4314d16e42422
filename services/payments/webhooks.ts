import Stripe from "stripe";
import { badRequest } from "../../lib/errors";
import { declineReason } from "./providers/stripe";
import type { ProviderEvent } from "./providers/types";
import type { Target } from "./state";

/** Stripe's default, and what API.md asks: events signed more than 300 s ago, or ahead, are refused. */
export const WEBHOOK_TOLERANCE_S = 300;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * Checks a webhook the way Stripe signs it (HMAC-SHA256 of `<t>.<raw body>`, `Stripe-Signature: t=…,v1=…`)
 * with the official SDK, and also refuses a timestamp too far ahead (the SDK checks only age).
 * Any failure is a 400.
 */
export function verifyWebhook(payload: string, signature: string, secret: string, nowMs = Date.now()): ProviderEvent {
	if (!signature) throw badRequest("the Stripe-Signature header is missing");
	const t = /(?:^|,)\s*t=(\d+)\s*(?:,|$)/.exec(signature);
	if (!t) throw badRequest("the Stripe-Signature header is malformed");
	if (Number(t[1]) > Math.floor(nowMs / 1000) + WEBHOOK_TOLERANCE_S) throw badRequest("the webhook timestamp is too far in the future");
	let event: unknown;
	try {
		event = Stripe.webhooks.constructEvent(payload, signature, secret, WEBHOOK_TOLERANCE_S, undefined, nowMs);
	} catch (err) {
		const message = (err as Error).message ?? "";
		if (/tolerance/i.test(message)) throw badRequest("the webhook timestamp is too old");
		if (err instanceof SyntaxError) throw badRequest("the webhook body is not a JSON event");
		throw badRequest("the webhook signature does not match");
	}
	const e = event as Partial<ProviderEvent> | null;
	if (!e || typeof e.id !== "string" || !e.id || typeof e.type !== "string" || !e.data || typeof e.data.object !== "object" || !e.data.object) {
		throw badRequest("the webhook body is not a Stripe event");
	}
	return e as ProviderEvent;
}

/** What an event means for one of our payments. */
export interface EventEffect {
	/** The PaymentIntent the event is about (`provider_payment_id`). */
	intentId: string;
	/** Our payment id, from the intent's metadata (when it carries one). */
	paymentId: string | null;
	target: Target;
}

const idOf = (v: unknown): string | null => (typeof v === "string" ? v : v && typeof v === "object" && typeof (v as { id?: unknown }).id === "string" ? (v as { id: string }).id : null);

/** The effect of the events we handle; null for any other event (acknowledged, not applied). */
export function effectOf(event: ProviderEvent): EventEffect | null {
	const obj = event.data.object;
	const hint = typeof obj.metadata?.payment_id === "string" && UUID.test(obj.metadata.payment_id) ? (obj.metadata.payment_id as string) : null;
	switch (event.type) {
		case "payment_intent.succeeded": {
			const intentId = idOf(obj);
			return intentId ? { intentId, paymentId: hint, target: { kind: "succeeded", intentId } } : null;
		}
		case "payment_intent.payment_failed": {
			const intentId = idOf(obj);
			const last = obj.last_payment_error as { code?: string; decline_code?: string } | null | undefined;
			return intentId ? { intentId, paymentId: hint, target: { kind: "failed", reason: declineReason(last?.code, last?.decline_code), intentId } } : null;
		}
		case "charge.refunded": {
			const intentId = idOf(obj.payment_intent);
			const total = Number(obj.amount_refunded);
			return intentId && Number.isFinite(total) ? { intentId, paymentId: hint, target: { kind: "refunded", totalRefunded: total, intentId } } : null;
		}
		default:
			return null;
	}
}
