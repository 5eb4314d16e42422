import type { Context, Middleware, ServiceBroker } from "moleculer";
import { registerLive, Series, type Labels } from "./live-metrics";

/**
 * Request metrics: `moleculer.request.total`, `.error.total`, `.time` (the names and labels Moleculer
 * uses), counted in plain numbers per action and caller and read when metrics are collected
 * (live-metrics.ts says why). Moleculer's own Metrics middleware tracks more per call and measured here
 * at over half of a gateway request's CPU; lib/broker.ts installs the other internal middlewares without it.
 * Quantiles are over each series' last 1024 calls (Moleculer keeps every sample of the last minute).
 */
const TOTAL = "moleculer.request.total";
const ERRORS = "moleculer.request.error.total";
const TIME = "moleculer.request.time";
const RATE_TICK_MS = 5000;

export function requestMetrics(): Middleware {
	let broker: ServiceBroker | undefined;
	// Shared by every wrapper of one action (Moleculer wraps an action more than once: its endpoint and `this.actions.x`).
	const series = new Map<string, Series>();
	let bounds: number[] = [];
	let quantiles: number[] = [];
	let timer: NodeJS.Timeout | undefined;

	const wrap = (type: "local" | "remote") => (next: (ctx: Context) => Promise<unknown>, action: { name: string; service?: { fullName: string } }) => {
		if (!broker) return next;
		const b = broker;
		const service = action.service?.fullName ?? null;
		const name = action.name;
		// One series per caller of this action (usually one or two), found without building a key.
		const byCaller = new Map<string | null, Series>();
		const seriesFor = (caller: string | null) => {
			let s = byCaller.get(caller);
			if (!s) {
				const key = `${type}\u0000${service}\u0000${name}\u0000${caller}`;
				s = series.get(key) ?? new Series({ service, action: name, caller, type }, bounds);
				series.set(key, s);
				byCaller.set(caller, s);
			}
			return s;
		};
		return (ctx: Context) => {
			const s = seriesFor(ctx.caller ?? null);
			const start = performance.now();
			return next(ctx).then(
				res => {
					s.observe(performance.now() - start);
					return res;
				},
				(err: { name?: string; code?: number; type?: string } | undefined) => {
					s.observe(performance.now() - start);
					// Errors are rare: counted by Moleculer's registry directly.
					b.metrics.increment(ERRORS, { ...s.labels, errorName: err?.name ?? null, errorCode: err?.code ?? null, errorType: err?.type ?? null });
					throw err;
				}
			);
		};
	};
	return {
		name: "RequestMetrics",
		created(b: ServiceBroker) {
			if (!b.isMetricsEnabled()) return;
			broker = b;
			const opts = (b.metrics as unknown as { opts: { defaultBuckets: number[]; defaultQuantiles: number[] } }).opts;
			bounds = [...opts.defaultBuckets].sort((x, y) => x - y);
			quantiles = [...opts.defaultQuantiles].sort((x, y) => x - y);
			const labelNames = ["service", "action", "type", "caller"];
			registerLive(b, { name: TOTAL, type: "counter", labelNames, unit: "request", description: "Number of requests", rate: true }, () =>
				[...series.values()].map(s => ({ labels: s.labels as Labels, value: s.count, rate: s.rate.rate }))
			);
			b.metrics.register({ name: ERRORS, type: "counter", labelNames: [...labelNames, "errorName", "errorCode", "errorType"], unit: "request", description: "Number of request errors", rate: true });
			registerLive(b, { name: TIME, type: "histogram", labelNames, unit: "millisecond", description: "Request times", quantiles: true, buckets: true }, () =>
				[...series.values()].map(s => s.snapshot(quantiles))
			);
			timer = setInterval(() => {
				const now = Date.now();
				for (const s of series.values()) s.rate.tick(s.count, now);
			}, RATE_TICK_MS).unref();
		},
		stopped() {
			clearInterval(timer);
		},
		localAction: wrap("local"),
		remoteAction: wrap("remote")
	} as unknown as Middleware;
}
