import { DataTypes } from "sequelize";
import type { Migration } from "../../lib/db";
import { outboxMigration } from "../../mixins/outbox.mixin";

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
,
	outboxMigration("002-outbox"),
	{
		name: "003-action-tokens-key-status",
		async up({ context: qi }) {
			// Email verification and password reset tokens: stored only as their SHA-256, single use.
			await qi.createTable("action_tokens", {
				token_hash: { type: DataTypes.STRING(64), primaryKey: true },
				user_id: { type: DataTypes.UUID, allowNull: false },
				purpose: { type: DataTypes.STRING(32), allowNull: false },
				expires_at: now,
				used_at: { type: DataTypes.DATE },
				created_at: now
			});
			await qi.addIndex("action_tokens", ["user_id", "purpose"]);
			// current: signs new tokens; previous: still verifies tokens it signed; retired: gone from JWKS.
			await qi.addColumn("signing_keys", "status", { type: DataTypes.STRING(16), allowNull: false, defaultValue: "current" });
			await qi.addColumn("signing_keys", "rotated_at", { type: DataTypes.DATE });
			await qi.sequelize.query("UPDATE signing_keys SET status = 'retired' WHERE retired_at IS NOT NULL");
		},
		async down({ context: qi }) {
			await qi.removeColumn("signing_keys", "rotated_at");
			await qi.removeColumn("signing_keys", "status");
			await qi.dropTable("action_tokens");
		}
	},
	{
		name: "004-oauth",
		async up({ context: qi }) {
			// One row per authorization request: its state (as SHA-256), nonce and PKCE verifier, used once.
			await qi.createTable("oauth_states", {
				state_hash: { type: DataTypes.STRING(64), primaryKey: true },
				provider: { type: DataTypes.STRING(64), allowNull: false },
				nonce: { type: DataTypes.STRING(128), allowNull: false },
				code_verifier: { type: DataTypes.STRING(128), allowNull: false },
				binding_hash: { type: DataTypes.STRING(64), allowNull: false },
				expires_at: now,
				used_at: { type: DataTypes.DATE },
				created_at: now
			});
			// A provider account (its issuer's `sub`) linked to a user.
			await qi.createTable("oauth_identities", {
				provider: { type: DataTypes.STRING(64), primaryKey: true },
				subject: { type: DataTypes.STRING(255), primaryKey: true },
				user_id: { type: DataTypes.UUID, allowNull: false },
				email: { type: DataTypes.STRING(320) },
				created_at: now
			});
			await qi.addIndex("oauth_identities", ["user_id"]);
		},
		async down({ context: qi }) {
			await qi.dropTable("oauth_identities");
			await qi.dropTable("oauth_states");
		}
	}
];
