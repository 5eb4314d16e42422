import crypto from "node:crypto";
import { OutgoingMessage } from "node:http";
import Redis from "ioredis";
import ApiGateway from "moleculer-web";
import { foregroundWithin } from "../../lib/foreground";
import { GatewayResponse } from "../../services/api/gateway-response";
import { http, registerAndLogin, startSystem, uniqueEmail, type HttpResult, type TestSystem } from "../helpers/system";

const REDIS_URL = "redis://127.0.0.1:6379";
const MiB = 1024 * 1024;
/** A public, rate-limited route that answers 200 without a token. */
const JWKS = "/.well-known/jwks.json";

/** Nothing internal may leave the gateway in an error body. */
function expectNoLeak(res: HttpResult) {
	expect(res.text).not.toMatch(/stack/i);
	expect(res.text).not.toMatch(/SELECT|INSERT|UPDATE "|Sequelize/);
	expect(res.text).not.toContain("$2b$");
	expect(res.text).not.toMatch(/\bat .*\.(ts|js):\d+/);
}

function expectProblem(res: HttpResult, status: number) {
	expect(res.status).toBe(status);
	expect(res.headers.get("content-type")).toMatch(/^application\/problem\+json/);
	const requestId = res.headers.get("x-request-id");
	expect(requestId).toBeTruthy();
	expect(res.body).toMatchObject({ type: "about:blank", title: expect.any(String), status, detail: expect.any(String), instance: expect.any(String), request_id: requestId });
	expectNoLeak(res);
}

function namespace(): string {
	return `t${crypto.randomBytes(5).toString("hex")}`;
}

async function dropKeys(ns: string) {
	const redis = new Redis(REDIS_URL);
	try {
		const keys = await redis.keys(`rl:${ns}*`);
		if (keys.length) await redis.del(...keys);
	} finally {
		redis.disconnect();
	}
}

describe("gateway", () => {
	let sys: TestSystem;
	beforeAll(async () => {
		sys = await startSystem();
	});
	afterAll(async () => {
		await sys?.stop();
	});

	it("makes each alias's text once, the text moleculer-web would make", () => {
		const api = sys.broker.getLocalService("api") as unknown as { aliases: Array<{ method: string; fullPath: string; toString(): string }> };
		const Alias = Object.getPrototypeOf(api.aliases[0]) as { toString(this: unknown): string };
		const me = api.aliases.find(a => a.method === "GET" && a.fullPath === "/api/v1/users/me")!;
		expect(Object.hasOwn(me, "toString")).toBe(true);
		expect(me.toString()).toBe(Alias.toString.call(me));
		expect(me.toString()).toContain("users.me");
	});

	it("tells the bcrypt pool about requests other than password work, and not about logins", async () => {
		const { email, password } = await registerAndLogin(sys.url);
		await new Promise(r => setTimeout(r, 120));
		expect(foregroundWithin(100)).toBe(false);
		const login = await http(sys.url, "POST", "/api/v1/auth/login", { body: { email, password } });
		expect(login.status).toBe(200);
		expect(foregroundWithin(100)).toBe(false);
		expect((await http(sys.url, "GET", "/api/v1/users/me", { token: login.body.access_token })).status).toBe(200);
		expect(foregroundWithin(100)).toBe(true);
	});

	describe("bodies", () => {
		it("refuses JSON that does not parse with 400", async () => {
			const res = await http(sys.url, "POST", "/api/v1/auth/login", { raw: '{"email": "a@example.com", ', headers: { "content-type": "application/json" } });
			expectProblem(res, 400);
		});

		it("refuses a body over 1 MiB with 413", async () => {
			const raw = JSON.stringify({ email: uniqueEmail(), password: "correct horse battery", name: "x".repeat(MiB) });
			expect(Buffer.byteLength(raw)).toBeGreaterThan(MiB);
			const res = await http(sys.url, "POST", "/api/v1/auth/register", { raw, headers: { "content-type": "application/json" } });
			expectProblem(res, 413);
		});

		it("reads a body just under 1 MiB (and validates it)", async () => {
			const raw = JSON.stringify({ email: uniqueEmail(), password: "correct horse battery", name: "x".repeat(MiB - 200) });
			expect(Buffer.byteLength(raw)).toBeLessThan(MiB);
			const res = await http(sys.url, "POST", "/api/v1/auth/register", { raw, headers: { "content-type": "application/json" } });
			expectProblem(res, 422);
		});

		it("refuses a text/plain body with 415", async () => {
			const raw = JSON.stringify({ email: "a@example.com", password: "correct horse battery" });
			const res = await http(sys.url, "POST", "/api/v1/auth/login", { raw, headers: { "content-type": "text/plain" } });
			expectProblem(res, 415);
		});

		it("refuses a JSON array body with 422", async () => {
			const res = await http(sys.url, "POST", "/api/v1/auth/login", { body: [{ email: "a@example.com", password: "correct horse battery" }] });
			expectProblem(res, 422);
		});

		it("takes an application/*+json body", async () => {
			const email = uniqueEmail();
			const raw = JSON.stringify({ email, password: "correct horse battery", name: "Vendor Type" });
			const res = await http(sys.url, "POST", "/api/v1/auth/register", { raw, headers: { "content-type": "application/vnd.api+json" } });
			expect(res.status).toBe(201);
			expect(res.body.email).toBe(email);
		});
	});

	describe("routes and request ids", () => {
		it.each([
			["GET", "/nope"],
			["GET", "/api/v1/nope"],
			["POST", "/api/v2/auth/login"],
			["DELETE", "/api/v1/auth/login"]
		])("answers %s %s with a 404 problem", async (method, path) => {
			const res = await http(sys.url, method, path);
			expectProblem(res, 404);
			expect(res.body.instance).toBe(path);
		});

		it("keeps a valid client request id, in the header and the problem body", async () => {
			const id = `client-${crypto.randomBytes(6).toString("hex")}:1.a_b`;
			const res = await http(sys.url, "GET", "/api/v1/users/me", { headers: { "x-request-id": id } });
			expectProblem(res, 401);
			expect(res.headers.get("x-request-id")).toBe(id);
			expect(res.body.request_id).toBe(id);
		});

		it.each([["has spaces"], ["x".repeat(129)], ["<script>"]])("replaces an invalid client request id (%#)", async bad => {
			const res = await http(sys.url, "GET", "/health", { headers: { "x-request-id": bad } });
			expect(res.status).toBe(200);
			const id = res.headers.get("x-request-id");
			expect(id).toBeTruthy();
			expect(id).not.toBe(bad);
			expect(id).toMatch(/^[A-Za-z0-9._:-]{1,128}$/);
		});

		it("puts X-Request-ID on every response, success or error", async () => {
			const { token } = await registerAndLogin(sys.url);
			const responses = [
				await http(sys.url, "GET", "/health"),
				await http(sys.url, "GET", "/health/ready"),
				await http(sys.url, "GET", JWKS),
				await http(sys.url, "GET", "/api/v1/users/me", { token }),
				await http(sys.url, "PATCH", "/api/v1/users/me", { token, body: { name: "Renamed" } }),
				await http(sys.url, "POST", "/api/v1/auth/register", { body: { email: uniqueEmail(), password: "correct horse battery", name: "R" } }),
				await http(sys.url, "GET", "/api/v1/users/me"),
				await http(sys.url, "GET", "/api/v1/users/me", { token: "not.a.jwt" }),
				await http(sys.url, "GET", `/api/v1/users/${crypto.randomUUID()}`, { token }),
				await http(sys.url, "GET", "/missing"),
				await http(sys.url, "POST", "/api/v1/auth/login", { raw: "{", headers: { "content-type": "application/json" } }),
				await http(sys.url, "POST", "/api/v1/auth/login", { raw: "a=b", headers: { "content-type": "application/x-www-form-urlencoded" } }),
				await http(sys.url, "POST", "/api/v1/auth/login", { body: { email: "nobody@example.com" } })
			];
			const seen = new Set<string>();
			for (const res of responses) {
				const id = res.headers.get("x-request-id");
				expect(id).toBeTruthy();
				seen.add(id!);
				if (res.status >= 400) expectProblem(res, res.status);
			}
			expect(responses.map(r => r.status)).toEqual([200, 200, 200, 200, 200, 201, 401, 401, 403, 404, 400, 415, 422]);
			expect(seen.size).toBe(responses.length);
		});

		it("writes an authenticated read's headers with its status line, never through Node's setHeader", async () => {
			// The cheap path of services/api/gateway-response.ts: it holds only the headers it knows by their
			// spelling, so a header added to the gateway (or respelt) would quietly take Node's dearer path.
			const { token } = await registerAndLogin(sys.url);
			const setHeader = jest.spyOn(OutgoingMessage.prototype, "setHeader");
			try {
				const res = await http(sys.url, "GET", "/api/v1/users/me", { token });
				expect(res.status).toBe(200);
				for (const h of ["x-request-id", "x-content-type-options", "referrer-policy", "x-frame-options", "ratelimit-limit", "ratelimit-remaining", "ratelimit-reset", "content-type"]) {
					expect(res.headers.get(h)).toBeTruthy();
				}
				// The names the gateway's answers set through Node's setHeader: none.
				const throughNode = setHeader.mock.calls.filter((_, i) => setHeader.mock.contexts[i] instanceof GatewayResponse).map(([name]) => name);
				expect(throughNode).toEqual([]);
			} finally {
				setHeader.mockRestore();
			}
		});
	});

	describe("health", () => {
		it("GET /health is ok", async () => {
			const res = await http(sys.url, "GET", "/health");
			expect(res.status).toBe(200);
			expect(res.body).toEqual({ status: "ok" });
		});

		it("GET /health/ready reports every check", async () => {
			const res = await http(sys.url, "GET", "/health/ready");
			expect(res.status).toBe(200);
			expect(res.body).toEqual({ status: "ok", checks: { auth: "ok", users: "ok" } });
		});
	});

	describe("routing", () => {
		// services/api.service.ts's routeHandler: moleculer-web's, without its per-request promise and response
		// listeners, for an action alias on a route whose steps are the gateway's own.
		const moleculerWeb = (ApiGateway as unknown as { methods: { routeHandler(...args: unknown[]): unknown } }).methods;

		it("answers action aliases on the gateway's own steps itself, with path, query and body params, and hands the rest to moleculer-web", async () => {
			const { token, user } = await registerAndLogin(sys.url);
			const routeHandler = jest.spyOn(moleculerWeb, "routeHandler");
			try {
				const me = await http(sys.url, "GET", "/api/v1/users/me", { token });
				expect(me.status).toBe(200);
				expect((await http(sys.url, "GET", `/api/v1/users/${user.id}`, { token })).body).toMatchObject({ id: user.id });
				const page = await http(sys.url, "GET", "/api/v1/auth/sessions?limit=3&offset=0", { token });
				expect(page.body).toMatchObject({ total: 1, limit: 3, offset: 0 });
				const renamed = await http(sys.url, "PATCH", "/api/v1/users/me", { token, body: { name: "Renamed" } });
				expect(renamed.body).toMatchObject({ id: user.id, name: "Renamed" });
				expect((await http(sys.url, "GET", JWKS)).status).toBe(200);
				expect(routeHandler).not.toHaveBeenCalled();

				// An alias function, and the webhook route (its own steps, its params unmerged; no payments service here): moleculer-web's.
				expect((await http(sys.url, "GET", "/health")).status).toBe(200);
				expect(routeHandler).toHaveBeenCalledTimes(1);
				const hook = await http(sys.url, "POST", "/api/v1/webhooks/stripe", { raw: "{}", headers: { "content-type": "application/json" } });
				expectProblem(hook, 503);
				expect(routeHandler).toHaveBeenCalledTimes(2);
			} finally {
				routeHandler.mockRestore();
			}
		});

		it("answers a step's error as a problem on that path: a body that is not JSON, refused before the action", async () => {
			const { token } = await registerAndLogin(sys.url);
			const res = await http(sys.url, "PATCH", "/api/v1/users/me", { token, raw: "name=x", headers: { "content-type": "application/x-www-form-urlencoded" } });
			expectProblem(res, 415);
		});

		it("keeps moleculer-web's guard on the response: a second end in the same turn does not take the node down", async () => {
			const { token } = await registerAndLogin(sys.url);
			// A handler's bug: the answer ended twice. Node reports the write after the end as an "error" event on
			// the response (thrown, were nothing listening); moleculer-web's own path listens for it, and so does this one.
			const realEnd = GatewayResponse.prototype.end;
			const end = jest.spyOn(GatewayResponse.prototype, "end").mockImplementationOnce(function (this: GatewayResponse, ...args: unknown[]) {
				const out = (realEnd as (...a: unknown[]) => GatewayResponse).apply(this, args);
				(realEnd as (...a: unknown[]) => GatewayResponse).call(this, "late");
				return out;
			});
			const emit = jest.spyOn(GatewayResponse.prototype, "emit");
			try {
				const res = await http(sys.url, "GET", "/api/v1/users/me", { token });
				expect(res.status).toBe(200);
				expect(res.body).toMatchObject({ email: expect.any(String) });
				await new Promise(r => setTimeout(r, 20));
				expect(emit.mock.calls.filter(([event]) => event === "error").map(([, err]) => String(err))).toEqual([expect.stringMatching(/write after end/)]);
			} finally {
				end.mockRestore();
				emit.mockRestore();
			}
			expect((await http(sys.url, "GET", "/api/v1/users/me", { token })).status).toBe(200);
		});

		it("finishes an action whose client went away: the request settles, and the node keeps answering", async () => {
			const { token } = await registerAndLogin(sys.url);
			// moleculer-web's path settles a request on the response's close; this one, when the action answers.
			const api = sys.broker.getLocalService("api") as unknown as { aliasHandler(...args: unknown[]): Promise<unknown> };
			const aliasHandler = jest.spyOn(api, "aliasHandler");
			const users = sys.broker.getLocalService("users") as unknown as { cachedUser(id: string): Promise<unknown> };
			const cachedUser = users.cachedUser;
			// The action takes 300 ms; the client leaves after 100.
			const slow = jest.spyOn(users, "cachedUser").mockImplementation(async (id: string) => {
				await new Promise(r => setTimeout(r, 300));
				return cachedUser.call(users, id);
			});
			try {
				const gone = new AbortController();
				const call = fetch(sys.url + "/api/v1/users/me", { headers: { authorization: `Bearer ${token}` }, signal: gone.signal });
				await new Promise(r => setTimeout(r, 100));
				gone.abort();
				await expect(call).rejects.toThrow();
				expect(aliasHandler).toHaveBeenCalledTimes(1);
				// Its answer went nowhere: the request settles as answered, and nothing was thrown.
				await expect(aliasHandler.mock.results[0].value).resolves.toBe(true);
				expect(slow).toHaveBeenCalledTimes(1);
			} finally {
				slow.mockRestore();
				aliasHandler.mockRestore();
			}
			expect((await http(sys.url, "GET", "/api/v1/users/me", { token })).status).toBe(200);
		});
	});

	describe("error bodies", () => {
		it("never carry a stack, SQL or a password hash", async () => {
			const { token, email } = await registerAndLogin(sys.url);
			const responses = [
				// Duplicate registration, wrong password, unknown email.
				await http(sys.url, "POST", "/api/v1/auth/register", { body: { email, password: "correct horse battery", name: "Dup" } }),
				await http(sys.url, "POST", "/api/v1/auth/login", { body: { email, password: "wrong password!" } }),
				await http(sys.url, "POST", "/api/v1/auth/login", { body: { email: uniqueEmail(), password: "wrong password!" } }),
				// Inputs a database would choke on.
				await http(sys.url, "PATCH", "/api/v1/users/me", { token, body: { name: "a\u0000b" } }),
				await http(sys.url, "PATCH", "/api/v1/users/me", { token, body: { name: "x'; SELECT 1; --" } }),
				await http(sys.url, "GET", "/api/v1/users/' OR 1=1 --", { token }),
				await http(sys.url, "POST", "/api/v1/auth/refresh", { body: { refresh_token: "x".repeat(5000) } }),
				await http(sys.url, "POST", "/api/v1/auth/login", { body: { email: { $gt: "" }, password: ["x"] } })
			];
			for (const res of responses) {
				expect(res.headers.get("x-request-id")).toBeTruthy();
				if (res.status >= 400) expectProblem(res, res.status);
			}
			expect(responses.slice(0, 3).map(r => r.status)).toEqual([409, 401, 401]);
			for (const res of responses) expect(res.status).toBeLessThan(500);
			expect(responses[1].body).toEqual({ ...responses[2].body, request_id: responses[1].body.request_id });
		});
	});
});

describe("gateway with the users service down", () => {
	let sys: TestSystem;
	let token: string;
	beforeAll(async () => {
		sys = await startSystem();
		token = (await registerAndLogin(sys.url)).token;
		await sys.broker.destroyService(sys.broker.getLocalService("users")!);
	});
	afterAll(async () => {
		await sys?.stop();
	});

	it("is not ready, and says which check failed", async () => {
		const res = await http(sys.url, "GET", "/health/ready");
		expect(res.status).toBe(503);
		expect(res.body).toEqual({ status: "unavailable", checks: { auth: "ok", users: "down" } });
		expect(res.headers.get("x-request-id")).toBeTruthy();
	});

	it("still lives", async () => {
		const res = await http(sys.url, "GET", "/health");
		expect(res.status).toBe(200);
		expect(res.body).toEqual({ status: "ok" });
	});

	it("answers a users route with 503 and Retry-After", async () => {
		const res = await http(sys.url, "GET", "/api/v1/users/me", { token });
		expectProblem(res, 503);
		expect(Number(res.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
		expect(res.text).not.toMatch(/ServiceNotFound|users\.me/);
	});

	it("answers registration, which needs users, with 503", async () => {
		const res = await http(sys.url, "POST", "/api/v1/auth/register", { body: { email: uniqueEmail(), password: "correct horse battery", name: "Late" } });
		expectProblem(res, 503);
		expect(res.headers.get("retry-after")).toBeTruthy();
	});
});

describe("rate limiting", () => {
	const systems: TestSystem[] = [];
	const namespaces: string[] = [];
	async function start(env: Record<string, string>): Promise<TestSystem> {
		const s = await startSystem({ env });
		systems.push(s);
		return s;
	}
	afterAll(async () => {
		await Promise.all(systems.map(s => s.stop()));
		await Promise.all(namespaces.map(dropKeys));
	});

	async function statuses(base: string, n: number, headers: Record<string, string> = {}): Promise<number[]> {
		const out: number[] = [];
		for (let i = 0; i < n; i++) out.push((await http(base, "GET", JWKS, { headers })).status);
		return out;
	}

	it("answers the request over the limit with 429 and Retry-After, per node in memory", async () => {
		const s = await start({ RATE_LIMIT_MAX: "5" });
		const ok = [];
		for (let i = 0; i < 5; i++) ok.push(await http(s.url, "GET", JWKS));
		expect(ok.map(r => r.status)).toEqual([200, 200, 200, 200, 200]);
		expect(ok[0].headers.get("ratelimit-limit")).toBe("5");
		expect(ok.map(r => r.headers.get("ratelimit-remaining"))).toEqual(["4", "3", "2", "1", "0"]);

		const limited = await http(s.url, "GET", JWKS);
		expectProblem(limited, 429);
		const retryAfter = Number(limited.headers.get("retry-after"));
		expect(Number.isInteger(retryAfter)).toBe(true);
		expect(retryAfter).toBeGreaterThanOrEqual(1);
		expect(retryAfter).toBeLessThanOrEqual(60);

		// Every rate-limited route shares the client's budget; probes are never limited.
		expectProblem(await http(s.url, "POST", "/api/v1/auth/login", { body: { email: uniqueEmail(), password: "correct horse battery" } }), 429);
		expect((await http(s.url, "GET", "/health")).status).toBe(200);
		expect((await http(s.url, "GET", "/health/ready")).status).toBe(200);
	});

	it("shares one limit across gateway nodes through Redis", async () => {
		const ns = namespace();
		namespaces.push(ns);
		const env = { RATE_LIMIT_MAX: "5", REDIS_URL, NAMESPACE: ns };
		const a = await start(env);
		const b = await start(env);
		expect(await statuses(a.url, 3)).toEqual([200, 200, 200]);
		expect(await statuses(b.url, 3)).toEqual([200, 200, 429]);
		expect((await http(a.url, "GET", JWKS)).status).toBe(429);
	});

	it("keeps nodes of other namespaces apart in Redis", async () => {
		const [ns1, ns2] = [namespace(), namespace()];
		namespaces.push(ns1, ns2);
		const a = await start({ RATE_LIMIT_MAX: "3", REDIS_URL, NAMESPACE: ns1 });
		const b = await start({ RATE_LIMIT_MAX: "3", REDIS_URL, NAMESPACE: ns2 });
		expect(await statuses(a.url, 4)).toEqual([200, 200, 200, 429]);
		expect(await statuses(b.url, 3)).toEqual([200, 200, 200]);
	});

	it("ignores X-Forwarded-For from a proxy that is not trusted", async () => {
		const s = await start({ RATE_LIMIT_MAX: "2" });
		expect(await statuses(s.url, 2, { "x-forwarded-for": "203.0.113.1" })).toEqual([200, 200]);
		expect(await statuses(s.url, 1, { "x-forwarded-for": "203.0.113.2" })).toEqual([429]);
		expect(await statuses(s.url, 1)).toEqual([429]);
	});

	it("counts each X-Forwarded-For client apart behind a trusted proxy", async () => {
		const s = await start({ RATE_LIMIT_MAX: "2", TRUSTED_PROXIES: "127.0.0.1" });
		expect(await statuses(s.url, 3, { "x-forwarded-for": "203.0.113.1" })).toEqual([200, 200, 429]);
		expect(await statuses(s.url, 3, { "x-forwarded-for": "203.0.113.2" })).toEqual([200, 200, 429]);
		// A client cannot escape its bucket by prepending a made-up address: the rightmost untrusted hop counts.
		expect(await statuses(s.url, 1, { "x-forwarded-for": "198.51.100.7, 203.0.113.1" })).toEqual([429]);
		expect(await statuses(s.url, 2)).toEqual([200, 200]);
	});

	it("keeps serving, limited in memory, when Redis cannot be reached", async () => {
		const s = await start({ RATE_LIMIT_MAX: "3", REDIS_URL: "redis://127.0.0.1:1", NAMESPACE: namespace() });
		expect(await statuses(s.url, 3)).toEqual([200, 200, 200]);
		const limited = await http(s.url, "GET", JWKS);
		expectProblem(limited, 429);
		expect(limited.headers.get("retry-after")).toBeTruthy();
		const { token } = await registerAndLogin((await start({ REDIS_URL: "redis://127.0.0.1:1", NAMESPACE: namespace() })).url);
		expect(token).toBeTruthy();
	});
});
