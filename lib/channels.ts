import { Middleware as ChannelsMiddleware } from "@moleculer/channels";
import { connect, type NatsConnection, RetentionPolicy, StorageType } from "nats";
import type { Middleware, ServiceBroker } from "moleculer";
import type { Config } from "./config";

/**
 * The durable queues of the system, declared in one place. Each is a JetStream stream in a cluster
 * (a Moleculer-event "Fake" adapter on the embedded default, where the outbox, inbox and delivery
 * tables carry what must not be lost).
 */
export const CHANNELS = {
	/** payment.succeeded | payment.failed | payment.refunded, relayed from the payments outbox. */
	paymentEvents: "payments.events",
	/** user.created (and later KYC, suspension, …), relayed from the users outbox. */
	userEvents: "users.events",
	/** auth.email_verification_requested | auth.password_reset_requested, relayed from the auth outbox. */
	authEvents: "auth.events",
	/** One message per notification delivery to send: `{ delivery_id }`. */
	deliveries: "notifications.deliveries",
	/** Messages a consumer failed on `maxRetries` times. */
	deadLetter: "DEAD_LETTER"
} as const;

export const CHANNEL_LIST = Object.values(CHANNELS);

/** Redeliveries of a message whose handler keeps throwing, before it goes to the dead-letter channel. */
export const MAX_RETRIES = 5;

/** JetStream stream settings: file storage, kept 7 days, duplicates (same msgID) dropped for 10 min. */
export function streamConfig(replicas = 1) {
	return {
		retention: RetentionPolicy.Limits,
		storage: StorageType.File,
		max_age: 7 * 24 * 3600 * 1e9,
		duplicate_window: 10 * 60 * 1e9,
		// On a NATS cluster (k8s: 3 servers) a stream survives the loss of a server only with replicas.
		num_replicas: replicas
	};
}

/** What every channel subscription uses; spread into a service's `channels` entry. */
export function channelOptions(group: string, extra: { maxInFlight?: number; deadLettering?: boolean } = {}) {
	return {
		group,
		context: true,
		maxRetries: MAX_RETRIES,
		maxInFlight: extra.maxInFlight ?? 10,
		// Off for the consumer of the dead-letter channel itself, which must not feed back into it.
		deadLettering: { enabled: extra.deadLettering ?? true, queueName: CHANNELS.deadLetter },
		nats: {
			// The stream settings come from the adapter (channelsMiddleware).
			// A consumer group created after messages arrived still gets them; consumers are idempotent.
			consumerOptions: { config: { deliver_policy: "all", ack_wait: 30 * 1e9 } }
		}
	};
}

/** The prefix that keeps one namespace's streams apart from another's on a shared NATS. */
export function channelPrefix(cfg: Config): string {
	return cfg.NAMESPACE || "app";
}

/** The channels middleware: JetStream when a NATS transporter is configured, else in-process. */
export function channelsMiddleware(cfg: Config): Middleware {
	const prefix = channelPrefix(cfg);
	const adapter = cfg.TRANSPORTER
		? {
				type: "NATS",
				options: {
					prefix,
					nats: {
						url: cfg.TRANSPORTER,
						connectionOptions: { maxReconnectAttempts: -1, reconnectTimeWait: 500, name: "channels" },
						streamConfig: streamConfig(cfg.NATS_STREAM_REPLICAS)
					}
				}
			}
		: { type: "Fake", options: { prefix } };
	const mw = ChannelsMiddleware({ adapter, context: true } as unknown as Parameters<typeof ChannelsMiddleware>[0]) as unknown as Middleware & { created(b: ServiceBroker): void };
	const created = mw.created;
	mw.created = function (this: unknown, broker: ServiceBroker) {
		created.call(this, broker);
		retryConsumerRace((broker as unknown as { channelAdapter: ChannelAdapter }).channelAdapter);
	};
	return mw;
}

interface ChannelAdapter {
	subscribe(chan: { id: string }, svc: unknown): Promise<void>;
	stopChannelActiveMessages(channelId: string): void;
}

/** JetStream's answer when another node created the same durable consumer a moment before (err_code 10013). */
function isConsumerRace(err: unknown): boolean {
	return (err as { api_error?: { err_code?: number } })?.api_error?.err_code === 10013;
}

/**
 * Two nodes of one service starting together (two replicas of a Deployment) both find a channel's
 * durable consumer missing and both create it; JetStream refuses the second ("consumer name already in
 * use"), and the adapter let that stop the node. Subscribing again binds to the consumer the other node
 * made. Up to 5 attempts, 100 ms apart and more.
 */
function retryConsumerRace(adapter: ChannelAdapter | undefined): void {
	if (!adapter || typeof adapter.subscribe !== "function") return;
	const subscribe = adapter.subscribe.bind(adapter);
	adapter.subscribe = async (chan, svc) => {
		for (let attempt = 1; ; attempt++) {
			try {
				return await subscribe(chan, svc);
			} catch (err) {
				if (attempt >= 5 || !isConsumerRace(err)) throw err;
				// The failed attempt left the channel's message tracking started; the next one starts it again.
				adapter.stopChannelActiveMessages(chan.id);
				await new Promise(resolve => setTimeout(resolve, 100 * attempt));
			}
		}
	};
}

/** The stream name the NATS adapter uses for a channel. */
export function streamName(prefix: string, channel: string): string {
	return `${prefix}.${channel}`.split(".").join("_");
}

/**
 * Creates every stream up front (idempotent), so a message published before its consumer first
 * subscribes is kept, not dropped for want of a stream.
 */
export async function ensureStreams(natsUrl: string, prefix: string, nc?: NatsConnection, replicas = 1): Promise<void> {
	const conn = nc ?? (await connect({ servers: new URL(natsUrl).host, name: "ensure-streams" }));
	try {
		const jsm = await conn.jetstreamManager();
		for (const channel of CHANNEL_LIST) {
			const name = streamName(prefix, channel);
			const subject = `${prefix}.${channel}`;
			try {
				await jsm.streams.info(name);
			} catch {
				await jsm.streams.add({ name, subjects: [subject], ...streamConfig(replicas) });
			}
		}
	} finally {
		if (!nc) await conn.close();
	}
}

/** Deletes this prefix's streams (tests clean up after themselves). */
export async function deleteStreams(natsUrl: string, prefix: string): Promise<void> {
	const conn = await connect({ servers: new URL(natsUrl).host, name: "delete-streams" });
	try {
		const jsm = await conn.jetstreamManager();
		for (const channel of CHANNEL_LIST) await jsm.streams.delete(streamName(prefix, channel)).catch(() => false);
	} finally {
		await conn.close();
	}
}

export interface PublishOptions {
	/** JetStream message id: the stream drops a second message with the same id within its window. */
	msgID?: string;
	/** Message headers; `$requestID` becomes the consumer context's request id. */
	headers?: Record<string, string>;
}

type ChannelBroker = ServiceBroker & {
	sendToChannel?: (channel: string, payload: unknown, opts?: PublishOptions) => Promise<void>;
	channelAdapter?: { connected: boolean };
};

/** Publishes to a channel (typed wrapper of @moleculer/channels' `broker.sendToChannel`). */
export async function publish(broker: ServiceBroker, channel: string, payload: unknown, opts: PublishOptions = {}): Promise<void> {
	const b = broker as ChannelBroker;
	if (!b.sendToChannel) throw new Error("the channels middleware is not installed on this broker");
	await b.sendToChannel(channel, payload, { ...opts, headers: opts.headers ? { ...opts.headers } : undefined });
}

/** True once the channel adapter has connected (it connects after the services' `started()`). */
export function channelsConnected(broker: ServiceBroker): boolean {
	return !!(broker as ChannelBroker).channelAdapter?.connected;
}
