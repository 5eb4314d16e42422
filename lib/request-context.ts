import { AsyncLocalStorage } from "node:async_hooks";
import type { Context, Middleware } from "moleculer";

/** What every log line of a request carries. */
export interface RequestScope {
	requestID?: string | null;
}

export const requestScope = new AsyncLocalStorage<RequestScope>();

const scoped =
	<H extends (ctx: Context) => unknown>(handler: H) =>
	(ctx: Context) =>
		// A local call made inside its request's scope (the gateway's `rest` calling an action) keeps it.
		requestScope.getStore()?.requestID === ctx.requestID && ctx.requestID != null
			? handler(ctx)
			: requestScope.run({ requestID: ctx.requestID }, () => handler(ctx));

/** Runs every local action, event and channel handler inside its request's scope, so logs carry the request id. */
export const RequestScopeMiddleware: Middleware = {
	name: "RequestScope",
	localAction(next: (ctx: Context) => unknown) {
		return scoped(next);
	},
	localEvent(next: (ctx: Context) => unknown) {
		return scoped(next);
	},
	// @moleculer/channels handlers (with `context: true` the first argument is a Context).
	localChannel(next: (ctx: Context, raw: unknown) => unknown) {
		return (ctx: Context, raw: unknown) => requestScope.run({ requestID: ctx?.requestID }, () => next(ctx, raw));
	}
} as unknown as Middleware;

/** A valid client request id (1-128 chars of [A-Za-z0-9._:-]) or undefined. */
export function acceptRequestId(value: unknown): string | undefined {
	if (typeof value !== "string") return undefined;
	return /^[A-Za-z0-9._:-]{1,128}$/.test(value) ? value : undefined;
}
