import os from "node:os";
import { format } from "node:util";
import pino from "pino";
import { Errors, type BrokerOptions, type Middleware, type ServiceBroker } from "moleculer";
import { bulkhead } from "./bulkhead";
import { MemoryCacher } from "./cacher";
import { channelsMiddleware } from "./channels";
import { contextTracker } from "./context-tracker";
import { healthServer } from "./health-server";
import { DatabaseUnavailable, FailFastWhileDisconnected, isOwnDisconnect } from "./outages";
import type { Config } from "./config";
import { requestScope, RequestScopeMiddleware } from "./request-context";
import { eventLoopLagMetrics } from "./process-metrics";
import { natsBatching } from "./nats-batching";
import { RenewedMap } from "./renewed-map";
import { requestMetrics } from "./request-metrics";
import { timeout } from "./timeout";
import { tracingOptions } from "./tracing";

type LogFn = (...args: unknown[]) => void;

/** A readable, unique node id: the services it runs, the host and the pid. */
export function nodeId(cfg: Config, env: NodeJS.ProcessEnv = process.env): string {
	if (cfg.NODE_ID) return cfg.NODE_ID;
	const services = (env.SERVICES ?? "all").replace(/[^A-Za-z0-9]+/g, "-").slice(0, 40);
	return `${services}-${os.hostname()}-${process.pid}`;
}

/** JSON log lines through pino, each one carrying the request id of the action or event it was written in. */
function loggerOptions(cfg: Config): BrokerOptions["logger"] {
	const base = pino({
		level: cfg.LOG_LEVEL,
		messageKey: "msg",
		timestamp: pino.stdTimeFunctions.isoTime,
		formatters: { level: label => ({ level: label }) },
		mixin() {
			const scope = requestScope.getStore();
			return scope?.requestID ? { request_id: scope.requestID } : {};
		}
	});
	return {
		type: "Pino",
		options: {
			level: cfg.LOG_LEVEL,
			pino: {},
			createLogger(level: string, bindings: Record<string, unknown>) {
				const child = base.child({ node: bindings.nodeID, service: bindings.svc ?? bindings.mod }, { level });
				const write = (type: "fatal" | "error" | "warn" | "info" | "debug" | "trace"): LogFn =>
					(...args) => {
						// Checked first: moleculer-web logs every request at debug, and format() is not free.
						if (!child.isLevelEnabled(type)) return;
						const err = args.find(a => a instanceof Error) as Error | undefined;
						const rest = args.filter(a => !(a instanceof Error));
						const fields = err ? { err: { type: err.name, message: err.message, code: (err as Errors.MoleculerError).code } } : {};
						child[type](fields, format(...rest));
					};
				return {
					fatal: write("fatal"),
					error: write("error"),
					warn: write("warn"),
					info: write("info"),
					debug: write("debug"),
					trace: write("trace")
				};
			}
		}
	} as unknown as BrokerOptions["logger"];
}

/**
 * Moleculer keeps the remote calls awaiting an answer in `transit.pendingRequests`, a Map that gains and
 * loses an entry with each call: a RenewedMap instead (lib/renewed-map.ts says why).
 */
export const RenewedPendingRequests = {
	name: "RenewedPendingRequests",
	created(broker: ServiceBroker) {
		const transit = broker.transit as unknown as { pendingRequests?: unknown } | undefined;
		if (!transit) return;
		if (transit.pendingRequests instanceof Map && transit.pendingRequests.size === 0) transit.pendingRequests = new RenewedMap();
		else process.emitWarning("transit.pendingRequests is not an empty Map: this Moleculer is not the version lib/broker.ts's RenewedPendingRequests was written for");
	}
} as unknown as Middleware;

/**
 * The second step of a graceful stop. On SIGTERM the broker first leaves the registry (it sends its
 * node info with no services, so callers pick other nodes) and waits `registry.stopDelay`
 * (SHUTDOWN_DELAY_MS) while still serving; `/ready` answers 503 from the start. Then, before any
 * service stops, each local service with a `drain()` method (the gateway's HTTP server) stops taking
 * work and finishes what is in flight, while the services those requests call are still up.
 */
export const DrainBeforeStop = {
	name: "DrainBeforeStop",
	async stopping(broker: ServiceBroker) {
		await Promise.all(broker.services.map(svc => (svc as unknown as { drain?: () => Promise<void> }).drain?.()));
	}
} as unknown as Middleware;

/**
 * Moleculer's internal middlewares before Metrics, in its order (service-broker.js INTERNAL_MIDDLEWARES):
 * by name, or lean ones of ours in place of its Bulkhead, ContextTracker and Timeout.
 */
function internalMiddlewares(): Array<string | Middleware> {
	return ["ActionHook", "Validator", bulkhead(), "Cacher", contextTracker(), "CircuitBreaker", timeout(), "Retry", "Fallback", "ErrorHandler", "Tracing"];
}

/** Broker options shared by `moleculer-runner` (moleculer.config.ts) and the tests. */
export function brokerOptions(cfg: Config, env: NodeJS.ProcessEnv = process.env): BrokerOptions {
	if (cfg.TRANSPORTER && !natsBatching()) process.emitWarning("NATS writes are not batched per event-loop turn: nats.js is not the version lib/nats-batching.ts was written for");
	// Prometheus on METRICS_PORT: the reporter, and the gauges only it reads.
	const prometheus = cfg.METRICS_PORT > 0;
	return {
		namespace: cfg.NAMESPACE,
		nodeID: nodeId(cfg, env),
		// After a NATS restart, reconnect within half a second (nats.js waits 2 s by default); calls fail fast meanwhile (lib/outages.ts).
		transporter: cfg.TRANSPORTER ? { type: "NATS", options: { url: cfg.TRANSPORTER, reconnectTimeWait: 500 } } : undefined,
		logger: loggerOptions(cfg),
		logLevel: cfg.LOG_LEVEL,
		requestTimeout: cfg.REQUEST_TIMEOUT_MS,
		// Retries only where an action says it is safe to repeat: `retryPolicy: { enabled: true }`.
		retryPolicy: {
			enabled: false,
			retries: 2,
			delay: 100,
			maxDelay: 1000,
			factor: 2,
			check: (err: Error) => !!(err as Errors.MoleculerRetryableError).retryable
		},
		circuitBreaker: {
			enabled: true,
			threshold: 0.5,
			minRequestCount: 20,
			windowTime: 60,
			halfOpenTime: 10000,
			// Not this node's own NATS outage: it says nothing about the node called.
			check: (err: Error) => !!(err as Errors.MoleculerError).code && (err as Errors.MoleculerError).code >= 500 && !isOwnDisconnect(err)
		},
		bulkhead: { enabled: true, concurrency: 50, maxQueueSize: 500 },
		// Graceful stop: wait for in-flight requests before the broker stops.
		tracking: { enabled: true, shutdownTimeout: cfg.SHUTDOWN_TIMEOUT_MS },
		// stopDelay: how long a stopping node, already out of the others' registries, still serves (Moleculer's default is 100 ms).
		registry: { strategy: "RoundRobin", preferLocal: true, stopDelay: Math.max(100, cfg.SHUTDOWN_DELAY_MS) },
		// A node killed outright (kill -9, OOM) is dropped when its heartbeats stop: Moleculer checks every
		// heartbeatTimeout, so 8 to 16 s after the last one; until then every other call to it waits out its
		// timeout. A live node is dropped only if it sends nothing for 6 s (three beats).
		heartbeatInterval: 2,
		heartbeatTimeout: 8,
		// Metrics always (the admin dashboard reads every node's `$node.metrics`); Prometheus on METRICS_PORT (GET /metrics) when it is set.
		metrics: {
			enabled: true,
			reporter: prometheus
				? [{ type: "Prometheus", options: { port: cfg.METRICS_PORT, path: "/metrics", defaultLabels: () => ({ namespace: cfg.NAMESPACE, nodeID: nodeId(cfg, env) }) } }]
				: []
		},
		tracing: tracingOptions(cfg),
		// Per node, bounded; services evict what they change on every node (see users' profile cache).
		cacher: cfg.CACHE_TTL_S > 0 ? new MemoryCacher({ max: cfg.CACHE_MAX_ENTRIES, ttl: cfg.CACHE_TTL_S }) : undefined,
		// Channels first: its `localChannel` handlers are then wrapped by RequestScope.
		// Ours first, then Moleculer's internal ones as it orders them, with its Bulkhead, ContextTracker, Timeout
		// and Metrics replaced by lean ones.
		internalMiddlewares: false,
		middlewares: [
			channelsMiddleware(cfg),
			RequestScopeMiddleware,
			RenewedPendingRequests,
			healthServer(cfg.HEALTH_PORT),
			eventLoopLagMetrics(prometheus),
			DrainBeforeStop,
			FailFastWhileDisconnected,
			DatabaseUnavailable,
			...internalMiddlewares(),
			requestMetrics(),
			"Debounce",
			"Throttle",
			...(process.argv.includes("--hot") ? ["HotReload"] : [])
		] as BrokerOptions["middlewares"],
		skipProcessEventRegistration: false
	};
}
