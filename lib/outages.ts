import { Errors, type Context, type Middleware, type ServiceBroker } from "moleculer";
import type { NatsConnection } from "nats";
import { ConnectionError, DatabaseError } from "sequelize";

// What a caller sees while a part this node depends on is down: a 503 at once, not a hang nor a 500.

interface PendingRequest {
	reject(err: Error): void;
}
interface TransitInternals {
	tx?: { client?: NatsConnection | null };
	pendingRequests?: Map<string, PendingRequest>;
}

/** Moleculer's own error for "this node's transporter is down" (502 BAD_GATEWAY, retryable; the gateway answers 503). */
const disconnected = () => new (Errors.BrokerDisconnectedError as unknown as new () => Errors.MoleculerRetryableError)();

const transportUp = new WeakMap<ServiceBroker, boolean>();
/** When this node last reconnected to NATS, in Moleculer's heartbeat clock (whole seconds of process.uptime()). */
const reconnectedAt = new WeakMap<ServiceBroker, number>();

type Registry = { nodes: { get(id: string): { lastHeartbeatTime: number } | undefined } };

/** Whether `nodeID` has been heard from since this node's last reconnect: only then is it resubscribed too. */
function heardSinceReconnect(broker: ServiceBroker, nodeID: string | undefined): boolean {
	const since = reconnectedAt.get(broker);
	if (since === undefined || !nodeID) return true;
	const node = (broker.registry as unknown as Registry).nodes.get(nodeID);
	return !node || node.lastHeartbeatTime > since;
}

/** False while this node's NATS connection is down (nats.js is reconnecting); true without a transporter. */
export function transporterUp(broker: ServiceBroker): boolean {
	return transportUp.get(broker) ?? true;
}

/** An error that says this node cannot reach NATS right now; it tells nothing about the node called. */
export const isOwnDisconnect = (err: unknown): boolean => err instanceof Errors.BrokerDisconnectedError;

/**
 * When NATS goes away, nats.js reconnects on its own and buffers what is published meanwhile, and
 * Moleculer's transit does not notice: a call made during the outage waited out its whole timeout
 * (30 s for a charge) and could still run after its caller had been told it failed. With this, while
 * this node's connection is down a remote call fails at once with BrokerDisconnectedError (a 503 at the
 * gateway; retried where the action is safe to retry), and the calls waiting for an answer when it drops
 * fail the same way, since their answers would be lost. A charge that had already run is replayed when
 * its client retries with the same Idempotency-Key.
 * After a reconnect, each other node reconnects on its own schedule, and NATS drops a request sent to a
 * node not yet resubscribed (its caller would wait out the timeout): calls to a node fail fast the same
 * way until a heartbeat from it arrives (every heartbeatInterval, lib/broker.ts).
 */
export const FailFastWhileDisconnected = {
	name: "FailFastWhileDisconnected",
	started(broker: ServiceBroker) {
		const transit = (broker as unknown as { transit?: TransitInternals }).transit;
		const client = transit?.tx?.client;
		if (!transit || !client) return;
		transportUp.set(broker, true);
		void (async () => {
			for await (const s of client.status()) {
				if (s.type === "disconnect") {
					transportUp.set(broker, false);
					broker.logger.warn("NATS connection lost: remote calls fail at once until it is back");
					for (const [id, pending] of transit.pendingRequests ?? []) {
						transit.pendingRequests!.delete(id);
						pending.reject(disconnected());
					}
				} else if (s.type === "reconnect") {
					reconnectedAt.set(broker, Math.round(process.uptime()));
					transportUp.set(broker, true);
					broker.logger.info("NATS connection is back");
				}
			}
		})();
	},
	remoteAction(next: (ctx: Context) => Promise<unknown>) {
		return (ctx: Context) => (transporterUp(ctx.broker) && heardSinceReconnect(ctx.broker, ctx.nodeID ?? undefined) ? next(ctx) : Promise.reject(disconnected()));
	}
} as unknown as Middleware;

/** PostgreSQL error classes that mean "no usable connection": 08 connection exception, 57P01–57P03 shutdown. */
const CONNECTION_SQLSTATE = /^(08|57P0[123])/;

/** The database cannot be reached (refused, shut down, connection lost), as opposed to a bad query. */
export function isDatabaseUnavailable(err: unknown): boolean {
	if (err instanceof ConnectionError) return true;
	if (!(err instanceof DatabaseError)) return false;
	const parent = err.parent as Error & { code?: string };
	return CONNECTION_SQLSTATE.test(parent?.code ?? "") || /Connection terminated/i.test(parent?.message ?? "");
}

/**
 * An action whose database is down answers 503 (retryable) instead of a 500: the client is told to
 * try again shortly, and `/ready` of the node already says the database is down.
 */
export const DatabaseUnavailable = {
	name: "DatabaseUnavailable",
	localAction(next: (ctx: Context) => Promise<unknown>, action: { service?: { schema?: { adapter?: unknown } } }) {
		// Only services with a database (db.mixin's adapter): every wrapper costs on the hot path.
		if (!action.service?.schema?.adapter) return next;
		return (ctx: Context) =>
			next(ctx).catch((err: unknown) => {
				if (!isDatabaseUnavailable(err)) throw err;
				throw new Errors.MoleculerRetryableError("the database is unavailable; try again shortly", 503, "SERVICE_NOT_AVAILABLE", { service: ctx.service?.name });
			});
	}
} as unknown as Middleware;

/**
 * Waits until NATS has taken what this node published so far (a PING answered after it), so that a
 * broadcast sent before an answer reaches the other nodes before the client can act on the answer (a
 * revoked token must fail at once on every gateway). Nothing to wait for without NATS; gives up after
 * `timeoutMs`, since an outage must not hold the answer.
 */
export async function publishedToNats(broker: ServiceBroker, timeoutMs = 1000): Promise<void> {
	const client = (broker.transit as unknown as { tx?: { client?: { flush?: () => Promise<void> } | null } } | undefined)?.tx?.client;
	if (typeof client?.flush !== "function") return;
	let timer: NodeJS.Timeout | undefined;
	const late = new Promise<void>(resolve => (timer = setTimeout(resolve, timeoutMs)));
	await Promise.race([client.flush().catch(() => undefined), late]);
	clearTimeout(timer);
}

/** A broadcast the caller's answer must not overtake (a revoked token or a retired key must fail at once everywhere). */
export async function broadcastBeforeAnswer(broker: ServiceBroker, event: string, payload: object): Promise<void> {
	await broker.broadcast(event, payload);
	await publishedToNats(broker);
}
