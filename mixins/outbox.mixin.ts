import crypto from "node:crypto";
import type { ServiceSchema } from "moleculer";
import { DataTypes, QueryTypes, type Sequelize, type Transaction } from "sequelize";
import { channelPrefix, channelsConnected, ensureStreams, publish } from "../lib/channels";
import { config } from "../lib/config";
import type { Migration } from "../lib/db";

/** What a channel message carries: the event, its id (also the JetStream msgID) and when it happened. */
export interface EventEnvelope<T = Record<string, unknown>> {
	id: string;
	type: string;
	occurred_at: string;
	data: T;
}

export interface OutboxEvent {
	channel: string;
	type: string;
	data: Record<string, unknown>;
	requestId?: string | null;
}

export interface OutboxMethods {
	/** Writes an event in the caller's transaction; it is relayed once that transaction commits. */
	addToOutbox(t: Transaction, event: OutboxEvent): Promise<string>;
	/** Asks the relay to run now (call it after the commit). */
	kickOutbox(): void;
	relayOutbox(): Promise<number>;
}

interface OutboxVars {
	sequelize: Sequelize;
	outboxTimer?: NodeJS.Timeout;
	outboxRunning?: Promise<number>;
	outboxAgain?: boolean;
	outboxStreamsReady?: boolean;
}

type This = OutboxMethods & OutboxVars & { broker: import("moleculer").ServiceBroker; logger: import("moleculer").Logger };

/** The `outbox` table, for the owning service's migrations. */
export function outboxMigration(name: string): Migration {
	return {
		name,
		async up({ context: qi }) {
			await qi.createTable("outbox", {
				seq: { type: DataTypes.INTEGER, primaryKey: true, autoIncrement: true },
				id: { type: DataTypes.UUID, allowNull: false, unique: true },
				channel: { type: DataTypes.STRING(128), allowNull: false },
				type: { type: DataTypes.STRING(64), allowNull: false },
				payload: { type: DataTypes.TEXT, allowNull: false },
				request_id: { type: DataTypes.STRING(128) },
				created_at: { type: DataTypes.DATE, allowNull: false },
				published_at: { type: DataTypes.DATE },
				attempts: { type: DataTypes.INTEGER, allowNull: false, defaultValue: 0 }
			});
			await qi.addIndex("outbox", ["published_at", "seq"]);
		},
		async down({ context: qi }) {
			await qi.dropTable("outbox");
		}
	};
}

interface OutboxRow {
	seq: number;
	id: string;
	channel: string;
	type: string;
	payload: string;
	request_id: string | null;
	created_at: string | Date;
}

const BATCH = 100;

/**
 * The transactional outbox: events are rows written with the change they announce, and a relay
 * publishes them to their channel in order, marking each one published. The relay runs after each
 * commit and every `pollMs`, so it resumes after a crash; JetStream drops a re-published event by its
 * msgID, and consumers remember event ids, so a row published twice still has one effect.
 */
export function outboxMixin(opts: { pollMs?: number } = {}): Partial<ServiceSchema> {
	return {
		methods: {
			async addToOutbox(this: This, t: Transaction, event: OutboxEvent): Promise<string> {
				const id = crypto.randomUUID();
				const envelope: EventEnvelope = { id, type: event.type, occurred_at: new Date().toISOString(), data: event.data };
				await this.sequelize.query(
					"INSERT INTO outbox (id, channel, type, payload, request_id, created_at, attempts) VALUES (:id, :channel, :type, :payload, :request_id, :now, 0)",
					{
						replacements: { id, channel: event.channel, type: event.type, payload: JSON.stringify(envelope), request_id: event.requestId ?? null, now: new Date() },
						transaction: t
					}
				);
				return id;
			},

			kickOutbox(this: This) {
				setImmediate(() => void this.relayOutbox());
			},

			/** Publishes what is pending; one run at a time per service instance. Returns how many it published. */
			relayOutbox(this: This): Promise<number> {
				if (this.outboxRunning) {
					this.outboxAgain = true;
					return this.outboxRunning;
				}
				const run = async () => {
					let published = 0;
					do {
						this.outboxAgain = false;
						if (!this.sequelize || !channelsConnected(this.broker)) return published;
						if (!this.outboxStreamsReady) {
							// In a cluster the streams are made before the first publish, whatever the start order of consumers.
							const cfg = config();
							if (cfg.TRANSPORTER) await ensureStreams(cfg.TRANSPORTER, channelPrefix(cfg), undefined, cfg.NATS_STREAM_REPLICAS);
							this.outboxStreamsReady = true;
						}
						const rows = await this.sequelize.query<OutboxRow>(
							`SELECT seq, id, channel, type, payload, request_id, created_at FROM outbox WHERE published_at IS NULL ORDER BY seq LIMIT ${BATCH}`,
							{ type: QueryTypes.SELECT }
						);
						for (const row of rows) {
							await publish(this.broker, row.channel, JSON.parse(row.payload), {
								msgID: row.id,
								headers: row.request_id ? { $requestID: row.request_id } : undefined
							});
							await this.sequelize.query("UPDATE outbox SET published_at = :now, attempts = attempts + 1 WHERE seq = :seq", {
								replacements: { now: new Date(), seq: row.seq }
							});
							published++;
						}
						if (rows.length === BATCH) this.outboxAgain = true;
					} while (this.outboxAgain);
					return published;
				};
				this.outboxRunning = run()
					.catch(err => {
						this.logger.warn(`Outbox relay paused: ${(err as Error).message}`);
						return 0;
					})
					.finally(() => {
						this.outboxRunning = undefined;
					});
				return this.outboxRunning;
			}
		},

		started(this: This) {
			this.outboxTimer = setInterval(() => void this.relayOutbox(), opts.pollMs ?? config().OUTBOX_POLL_MS);
			this.outboxTimer.unref();
		},

		async stopped(this: This) {
			if (this.outboxTimer) clearInterval(this.outboxTimer);
			await this.outboxRunning;
		}
	} as unknown as Partial<ServiceSchema>;
}
