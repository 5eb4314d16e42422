import { DataTypes } from "sequelize";
import type { Migration } from "../../lib/db";
import { outboxMigration } from "../../mixins/outbox.mixin";

const now = { type: DataTypes.DATE, allowNull: false };

export const migrations: Migration[] = [
	{
		name: "001-payments",
		async up({ context: qi }) {
			await qi.createTable("payments", {
				id: { type: DataTypes.UUID, primaryKey: true },
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
				receipt_issued_at: { type: DataTypes.DATE },
				created_at: now,
				updated_at: now
			});
			await qi.addIndex("payments", ["user_id", "created_at"]);
			await qi.addIndex("payments", ["status", "updated_at"]);
			// One payment per PaymentIntent, one payment per receipt number.
			await qi.addIndex("payments", ["provider_payment_id"], { unique: true, name: "payments_provider_payment_id_unique" });
			await qi.addIndex("payments", ["receipt_number"], { unique: true, name: "payments_receipt_number_unique" });

			// IETF Idempotency-Key: one row per (user, key), with the fingerprint of the body and the stored answer.
			await qi.createTable("idempotency_keys", {
				user_id: { type: DataTypes.UUID, primaryKey: true },
				idem_key: { type: DataTypes.STRING(255), primaryKey: true },
				fingerprint: { type: DataTypes.STRING(64), allowNull: false },
				status: { type: DataTypes.STRING(16), allowNull: false },
				payment_id: { type: DataTypes.UUID },
				response_status: { type: DataTypes.INTEGER },
				response_body: { type: DataTypes.TEXT },
				locked_at: { type: DataTypes.DATE },
				expires_at: now,
				created_at: now,
				updated_at: now
			});
			await qi.addIndex("idempotency_keys", ["expires_at"]);

			// One counter row per year: the receipt number is taken in the transaction that marks the payment succeeded.
			await qi.createTable("receipt_counters", {
				year: { type: DataTypes.INTEGER, primaryKey: true },
				last_value: { type: DataTypes.INTEGER, allowNull: false, defaultValue: 0 }
			});

			await qi.createTable("payment_refunds", {
				id: { type: DataTypes.UUID, primaryKey: true },
				payment_id: { type: DataTypes.UUID, allowNull: false },
				amount: { type: DataTypes.INTEGER, allowNull: false },
				total_refunded: { type: DataTypes.INTEGER, allowNull: false },
				reason: { type: DataTypes.STRING(500) },
				actor_id: { type: DataTypes.UUID },
				provider_refund_id: { type: DataTypes.STRING(255) },
				request_id: { type: DataTypes.STRING(128) },
				created_at: now
			});
			await qi.addIndex("payment_refunds", ["payment_id"]);

			// Stripe events by id: each is applied once; one for a PaymentIntent not yet known waits here (processed_at null).
			await qi.createTable("webhook_events", {
				id: { type: DataTypes.STRING(255), primaryKey: true },
				type: { type: DataTypes.STRING(128), allowNull: false },
				payment_intent: { type: DataTypes.STRING(255) },
				payload: { type: DataTypes.TEXT, allowNull: false },
				received_at: now,
				processed_at: { type: DataTypes.DATE }
			});
			await qi.addIndex("webhook_events", ["payment_intent", "processed_at"]);

			// The simulated provider's own records (what Stripe would hold on its side).
			await qi.createTable("sim_payment_intents", {
				id: { type: DataTypes.STRING(64), primaryKey: true },
				idempotency_key: { type: DataTypes.STRING(255), allowNull: false, unique: true },
				request_hash: { type: DataTypes.STRING(64), allowNull: false },
				amount: { type: DataTypes.INTEGER, allowNull: false },
				currency: { type: DataTypes.STRING(3), allowNull: false },
				payment_method: { type: DataTypes.STRING(255), allowNull: false },
				description: { type: DataTypes.STRING(500) },
				status: { type: DataTypes.STRING(32), allowNull: false },
				failure_code: { type: DataTypes.STRING(64) },
				amount_refunded: { type: DataTypes.INTEGER, allowNull: false, defaultValue: 0 },
				metadata: { type: DataTypes.TEXT, allowNull: false },
				created_at: now
			});
			await qi.createTable("sim_refunds", {
				id: { type: DataTypes.STRING(64), primaryKey: true },
				idempotency_key: { type: DataTypes.STRING(255), allowNull: false, unique: true },
				request_hash: { type: DataTypes.STRING(64), allowNull: false },
				payment_intent: { type: DataTypes.STRING(64), allowNull: false },
				amount: { type: DataTypes.INTEGER, allowNull: false },
				created_at: now
			});
			await qi.addIndex("sim_refunds", ["payment_intent"]);
			await qi.createTable("sim_events", {
				seq: { type: DataTypes.INTEGER, primaryKey: true, autoIncrement: true },
				id: { type: DataTypes.STRING(64), allowNull: false, unique: true },
				type: { type: DataTypes.STRING(128), allowNull: false },
				created: { type: DataTypes.INTEGER, allowNull: false },
				payload: { type: DataTypes.TEXT, allowNull: false }
			});
			await qi.addIndex("sim_events", ["created"]);
		},
		async down({ context: qi }) {
			for (const table of ["sim_events", "sim_refunds", "sim_payment_intents", "webhook_events", "payment_refunds", "receipt_counters", "idempotency_keys", "payments"]) {
				await qi.dropTable(table);
			}
		}
	},
	outboxMigration("002-outbox")
];
