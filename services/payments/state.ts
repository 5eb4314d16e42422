import type { Model, Sequelize, Transaction } from "sequelize";
import { CHANNELS } from "../../lib/channels";
import type { OutboxEvent } from "../../mixins/outbox.mixin";
import { toPayment, type PaymentRow, type PaymentStatus } from "./models";
import type { ChargeResult } from "./providers";
import { nextReceiptNumber } from "./receipts";

// The payment state machine. States only move forward:
//   processing → failed → succeeded → partially_refunded → refunded
// so events that arrive late, early, or many times can never undo a later state.

export const RANK: Record<PaymentStatus, number> = { processing: 0, failed: 1, succeeded: 2, partially_refunded: 3, refunded: 4 };

export type PaymentEventType = "payment.succeeded" | "payment.failed" | "payment.refunded";

/** Where a provider answer or event says the payment is. */
export type Target =
	/** Nothing to move; only learn the PaymentIntent id. */
	| { kind: "attach"; intentId?: string | null }
	| { kind: "succeeded"; intentId?: string | null }
	| { kind: "failed"; reason: string; intentId?: string | null }
	/** `totalRefunded` is the whole amount refunded so far (not this refund alone). */
	| { kind: "refunded"; totalRefunded: number; intentId?: string | null };

/** Where the provider's answer to a charge takes its payment (an "invalid" answer created nothing). */
export function targetOfCharge(result: Exclude<ChargeResult, { outcome: "invalid" }>): Target {
	switch (result.outcome) {
		case "succeeded":
			return { kind: "succeeded", intentId: result.intentId };
		case "declined":
			return { kind: "failed", reason: result.reason, intentId: result.intentId };
		case "pending":
			return { kind: "attach", intentId: result.intentId };
	}
}

export interface Step {
	event: PaymentEventType;
	changes: Partial<PaymentRow>;
	/** The step makes the payment succeeded: it takes a receipt number if it has none. */
	receipt?: boolean;
}

type State = Pick<PaymentRow, "status" | "amount" | "amount_refunded">;

/** The transitions (each with the event it announces) that take a payment towards a target; empty when it is there or past it. */
export function plan(p: State, target: Target): Step[] {
	const steps: Step[] = [];
	const rank = RANK[p.status];
	switch (target.kind) {
		case "attach":
			break;
		case "failed":
			if (p.status === "processing") steps.push({ event: "payment.failed", changes: { status: "failed", failure_reason: target.reason } });
			break;
		case "succeeded":
			if (rank < RANK.succeeded) steps.push({ event: "payment.succeeded", changes: { status: "succeeded", failure_reason: null }, receipt: true });
			break;
		case "refunded": {
			// A refund proves the money was taken: a payment still processing (or failed) first succeeds.
			if (rank < RANK.succeeded) steps.push({ event: "payment.succeeded", changes: { status: "succeeded", failure_reason: null }, receipt: true });
			const amount = Number(p.amount);
			const total = Math.min(Math.max(0, Math.floor(target.totalRefunded)), amount);
			if (total > Number(p.amount_refunded)) {
				steps.push({ event: "payment.refunded", changes: { amount_refunded: total, status: total >= amount ? "refunded" : "partially_refunded" } });
			}
			break;
		}
	}
	return steps;
}

export interface ApplyDeps {
	sequelize: Sequelize;
	addToOutbox(t: Transaction, event: OutboxEvent): Promise<string>;
}

/**
 * Moves a payment (locked in `t`) towards a target: each transition is saved with its outbox event
 * in the same transaction. Returns the events written.
 */
export async function applyTarget(
	deps: ApplyDeps,
	t: Transaction,
	payment: Model<PaymentRow, any> & PaymentRow,
	target: Target,
	requestId: string | null | undefined
): Promise<PaymentEventType[]> {
	if (target.intentId && !payment.provider_payment_id) payment.set("provider_payment_id", target.intentId);
	const written: PaymentEventType[] = [];
	for (const step of plan(payment, target)) {
		const changes: Partial<PaymentRow> = { ...step.changes };
		// What this one refund gave back (amount_refunded is the running total).
		const refundAmount = step.event === "payment.refunded" ? Number(changes.amount_refunded) - Number(payment.amount_refunded) : undefined;
		if (step.receipt && !payment.receipt_number) {
			const at = new Date();
			changes.receipt_number = await nextReceiptNumber(deps.sequelize, t, at);
			changes.receipt_issued_at = at;
		}
		payment.set(changes);
		await payment.save({ transaction: t });
		await deps.addToOutbox(t, {
			channel: CHANNELS.paymentEvents,
			type: step.event,
			data: { ...toPayment(payment), customer_user_id: payment.user_id, ...(refundAmount !== undefined ? { refund_amount: refundAmount } : {}) },
			requestId
		});
		written.push(step.event);
	}
	if (payment.changed()) await payment.save({ transaction: t });
	return written;
}
