import crypto from "node:crypto";

/** What the bench scripts (bench/run.ts, bench/compare.ts) share: the nodes' environment and HTTP helpers. */

export const BCRYPT_COST = Number(process.env.BCRYPT_COST ?? 12);

/**
 * A bench node's environment: the real configuration, with only the rate limit raised to 1 000 000
 * requests per 10 s (one client IP sends all the load; a minute's million ran out at 40 000 requests/s).
 */
export function nodeEnv(extra: Record<string, string>): Record<string, string> {
	return { NODE_ENV: "production", LOG_LEVEL: "warn", RATE_LIMIT_MAX: "1000000", RATE_LIMIT_WINDOW_MS: "10000", BCRYPT_COST: String(BCRYPT_COST), ...extra };
}

/** One JSON request; throws on a non-2xx answer. */
export async function json(base: string, method: string, p: string, body?: unknown, token?: string): Promise<any> {
	const res = await fetch(base + p, {
		method,
		headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
		body: body === undefined ? undefined : JSON.stringify(body)
	});
	const text = await res.text();
	if (!res.ok) throw new Error(`${method} ${p}: ${res.status} ${text}`);
	return text ? JSON.parse(text) : undefined;
}

/** Registers a new user and returns its access token. */
export async function userToken(base: string): Promise<string> {
	const email = `bench.${crypto.randomBytes(4).toString("hex")}@example.com`;
	await json(base, "POST", "/api/v1/auth/register", { email, password: "bench password 1", name: "Bench" });
	return (await json(base, "POST", "/api/v1/auth/login", { email, password: "bench password 1" })).access_token;
}
