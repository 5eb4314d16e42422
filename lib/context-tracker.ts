import { Errors, type Context, type Middleware, type Service, type ServiceBroker } from "moleculer";

/**
 * Moleculer's ContextTracker (middlewares/context-tracker.js) with a count instead of a list, and one
 * promise per call instead of two. The same options (`tracking` in broker options, `ctx.options.tracking`
 * per call) and the same graceful stop: a stopping service waits for its running actions and events, the
 * stopping broker for the remote calls it is waiting on, each for at most `shutdownTimeout` (or the
 * service's `$shutdownTimeout`), then logs GracefulStopTimeoutError and goes on. Why lean: Moleculer's
 * showed in the users/me profile, and ablations put it at several per cent of a request; BENCHMARKS.md
 * has the figures and how far to trust them.
 */
interface Count {
	running: number;
}

type Handler = (ctx: Context) => Promise<unknown>;

/** Per local service its running actions and events, and per broker the remote calls it waits on. */
const counts = new WeakMap<object, Count>();

function countOf(owner: object): Count {
	let c = counts.get(owner);
	if (!c) counts.set(owner, (c = { running: 0 }));
	return c;
}

/** How many contexts the tracker counts as running: a service's local ones, or a broker's remote calls. */
export function runningContexts(owner: Service | ServiceBroker): number {
	return counts.get(owner)?.running ?? 0;
}

export function contextTracker(): Middleware {
	// Moleculer wraps its own $node actions before calling `created`: the broker is `this`.
	function wrap(this: ServiceBroker, handler: Handler): Handler {
		const enabled = !!this.options.tracking?.enabled;
		if (!enabled) return handler;
		return (ctx: Context) => {
			if (!(ctx.options.tracking ?? enabled)) return handler(ctx);
			// A local call's service; a remote call has none (as in Moleculer's tracker).
			const c = countOf(ctx.service ?? ctx.broker);
			c.running++;
			let p: Promise<unknown>;
			try {
				p = handler(ctx);
			} catch (err) {
				c.running--;
				throw err;
			}
			return p.then(
				value => {
					c.running--;
					return value;
				},
				(err: unknown) => {
					c.running--;
					throw err;
				}
			);
		};
	}

	/** Resolves once nothing is running, or after `ms` (logged as GracefulStopTimeoutError). */
	function settled(c: Count, logger: ServiceBroker["logger"], ms: number, service?: Service): Promise<void> {
		if (c.running <= 0) return Promise.resolve();
		logger.warn(`Waiting for ${c.running} running context(s)...`);
		return new Promise(resolve => {
			const deadline = Date.now() + ms;
			const check = () => {
				if (c.running <= 0) return resolve();
				if (Date.now() >= deadline) {
					logger.error(new Errors.GracefulStopTimeoutError({ service } as never));
					return resolve();
				}
				setTimeout(check, 100);
			};
			setTimeout(check, 100);
		});
	}

	return {
		name: "ContextTracker",
		localAction: wrap,
		remoteAction: wrap,
		localEvent: wrap,
		serviceStopping(service: Service) {
			const ms = (service.settings.$shutdownTimeout as number | undefined) || service.broker.options.tracking?.shutdownTimeout || 5000;
			return settled(countOf(service), service.logger, ms, service);
		},
		stopping(b: ServiceBroker) {
			return settled(countOf(b), b.logger, b.options.tracking?.shutdownTimeout || 5000);
		}
	} as unknown as Middleware;
}
