import { DataTypes, type Model, type ModelStatic, type Sequelize } from "sequelize";

export interface CredentialRow {
	user_id: string;
	password_hash: string;
}
export interface SessionRow {
	id: string;
	user_id: string;
	user_agent: string | null;
	ip: string | null;
	created_at: Date;
	last_used_at: Date;
	expires_at: Date;
	revoked_at: Date | null;
	revoked_reason: string | null;
}
export interface RefreshTokenRow {
	id: string;
	session_id: string;
	token_hash: string;
	expires_at: Date;
	used_at: Date | null;
}
export interface SigningKeyRow {
	kid: string;
	alg: string;
	private_pem: string;
	status: "current" | "previous" | "retired";
	created_at: Date;
	rotated_at: Date | null;
	retired_at: Date | null;
}
export interface ActionTokenRow {
	token_hash: string;
	user_id: string;
	purpose: "email_verification" | "password_reset";
	expires_at: Date;
	used_at: Date | null;
	created_at: Date;
}
export interface OAuthStateRow {
	state_hash: string;
	provider: string;
	nonce: string;
	code_verifier: string;
	binding_hash: string;
	expires_at: Date;
	used_at: Date | null;
}
export interface OAuthIdentityRow {
	provider: string;
	subject: string;
	user_id: string;
	email: string | null;
}
export interface LoginFailureRow {
	email: string;
	failures: number;
	window_started_at: Date;
}

type M<T extends object> = ModelStatic<Model<T, Partial<T>> & T>;

export interface AuthModels {
	Credential: M<CredentialRow>;
	Session: M<SessionRow>;
	RefreshToken: M<RefreshTokenRow>;
	SigningKey: M<SigningKeyRow>;
	LoginFailure: M<LoginFailureRow>;
	ActionToken: M<ActionTokenRow>;
	OAuthState: M<OAuthStateRow>;
	OAuthIdentity: M<OAuthIdentityRow>;
	[name: string]: ModelStatic<any>;
}

export function defineModels(sequelize: Sequelize): AuthModels {
	const Credential = sequelize.define("Credential", {
		user_id: { type: DataTypes.UUID, primaryKey: true },
		password_hash: { type: DataTypes.STRING(100), allowNull: false }
	}, { tableName: "credentials" }) as M<CredentialRow>;

	const Session = sequelize.define("Session", {
		id: { type: DataTypes.UUID, primaryKey: true },
		user_id: { type: DataTypes.UUID, allowNull: false },
		user_agent: { type: DataTypes.STRING(512) },
		ip: { type: DataTypes.STRING(64) },
		created_at: { type: DataTypes.DATE, allowNull: false },
		last_used_at: { type: DataTypes.DATE, allowNull: false },
		expires_at: { type: DataTypes.DATE, allowNull: false },
		revoked_at: { type: DataTypes.DATE },
		revoked_reason: { type: DataTypes.STRING(64) }
	}, { tableName: "sessions", timestamps: false }) as M<SessionRow>;

	const RefreshToken = sequelize.define("RefreshToken", {
		id: { type: DataTypes.UUID, primaryKey: true },
		session_id: { type: DataTypes.UUID, allowNull: false },
		token_hash: { type: DataTypes.STRING(64), allowNull: false, unique: true },
		expires_at: { type: DataTypes.DATE, allowNull: false },
		used_at: { type: DataTypes.DATE }
	}, { tableName: "refresh_tokens", updatedAt: false }) as M<RefreshTokenRow>;

	const SigningKey = sequelize.define("SigningKey", {
		kid: { type: DataTypes.STRING(128), primaryKey: true },
		alg: { type: DataTypes.STRING(16), allowNull: false },
		private_pem: { type: DataTypes.TEXT, allowNull: false },
		status: { type: DataTypes.STRING(16), allowNull: false, defaultValue: "current" },
		rotated_at: { type: DataTypes.DATE },
		retired_at: { type: DataTypes.DATE }
	}, { tableName: "signing_keys", updatedAt: false }) as M<SigningKeyRow>;

	const LoginFailure = sequelize.define("LoginFailure", {
		email: { type: DataTypes.STRING(320), primaryKey: true },
		failures: { type: DataTypes.INTEGER, allowNull: false },
		window_started_at: { type: DataTypes.DATE, allowNull: false }
	}, { tableName: "login_failures", timestamps: false }) as M<LoginFailureRow>;

	const ActionToken = sequelize.define("ActionToken", {
		token_hash: { type: DataTypes.STRING(64), primaryKey: true },
		user_id: { type: DataTypes.UUID, allowNull: false },
		purpose: { type: DataTypes.STRING(32), allowNull: false },
		expires_at: { type: DataTypes.DATE, allowNull: false },
		used_at: { type: DataTypes.DATE }
	}, { tableName: "action_tokens", updatedAt: false }) as M<ActionTokenRow>;

	const OAuthState = sequelize.define("OAuthState", {
		state_hash: { type: DataTypes.STRING(64), primaryKey: true },
		provider: { type: DataTypes.STRING(64), allowNull: false },
		nonce: { type: DataTypes.STRING(128), allowNull: false },
		code_verifier: { type: DataTypes.STRING(128), allowNull: false },
		binding_hash: { type: DataTypes.STRING(64), allowNull: false },
		expires_at: { type: DataTypes.DATE, allowNull: false },
		used_at: { type: DataTypes.DATE }
	}, { tableName: "oauth_states", updatedAt: false }) as M<OAuthStateRow>;

	const OAuthIdentity = sequelize.define("OAuthIdentity", {
		provider: { type: DataTypes.STRING(64), primaryKey: true },
		subject: { type: DataTypes.STRING(255), primaryKey: true },
		user_id: { type: DataTypes.UUID, allowNull: false },
		email: { type: DataTypes.STRING(320) }
	}, { tableName: "oauth_identities", updatedAt: false }) as M<OAuthIdentityRow>;

	return { Credential, Session, RefreshToken, SigningKey, LoginFailure, ActionToken, OAuthState, OAuthIdentity };
}
