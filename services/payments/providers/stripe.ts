import Stripe from "stripe";
import {
	ProviderRejectedError,
	ProviderUnavailableError,
	type ChargeRequest,
	type ChargeResult,
	type ListEventsOptions,
	type PaymentProvider,
	type ProviderEvent,
	type ProviderIntent,
	type RefundRequest,
	type RefundResult
} from "./types";

export interface StripeProviderOptions {
	apiKey: string;
	/** Another API base (a test double, a proxy): its protocol, host and port go to the SDK. */
	apiUrl?: string;
	timeoutMs?: number;
}

/** What a declined card is called in `failure_reason`: the decline code when it says more than "declined". */
export function declineReason(code: string | undefined | null, declineCode: string | undefined | null): string {
	if (code === "card_declined" && declineCode && declineCode !== "generic_decline") return declineCode;
	return code || declineCode || "card_declined";
}

const isStripeError = (err: unknown, type: string): err is Stripe.errors.StripeError =>
	!!err && typeof err === "object" && (err as { type?: string }).type === type;

/** Stripe through its official SDK: PaymentIntents created and confirmed in one call, refunds, retrieval and events. */
export class StripeProvider implements PaymentProvider {
	readonly name = "stripe" as const;
	private readonly stripe: Stripe;

	constructor(opts: StripeProviderOptions) {
		const config: Stripe.StripeConfig = {
			maxNetworkRetries: 2,
			timeout: opts.timeoutMs ?? 20000,
			telemetry: false,
			appInfo: { name: "moleculer-microservices" }
		};
		if (opts.apiUrl) {
			const url = new URL(opts.apiUrl);
			config.protocol = url.protocol === "http:" ? "http" : "https";
			config.host = url.hostname;
			config.port = url.port || (url.protocol === "http:" ? 80 : 443);
		}
		this.stripe = new Stripe(opts.apiKey, config);
	}

	async charge(req: ChargeRequest): Promise<ChargeResult> {
		let intent: Stripe.PaymentIntent;
		try {
			intent = await this.stripe.paymentIntents.create(
				{
					amount: req.amount,
					currency: req.currency,
					payment_method: req.paymentMethod,
					confirm: true,
					automatic_payment_methods: { enabled: true, allow_redirects: "never" },
					...(req.description ? { description: req.description } : {}),
					metadata: req.metadata
				},
				{ idempotencyKey: req.idempotencyKey }
			);
		} catch (err) {
			if (isStripeError(err, "StripeCardError")) {
				const e = err as Stripe.errors.StripeCardError;
				const raw = (e.raw ?? {}) as { payment_intent?: { id?: string } };
				return {
					outcome: "declined",
					intentId: e.payment_intent?.id ?? raw.payment_intent?.id ?? null,
					reason: declineReason(e.code, e.decline_code),
					message: e.message || "Your card was declined."
				};
			}
			if (isStripeError(err, "StripeInvalidRequestError")) {
				const e = err as Stripe.errors.StripeInvalidRequestError;
				const field = e.param === "amount" || e.param === "currency" ? e.param : "payment_method";
				return { outcome: "invalid", field, message: e.message || "the provider refused the request" };
			}
			throw this.wrap(err);
		}
		switch (intent.status) {
			case "succeeded":
				return { outcome: "succeeded", intentId: intent.id };
			case "processing":
				return { outcome: "pending", intentId: intent.id };
			case "requires_action":
				return { outcome: "declined", intentId: intent.id, reason: "authentication_required", message: "Your card requires authentication, which this payment flow cannot complete." };
			default: {
				const last = intent.last_payment_error;
				return {
					outcome: "declined",
					intentId: intent.id,
					reason: last ? declineReason(last.code, last.decline_code) : intent.status === "canceled" ? "canceled" : "card_declined",
					message: last?.message ?? "The payment could not be completed."
				};
			}
		}
	}

	async refund(req: RefundRequest): Promise<RefundResult> {
		try {
			const refund = await this.stripe.refunds.create(
				{ payment_intent: req.intentId, amount: req.amount, metadata: req.metadata },
				{ idempotencyKey: req.idempotencyKey }
			);
			if (refund.status === "failed" || refund.status === "canceled") {
				throw new ProviderRejectedError(`the refund ${refund.status}`, "refund_failed");
			}
			return { refundId: refund.id, amount: refund.amount, status: refund.status ?? "pending" };
		} catch (err) {
			if (err instanceof ProviderRejectedError) throw err;
			throw this.wrap(err);
		}
	}

	async retrieveIntent(id: string): Promise<ProviderIntent | null> {
		try {
			const pi = await this.stripe.paymentIntents.retrieve(id, { expand: ["latest_charge"] });
			const charge = pi.latest_charge && typeof pi.latest_charge === "object" ? pi.latest_charge : null;
			return {
				id: pi.id,
				status: pi.status,
				amount: pi.amount,
				currency: pi.currency,
				amountRefunded: charge?.amount_refunded ?? 0,
				failureReason: pi.last_payment_error ? declineReason(pi.last_payment_error.code, pi.last_payment_error.decline_code) : null,
				metadata: { ...(pi.metadata ?? {}) }
			};
		} catch (err) {
			if (isStripeError(err, "StripeInvalidRequestError") && (err as Stripe.errors.StripeError).statusCode === 404) return null;
			throw this.wrap(err);
		}
	}

	async listEvents(opts: ListEventsOptions = {}): Promise<{ events: ProviderEvent[]; hasMore: boolean }> {
		try {
			const page = await this.stripe.events.list({
				limit: Math.min(Math.max(opts.limit ?? 10, 1), 100),
				...(opts.types?.length ? { types: opts.types } : {}),
				...(opts.createdAfter !== undefined ? { created: { gt: opts.createdAfter } } : {}),
				...(opts.startingAfter ? { starting_after: opts.startingAfter } : {})
			});
			return {
				events: page.data.map(e => ({ id: e.id, type: e.type, created: e.created, data: { object: e.data.object as unknown as Record<string, any> } })),
				hasMore: page.has_more
			};
		} catch (err) {
			throw this.wrap(err);
		}
	}

	/** Anything but a clear answer: the outcome is unknown, so the caller may retry with the same key. */
	private wrap(err: unknown): Error {
		if (isStripeError(err, "StripeIdempotencyError")) {
			return new ProviderRejectedError((err as Error).message, "idempotency_error");
		}
		if (isStripeError(err, "StripeInvalidRequestError")) {
			const e = err as Stripe.errors.StripeError;
			return new ProviderRejectedError(e.message, e.code ?? "invalid_request");
		}
		const e = err as Error;
		return new ProviderUnavailableError(`stripe: ${e?.message ?? String(err)}`);
	}
}
