import { DataTypes, type Model, type ModelStatic, type Sequelize } from "sequelize";

export type Channel = "email" | "sms";
export type DeliveryStatus = "queued" | "sending" | "sent" | "failed" | "dead";

/** One event this service has received: the memory of handled event ids. */
export interface InboxRow {
	event_id: string;
	type: string;
	/** The whole envelope, as JSON. */
	payload: string;
	request_id: string | null;
	received_at: Date;
	processed_at: Date | null;
	attempts: number;
	last_error: string | null;
	/** While unprocessed: when the row may next be (re)tried; also the lease of whoever is processing it. */
	next_attempt_at: Date | null;
}

/** One message to one recipient on one channel. */
export interface DeliveryRow {
	id: string;
	event_id: string;
	user_id: string | null;
	channel: Channel;
	template: string;
	to: string;
	status: DeliveryStatus;
	attempts: number;
	request_id: string | null;
	/** The template context, as JSON. */
	data: string;
	last_error: string | null;
	next_attempt_at: Date | null;
	lease_until: Date | null;
	created_at: Date;
	updated_at: Date;
	sent_at: Date | null;
}

/** A message some queue gave up on, kept for an admin to inspect and redrive. */
export interface DeadLetterRow {
	id: string;
	queue: string;
	message_id: string | null;
	payload: string;
	error: string | null;
	request_id: string | null;
	failed_at: Date;
	redriven_at: Date | null;
}

type M<T extends object> = ModelStatic<Model<T, Partial<T>> & T>;

export interface NotificationModels {
	Inbox: M<InboxRow>;
	Delivery: M<DeliveryRow>;
	DeadLetter: M<DeadLetterRow>;
	[name: string]: ModelStatic<any>;
}

export function defineModels(sequelize: Sequelize): NotificationModels {
	const Inbox = sequelize.define("Inbox", {
		event_id: { type: DataTypes.STRING(128), primaryKey: true },
		type: { type: DataTypes.STRING(64), allowNull: false },
		payload: { type: DataTypes.TEXT, allowNull: false },
		request_id: { type: DataTypes.STRING(128) },
		received_at: { type: DataTypes.DATE, allowNull: false },
		processed_at: { type: DataTypes.DATE },
		attempts: { type: DataTypes.INTEGER, allowNull: false, defaultValue: 0 },
		last_error: { type: DataTypes.STRING(1000) },
		next_attempt_at: { type: DataTypes.DATE }
	}, { tableName: "inbox", timestamps: false }) as M<InboxRow>;

	const Delivery = sequelize.define("Delivery", {
		id: { type: DataTypes.UUID, primaryKey: true, defaultValue: DataTypes.UUIDV4 },
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
		sent_at: { type: DataTypes.DATE }
	}, { tableName: "deliveries" }) as M<DeliveryRow>;

	const DeadLetter = sequelize.define("DeadLetter", {
		id: { type: DataTypes.UUID, primaryKey: true, defaultValue: DataTypes.UUIDV4 },
		queue: { type: DataTypes.STRING(128), allowNull: false },
		message_id: { type: DataTypes.STRING(128) },
		payload: { type: DataTypes.TEXT, allowNull: false },
		error: { type: DataTypes.STRING(1000) },
		request_id: { type: DataTypes.STRING(128) },
		failed_at: { type: DataTypes.DATE, allowNull: false },
		redriven_at: { type: DataTypes.DATE }
	}, { tableName: "dead_letters", timestamps: false }) as M<DeadLetterRow>;

	return { Inbox, Delivery, DeadLetter };
}
