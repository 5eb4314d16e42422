import { Errors, type Context, type ServiceSchema } from "moleculer";
import { dbMixin, type DbMethods, type DbVars } from "../mixins/db.mixin";
import { CHANNELS, channelOptions, channelPrefix, channelsConnected, MAX_RETRIES, publish } from "../lib/channels";
import { Op } from "sequelize";
import { PAGE_PARAMS, requireUser } from "../lib/access";
import { conflict, notFound } from "../lib/errors";
import { config } from "../lib/config";
import type { AppContext } from "../lib/types";
import { eventRule, type EventEnvelope, type Recipient } from "./notifications/events";
import { migrations } from "./notifications/migrations";
import { defineModels, type DeadLetterRow, type DeliveryRow, type InboxRow, type NotificationModels } from "./notifications/models";
import { createProviders, type EmailProvider, type SmsProvider } from "./notifications/providers";
import { DELIVERY_QUEUE, errorText, INBOX_QUEUE, NotificationStore, type StoreSettings } from "./notifications/store";
import { renderEmail, renderSms } from "./notifications/templates";

type Settings = Record<string, never>;

interface Vars {
	store: NotificationStore;
	storeSettings: StoreSettings;
	pumpMs: number;
	prefix: string;
	email: EmailProvider;
	sms: SmsProvider;
	pumpTimer?: NodeJS.Timeout;
	pumping?: Promise<void>;
}

type Methods = DbMethods & {
	receiveEvent(ctx: Context<EventEnvelope>, channel: string): Promise<void>;
	processEvent(row: InboxRow): Promise<void>;
	findRecipient(userId: string, requestId: string | null): Promise<Recipient | null>;
	publishDelivery(row: Pick<DeliveryRow, "id" | "request_id">, msgID: string): Promise<void>;
	deliver(id: string): Promise<void>;
	send(row: DeliveryRow): Promise<void>;
	pump(): Promise<void>;
	fileDeadLetter(ctx: Context<unknown>, raw: unknown): Promise<void>;
};

type This = DbVars<NotificationModels> & Vars & Methods & { broker: import("moleculer").ServiceBroker; logger: import("moleculer").Logger };

/** The users service could not answer: the event waits and is tried again, never dropped. */
class RecipientUnavailable extends Error {}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

const isEnvelope = (v: unknown): v is EventEnvelope =>
	!!v && typeof v === "object" && typeof (v as EventEnvelope).id === "string" && (v as EventEnvelope).id.length > 0 &&
	(v as EventEnvelope).id.length <= 128 && typeof (v as EventEnvelope).type === "string" && (v as EventEnvelope).type.length <= 64;

/** Message headers as a plain object: JetStream's MsgHdrs (iterable) or the in-process adapter's object. */
function headersOf(raw: unknown): Record<string, string> {
	const h = (raw as { headers?: unknown } | null)?.headers;
	const out: Record<string, string> = {};
	if (!h || typeof h !== "object") return out;
	if (typeof (h as Iterable<unknown>)[Symbol.iterator] === "function") {
		for (const [k, v] of h as Iterable<[string, string | string[]]>) out[k] = Array.isArray(v) ? v[0] : v;
	} else {
		for (const [k, v] of Object.entries(h)) if (typeof v === "string") out[k] = v;
	}
	return out;
}

/** A delivery as `GET /notifications` shows it; a claimed one is still `queued` to its owner. */
function toView(row: DeliveryRow) {
	const iso = (d: Date | string | null) => (d ? new Date(d).toISOString() : null);
	return {
		id: row.id,
		channel: row.channel,
		template: row.template,
		to: row.to,
		status: row.status === "sending" ? "queued" : row.status,
		attempts: row.attempts,
		request_id: row.request_id,
		created_at: iso(row.created_at),
		sent_at: iso(row.sent_at)
	};
}

const eventConsumer = (channel: string) => ({
	...channelOptions("notifications"),
	handler(this: This, ctx: Context<EventEnvelope>) {
		return this.receiveEvent(ctx, channel);
	}
});

const NotificationsService: ServiceSchema<Settings, Methods, This> = {
	name: "notifications",
	mixins: [dbMixin({ service: "notifications", primary: "Delivery", models: defineModels, migrations })],

	channels: {
		[CHANNELS.userEvents]: eventConsumer(CHANNELS.userEvents),
		[CHANNELS.paymentEvents]: eventConsumer(CHANNELS.paymentEvents),
		[CHANNELS.authEvents]: eventConsumer(CHANNELS.authEvents),

		// The task workers: one message per delivery to send.
		[CHANNELS.deliveries]: {
			...channelOptions("notification-workers"),
			handler(this: This, ctx: Context<{ delivery_id?: unknown }>) {
				const id = ctx.params?.delivery_id;
				if (typeof id !== "string" || !UUID.test(id)) {
					this.logger.warn("Ignored a delivery message without a delivery id");
					return;
				}
				return this.deliver(id);
			}
		},

		// Messages any consumer gave up on are kept in dead_letters, for the admin to see and redrive.
		[CHANNELS.deadLetter]: {
			...channelOptions("notifications-dlq", { deadLettering: false }),
			handler(this: This, ctx: Context<unknown>, raw: unknown) {
				return this.fileDeadLetter(ctx, raw);
			}
		}
	},

	actions: {
		// ---- Public (aliased by the gateway) ----
		list: {
			params: {
				$$strict: true,
				...PAGE_PARAMS
			},
			async handler(this: This, ctx: AppContext<{ limit: number; offset: number }>) {
				const me = requireUser(ctx);
				const { limit, offset } = ctx.params;
				const { rows, total } = await this.store.listForUser(me.id, limit, offset);
				return { items: rows.map(toView), total, limit, offset };
			}
		},

		// ---- Internal, for the jobs service (the tables stay this service's) ----
		/** Forgets handled event ids older than `days` (the inbox only needs to outlive redeliveries). */
		cleanup: {
			visibility: "public",
			params: { $$strict: true, days: { type: "number", integer: true, min: 1, max: 365, default: 30, convert: true } },
			async handler(this: This, ctx: Context<{ days: number }>) {
				const before = new Date(Date.now() - ctx.params.days * 86400000);
				const inbox = await this.models.Inbox.destroy({ where: { processed_at: { [Op.lt]: before } } });
				return { inbox_events: inbox };
			}
		},

		/** Deliveries stuck in queued (their message lost), failed ones due and lapsed leases: queued again and published. */
		requeueStuck: {
			visibility: "public",
			async handler(this: This) {
				const rows = await this.store.requeueDue();
				for (const row of rows) await this.publishDelivery(row, `${row.id}:${row.attempts}:${Date.now()}`);
				return { requeued: rows.length };
			}
		},

		/** Pending and dead counts per queue. */
		queueStats: {
			visibility: "public",
			async handler(this: This) {
				const pending = await this.models.Delivery.count({ where: { status: { [Op.in]: ["queued", "sending", "failed"] } } });
				const inboxPending = await this.models.Inbox.count({ where: { processed_at: null } });
				const dead = (await this.models.DeadLetter.findAll({
					attributes: ["queue", [this.sequelize.fn("COUNT", this.sequelize.col("id")), "n"]],
					where: { redriven_at: null },
					group: ["queue"],
					raw: true
				})) as unknown as { queue: string; n: string | number }[];
				const deadOf = (q: string) => Number(dead.find(d => d.queue === q)?.n ?? 0);
				const queues = [
					{ name: DELIVERY_QUEUE, pending, dead: deadOf(DELIVERY_QUEUE) },
					{ name: INBOX_QUEUE, pending: inboxPending, dead: deadOf(INBOX_QUEUE) }
				];
				for (const d of dead) if (d.queue !== DELIVERY_QUEUE && d.queue !== INBOX_QUEUE) queues.push({ name: d.queue, pending: 0, dead: Number(d.n) });
				return { queues };
			}
		},

		/** Deliveries by status (the admin dashboard). */
		deliveryStats: {
			visibility: "public",
			async handler(this: This) {
				const rows = (await this.models.Delivery.findAll({
					attributes: ["status", [this.sequelize.fn("COUNT", this.sequelize.col("id")), "n"]],
					group: ["status"],
					raw: true
				})) as unknown as { status: string; n: string | number }[];
				const of = (s: string) => Number(rows.find(r => r.status === s)?.n ?? 0);
				// A delivery being sent, or failed and waiting for a retry, is still on its way.
				return { deliveries: { queued: of("queued") + of("sending"), sent: of("sent"), failed: of("failed"), dead: of("dead") } };
			}
		},

		/** Dead letters not redriven yet, newest first. */
		deadLetters: {
			visibility: "public",
			params: {
				$$strict: true,
				...PAGE_PARAMS
			},
			async handler(this: This, ctx: Context<{ limit: number; offset: number }>) {
				const { limit, offset } = ctx.params;
				const { rows, count } = await this.models.DeadLetter.findAndCountAll({
					where: { redriven_at: null },
					order: [["failed_at", "DESC"], ["id", "ASC"]],
					limit,
					offset
				});
				const items = rows.map(r => {
					const d = r.get({ plain: true }) as DeadLetterRow;
					let payload: unknown = d.payload;
					try {
						payload = JSON.parse(d.payload);
					} catch {
						// kept as text
					}
					return { id: d.id, queue: d.queue, message_id: d.message_id, error: d.error, request_id: d.request_id, failed_at: new Date(d.failed_at).toISOString(), payload };
				});
				return { items, total: count, limit, offset };
			}
		},

		/** Puts a dead letter's message back: a delivery is queued again with its attempts reset. 404 unknown, 409 done before. */
		redrive: {
			visibility: "public",
			params: { $$strict: true, id: { type: "uuid" } },
			async handler(this: This, ctx: Context<{ id: string }>) {
				const letter = await this.models.DeadLetter.findByPk(ctx.params.id);
				if (!letter) throw notFound("dead letter not found");
				const d = letter.get({ plain: true }) as DeadLetterRow;
				if (d.redriven_at) throw conflict("this dead letter was redriven already");
				const now = new Date();
				const taken = await this.sequelize.transaction(async transaction => {
					const [n] = await this.models.DeadLetter.update({ redriven_at: now }, { where: { id: d.id, redriven_at: null }, transaction });
					if (n !== 1) return false;
					if (d.queue === DELIVERY_QUEUE && d.message_id) {
						await this.models.Delivery.update(
							{ status: "queued", attempts: 0, last_error: null, next_attempt_at: null, lease_until: null },
							{ where: { id: d.message_id, status: "dead" }, transaction }
						);
					} else if (d.queue === INBOX_QUEUE && d.message_id) {
						await this.models.Inbox.update({ processed_at: null, attempts: 0, next_attempt_at: now, last_error: null }, { where: { event_id: d.message_id }, transaction });
					}
					return true;
				});
				if (!taken) throw conflict("this dead letter was redriven already");
				if (d.queue === DELIVERY_QUEUE && d.message_id) {
					await this.publishDelivery({ id: d.message_id, request_id: d.request_id }, `${d.message_id}:redrive:${now.getTime()}`);
				} else if (d.queue !== INBOX_QUEUE) {
					// A message from another channel: published again as it was.
					try {
						await publish(this.broker, d.queue, JSON.parse(d.payload), { headers: d.request_id ? { $requestID: d.request_id } : undefined });
					} catch (err) {
						await this.models.DeadLetter.update({ redriven_at: null }, { where: { id: d.id } });
						throw new Errors.MoleculerError(`could not publish to ${d.queue}: ${errorText(err)}`, 503, "SERVICE_UNAVAILABLE");
					}
				}
				this.logger.info(`Redrove dead letter ${d.id} (${d.queue}${d.message_id ? ` ${d.message_id}` : ""})`);
				return { id: d.id, queue: d.queue, message_id: d.message_id, status: "redriven", redriven_at: now.toISOString() };
			}
		}
	},

	methods: {
		/** An event from a channel: remembered by id, then turned into deliveries at once. */
		async receiveEvent(this: This, ctx: Context<EventEnvelope>, channel: string) {
			const env = ctx.params;
			if (!isEnvelope(env)) {
				this.logger.warn(`A message on ${channel} is not an event envelope; filed as a dead letter`);
				await this.store.addDeadLetter({ queue: channel, message_id: null, payload: JSON.stringify(env ?? null), error: "not an event envelope", request_id: ctx.requestID ?? null });
				return;
			}
			const fresh = await this.store.receive(env, ctx.requestID ?? null);
			if (fresh) {
				await this.processEvent(fresh);
				return;
			}
			// Seen before. Once processed, its deliveries exist: publish again any still waiting (their
			// message may be what was lost); sending stays once-only because a worker must claim a delivery.
			const row = await this.store.inboxRow(env.id);
			if (row?.processed_at) {
				for (const d of await this.store.queuedOf(env.id)) await this.publishDelivery(d, d.id);
			}
		},

		/** Plans an event's deliveries and writes them with the event marked processed; on failure it waits for a retry. */
		async processEvent(this: This, row: InboxRow) {
			let env: EventEnvelope;
			try {
				env = JSON.parse(row.payload) as EventEnvelope;
			} catch (err) {
				await this.store.abandonEvent(row, err);
				return;
			}
			const data = env.data && typeof env.data === "object" ? env.data : {};
			let written: Pick<DeliveryRow, "id" | "request_id">[];
			try {
				const rule = eventRule(env.type);
				if (!rule) {
					// A type that sends nothing (yet): remembered as handled.
					await this.store.completeEvent(row, null, []);
					return;
				}
				const uid = rule.userId(data);
				const userId = uid && UUID.test(uid) ? uid : null;
				const user = userId ? await this.findRecipient(userId, row.request_id) : null;
				written = await this.store.completeEvent(row, userId, rule.plan(data, user));
			} catch (err) {
				if (err instanceof RecipientUnavailable || row.attempts < this.storeSettings.maxAttempts) {
					const next = await this.store.deferEvent(row, err);
					this.logger.warn(`Event ${row.event_id} (${row.type}) waits until ${next.toISOString()}: ${errorText(err)}`);
				} else {
					await this.store.abandonEvent(row, err);
					this.logger.error(`Event ${row.event_id} (${row.type}) could not be processed and was filed as a dead letter: ${errorText(err)}`);
				}
				return;
			}
			this.logger.info(`Event ${row.event_id} (${row.type}) processed: its deliveries are queued`);
			for (const d of written) await this.publishDelivery(d, d.id);
		},

		/** The user an event is about; null when there is no such user. Throws RecipientUnavailable when users cannot answer. */
		async findRecipient(this: This, userId: string, requestId: string | null) {
			try {
				const u = await this.broker.call<Recipient, { id: string }>("users.get", { id: userId }, requestId ? { requestID: requestId } : {});
				return { id: u.id, email: u.email, name: u.name, phone: u.phone ?? null };
			} catch (err) {
				// No such user (or not a user id): nothing to send. A missing *service* (also 404) is not that.
				const type = (err as { type?: string }).type;
				if (type === "NOT_FOUND" || type === "VALIDATION_ERROR") return null;
				throw new RecipientUnavailable(`users.get failed: ${errorText(err)}`);
			}
		},

		/** Asks a worker to send a delivery. A message that does not go out is published again by the pump. */
		async publishDelivery(this: This, row: Pick<DeliveryRow, "id" | "request_id">, msgID: string) {
			if (!channelsConnected(this.broker)) return;
			try {
				await publish(this.broker, CHANNELS.deliveries, { delivery_id: row.id }, { msgID, headers: row.request_id ? { $requestID: row.request_id } : undefined });
			} catch (err) {
				this.logger.warn(`Could not publish delivery ${row.id}; the pump will: ${errorText(err)}`);
			}
		},

		/** A worker's turn: claim, render, send, record. Send failures are state, not exceptions. */
		async deliver(this: This, id: string) {
			const row = await this.store.claim(id);
			if (!row) return;
			try {
				await this.send(row);
			} catch (err) {
				const outcome = await this.store.markFailed(row, err);
				const msg = `Delivery ${row.id} (${row.channel} ${row.template}) attempt ${row.attempts} failed: ${errorText(err)}`;
				if (outcome === "dead") this.logger.error(`${msg}; it is dead after ${row.attempts} attempts`);
				else this.logger.warn(msg);
				return;
			}
			if (!(await this.store.markSent(row))) this.logger.warn(`Delivery ${row.id} was sent after its lease ran out`);
			else this.logger.info(`Sent delivery ${row.id} (${row.channel} ${row.template})`);
		},

		async send(this: This, row: DeliveryRow) {
			const data = { ...(JSON.parse(row.data) as Record<string, unknown>), to: row.to };
			if (row.channel === "email") {
				await this.email.send({ id: row.id, to: row.to, requestId: row.request_id, ...renderEmail(row.template, data) });
			} else if (row.channel === "sms") {
				await this.sms.send({ id: row.id, to: row.to, requestId: row.request_id, body: renderSms(row.template, data) });
			} else {
				throw new Error(`unknown channel ${String(row.channel)}`);
			}
		},

		/** Every NOTIFY_PUMP_MS: re-queue what is due or lost, retry events that wait. One run at a time. */
		pump(this: This) {
			if (this.pumping) return this.pumping;
			if (!this.store || !this.dbMigrated || !channelsConnected(this.broker)) return Promise.resolve();
			const run = async () => {
				for (const row of await this.store.requeueDue()) {
					// A fresh message id: the stream must not drop it as a duplicate of the first.
					await this.publishDelivery(row, `${row.id}:${row.attempts}:${Date.now()}`);
				}
				for (const row of await this.store.claimDueEvents()) await this.processEvent(row);
			};
			this.pumping = run()
				.catch(err => this.logger.warn(`Notification pump paused: ${errorText(err)}`))
				.finally(() => {
					this.pumping = undefined;
				});
			return this.pumping;
		},

		async fileDeadLetter(this: This, ctx: Context<unknown>, raw: unknown) {
			const headers = headersOf(raw);
			const original = headers["x-original-channel"] ?? "";
			const queue = (original.startsWith(this.prefix + ".") ? original.slice(this.prefix.length + 1) : original) || "unknown";
			const payload = ctx.params as Record<string, unknown> | null;
			const messageId =
				typeof payload?.delivery_id === "string" ? payload.delivery_id : typeof payload?.id === "string" ? payload.id : null;
			if (messageId && (await this.store.hasDeadLetter(queue, messageId))) return;
			// The dead-letter copy may have lost the request id header: find it from what the message names.
			let requestId: string | null = headers.$requestID ?? null;
			if (!requestId && messageId && queue === CHANNELS.deliveries && UUID.test(messageId)) {
				requestId = (await this.models.Delivery.findByPk(messageId))?.get("request_id") ?? null;
			} else if (!requestId && messageId) {
				requestId = (await this.store.inboxRow(messageId))?.request_id ?? null;
			}
			await this.store.addDeadLetter({
				queue,
				message_id: messageId,
				payload: JSON.stringify(payload ?? null),
				error: `its consumer (group ${headers["x-original-group"] ?? "unknown"}) failed on it ${MAX_RETRIES} times`,
				request_id: requestId
			});
			this.logger.warn(`Filed a dead letter from ${queue}${messageId ? ` (${messageId})` : ""}`);
		}
	},

	created(this: This) {
		const cfg = config();
		this.storeSettings = { leaseMs: cfg.NOTIFY_LEASE_MS, maxAttempts: cfg.NOTIFY_MAX_ATTEMPTS, retryBaseMs: cfg.NOTIFY_RETRY_BASE_MS };
		this.pumpMs = cfg.NOTIFY_PUMP_MS;
		this.prefix = channelPrefix(cfg);
		const { email, sms } = createProviders(cfg);
		this.email = email;
		this.sms = sms;
	},

	started(this: This) {
		// The db mixin has connected and migrated by now (mixins start first).
		this.store = new NotificationStore(this.sequelize, this.models, this.storeSettings);
		this.pumpTimer = setInterval(() => void this.pump(), this.pumpMs);
		this.pumpTimer.unref();
	},

	async stopped(this: This) {
		if (this.pumpTimer) clearInterval(this.pumpTimer);
		await this.pumping;
		this.email.close();
		this.sms.close();
	}
};

export default NotificationsService;
