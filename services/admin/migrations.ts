import { DataTypes } from "sequelize";
import type { Migration } from "../../lib/db";

export const migrations: Migration[] = [
	{
		name: "001-audit",
		async up({ context: qi }) {
			// Append-only: rows are only ever inserted; `seq` orders the hash chain and is unique, so two writers cannot both extend the same head.
			await qi.createTable("audit_entries", {
				id: { type: DataTypes.UUID, primaryKey: true },
				seq: { type: DataTypes.BIGINT, allowNull: false, unique: true },
				entry_key: { type: DataTypes.STRING(200), allowNull: false, unique: true },
				at: { type: DataTypes.DATE, allowNull: false },
				actor_id: { type: DataTypes.UUID },
				actor_email: { type: DataTypes.STRING(320) },
				action: { type: DataTypes.STRING(64), allowNull: false },
				target_type: { type: DataTypes.STRING(32), allowNull: false },
				target_id: { type: DataTypes.STRING(128) },
				request_id: { type: DataTypes.STRING(128) },
				ip: { type: DataTypes.STRING(64) },
				details: { type: DataTypes.TEXT, allowNull: false },
				prev_hash: { type: DataTypes.STRING(64), allowNull: false },
				hash: { type: DataTypes.STRING(64), allowNull: false }
			});
			await qi.addIndex("audit_entries", ["actor_id", "seq"]);
			await qi.addIndex("audit_entries", ["action", "seq"]);
			await qi.addIndex("audit_entries", ["target_id", "seq"]);
			await qi.addIndex("audit_entries", ["at"]);
		},
		async down({ context: qi }) {
			await qi.dropTable("audit_entries");
		}
	}
];
