import { DataTypes } from "sequelize";
import type { Migration } from "../../lib/db";

const now = { type: DataTypes.DATE, allowNull: false };

export const migrations: Migration[] = [
	{
		name: "001-credentials-sessions-keys",
		async up({ context: qi }) {
			await qi.createTable("credentials", {
				user_id: { type: DataTypes.UUID, primaryKey: true },
				password_hash: { type: DataTypes.STRING(100), allowNull: false },
				created_at: now,
				updated_at: now
			});
			await qi.createTable("sessions", {
				id: { type: DataTypes.UUID, primaryKey: true },
				user_id: { type: DataTypes.UUID, allowNull: false },
				user_agent: { type: DataTypes.STRING(512) },
				ip: { type: DataTypes.STRING(64) },
				created_at: now,
				last_used_at: now,
				expires_at: now,
				revoked_at: { type: DataTypes.DATE },
				revoked_reason: { type: DataTypes.STRING(64) }
			});
			await qi.addIndex("sessions", ["user_id"]);
			await qi.createTable("refresh_tokens", {
				id: { type: DataTypes.UUID, primaryKey: true },
				session_id: { type: DataTypes.UUID, allowNull: false },
				token_hash: { type: DataTypes.STRING(64), allowNull: false, unique: true },
				expires_at: now,
				used_at: { type: DataTypes.DATE },
				created_at: now
			});
			await qi.addIndex("refresh_tokens", ["session_id"]);
			await qi.createTable("signing_keys", {
				kid: { type: DataTypes.STRING(128), primaryKey: true },
				alg: { type: DataTypes.STRING(16), allowNull: false },
				private_pem: { type: DataTypes.TEXT, allowNull: false },
				retired_at: { type: DataTypes.DATE },
				created_at: now
			});
			await qi.createTable("login_failures", {
				email: { type: DataTypes.STRING(320), primaryKey: true },
				failures: { type: DataTypes.INTEGER, allowNull: false },
				window_started_at: now
			});
		},
		async down({ context: qi }) {
			for (const t of ["login_failures", "signing_keys", "refresh_tokens", "sessions", "credentials"]) await qi.dropTable(t);
		}
	}
];
