import crypto from "node:crypto";

/** HTTP helpers shared by the bench scripts (bench/run.ts, bench/compare.ts). */

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
