import { Stream } from "node:stream";
import { Errors, type Context, type Middleware, type ServiceBroker } from "moleculer";

/**
 * Moleculer's Timeout (middlewares/timeout.js) with one promise and one timer per call instead of five
 * promises: the same defaults (`ctx.options.timeout`, else the action's `timeout`, else the broker's
 * `requestTimeout`), the same start time for distributed timeouts, the same RequestTimeoutError, warning
 * and `moleculer.request.timeout.total` count. One thing more: a remote call that times out has its pending
 * request rejected too. Moleculer's left it pending for ever, so the ContextTracker and CircuitBreaker
 * inside never saw the call end: the tracker kept it (every later stop waited SHUTDOWN_TIMEOUT_MS) and the
 * breaker never counted the timeout. Why lean: Moleculer's showed in the users/me profile, and ablations
 * put it at several per cent of a request; BENCHMARKS.md has the figures and how far to trust them.
 */
const TIMEOUT_TOTAL = "moleculer.request.timeout.total";

type Handler = (ctx: Context) => Promise<unknown>;
interface Transit {
	pendingRequests: { get(id: string): { reject(err: Error): void } | undefined };
	removePendingRequest(id: string): void;
}

/** Settles the remote call `id` is waiting on (its answer, if it comes later, is then dropped by transit). */
function rejectPending(transit: Transit | undefined, id: string, err: Error): void {
	const pending = transit?.pendingRequests.get(id);
	if (!pending) return;
	transit!.removePendingRequest(id);
	pending.reject(err);
}

export function timeout(): Middleware {
	// Moleculer wraps its own $node actions before calling `created`: the broker is `this`.
	type Action = { name: string; timeout?: number; service?: { fullName: string } };
	function wrap(this: ServiceBroker, handler: Handler, action: Action, remote: boolean): Handler {
		const { logger, metrics } = this;
		const requestTimeout = this.options.requestTimeout;
		const counted = this.isMetricsEnabled();
		const transit = this.transit as unknown as Transit | undefined;
		const service = action.service?.fullName ?? null;
		return (ctx: Context) => {
			if (ctx.options.timeout == null) ctx.options.timeout = action.timeout ?? requestTimeout;
			const ms = Number(ctx.options.timeout);
			if (!(ms > 0)) return handler(ctx);
			// Read by ctx.call to give nested calls what is left of this one's time.
			ctx.startHrTime ??= process.hrtime();
			const p = handler(ctx);
			return new Promise((resolve, reject) => {
				const timer = setTimeout(() => {
					const nodeID = ctx.nodeID ?? "";
					logger.warn(`Request '${action.name}' is timed out.`, { requestID: ctx.requestID, nodeID, timeout: ms });
					if (ctx.params instanceof Stream) ctx.params.emit("moleculer-timeout-middleware", ms);
					if (counted) metrics.increment(TIMEOUT_TOTAL, { service, action: action.name });
					const err = new Errors.RequestTimeoutError({ action: action.name, nodeID });
					if (remote) rejectPending(transit, ctx.id, err);
					reject(err);
				}, ms);
				p.then(
					value => {
						clearTimeout(timer);
						resolve(value);
					},
					(err: unknown) => {
						clearTimeout(timer);
						reject(err);
					}
				);
			});
		};
	}

	return {
		name: "Timeout",
		created(b: ServiceBroker) {
			if (b.isMetricsEnabled()) b.metrics.register({ name: TIMEOUT_TOTAL, type: "counter", labelNames: ["service", "action"], description: "Number of timed out requests", rate: true });
		},
		localAction(this: ServiceBroker, handler: Handler, action: Action) {
			return wrap.call(this, handler, action, false);
		},
		remoteAction(this: ServiceBroker, handler: Handler, action: Action) {
			return wrap.call(this, handler, action, true);
		}
	} as unknown as Middleware;
}
