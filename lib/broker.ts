import os from "node:os";
import { format } from "node:util";
import pino from "pino";
import { Errors, type BrokerOptions, type Context, type Middleware } from "moleculer";
import { channelsMiddleware } from "./channels";
import { healthServer } from "./health-server";
import type { Config } from "./config";
import { requestScope, RequestScopeMiddleware } from "./request-context";
import { eventLoopLagMetrics } from "./process-metrics";
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
 * Settles a remote call once its timeout has passed. Moleculer 0.15's Timeout middleware answers the
 * caller and drops the pending request, but the promise it wrapped never settles: ContextTracker then
 * keeps that context for ever (a leak, and every later stop waits SHUTDOWN_TIMEOUT_MS) and the circuit
 * breaker never counts the timeout. User middlewares sit inside both, so rejecting here reaches them.
 */
export const SettleTimedOutCalls = {
	name: "SettleTimedOutCalls",
	remoteAction(next: (ctx: Context) => Promise<unknown>) {
		return (ctx: Context) => {
			const p = next(ctx);
			const ms = Number(ctx.options.timeout);
			if (!(ms > 0)) return p;
			let timer: NodeJS.Timeout | undefined;
			const late = new Promise<never>((_, reject) => {
				timer = setTimeout(() => reject(new Errors.RequestTimeoutError({ action: ctx.action?.name ?? "", nodeID: ctx.nodeID ?? "" })), ms + 50);
			});
			return Promise.race([p, late]).finally(() => clearTimeout(timer));
		};
	}
} as unknown as Middleware;

/** Broker options shared by `moleculer-runner` (moleculer.config.ts) and the tests. */
export function brokerOptions(cfg: Config, env: NodeJS.ProcessEnv = process.env): BrokerOptions {
	return {
		namespace: cfg.NAMESPACE,
		nodeID: nodeId(cfg, env),
		transporter: cfg.TRANSPORTER ? { type: "NATS", options: { url: cfg.TRANSPORTER } } : undefined,
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
			check: (err: Error) => !!(err as Errors.MoleculerError).code && (err as Errors.MoleculerError).code >= 500
		},
		bulkhead: { enabled: true, concurrency: 50, maxQueueSize: 500 },
		// Graceful stop: wait for in-flight requests before the broker stops.
		tracking: { enabled: true, shutdownTimeout: cfg.SHUTDOWN_TIMEOUT_MS },
		registry: { strategy: "RoundRobin", preferLocal: true },
		heartbeatInterval: 5,
		heartbeatTimeout: 15,
		// Metrics always (the admin dashboard reads every node's `$node.metrics`); Prometheus on METRICS_PORT (GET /metrics) when it is set.
		metrics: {
			enabled: true,
			reporter: cfg.METRICS_PORT
				? [{ type: "Prometheus", options: { port: cfg.METRICS_PORT, path: "/metrics", defaultLabels: () => ({ namespace: cfg.NAMESPACE, nodeID: nodeId(cfg, env) }) } }]
				: []
		},
		tracing: tracingOptions(cfg),
		// Per node, bounded; services evict what they change on every node (see users' profile cache).
		cacher: cfg.CACHE_TTL_S > 0 ? { type: "MemoryLRU", options: { max: cfg.CACHE_MAX_ENTRIES, ttl: cfg.CACHE_TTL_S } } : undefined,
		// Channels first: its `localChannel` handlers are then wrapped by RequestScope.
		middlewares: [channelsMiddleware(cfg), RequestScopeMiddleware, SettleTimedOutCalls, healthServer(cfg.HEALTH_PORT), eventLoopLagMetrics()],
		skipProcessEventRegistration: false
	};
}
