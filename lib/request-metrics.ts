import type { Context, Middleware, ServiceBroker } from "moleculer";

/**
 * Request metrics: `moleculer.request.total`, `.error.total`, `.time` (the names Moleculer uses), kept
 * lean. Moleculer's own Metrics middleware tracks more per call (active gauge, call levels, a rate
 * per metric, a one-minute sample window per histogram) and measured here at over half of a
 * gateway request's CPU; lib/broker.ts installs the other internal middlewares without it.
 */
const TOTAL = "moleculer.request.total";
const ERRORS = "moleculer.request.error.total";
const TIME = "moleculer.request.time";

export function requestMetrics(): Middleware {
	let metrics: ServiceBroker["metrics"] | undefined;
	const wrap = (type: "local" | "remote") => (next: (ctx: Context) => Promise<unknown>, action: { name: string; service?: { fullName: string } }) => {
		if (!metrics) return next;
		const m = metrics;
		const service = action.service?.fullName ?? null;
		const name = action.name;
		return (ctx: Context) => {
			const labels = { service, action: name, caller: ctx.caller ?? null, type };
			m.increment(TOTAL, labels);
			const start = performance.now();
			return next(ctx).then(
				res => {
					m.observe(TIME, performance.now() - start, labels);
					return res;
				},
				(err: { name?: string; code?: number; type?: string } | undefined) => {
					m.observe(TIME, performance.now() - start, labels);
					m.increment(ERRORS, { ...labels, errorName: err?.name ?? null, errorCode: err?.code ?? null, errorType: err?.type ?? null });
					throw err;
				}
			);
		};
	};
	return {
		name: "RequestMetrics",
		created(broker: ServiceBroker) {
			if (!broker.isMetricsEnabled()) return;
			metrics = broker.metrics;
			const labelNames = ["service", "action", "type", "caller"];
			metrics.register({ name: TOTAL, type: "counter", labelNames, unit: "request", description: "Number of requests", rate: true });
			metrics.register({ name: ERRORS, type: "counter", labelNames: [...labelNames, "errorName", "errorCode", "errorType"], unit: "request", description: "Number of request errors", rate: true });
			metrics.register({ name: TIME, type: "histogram", labelNames, unit: "millisecond", description: "Request times", quantiles: true, buckets: true });
		},
		localAction: wrap("local"),
		remoteAction: wrap("remote")
	} as unknown as Middleware;
}
