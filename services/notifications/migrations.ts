import { DataTypes } from "sequelize";
import type { Migration } from "../../lib/db";

export const migrations: Migration[] = [
	{
		name: "001-inbox-deliveries-dead-letters",
		async up({ context: qi }) {
			await qi.createTable("inbox", {
				event_id: { type: DataTypes.STRING(128), primaryKey: true },
				type: { type: DataTypes.STRING(64), allowNull: false },
				payload: { type: DataTypes.TEXT, allowNull: false },
				request_id: { type: DataTypes.STRING(128) },
				received_at: { type: DataTypes.DATE, allowNull: false },
				processed_at: { type: DataTypes.DATE },
				attempts: { type: DataTypes.INTEGER, allowNull: false, defaultValue: 0 },
				last_error: { type: DataTypes.STRING(1000) },
				next_attempt_at: { type: DataTypes.DATE }
			});
			// The pump looks for unprocessed rows that are due.
			await qi.addIndex("inbox", ["processed_at", "next_attempt_at"]);

			await qi.createTable("deliveries", {
				id: { type: DataTypes.UUID, primaryKey: true },
				event_id: { type: DataTypes.STRING(128), allowNull: false },
				user_id: { type: DataTypes.UUID },
				channel: { type: DataTypes.STRING(8), allowNull: false },
				template: { type: DataTypes.STRING(64), allowNull: false },
				to: { type: DataTypes.STRING(320), allowNull: false },
				status: { type: DataTypes.STRING(16), allowNull: false, defaultValue: "queued" },
				attempts: { type: DataTypes.INTEGER, allowNull: false, defaultValue: 0 },
				request_id: { type: DataTypes.STRING(128) },
				data: { type: DataTypes.TEXT, allowNull: false },
				last_error: { type: DataTypes.STRING(1000) },
				next_attempt_at: { type: DataTypes.DATE },
				lease_until: { type: DataTypes.DATE },
				created_at: { type: DataTypes.DATE, allowNull: false },
				updated_at: { type: DataTypes.DATE, allowNull: false },
				sent_at: { type: DataTypes.DATE }
			});
			// One delivery per event, channel and template, however often the event arrives.
			await qi.addIndex("deliveries", ["event_id", "channel", "template"], { unique: true, name: "deliveries_event_channel_template" });
			await qi.addIndex("deliveries", ["user_id", "created_at"]);
			await qi.addIndex("deliveries", ["status", "next_attempt_at"]);

			await qi.createTable("dead_letters", {
				id: { type: DataTypes.UUID, primaryKey: true },
				queue: { type: DataTypes.STRING(128), allowNull: false },
				message_id: { type: DataTypes.STRING(128) },
				payload: { type: DataTypes.TEXT, allowNull: false },
				error: { type: DataTypes.STRING(1000) },
				request_id: { type: DataTypes.STRING(128) },
				failed_at: { type: DataTypes.DATE, allowNull: false },
				redriven_at: { type: DataTypes.DATE }
			});
			await qi.addIndex("dead_letters", ["failed_at"]);
			await qi.addIndex("dead_letters", ["queue", "message_id"]);
		},
		async down({ context: qi }) {
			await qi.dropTable("dead_letters");
			await qi.dropTable("deliveries");
			await qi.dropTable("inbox");
		}
	}
];
