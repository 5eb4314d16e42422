import os from "node:os";
import { format } from "node:util";
import pino from "pino";
import type { BrokerOptions, Errors } from "moleculer";
import type { Config } from "./config";
import { requestScope, RequestScopeMiddleware } from "./request-context";

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
		metrics: { enabled: false },
		tracing: { enabled: false },
		middlewares: [RequestScopeMiddleware],
		skipProcessEventRegistration: false
	};
}
