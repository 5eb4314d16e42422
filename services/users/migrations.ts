import { DataTypes } from "sequelize";
import type { Migration } from "../../lib/db";
import { outboxMigration } from "../../mixins/outbox.mixin";

const now = { type: DataTypes.DATE, allowNull: false };

export const migrations: Migration[] = [
	{
		name: "001-users-kyc",
		async up({ context: qi }) {
			await qi.createTable("users", {
				id: { type: DataTypes.UUID, primaryKey: true },
				// Stored lowercased; the unique index makes "one account per email" hold under races.
				email: { type: DataTypes.STRING(320), allowNull: false, unique: true },
				name: { type: DataTypes.STRING(100), allowNull: false },
				phone: { type: DataTypes.STRING(20) },
				status: { type: DataTypes.STRING(16), allowNull: false, defaultValue: "active" },
				roles: { type: DataTypes.STRING(64), allowNull: false, defaultValue: "user" },
				email_verified: { type: DataTypes.BOOLEAN, allowNull: false, defaultValue: false },
				kyc_status: { type: DataTypes.STRING(16), allowNull: false, defaultValue: "none" },
				created_at: now,
				updated_at: now
			});
			await qi.addIndex("users", ["status"]);
			await qi.createTable("kyc_submissions", {
				id: { type: DataTypes.UUID, primaryKey: true },
				user_id: { type: DataTypes.UUID, allowNull: false },
				full_name: { type: DataTypes.STRING(200), allowNull: false },
				date_of_birth: { type: DataTypes.DATEONLY, allowNull: false },
				country: { type: DataTypes.STRING(2), allowNull: false },
				document_type: { type: DataTypes.STRING(32), allowNull: false },
				document_number: { type: DataTypes.STRING(64), allowNull: false },
				status: { type: DataTypes.STRING(16), allowNull: false },
				reason: { type: DataTypes.STRING(500) },
				submitted_at: now,
				decided_at: { type: DataTypes.DATE }
			});
			await qi.addIndex("kyc_submissions", ["user_id", "submitted_at"]);
			await qi.addIndex("kyc_submissions", ["status"]);
		},
		async down({ context: qi }) {
			await qi.dropTable("kyc_submissions");
			await qi.dropTable("users");
		}
	},
	outboxMigration("002-outbox")
];
