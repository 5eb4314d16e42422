import { Errors, type Context, type Middleware, type ServiceBroker } from "moleculer";
import { registerLive } from "./live-metrics";

/**
 * Moleculer's Bulkhead (at most `concurrency` calls of an action or event handler at once on this
 * node, up to `maxQueueSize` more waiting, then QueueIsFullError), with the same options
 * (`bulkhead` in broker options, overridden per action or event) and the same gauges
 * (`moleculer.{request,event}.bulkhead.{inflight,queue.size}`), read when metrics are collected instead
 * of set four times per call (live-metrics.ts says why).
 */
interface Opts {
	enabled?: boolean;
	concurrency?: number;
	maxQueueSize?: number;
}
interface State {
	labels: Record<string, string>;
	inFlight: number;
	queue: Array<{ ctx: Context; handler: Handler; resolve(v: unknown): void; reject(e: unknown): void }>;
}
type Handler = (ctx: Context) => Promise<unknown>;

export function bulkhead(): Middleware {
	let broker: ServiceBroker | undefined;
	// One state per action or event handler: Moleculer wraps an action more than once (its endpoint and
	// `this.actions.x`), and both wrappers must count against the same limit.
	const states = { action: new Map<string, State>(), event: new Map<string, State>() };

	function wrap(kind: "action" | "event", handler: Handler, def: { name: string; bulkhead?: Opts; service?: { fullName: string } }): Handler {
		const opts: Opts = { ...(broker?.options.bulkhead as Opts | undefined), ...def.bulkhead };
		if (!opts.enabled) return handler;
		// Moleculer's defaults (service-broker.js), should the broker options lack them.
		const limit = opts.concurrency ?? 10;
		const maxQueue = opts.maxQueueSize ?? 100;
		const service = def.service?.fullName ?? "";
		const key = `${service}\u0000${def.name}`;
		let state = states[kind].get(key);
		if (!state) states[kind].set(key, (state = { labels: { [kind]: def.name, service }, inFlight: 0, queue: [] }));
		const s = state;

		const run = (ctx: Context, h: Handler): Promise<unknown> => {
			s.inFlight++;
			let p: Promise<unknown>;
			try {
				p = Promise.resolve(h(ctx));
			} catch (err) {
				// A handler that throws instead of rejecting must free its slot too.
				p = Promise.reject(err);
			}
			return p.finally(() => {
				s.inFlight--;
				const item = s.queue.shift();
				if (item) run(item.ctx, item.handler).then(item.resolve, item.reject);
			});
		};
		return (ctx: Context) => {
			if (s.inFlight < limit) return run(ctx, handler);
			if (maxQueue && s.queue.length >= maxQueue) {
				const where = kind === "action" ? { action: def.name } : { event: def.name, service };
				return Promise.reject(new Errors.QueueIsFullError({ ...where, nodeID: ctx.nodeID ?? "" } as never));
			}
			return new Promise((resolve, reject) => s.queue.push({ ctx, handler, resolve, reject }));
		};
	}

	return {
		name: "Bulkhead",
		created(b: ServiceBroker) {
			broker = b;
			if (!b.isMetricsEnabled()) return;
			for (const kind of ["request", "event"] as const) {
				const list = states[kind === "request" ? "action" : "event"];
				const all = () => [...list.values()];
				const labelNames = [kind === "request" ? "action" : "event", "service"];
				registerLive(b, { name: `moleculer.${kind}.bulkhead.inflight`, type: "gauge", labelNames, description: `Number of in-flight ${kind === "request" ? "calls" : "events"}` }, () =>
					all().map(s => ({ labels: s.labels, value: s.inFlight }))
				);
				registerLive(b, { name: `moleculer.${kind}.bulkhead.queue.size`, type: "gauge", labelNames, description: `Number of queued ${kind === "request" ? "calls" : "events"}` }, () =>
					all().map(s => ({ labels: s.labels, value: s.queue.length }))
				);
			}
		},
		localAction(handler: Handler, action: { name: string; bulkhead?: Opts; service?: { fullName: string } }) {
			return wrap("action", handler, action);
		},
		localEvent(handler: Handler, event: { name: string; bulkhead?: Opts; service?: { fullName: string } }) {
			return wrap("event", handler, event);
		}
	} as unknown as Middleware;
}
