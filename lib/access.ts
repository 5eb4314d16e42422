import { forbidden, unauthorized } from "./errors";
import type { AppContext, AuthUser } from "./types";

/** The verified caller, or 401. Published actions call this; only the gateway sets `meta.user`. */
export function requireUser(ctx: AppContext<any>): AuthUser {
	const user = ctx.meta.user;
	if (!user) throw unauthorized("authentication required");
	return user;
}

export function hasRole(user: AuthUser, ...roles: string[]): boolean {
	return roles.some(r => user.roles.includes(r));
}

/** The caller may act on `ownerId`'s resource: it is theirs, or they are staff. */
export function requireOwnerOrStaff(user: AuthUser, ownerId: string): void {
	if (user.id !== ownerId && !hasRole(user, "support", "admin")) throw forbidden("you may only access your own resources");
}

/** Options for an action that is safe to repeat (a read, or a write made idempotent). */
export const SAFE_TO_RETRY = { retryPolicy: { enabled: true } } as const;

/** `?limit=` (1..100, default 20) and `?offset=` (default 0), the list convention of every list route. */
export const PAGE_PARAMS = {
	limit: { type: "number", integer: true, min: 1, max: 100, default: 20, convert: true },
	offset: { type: "number", integer: true, min: 0, default: 0, convert: true }
} as const;
