import { Stream } from "node:stream";
import { Errors, type Context, type Middleware, type ServiceBroker } from "moleculer";

/**
 * Moleculer's Timeout (middlewares/timeout.js) with one promise per call instead of five, and no timer of
 * its own for a call on its action's usual timeout (Deadlines below): the same defaults
 * (`ctx.options.timeout`, else the action's `timeout`, else the broker's `requestTimeout`), the same start
 * time for distributed timeouts, the same RequestTimeoutError, warning and `moleculer.request.timeout.total`
 * count. One thing more: a remote call that times out has its pending request rejected too. Moleculer's
 * left it pending for ever, so the ContextTracker and CircuitBreaker inside never saw the call end: the
 * tracker kept it (every later stop waited SHUTDOWN_TIMEOUT_MS) and the breaker never counted the timeout.
 * Why lean: Moleculer's showed in the users/me profile, and ablations put it at several per cent of a
 * request; BENCHMARKS.md has the figures and how far to trust them.
 */
const TIMEOUT_TOTAL = "moleculer.request.timeout.total";

interface Deadline {
	at: number;
	onTimeout: (() => void) | null;
	prev: Deadline | null;
	next: Deadline | null;
}

/**
 * The calls waiting out one duration, in the order they started, which is also the order of their
 * deadlines: one Node timer, armed for the earliest, serves them all. A call adds itself to the tail and
 * unlinks itself when it ends, so nothing outlives its call. The timer is not cleared when the list
 * empties (a fast local call empties it every time): it fires, finds nothing due and stays off until the
 * next call. It is unref'd, so an idle process is not held open by it; what a call waits on holds it.
 * A Node timer per call (created, placed in Node's timer list, cleared) cost about 2 µs of a gateway
 * request's 70.
 */
export class Deadlines {
	private head: Deadline | null = null;
	private tail: Deadline | null = null;
	private timer: NodeJS.Timeout | undefined;

	constructor(private readonly ms: number) {}

	add(onTimeout: () => void): Deadline {
		const d: Deadline = { at: performance.now() + this.ms, onTimeout, prev: this.tail, next: null };
		if (this.tail) this.tail.next = d;
		else this.head = d;
		this.tail = d;
		// An armed timer is due no later than this deadline: it was armed for an earlier one.
		if (!this.timer) this.arm(this.ms);
		return d;
	}

	/** The call ended (or timed out): its deadline goes. */
	remove(d: Deadline): void {
		if (d.onTimeout === null) return;
		d.onTimeout = null;
		if (d.prev) d.prev.next = d.next;
		else this.head = d.next;
		if (d.next) d.next.prev = d.prev;
		else this.tail = d.prev;
		d.prev = d.next = null;
	}

	private arm(ms: number): void {
		this.timer = setTimeout(this.expire, ms).unref();
	}

	private readonly expire = (): void => {
		this.timer = undefined;
		const now = performance.now();
		const due: Array<() => void> = [];
		while (this.head && this.head.at <= now) {
			const d = this.head;
			due.push(d.onTimeout!);
			this.remove(d);
		}
		if (this.head) this.arm(Math.max(1, Math.ceil(this.head.at - now)));
		for (const fn of due) fn();
	};
}

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
		// Calls on this action's own timeout share one list; another duration (a call's own, or what is left
		// of its caller's) gets a timer of its own.
		const usual = action.timeout ?? requestTimeout ?? 0;
		const shared = usual > 0 ? new Deadlines(usual) : null;
		return (ctx: Context) => {
			if (ctx.options.timeout == null) ctx.options.timeout = usual;
			const ms = Number(ctx.options.timeout);
			if (!(ms > 0)) return handler(ctx);
			// Read by ctx.call to give nested calls what is left of this one's time.
			ctx.startHrTime ??= process.hrtime();
			const p = handler(ctx);
			return new Promise((resolve, reject) => {
				const timedOut = () => {
					const nodeID = ctx.nodeID ?? "";
					logger.warn(`Request '${action.name}' is timed out.`, { requestID: ctx.requestID, nodeID, timeout: ms });
					if (ctx.params instanceof Stream) ctx.params.emit("moleculer-timeout-middleware", ms);
					if (counted) metrics.increment(TIMEOUT_TOTAL, { service, action: action.name });
					const err = new Errors.RequestTimeoutError({ action: action.name, nodeID });
					if (remote) rejectPending(transit, ctx.id, err);
					reject(err);
				};
				const d = shared && ms === usual ? shared.add(timedOut) : null;
				const timer = d ? undefined : setTimeout(timedOut, ms);
				const ended = () => (d ? shared!.remove(d) : clearTimeout(timer));
				p.then(
					value => {
						ended();
						resolve(value);
					},
					(err: unknown) => {
						ended();
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
