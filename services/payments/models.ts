import { DataTypes, type Model, type ModelStatic, type Sequelize } from "sequelize";

export const PAYMENT_STATUSES = ["processing", "failed", "succeeded", "partially_refunded", "refunded"] as const;
export type PaymentStatus = (typeof PAYMENT_STATUSES)[number];

export interface PaymentRow {
	id: string;
	user_id: string;
	amount: number;
	currency: string;
	description: string | null;
	payment_method: string;
	status: PaymentStatus;
	provider: string;
	provider_payment_id: string | null;
	amount_refunded: number;
	failure_reason: string | null;
	receipt_number: string | null;
	receipt_issued_at: Date | null;
	created_at: Date;
	updated_at: Date;
}

export interface IdempotencyRow {
	user_id: string;
	idem_key: string;
	fingerprint: string;
	status: "in_progress" | "done";
	payment_id: string | null;
	response_status: number | null;
	response_body: string | null;
	locked_at: Date | null;
	expires_at: Date;
	created_at: Date;
	updated_at: Date;
}

export interface RefundRow {
	id: string;
	payment_id: string;
	amount: number;
	total_refunded: number;
	reason: string | null;
	actor_id: string | null;
	provider_refund_id: string | null;
	request_id: string | null;
	created_at: Date;
}

export interface WebhookEventRow {
	id: string;
	type: string;
	payment_intent: string | null;
	payload: string;
	received_at: Date;
	processed_at: Date | null;
}

type M<T extends object> = ModelStatic<Model<T, Partial<T>> & T>;

export interface PaymentModels {
	Payment: M<PaymentRow>;
	IdempotencyKey: M<IdempotencyRow>;
	Refund: M<RefundRow>;
	WebhookEvent: M<WebhookEventRow>;
	[name: string]: ModelStatic<any>;
}

export function defineModels(sequelize: Sequelize): PaymentModels {
	const Payment = sequelize.define("Payment", {
		id: { type: DataTypes.UUID, primaryKey: true, defaultValue: DataTypes.UUIDV4 },
		user_id: { type: DataTypes.UUID, allowNull: false },
		amount: { type: DataTypes.INTEGER, allowNull: false },
		currency: { type: DataTypes.STRING(3), allowNull: false },
		description: { type: DataTypes.STRING(500) },
		payment_method: { type: DataTypes.STRING(255), allowNull: false },
		status: { type: DataTypes.STRING(24), allowNull: false },
		provider: { type: DataTypes.STRING(16), allowNull: false },
		provider_payment_id: { type: DataTypes.STRING(255) },
		amount_refunded: { type: DataTypes.INTEGER, allowNull: false, defaultValue: 0 },
		failure_reason: { type: DataTypes.STRING(64) },
		receipt_number: { type: DataTypes.STRING(32) },
		receipt_issued_at: { type: DataTypes.DATE }
	}, { tableName: "payments" }) as M<PaymentRow>;

	const IdempotencyKey = sequelize.define("IdempotencyKey", {
		user_id: { type: DataTypes.UUID, primaryKey: true },
		idem_key: { type: DataTypes.STRING(255), primaryKey: true },
		fingerprint: { type: DataTypes.STRING(64), allowNull: false },
		status: { type: DataTypes.STRING(16), allowNull: false },
		payment_id: { type: DataTypes.UUID },
		response_status: { type: DataTypes.INTEGER },
		response_body: { type: DataTypes.TEXT },
		locked_at: { type: DataTypes.DATE },
		expires_at: { type: DataTypes.DATE, allowNull: false }
	}, { tableName: "idempotency_keys" }) as M<IdempotencyRow>;

	const Refund = sequelize.define("Refund", {
		id: { type: DataTypes.UUID, primaryKey: true, defaultValue: DataTypes.UUIDV4 },
		payment_id: { type: DataTypes.UUID, allowNull: false },
		amount: { type: DataTypes.INTEGER, allowNull: false },
		total_refunded: { type: DataTypes.INTEGER, allowNull: false },
		reason: { type: DataTypes.STRING(500) },
		actor_id: { type: DataTypes.UUID },
		provider_refund_id: { type: DataTypes.STRING(255) },
		request_id: { type: DataTypes.STRING(128) }
	}, { tableName: "payment_refunds", updatedAt: false }) as M<RefundRow>;

	const WebhookEvent = sequelize.define("WebhookEvent", {
		id: { type: DataTypes.STRING(255), primaryKey: true },
		type: { type: DataTypes.STRING(128), allowNull: false },
		payment_intent: { type: DataTypes.STRING(255) },
		payload: { type: DataTypes.TEXT, allowNull: false },
		received_at: { type: DataTypes.DATE, allowNull: false },
		processed_at: { type: DataTypes.DATE }
	}, { tableName: "webhook_events", timestamps: false }) as M<WebhookEventRow>;

	return { Payment, IdempotencyKey, Refund, WebhookEvent };
}

/** The public shape of a payment (API.md). */
export interface PaymentView {
	id: string;
	user_id: string;
	amount: number;
	currency: string;
	description: string | null;
	status: PaymentStatus;
	provider: string;
	provider_payment_id: string | null;
	amount_refunded: number;
	failure_reason: string | null;
	receipt_number: string | null;
	created_at: string;
	updated_at: string;
}

export function toPayment(m: Model<PaymentRow, any> | PaymentRow): PaymentView {
	const p = ("get" in m && typeof m.get === "function" ? m.get({ plain: true }) : m) as PaymentRow;
	return {
		id: p.id,
		user_id: p.user_id,
		amount: Number(p.amount),
		currency: p.currency,
		description: p.description ?? null,
		status: p.status,
		provider: p.provider,
		provider_payment_id: p.provider_payment_id ?? null,
		amount_refunded: Number(p.amount_refunded),
		failure_reason: p.failure_reason ?? null,
		receipt_number: p.receipt_number ?? null,
		created_at: new Date(p.created_at).toISOString(),
		updated_at: new Date(p.updated_at).toISOString()
	};
}
