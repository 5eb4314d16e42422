import type { Context } from "moleculer";

/** The caller, as the gateway put it after verifying the access token. */
export interface AuthUser {
	id: string;
	sid: string;
	roles: string[];
	exp: number;
}

export interface AppMeta {
	user?: AuthUser | null;
	/** Client details the gateway forwards (never taken from headers it does not trust). */
	client?: { ip?: string; user_agent?: string };
	/** The `Idempotency-Key` header of a charge, forwarded by the gateway. */
	idempotencyKey?: string;
	/** The Cookie header, forwarded by the gateway only to the OAuth callback (its browser binding). */
	cookie?: string;
	$statusCode?: number;
	$responseHeaders?: Record<string, string>;
	$responseType?: string;
	$location?: string;
}

export type AppContext<P = Record<string, unknown>> = Context<P, AppMeta>;
