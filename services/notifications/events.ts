import type { Channel } from "./models";

/** The envelope every event channel carries (see mixins/outbox.mixin.ts). */
export interface EventEnvelope<T = Record<string, unknown>> {
	id: string;
	type: string;
	occurred_at: string;
	data: T;
}

/** The recipient, as `users.get` answers (null when that user no longer exists). */
export interface Recipient {
	id: string;
	email: string;
	name: string;
	phone: string | null;
}

export interface PlannedDelivery {
	channel: Channel;
	template: string;
	to: string;
	/** The template context, stored with the delivery. */
	data: Record<string, unknown>;
}

/** What an event type turns into: whose event it is, and the deliveries it causes. */
export interface EventRule {
	userId(data: Record<string, unknown>): string | undefined;
	plan(data: Record<string, unknown>, user: Recipient | null): PlannedDelivery[];
}

const str = (v: unknown): string | undefined => (typeof v === "string" && v !== "" ? v : undefined);
const int = (v: unknown): number => (typeof v === "number" && Number.isFinite(v) ? v : Number.NaN);
const byUserId = (data: Record<string, unknown>) => str(data.user_id);

/** The payment fields the templates use. */
function payment(data: Record<string, unknown>, user: Recipient) {
	const amount = int(data.amount);
	const currency = str(data.currency);
	if (Number.isNaN(amount) || !currency) throw new Error("the event has no amount or currency");
	return {
		name: user.name,
		amount,
		currency,
		payment_id: str(data.payment_id) ?? str(data.id) ?? null,
		description: str(data.description) ?? null,
		receipt_number: str(data.receipt_number) ?? null
	};
}

const email = (template: string, user: Recipient, data: Record<string, unknown>): PlannedDelivery[] =>
	user.email ? [{ channel: "email", template, to: user.email, data }] : [];
const sms = (template: string, user: Recipient, data: Record<string, unknown>): PlannedDelivery[] =>
	user.phone ? [{ channel: "sms", template, to: user.phone, data }] : [];

const rules = new Map<string, EventRule>();

/** Adds (or replaces) the rule of an event type; later issues add theirs (KYC decisions, suspension, …) the same way. */
export function registerEventRule(type: string, rule: EventRule): void {
	rules.set(type, rule);
}

export function unregisterEventRule(type: string): void {
	rules.delete(type);
}

/** The rule for an event type; undefined for types that send nothing. */
export function eventRule(type: string): EventRule | undefined {
	return rules.get(type);
}

registerEventRule("user.created", {
	userId: byUserId,
	plan(data, user) {
		// The event carries the address and name, so a welcome still goes out if the profile is gone.
		const to: Recipient | null = user ?? (str(data.email) ? { id: String(data.user_id), email: String(data.email), name: str(data.name) ?? "", phone: null } : null);
		return to ? email("welcome", to, { name: to.name, email: to.email }) : [];
	}
});

registerEventRule("payment.succeeded", {
	userId: byUserId,
	plan(data, user) {
		if (!user) return [];
		const ctx = payment(data, user);
		return [...email("receipt", user, ctx), ...sms("receipt", user, ctx)];
	}
});

registerEventRule("payment.failed", {
	userId: byUserId,
	plan(data, user) {
		if (!user) return [];
		return email("payment_failed", user, { ...payment(data, user), failure_reason: str(data.failure_reason) ?? null });
	}
});

registerEventRule("payment.refunded", {
	userId: byUserId,
	plan(data, user) {
		if (!user) return [];
		// `amount_refunded` is the payment's refunded total; `refund_amount`, when the event has it, this refund alone.
		const total = int(data.amount_refunded);
		const ctx = {
			...payment(data, user),
			amount_refunded: Number.isNaN(total) ? int(data.amount) : total,
			refund_amount: Number.isNaN(int(data.refund_amount)) ? null : int(data.refund_amount)
		};
		return [...email("refund", user, ctx), ...sms("refund", user, ctx)];
	}
});

/** Auth's link emails go to the address the event names (the one the token was made for), with the user's name. */
const linkEmail = (template: string) => ({
	userId: byUserId,
	plan(data: Record<string, unknown>, user: Recipient | null): PlannedDelivery[] {
		const to = str(data.email) ?? user?.email;
		const link = str(data.link);
		if (!to || !link) return [];
		return [{ channel: "email", template, to, data: { name: user?.name ?? str(data.name) ?? "", link } }];
	}
});

registerEventRule("auth.email_verification_requested", linkEmail("email_verification"));
registerEventRule("auth.password_reset_requested", linkEmail("password_reset"));

// Account notices from the users service (the admin service's decisions).
registerEventRule("user.suspended", {
	userId: byUserId,
	plan(data, user) {
		// The event carries the address, so the notice goes out even if the profile cannot be read.
		const to = user ?? (str(data.email) ? { id: String(data.user_id), email: String(data.email), name: str(data.name) ?? "", phone: null } : null);
		return to ? email("account_suspended", to, { name: to.name, reason: str(data.reason) ?? null }) : [];
	}
});

registerEventRule("user.kyc_decided", {
	userId: byUserId,
	plan(data, user) {
		if (!user) return [];
		return email("kyc_decision", user, { name: user.name, approved: data.decision === "approve", reason: str(data.reason) ?? null });
	}
});
