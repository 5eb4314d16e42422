// What the payment service needs from a payment provider (Stripe, or the built-in simulation).
// Every write carries an idempotency key: a call repeated with the same key has one effect.

export interface ChargeRequest {
	amount: number;
	currency: string;
	paymentMethod: string;
	description?: string | null;
	/** `payment:<our payment id>`: a retry after a crash reaches the same PaymentIntent. */
	idempotencyKey: string;
	metadata: Record<string, string>;
}

/** The charge of one of our payments: its key comes from the payment's id, so a retry after a crash reaches the same PaymentIntent. */
export function chargeRequest(p: { id: string; user_id: string; amount: number; currency: string; payment_method: string; description?: string | null }): ChargeRequest {
	return {
		amount: Number(p.amount),
		currency: p.currency,
		paymentMethod: p.payment_method,
		description: p.description,
		idempotencyKey: `payment:${p.id}`,
		metadata: { payment_id: p.id, user_id: p.user_id }
	};
}

export type ChargeResult =
	/** Money taken. */
	| { outcome: "succeeded"; intentId: string }
	/** Not taken: the card was declined or needs authentication the API cannot give. */
	| { outcome: "declined"; intentId: string | null; reason: string; message: string }
	/** Accepted but not settled yet (a webhook will tell). */
	| { outcome: "pending"; intentId: string }
	/** The provider refused the request itself (e.g. an unknown payment method); nothing was created. */
	| { outcome: "invalid"; field: string; message: string };

export interface RefundRequest {
	intentId: string;
	amount: number;
	/** `refund:<payment id>:<amount refunded so far>`. */
	idempotencyKey: string;
	metadata: Record<string, string>;
}

export interface RefundResult {
	refundId: string;
	amount: number;
	status: string;
}

/** A PaymentIntent as the reconciliation job needs it. */
export interface ProviderIntent {
	id: string;
	/** Stripe's PaymentIntent status: succeeded, processing, requires_payment_method, requires_action, canceled, … */
	status: string;
	amount: number;
	currency: string;
	amountRefunded: number;
	failureReason: string | null;
	metadata: Record<string, string>;
}

/** A provider event, shaped like Stripe's (`data.object` is a PaymentIntent or a Charge). */
export interface ProviderEvent {
	id: string;
	type: string;
	created: number;
	data: { object: Record<string, any> };
}

export interface ListEventsOptions {
	types?: string[];
	/** Unix seconds: only events created after this. */
	createdAfter?: number;
	limit?: number;
	startingAfter?: string;
}

export interface PaymentProvider {
	readonly name: "simulated" | "stripe";
	charge(req: ChargeRequest): Promise<ChargeResult>;
	refund(req: RefundRequest): Promise<RefundResult>;
	retrieveIntent(id: string): Promise<ProviderIntent | null>;
	listEvents(opts?: ListEventsOptions): Promise<{ events: ProviderEvent[]; hasMore: boolean }>;
}

/** The provider could not be reached or failed; the outcome of the call is unknown (retry with the same key). */
export class ProviderUnavailableError extends Error {
	constructor(message: string) {
		super(message);
		this.name = "ProviderUnavailableError";
	}
}

/** The provider refused a request: an idempotency key reused with other parameters, or a refund it will not make. */
export class ProviderRejectedError extends Error {
	constructor(
		message: string,
		readonly code: string
	) {
		super(message);
		this.name = "ProviderRejectedError";
	}
}
