import { DataTypes, type Model, type ModelStatic, type Sequelize } from "sequelize";

export interface AuditRow {
	id: string;
	seq: number | string;
	entry_key: string;
	at: Date;
	actor_id: string | null;
	actor_email: string | null;
	action: string;
	target_type: string;
	target_id: string | null;
	request_id: string | null;
	ip: string | null;
	/** What changed, as JSON. */
	details: string;
	prev_hash: string;
	hash: string;
}

type M<T extends object> = ModelStatic<Model<T, Partial<T>> & T>;

export interface AdminModels {
	Audit: M<AuditRow>;
	[name: string]: ModelStatic<any>;
}

export function defineModels(sequelize: Sequelize): AdminModels {
	const Audit = sequelize.define("Audit", {
		id: { type: DataTypes.UUID, primaryKey: true, defaultValue: DataTypes.UUIDV4 },
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
	}, { tableName: "audit_entries", timestamps: false }) as M<AuditRow>;
	return { Audit };
}
