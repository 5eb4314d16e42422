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
	created_at: Date;
	retired_at: Date | null;
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
		retired_at: { type: DataTypes.DATE }
	}, { tableName: "signing_keys", updatedAt: false }) as M<SigningKeyRow>;

	const LoginFailure = sequelize.define("LoginFailure", {
		email: { type: DataTypes.STRING(320), primaryKey: true },
		failures: { type: DataTypes.INTEGER, allowNull: false },
		window_started_at: { type: DataTypes.DATE, allowNull: false }
	}, { tableName: "login_failures", timestamps: false }) as M<LoginFailureRow>;

	return { Credential, Session, RefreshToken, SigningKey, LoginFailure };
}
