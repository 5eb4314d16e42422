import { DataTypes, type Model, type ModelStatic, type Sequelize } from "sequelize";

export type UserStatus = "active" | "suspended";
export type KycStatus = "none" | "pending" | "verified" | "rejected";
export const ROLES = ["user", "support", "admin"] as const;
export type Role = (typeof ROLES)[number];

export interface UserRow {
	id: string;
	email: string;
	name: string;
	phone: string | null;
	status: UserStatus;
	roles: Role[];
	email_verified: boolean;
	kyc_status: KycStatus;
	created_at: Date;
	updated_at: Date;
}

export interface KycRow {
	id: string;
	user_id: string;
	full_name: string;
	date_of_birth: string;
	country: string;
	document_type: string;
	document_number: string;
	status: KycStatus;
	reason: string | null;
	submitted_at: Date;
	decided_at: Date | null;
}

type M<T extends object> = ModelStatic<Model<T, Partial<T>> & T>;

export interface UserModels {
	User: M<UserRow>;
	Kyc: M<KycRow>;
	[name: string]: ModelStatic<any>;
}

export function defineModels(sequelize: Sequelize): UserModels {
	const User = sequelize.define("User", {
		id: { type: DataTypes.UUID, primaryKey: true, defaultValue: DataTypes.UUIDV4 },
		email: { type: DataTypes.STRING(320), allowNull: false, unique: true },
		name: { type: DataTypes.STRING(100), allowNull: false },
		phone: { type: DataTypes.STRING(20) },
		status: { type: DataTypes.STRING(16), allowNull: false, defaultValue: "active" },
		roles: {
			type: DataTypes.STRING(64),
			allowNull: false,
			defaultValue: "user",
			get(this: Model) {
				const raw = this.getDataValue("roles") as unknown as string;
				return raw ? raw.split(",") : [];
			},
			set(this: Model, value: string[]) {
				this.setDataValue("roles", [...new Set(value)].sort().join(",") as never);
			}
		},
		email_verified: { type: DataTypes.BOOLEAN, allowNull: false, defaultValue: false },
		kyc_status: { type: DataTypes.STRING(16), allowNull: false, defaultValue: "none" }
	}, { tableName: "users" }) as M<UserRow>;

	const Kyc = sequelize.define("Kyc", {
		id: { type: DataTypes.UUID, primaryKey: true, defaultValue: DataTypes.UUIDV4 },
		user_id: { type: DataTypes.UUID, allowNull: false },
		full_name: { type: DataTypes.STRING(200), allowNull: false },
		date_of_birth: { type: DataTypes.DATEONLY, allowNull: false },
		country: { type: DataTypes.STRING(2), allowNull: false },
		document_type: { type: DataTypes.STRING(32), allowNull: false },
		document_number: { type: DataTypes.STRING(64), allowNull: false },
		status: { type: DataTypes.STRING(16), allowNull: false },
		reason: { type: DataTypes.STRING(500) },
		submitted_at: { type: DataTypes.DATE, allowNull: false },
		decided_at: { type: DataTypes.DATE }
	}, { tableName: "kyc_submissions", timestamps: false }) as M<KycRow>;

	return { User, Kyc };
}
