import crypto from "node:crypto";
import Ajv2020 from "ajv/dist/2020";
import addFormats from "ajv-formats";
import type { HeaderObject, OpenApiDocument, OperationObject, Reference, ResponseObject, SchemaObject } from "../../services/api/openapi";
import { http, registerAndLogin, startSystem, uniqueEmail, type HttpResult, type TestSystem } from "../helpers/system";
import Stripe from "stripe";
import { query } from "../helpers/pg";
import { fingerprint } from "../../services/payments/idempotency";

// The contract test: the document the gateway serves describes every route it has, and every
// real answer (success and error) matches the schema the document declares for it.

const METHODS = ["get", "put", "post", "delete", "patch", "head", "options", "trace"] as const;
const BODY_LIMIT = 16 * 1024;
const PASSWORD = "correct horse battery";
const WEBHOOK_SECRET = "whsec_openapi_test";

/** A JSON pointer (as a URI fragment) to `segments` inside the document. */
const pointer = (...segments: string[]) => segments.map(s => "/" + encodeURIComponent(s.replace(/~/g, "~0").replace(/\//g, "~1"))).join("");

const isRef = (x: unknown): x is Reference => !!x && typeof x === "object" && typeof (x as Reference).$ref === "string";

interface CallOptions {
	params?: Record<string, string>;
	query?: string;
	body?: unknown;
	raw?: string | Buffer;
	token?: string;
	headers?: Record<string, string>;
	/** The body sent must break the request schema the document declares. */
	invalidBody?: boolean;
}

/** Validates real answers against the document; records which statuses each operation gave. */
class Contract {
	readonly ajv: Ajv2020;
	readonly seen = new Map<string, Set<number>>();

	constructor(readonly doc: OpenApiDocument) {
		this.ajv = new Ajv2020({ strict: true, allErrors: true, allowUnionTypes: true });
		addFormats(this.ajv);
		// The document's top-level members are not JSON Schema keywords: declare them so strict mode accepts the root.
		this.ajv.addVocabulary(["openapi", "info", "servers", "tags", "security", "paths", "components", "jsonSchemaDialect", "webhooks", "externalDocs"]);
		this.ajv.addSchema(doc as object, "openapi");
	}

	/** Follows a `#/...` reference inside the document; returns the target and its pointer. */
	resolve<T>(value: T | Reference, at: string): [T, string] {
		let v: unknown = value;
		let p = at;
		for (let i = 0; isRef(v); i++) {
			if (i > 10 || !v.$ref.startsWith("#/")) throw new Error(`unresolvable $ref ${v.$ref} at ${p}`);
			p = pointer(...v.$ref.slice(2).split("/").map(s => s.replace(/~1/g, "/").replace(/~0/g, "~")));
			v = v.$ref
				.slice(2)
				.split("/")
				.reduce<any>((o, k) => (o == null ? undefined : o[k.replace(/~1/g, "/").replace(/~0/g, "~")]), this.doc);
			if (v === undefined) throw new Error(`dangling $ref at ${at}`);
		}
		return [v as T, p];
	}

	/** Validates `data` against the schema at `schemaPointer`; returns the errors (empty when valid). */
	errors(schemaPointer: string, data: unknown): string[] {
		const validate = this.ajv.getSchema("openapi#" + schemaPointer);
		if (!validate) throw new Error(`no schema at ${schemaPointer}`);
		if (validate(data)) return [];
		return (validate.errors ?? []).map(e => `${e.instancePath || "/"} ${e.message} ${JSON.stringify(e.params)}`);
	}

	operation(method: string, path: string): OperationObject {
		const op = this.doc.paths[path]?.[method as "get"];
		if (!op) throw new Error(`the document has no operation ${method.toUpperCase()} ${path}`);
		return op;
	}

	/** Checks one real answer against the response the document declares for its status. */
	check(method: string, path: string, res: HttpResult): void {
		const op = this.operation(method, path);
		const where = `${method.toUpperCase()} ${path} -> ${res.status}`;
		const key = `${method} ${path}`;
		if (!this.seen.has(key)) this.seen.set(key, new Set());
		this.seen.get(key)!.add(res.status);
		const declared = op.responses[String(res.status)];
		if (!declared) throw new Error(`${where}: status not documented (documented: ${Object.keys(op.responses).join(", ")}); body: ${res.text}`);
		const [response, at] = this.resolve<ResponseObject>(declared, pointer("paths", path, method, "responses", String(res.status)));
		this.checkHeaders(where, response, at, res);
		this.checkContent(where, response, at, res);
	}

	checkHeaders(where: string, response: ResponseObject, at: string, res: HttpResult): void {
		for (const [name, h] of Object.entries(response.headers ?? {})) {
			const [spec, hp] = this.resolve<HeaderObject>(h, at + pointer("headers", name));
			const value = res.headers.get(name);
			if (value === null) {
				if (spec.required) throw new Error(`${where}: required header ${name} missing`);
				continue;
			}
			const typed = spec.schema.type === "integer" && /^-?\d+$/.test(value) ? Number(value) : value;
			const errs = this.errors(hp + "/schema", typed);
			if (errs.length) throw new Error(`${where}: header ${name}=${value} breaks its schema: ${errs.join("; ")}`);
		}
	}

	checkContent(where: string, response: ResponseObject, at: string, res: HttpResult): void {
		if (!response.content) {
			if (res.text !== "") throw new Error(`${where}: the document declares no body, got ${res.text}`);
			return;
		}
		const type = (res.headers.get("content-type") ?? "").split(";")[0].trim().toLowerCase();
		const media = response.content[type];
		if (!media) throw new Error(`${where}: content type ${type} not documented (documented: ${Object.keys(response.content).join(", ")})`);
		const json = type === "application/json" || type.endsWith("+json");
		const data = json ? JSON.parse(res.text) : res.text;
		const errs = this.errors(at + pointer("content", type, "schema"), data);
		if (errs.length) throw new Error(`${where}: body breaks the documented schema: ${errs.join("; ")}; body: ${res.text.slice(0, 500)}`);
	}

	/** The pointer of an operation's JSON request body schema, if it has one. */
	requestSchema(method: string, path: string): string | undefined {
		const op = this.operation(method, path);
		if (!op.requestBody?.content["application/json"]) return undefined;
		return pointer("paths", path, method, "requestBody", "content", "application/json", "schema");
	}

	/** Sends a real request for the documented operation and checks the answer against the document. */
	async call(base: string, method: string, path: string, opts: CallOptions = {}): Promise<HttpResult> {
		const url = path.replace(/\{(\w+)\}/g, (_m, name: string) => encodeURIComponent(opts.params?.[name] ?? "")) + (opts.query ? `?${opts.query}` : "");
		const res = await http(base, method.toUpperCase(), url, { body: opts.body, raw: opts.raw, token: opts.token, headers: opts.headers });
		this.check(method, path, res);
		const schemaAt = this.requestSchema(method, path);
		if (schemaAt && opts.body !== undefined) {
			const errs = this.errors(schemaAt, opts.body);
			if (opts.invalidBody && !errs.length) throw new Error(`${method.toUpperCase()} ${path}: the request schema accepts ${JSON.stringify(opts.body)}`);
			if (res.status < 300 && errs.length) throw new Error(`${method.toUpperCase()} ${path}: accepted a body the schema refuses: ${errs.join("; ")}`);
		}
		return res;
	}
}

/** Every `$ref` string anywhere in a value. */
function refsIn(value: unknown, out: string[] = []): string[] {
	if (Array.isArray(value)) value.forEach(v => refsIn(v, out));
	else if (value && typeof value === "object") {
		for (const [k, v] of Object.entries(value)) {
			if (k === "$ref" && typeof v === "string") out.push(v);
			else refsIn(v, out);
		}
	}
	return out;
}

describe("OpenAPI document and its contract", () => {
	let sys: TestSystem;
	let doc: OpenApiDocument;
	let c: Contract;

	beforeAll(async () => {
		sys = await startSystem({
			services: ["api", "auth", "users", "notifications", "payments", "jobs", "admin"],
			env: {
				LOGIN_MAX_FAILURES: "2",
				BODY_LIMIT_BYTES: String(BODY_LIMIT),
				STRIPE_WEBHOOK_SECRET: WEBHOOK_SECRET,
				// A login provider nobody serves (the 302 and 200 of OAuth are covered by oauth.test.ts against a real provider).
				OAUTH_PROVIDERS: "down",
				OAUTH_DOWN_ISSUER: "http://127.0.0.1:9",
				OAUTH_DOWN_CLIENT_ID: "client",
				OAUTH_DOWN_CLIENT_SECRET: "secret",
				OAUTH_DOWN_REDIRECT_URI: "http://127.0.0.1:8000/api/v1/auth/oauth/down/callback"
			}
		});
		const res = await http(sys.url, "GET", "/api/openapi.json");
		expect(res.status).toBe(200);
		doc = res.body;
		c = new Contract(doc);
		c.check("get", "/api/openapi.json", res);
	});
	afterAll(async () => {
		await sys?.stop();
	});

	it("is OpenAPI 3.1 and lists exactly the gateway's routes", () => {
		expect(doc.openapi).toMatch(/^3\.1\.\d+$/);
		expect(typeof doc.info.title).toBe("string");
		expect(typeof doc.info.version).toBe("string");

		const aliases = (sys.broker.getLocalService("api") as any).aliases as { method: string; fullPath?: string; path: string }[];
		const routes = aliases.map(a => `${a.method.toUpperCase()} ${(a.fullPath ?? a.path).replace(/:([A-Za-z_][A-Za-z0-9_]*)/g, "{$1}")}`).sort();
		const documented = Object.entries(doc.paths)
			.flatMap(([path, item]) => METHODS.filter(m => item[m as "get"]).map(m => `${m.toUpperCase()} ${path}`))
			.sort();
		expect(documented).toEqual(routes);
	});

	it("is self-consistent: refs resolve, schemas compile strictly, errors and headers are complete", () => {
		for (const ref of refsIn(doc)) c.resolve({ $ref: ref }, "");
		for (const name of ["User", "TokenPair", "Problem", "KycSubmission", "KycStatus", "Jwks", "Health", "Readiness"]) {
			expect(doc.components.schemas[name]).toBeDefined();
		}
		for (const name of Object.keys(doc.components.schemas)) expect(c.ajv.getSchema("openapi#" + pointer("components", "schemas", name))).toBeDefined();
		expect(doc.components.securitySchemes.bearerAuth).toMatchObject({ type: "http", scheme: "bearer", bearerFormat: "JWT" });

		const problem = c.errors(pointer("components", "schemas", "Problem"), { type: "about:blank", title: "x", status: 422, detail: "d", instance: "/", request_id: "r", errors: [{ field: "f", message: "m" }] });
		expect(problem).toEqual([]);

		const ids = new Set<string>();
		for (const [path, item] of Object.entries(doc.paths)) {
			for (const method of METHODS) {
				const op = item[method as "get"];
				if (!op) continue;
				const where = `${method.toUpperCase()} ${path}`;
				expect(ids.has(op.operationId)).toBe(false);
				ids.add(op.operationId);

				// Path parameters are declared, and only those.
				const params = (op.parameters ?? []).map((p, i) => c.resolve(p, pointer("paths", path, method, "parameters", String(i))));
				const inPath = [...path.matchAll(/\{(\w+)\}/g)].map(m => m[1]).sort();
				expect([where, params.filter(([p]) => p.in === "path").map(([p]) => p.name).sort()]).toEqual([where, inPath]);
				for (const [, at] of params) expect(c.ajv.getSchema("openapi#" + at + "/schema")).toBeDefined();

				// Security names a declared scheme; public operations say so with `security: []`.
				const security = op.security ?? doc.security;
				for (const req of security) for (const scheme of Object.keys(req)) expect(doc.components.securitySchemes[scheme]).toBeDefined();
				const secured = security.length > 0;

				const statuses = Object.keys(op.responses);
				// A success, or (the OAuth authorize) a redirect.
				expect([where, statuses.some(s => /^[23]\d\d$/.test(s))]).toEqual([where, true]);
				const gateway = path.startsWith("/api/v1/") || path.startsWith("/.well-known/");
				const required = [...(gateway ? ["400", "413", "415", "422", "429", "503"] : []), ...(secured ? ["401"] : [])];
				for (const s of required) expect([where, s, statuses.includes(s)]).toEqual([where, s, true]);

				for (const s of statuses) {
					const [response, at] = c.resolve<ResponseObject>(op.responses[s], pointer("paths", path, method, "responses", s));
					const names = Object.keys(response.headers ?? {});
					expect([where, s, names.includes("X-Request-ID")]).toEqual([where, s, true]);
					if (s === "429" || s === "503") expect([where, s, names.includes("Retry-After")]).toEqual([where, s, true]);
					if (Number(s) >= 400 && !(path === "/health/ready" && s === "503")) {
						expect([where, s, Object.keys(response.content ?? {})]).toEqual([where, s, ["application/problem+json"]]);
					}
					for (const type of Object.keys(response.content ?? {})) expect(c.ajv.getSchema("openapi#" + at + pointer("content", type, "schema"))).toBeDefined();
				}

				const bodyAt = c.requestSchema(method, path);
				if (bodyAt) {
					const [schema] = c.resolve<SchemaObject>(op.requestBody!.content["application/json"].schema, bodyAt);
					expect([where, schema.type, schema.additionalProperties]).toEqual([where, "object", false]);
				}
			}
		}
	});

	it("register: 201, 409, 422, 400, 415, 413", async () => {
		const email = uniqueEmail("oa");
		const created = await c.call(sys.url, "post", "/api/v1/auth/register", { body: { email, password: PASSWORD, name: "Ada Lovelace", phone: "+14155550123" } });
		expect(created.status).toBe(201);
		expect(created.headers.get("location")).toBe(`/api/v1/users/${created.body.id}`);

		expect((await c.call(sys.url, "post", "/api/v1/auth/register", { body: { email: email.toUpperCase(), password: PASSWORD, name: "Again" } })).status).toBe(409);
		for (const body of [
			{ email: uniqueEmail("oa"), password: PASSWORD, name: "Root", roles: ["admin"] },
			{ email: uniqueEmail("oa"), password: PASSWORD, name: "Kyc", kyc_status: "verified" },
			{ email: "not-an-email", password: PASSWORD, name: "X" },
			{ email: uniqueEmail("oa"), password: PASSWORD, name: "" },
			{ email: uniqueEmail("oa"), password: "x".repeat(73), name: "Long" },
			{ email: uniqueEmail("oa"), password: PASSWORD, name: "P", phone: "0155" },
			{ email: uniqueEmail("oa"), name: "No password" }
		]) {
			const res = await c.call(sys.url, "post", "/api/v1/auth/register", { body, invalidBody: true });
			expect([body, res.status]).toEqual([body, 422]);
		}
		// 7 bytes: refused by the action (the schema counts characters, the action bytes).
		expect((await c.call(sys.url, "post", "/api/v1/auth/register", { body: { email: uniqueEmail("oa"), password: "1234567", name: "Short" } })).status).toBe(422);
		// 8 bytes in 2 characters: allowed by both.
		expect((await c.call(sys.url, "post", "/api/v1/auth/register", { body: { email: uniqueEmail("oa"), password: "😀😀", name: "Emoji" } })).status).toBe(201);

		const bad = await c.call(sys.url, "post", "/api/v1/auth/register", { raw: '{"email":', headers: { "content-type": "application/json" } });
		expect(bad.status).toBe(400);
		const text = await c.call(sys.url, "post", "/api/v1/auth/register", { raw: "email=a@b.co", headers: { "content-type": "application/x-www-form-urlencoded" } });
		expect(text.status).toBe(415);
		const big = await c.call(sys.url, "post", "/api/v1/auth/register", {
			raw: JSON.stringify({ email: uniqueEmail("oa"), password: PASSWORD, name: "x".repeat(BODY_LIMIT) }),
			headers: { "content-type": "application/json" }
		});
		expect(big.status).toBe(413);
	});

	it("login: 200, 401, 403, 422, 429", async () => {
		const { email, user } = await registerAndLogin(sys.url);
		expect((await c.call(sys.url, "post", "/api/v1/auth/login", { body: { email, password: PASSWORD } })).status).toBe(200);
		expect((await c.call(sys.url, "post", "/api/v1/auth/login", { body: { email: uniqueEmail("nobody"), password: PASSWORD } })).status).toBe(401);
		expect((await c.call(sys.url, "post", "/api/v1/auth/login", { body: { email, password: PASSWORD, remember: true }, invalidBody: true })).status).toBe(422);
		expect((await c.call(sys.url, "post", "/api/v1/auth/login", { body: { email }, invalidBody: true })).status).toBe(422);
		expect((await c.call(sys.url, "post", "/api/v1/auth/login", { body: [email, PASSWORD], invalidBody: true })).status).toBe(422);

		// LOGIN_MAX_FAILURES is 2 here: the third attempt is locked out, even with the right password.
		expect((await c.call(sys.url, "post", "/api/v1/auth/login", { body: { email, password: "wrong password" } })).status).toBe(401);
		expect((await c.call(sys.url, "post", "/api/v1/auth/login", { body: { email, password: "wrong password" } })).status).toBe(401);
		const locked = await c.call(sys.url, "post", "/api/v1/auth/login", { body: { email, password: PASSWORD } });
		expect(locked.status).toBe(429);

		const other = await registerAndLogin(sys.url);
		await sys.broker.call("users.update", { id: other.user.id, status: "suspended" });
		expect((await c.call(sys.url, "post", "/api/v1/auth/login", { body: { email: other.email, password: PASSWORD } })).status).toBe(403);
		expect(user.id).toBeTruthy();
	});

	it("refresh and logout: 200, 204, 401, 422", async () => {
		const { tokens } = await registerAndLogin(sys.url);
		const fresh = await c.call(sys.url, "post", "/api/v1/auth/refresh", { body: { refresh_token: tokens.refresh_token } });
		expect(fresh.status).toBe(200);
		expect((await c.call(sys.url, "post", "/api/v1/auth/refresh", { body: { refresh_token: "not-a-token" } })).status).toBe(401);
		expect((await c.call(sys.url, "post", "/api/v1/auth/refresh", { body: {}, invalidBody: true })).status).toBe(422);
		expect((await c.call(sys.url, "post", "/api/v1/auth/refresh", { body: { refresh_token: "" }, invalidBody: true })).status).toBe(422);

		expect((await c.call(sys.url, "post", "/api/v1/auth/logout", { body: {} })).status).toBe(401);
		const token = fresh.body.access_token as string;
		expect((await c.call(sys.url, "post", "/api/v1/auth/logout", { token, body: { refresh_token: "" }, invalidBody: true })).status).toBe(422);
		expect((await c.call(sys.url, "post", "/api/v1/auth/logout", { token, body: { refresh_token: fresh.body.refresh_token } })).status).toBe(204);
		// The session's access token fails at once.
		expect((await c.call(sys.url, "get", "/api/v1/users/me", { token })).status).toBe(401);

		const again = await registerAndLogin(sys.url);
		expect((await c.call(sys.url, "post", "/api/v1/auth/logout", { token: again.token })).status).toBe(204);
	});

	it("password reset, email verification and sessions: 202, 204, 200, 400, 401, 404, 422", async () => {
		const { email, user, token } = await registerAndLogin(sys.url);
		expect((await c.call(sys.url, "post", "/api/v1/auth/password/forgot", { body: { email } })).status).toBe(202);
		expect((await c.call(sys.url, "post", "/api/v1/auth/password/forgot", { body: {}, invalidBody: true })).status).toBe(422);

		// The tokens are what the emails carry; here they are made directly (auth stores only their hashes).
		const made = async (purpose: string) => {
			const t = crypto.randomBytes(32).toString("base64url");
			const hash = crypto.createHash("sha256").update(t).digest("hex");
			await query(sys.env.AUTH_DATABASE_URL, "INSERT INTO action_tokens (token_hash, user_id, purpose, expires_at, created_at) VALUES ($1, $2, $3, now() + interval '10 minutes', now())", [hash, user.id, purpose]);
			return t;
		};
		const verify = await made("email_verification");
		expect((await c.call(sys.url, "post", "/api/v1/auth/email/verify", { body: { token: verify } })).status).toBe(204);
		expect((await c.call(sys.url, "post", "/api/v1/auth/email/verify", { body: { token: verify } })).status).toBe(400);
		expect((await c.call(sys.url, "post", "/api/v1/auth/email/verify", { body: {}, invalidBody: true })).status).toBe(422);

		const sessions = await c.call(sys.url, "get", "/api/v1/auth/sessions", { token, query: "limit=5" });
		expect(sessions.status).toBe(200);
		expect((await c.call(sys.url, "get", "/api/v1/auth/sessions")).status).toBe(401);
		expect((await c.call(sys.url, "get", "/api/v1/auth/sessions", { token, query: "limit=0" })).status).toBe(422);
		expect((await c.call(sys.url, "delete", "/api/v1/auth/sessions/{id}", { token, params: { id: crypto.randomUUID() } })).status).toBe(404);
		expect((await c.call(sys.url, "delete", "/api/v1/auth/sessions/{id}", { params: { id: crypto.randomUUID() } })).status).toBe(401);

		const reset = await made("password_reset");
		expect((await c.call(sys.url, "post", "/api/v1/auth/password/reset", { body: { token: reset, password: "x" }, invalidBody: false })).status).toBe(422);
		expect((await c.call(sys.url, "post", "/api/v1/auth/password/reset", { body: { token: reset, password: "a new passphrase" } })).status).toBe(204);
		expect((await c.call(sys.url, "post", "/api/v1/auth/password/reset", { body: { token: reset, password: "a new passphrase" } })).status).toBe(400);

		const again = await registerAndLogin(sys.url);
		const own = await c.call(sys.url, "get", "/api/v1/auth/sessions", { token: again.token });
		expect((await c.call(sys.url, "delete", "/api/v1/auth/sessions/{id}", { token: again.token, params: { id: own.body.items[0].id } })).status).toBe(204);
	});

	it("oauth: 404 unknown provider, 422 extra parameters, 503 provider down, 400 bad state", async () => {
		const authorize = "/api/v1/auth/oauth/{provider}/authorize";
		const callback = "/api/v1/auth/oauth/{provider}/callback";
		expect((await c.call(sys.url, "get", authorize, { params: { provider: "nope" } })).status).toBe(404);
		expect((await c.call(sys.url, "get", authorize, { params: { provider: "down" }, query: "redirect_uri=https%3A%2F%2Fevil.example" })).status).toBe(422);
		expect((await c.call(sys.url, "get", authorize, { params: { provider: "down" } })).status).toBe(503);
		expect((await c.call(sys.url, "get", callback, { params: { provider: "nope" }, query: "code=c&state=s" })).status).toBe(404);
		expect((await c.call(sys.url, "get", callback, { params: { provider: "down" }, query: "code=c&state=s&extra=1" })).status).toBe(422);
		expect((await c.call(sys.url, "get", callback, { params: { provider: "down" }, query: "code=c&state=s" })).status).toBe(400);
	});

	it("users/me: 200, 401, 422; PATCH 200, 422", async () => {
		const { token, user } = await registerAndLogin(sys.url);
		const me = await c.call(sys.url, "get", "/api/v1/users/me", { token, headers: { "x-request-id": "oa-test:me.1" } });
		expect(me.status).toBe(200);
		expect(me.body).toEqual(user);
		expect(me.headers.get("x-request-id")).toBe("oa-test:me.1");
		expect((await c.call(sys.url, "get", "/api/v1/users/me")).status).toBe(401);
		expect((await c.call(sys.url, "get", "/api/v1/users/me", { headers: { authorization: "Basic dXNlcjpwYXNz" } })).status).toBe(401);
		expect((await c.call(sys.url, "get", "/api/v1/users/me", { token: "aaa.bbb.ccc" })).status).toBe(401);
		const extra = await c.call(sys.url, "get", "/api/v1/users/me", { token, query: "debug=1" });
		expect(extra.status).toBe(422);
		expect(extra.body.errors).toEqual([expect.objectContaining({ field: "debug" })]);

		const patched = await c.call(sys.url, "patch", "/api/v1/users/me", { token, body: { name: "Grace Hopper", phone: "+442071838750" } });
		expect(patched.status).toBe(200);
		expect(patched.body).toMatchObject({ name: "Grace Hopper", phone: "+442071838750" });
		expect((await c.call(sys.url, "patch", "/api/v1/users/me", { token, body: { phone: null } })).body.phone).toBeNull();
		for (const body of [{ email: "x@example.com" }, { roles: ["admin"] }, { status: "active" }, { phone: "12345" }, { name: "" }, { name: "x".repeat(101) }]) {
			const res = await c.call(sys.url, "patch", "/api/v1/users/me", { token, body, invalidBody: true });
			expect([body, res.status]).toEqual([body, 422]);
		}
		expect((await c.call(sys.url, "patch", "/api/v1/users/me", { body: { name: "Nobody" } })).status).toBe(401);
	});

	it("users/{id}: 200 self, 403 another user, 422 not a UUID, 200 and 404 for support", async () => {
		const a = await registerAndLogin(sys.url);
		const b = await registerAndLogin(sys.url);
		expect((await c.call(sys.url, "get", "/api/v1/users/{id}", { token: a.token, params: { id: a.user.id } })).status).toBe(200);
		expect((await c.call(sys.url, "get", "/api/v1/users/{id}", { token: a.token, params: { id: b.user.id } })).status).toBe(403);
		expect((await c.call(sys.url, "get", "/api/v1/users/{id}", { token: a.token, params: { id: "not-a-uuid" } })).status).toBe(422);
		expect((await c.call(sys.url, "get", "/api/v1/users/{id}", { params: { id: a.user.id } })).status).toBe(401);

		await sys.broker.call("users.update", { id: b.user.id, roles: ["user", "support"] });
		const support = await http(sys.url, "POST", "/api/v1/auth/login", { body: { email: b.email, password: PASSWORD } });
		const token = support.body.access_token as string;
		expect((await c.call(sys.url, "get", "/api/v1/users/{id}", { token, params: { id: a.user.id } })).body.id).toBe(a.user.id);
		expect((await c.call(sys.url, "get", "/api/v1/users/{id}", { token, params: { id: crypto.randomUUID() } })).status).toBe(404);
	});

	it("users/me/kyc: GET 200, POST 202, 409, 422, 401", async () => {
		const { token } = await registerAndLogin(sys.url);
		const before = await c.call(sys.url, "get", "/api/v1/users/me/kyc", { token });
		expect(before.body).toEqual({ kyc_status: "none", submitted_at: null, decided_at: null, reason: null });

		const valid = { full_name: "Ada Lovelace", date_of_birth: "1990-12-10", country: "gb", document_type: "passport", document_number: "AB 123-456" };
		for (const body of [
			{ ...valid, document_type: "library_card" },
			{ ...valid, country: "GBR" },
			{ ...valid, date_of_birth: "10/12/1990" },
			{ ...valid, document_number: "A1" },
			{ ...valid, full_name: "" },
			{ ...valid, kyc_status: "verified" },
			{ full_name: "Ada Lovelace" }
		]) {
			const res = await c.call(sys.url, "post", "/api/v1/users/me/kyc", { token, body, invalidBody: true });
			expect([body, res.status]).toEqual([body, 422]);
		}
		// A minor: the schema cannot say it, the action refuses it.
		const minor = await c.call(sys.url, "post", "/api/v1/users/me/kyc", { token, body: { ...valid, date_of_birth: `${new Date().getUTCFullYear() - 10}-01-01` } });
		expect(minor.status).toBe(422);

		expect((await c.call(sys.url, "post", "/api/v1/users/me/kyc", { token, body: valid })).status).toBe(202);
		expect((await c.call(sys.url, "post", "/api/v1/users/me/kyc", { token, body: valid })).status).toBe(409);
		const after = await c.call(sys.url, "get", "/api/v1/users/me/kyc", { token });
		expect(after.body).toMatchObject({ kyc_status: "pending", decided_at: null, reason: null });
		expect(typeof after.body.submitted_at).toBe("string");

		expect((await c.call(sys.url, "get", "/api/v1/users/me/kyc")).status).toBe(401);
		expect((await c.call(sys.url, "post", "/api/v1/users/me/kyc", { body: valid })).status).toBe(401);
	});

	it("notifications: 200, 401, 422", async () => {
		const { token } = await registerAndLogin(sys.url);
		// The welcome and verification emails are recorded shortly after the register answers.
		for (let i = 0; i < 200 && (await http(sys.url, "GET", "/api/v1/notifications", { token })).body?.total !== 2; i++) await new Promise(r => setTimeout(r, 25));
		const list = await c.call(sys.url, "get", "/api/v1/notifications", { token });
		expect(list.status).toBe(200);
		expect(list.body).toMatchObject({ total: 2, limit: 20, offset: 0 });
		expect(list.body.items.map((n: { template: string }) => n.template).sort()).toEqual(["email_verification", "welcome"]);
		const page = await c.call(sys.url, "get", "/api/v1/notifications", { token, query: "limit=1&offset=2" });
		expect(page.body).toMatchObject({ items: [], total: 2, limit: 1, offset: 2 });

		expect((await c.call(sys.url, "get", "/api/v1/notifications")).status).toBe(401);
		for (const query of ["limit=0", "limit=101", "offset=-1", "limit=ten", "user_id=" + crypto.randomUUID()]) {
			const res = await c.call(sys.url, "get", "/api/v1/notifications", { token, query });
			expect([query, res.status]).toEqual([query, 422]);
		}
	});

	it("admin jobs and dead letters: 200, 202, 401, 403, 404, 409, 422", async () => {
		const staff = async (role: string) => {
			const u = await registerAndLogin(sys.url);
			await sys.broker.call("users.update", { id: u.user.id, roles: ["user", role] });
			return (await http(sys.url, "POST", "/api/v1/auth/login", { body: { email: u.email, password: u.password } })).body.access_token as string;
		};
		const user = (await registerAndLogin(sys.url)).token;
		const support = await staff("support");
		const admin = await staff("admin");

		expect((await c.call(sys.url, "get", "/api/v1/admin/jobs", { token: support })).status).toBe(200);
		expect((await c.call(sys.url, "get", "/api/v1/admin/jobs")).status).toBe(401);
		expect((await c.call(sys.url, "get", "/api/v1/admin/jobs", { token: user })).status).toBe(403);
		expect((await c.call(sys.url, "get", "/api/v1/admin/jobs", { token: support, query: "x=1" })).status).toBe(422);

		const run = "/api/v1/admin/jobs/{name}/run";
		expect((await c.call(sys.url, "post", run, { token: admin, params: { name: "cleanup" } })).status).toBe(202);
		expect((await c.call(sys.url, "post", run, { params: { name: "cleanup" } })).status).toBe(401);
		expect((await c.call(sys.url, "post", run, { token: support, params: { name: "cleanup" } })).status).toBe(403);
		expect((await c.call(sys.url, "post", run, { token: admin, params: { name: "no-such-job" } })).status).toBe(404);
		expect((await c.call(sys.url, "post", run, { token: admin, params: { name: "cleanup" }, body: { now: true } })).status).toBe(422);

		const letters = "/api/v1/admin/dead-letters";
		const [letter] = await query<{ id: string }>(sys.env.NOTIFICATIONS_DATABASE_URL,
			"INSERT INTO dead_letters (id, queue, message_id, payload, error, request_id, failed_at) VALUES ($1, 'test.queue', NULL, '{\"a\":1}', 'boom', 'req-1', now()) RETURNING id", [crypto.randomUUID()]);
		const list = await c.call(sys.url, "get", letters, { token: support });
		expect(list.status).toBe(200);
		expect(list.body.items.find((i: { id: string }) => i.id === letter.id)).toMatchObject({ queue: "test.queue", error: "boom", request_id: "req-1", payload: { a: 1 } });
		expect((await c.call(sys.url, "get", letters)).status).toBe(401);
		expect((await c.call(sys.url, "get", letters, { token: user })).status).toBe(403);
		expect((await c.call(sys.url, "get", letters, { token: support, query: "limit=0" })).status).toBe(422);

		const redrive = "/api/v1/admin/dead-letters/{id}/redrive";
		expect((await c.call(sys.url, "post", redrive, { token: admin, params: { id: letter.id } })).status).toBe(202);
		expect((await c.call(sys.url, "post", redrive, { token: admin, params: { id: letter.id } })).status).toBe(409);
		expect((await c.call(sys.url, "post", redrive, { params: { id: letter.id } })).status).toBe(401);
		expect((await c.call(sys.url, "post", redrive, { token: support, params: { id: letter.id } })).status).toBe(403);
		expect((await c.call(sys.url, "post", redrive, { token: admin, params: { id: crypto.randomUUID() } })).status).toBe(404);
		expect((await c.call(sys.url, "post", redrive, { token: admin, params: { id: "nope" } })).status).toBe(422);
	});

	it("admin service: users, KYC, payments, audit, system and stats", async () => {
		const staff = async (role: string) => {
			const u = await registerAndLogin(sys.url);
			await sys.broker.call("users.update", { id: u.user.id, roles: ["user", role] });
			const token = (await http(sys.url, "POST", "/api/v1/auth/login", { body: { email: u.email, password: u.password } })).body.access_token as string;
			return { id: u.user.id as string, token };
		};
		const member = await registerAndLogin(sys.url);
		// A plain user whose token outlives what the test does to `member`.
		const user = (await registerAndLogin(sys.url)).token;
		const support = (await staff("support")).token;
		const adminAccount = await staff("admin");
		const admin = adminAccount.token;
		const missing = crypto.randomUUID();

		expect((await c.call(sys.url, "get", "/api/v1/admin/me", { token: support })).status).toBe(200);
		expect((await c.call(sys.url, "get", "/api/v1/admin/me")).status).toBe(401);
		expect((await c.call(sys.url, "get", "/api/v1/admin/me", { token: user })).status).toBe(403);

		const users = "/api/v1/admin/users";
		expect((await c.call(sys.url, "get", users, { token: support, query: "status=active&limit=5" })).status).toBe(200);
		expect((await c.call(sys.url, "get", users)).status).toBe(401);
		expect((await c.call(sys.url, "get", users, { token: user })).status).toBe(403);
		expect((await c.call(sys.url, "get", users, { token: support, query: "status=gone" })).status).toBe(422);
		const one = "/api/v1/admin/users/{id}";
		expect((await c.call(sys.url, "get", one, { token: support, params: { id: member.user.id } })).status).toBe(200);
		expect((await c.call(sys.url, "get", one, { token: user, params: { id: member.user.id } })).status).toBe(403);
		expect((await c.call(sys.url, "get", one, { token: support, params: { id: missing } })).status).toBe(404);
		expect((await c.call(sys.url, "get", one, { token: support, params: { id: "nope" } })).status).toBe(422);

		const suspend = "/api/v1/admin/users/{id}/suspend";
		expect((await c.call(sys.url, "post", suspend, { token: admin, params: { id: member.user.id }, body: {}, invalidBody: true })).status).toBe(422);
		expect((await c.call(sys.url, "post", suspend, { token: support, params: { id: member.user.id }, body: { reason: "spam" } })).status).toBe(403);
		expect((await c.call(sys.url, "post", suspend, { params: { id: member.user.id }, body: { reason: "spam" } })).status).toBe(401);
		expect((await c.call(sys.url, "post", suspend, { token: admin, params: { id: missing }, body: { reason: "spam" } })).status).toBe(404);
		expect((await c.call(sys.url, "post", suspend, { token: admin, params: { id: adminAccount.id }, body: { reason: "self" } })).status).toBe(409);
		expect((await c.call(sys.url, "post", suspend, { token: admin, params: { id: member.user.id }, body: { reason: "spam" } })).status).toBe(200);
		const unsuspend = "/api/v1/admin/users/{id}/unsuspend";
		expect((await c.call(sys.url, "post", unsuspend, { token: support, params: { id: member.user.id }, body: {} })).status).toBe(403);
		expect((await c.call(sys.url, "post", unsuspend, { token: admin, params: { id: missing }, body: {} })).status).toBe(404);
		expect((await c.call(sys.url, "post", unsuspend, { token: admin, params: { id: member.user.id }, body: {} })).status).toBe(200);

		const roles = "/api/v1/admin/users/{id}/roles";
		expect((await c.call(sys.url, "put", roles, { token: admin, params: { id: member.user.id }, body: { roles: ["user", "support"] } })).status).toBe(200);
		expect((await c.call(sys.url, "put", roles, { token: support, params: { id: member.user.id }, body: { roles: ["admin"] } })).status).toBe(403);
		expect((await c.call(sys.url, "put", roles, { token: admin, params: { id: missing }, body: { roles: ["user"] } })).status).toBe(404);
		expect((await c.call(sys.url, "put", roles, { token: admin, params: { id: adminAccount.id }, body: { roles: ["user"] } })).status).toBe(409);
		expect((await c.call(sys.url, "put", roles, { token: admin, params: { id: member.user.id }, body: { roles: ["root"] }, invalidBody: true })).status).toBe(422);

		const applicant = await registerAndLogin(sys.url);
		const kycBody = { full_name: "Kim Doe", date_of_birth: "1990-01-02", country: "de", document_type: "passport", document_number: "C01X00T47" };
		expect((await http(sys.url, "POST", "/api/v1/users/me/kyc", { token: applicant.token, body: kycBody })).status).toBe(202);
		const kyc = "/api/v1/admin/kyc";
		expect((await c.call(sys.url, "get", kyc, { token: support, query: "status=pending" })).status).toBe(200);
		expect((await c.call(sys.url, "get", kyc, { token: user })).status).toBe(403);
		expect((await c.call(sys.url, "get", kyc, { token: support, query: "status=maybe" })).status).toBe(422);
		const decide = "/api/v1/admin/kyc/{user_id}/decision";
		expect((await c.call(sys.url, "post", decide, { token: user, params: { user_id: applicant.user.id }, body: { decision: "approve" } })).status).toBe(403);
		expect((await c.call(sys.url, "post", decide, { token: support, params: { user_id: applicant.user.id }, body: { decision: "maybe" }, invalidBody: true })).status).toBe(422);
		expect((await c.call(sys.url, "post", decide, { token: support, params: { user_id: missing }, body: { decision: "approve" } })).status).toBe(404);
		expect((await c.call(sys.url, "post", decide, { token: support, params: { user_id: applicant.user.id }, body: { decision: "reject", reason: "blurred photo" } })).status).toBe(200);
		expect((await c.call(sys.url, "post", decide, { token: support, params: { user_id: applicant.user.id }, body: { decision: "approve" } })).status).toBe(409);

		const charged = await http(sys.url, "POST", "/api/v1/payments/charge", {
			token: applicant.token,
			body: { amount: 2500, currency: "usd", payment_method: "pm_card_visa" },
			headers: { "Idempotency-Key": crypto.randomUUID() }
		});
		expect(charged.status).toBe(201);
		const payments = "/api/v1/admin/payments";
		expect((await c.call(sys.url, "get", payments, { token: support, query: `user_id=${applicant.user.id}` })).status).toBe(200);
		expect((await c.call(sys.url, "get", payments, { token: user })).status).toBe(403);
		expect((await c.call(sys.url, "get", payments, { token: support, query: "status=lost" })).status).toBe(422);
		const refund = "/api/v1/admin/payments/{id}/refund";
		expect((await c.call(sys.url, "post", refund, { token: support, params: { id: charged.body.id }, body: {} })).status).toBe(403);
		expect((await c.call(sys.url, "post", refund, { token: admin, params: { id: missing }, body: {} })).status).toBe(404);
		expect((await c.call(sys.url, "post", refund, { token: admin, params: { id: charged.body.id }, body: { amount: 0 }, invalidBody: true })).status).toBe(422);
		expect((await c.call(sys.url, "post", refund, { token: admin, params: { id: charged.body.id }, body: { amount: 1000, reason: "goodwill" } })).status).toBe(200);
		expect((await c.call(sys.url, "post", refund, { token: admin, params: { id: charged.body.id }, body: {} })).status).toBe(200);
		expect((await c.call(sys.url, "post", refund, { token: admin, params: { id: charged.body.id }, body: {} })).status).toBe(409);

		const audit = "/api/v1/admin/audit";
		expect((await c.call(sys.url, "get", audit, { token: admin, query: `target_id=${member.user.id}` })).status).toBe(200);
		expect((await c.call(sys.url, "get", audit, { token: support })).status).toBe(403);
		expect((await c.call(sys.url, "get", audit, { token: admin, query: "actor_id=nope" })).status).toBe(422);
		expect((await c.call(sys.url, "get", "/api/v1/admin/audit/verify", { token: admin })).body).toMatchObject({ valid: true });
		expect((await c.call(sys.url, "get", "/api/v1/admin/audit/verify", { token: support })).status).toBe(403);

		expect((await c.call(sys.url, "get", "/api/v1/admin/system", { token: support })).status).toBe(200);
		expect((await c.call(sys.url, "get", "/api/v1/admin/system", { token: user })).status).toBe(403);
		expect((await c.call(sys.url, "get", "/api/v1/admin/stats", { token: support, query: "days=7" })).status).toBe(200);
		expect((await c.call(sys.url, "get", "/api/v1/admin/stats", { token: user })).status).toBe(403);
		expect((await c.call(sys.url, "get", "/api/v1/admin/stats", { token: support, query: "days=91" })).status).toBe(422);
	});

	it("payments: charge 201, 400, 401, 402, 403, 409, 422; list, get and receipt; the Stripe webhook", async () => {
		const a = await registerAndLogin(sys.url);
		const b = await registerAndLogin(sys.url);
		const order = { amount: 1999, currency: "usd", payment_method: "pm_card_visa", description: "OpenAPI order" };
		const key = () => `oa-${crypto.randomUUID()}`;
		const charge = (body: unknown, k: string | null, opts: { token?: string; invalidBody?: boolean } = {}) =>
			c.call(sys.url, "post", "/api/v1/payments/charge", { token: opts.token ?? a.token, body, invalidBody: opts.invalidBody, headers: k === null ? {} : { "idempotency-key": k } });

		const k1 = key();
		const paid = await charge(order, k1);
		expect(paid.status).toBe(201);
		expect(paid.headers.get("location")).toBe(`/api/v1/payments/${paid.body.id}`);
		const replay = await charge(order, k1);
		expect([replay.status, replay.headers.get("idempotent-replayed"), replay.body.id]).toEqual([201, "true", paid.body.id]);
		expect((await charge({ ...order, amount: 1 }, k1)).status).toBe(422);
		expect((await charge(order, null)).status).toBe(400);
		expect((await c.call(sys.url, "post", "/api/v1/payments/charge", { body: order, headers: { "idempotency-key": key() } })).status).toBe(401);
		expect((await charge({ ...order, user_id: b.user.id }, key())).status).toBe(403);
		const k2 = key();
		const declined = await charge({ ...order, payment_method: "pm_card_chargeDeclined" }, k2);
		expect([declined.status, declined.body.failure_reason]).toEqual([402, "card_declined"]);
		expect((await charge({ ...order, payment_method: "pm_card_chargeDeclined" }, k2)).headers.get("idempotent-replayed")).toBe("true");
		expect((await charge({ ...order, payment_method: "pm_card_bogus" }, key())).status).toBe(422);
		for (const body of [{ ...order, amount: "1999" }, { ...order, amount: 19.99 }, { ...order, currency: "USD" }, { ...order, status: "succeeded" }, { amount: 100, currency: "usd" }]) {
			const res = await charge(body, key(), { invalidBody: true });
			expect([body, res.status]).toEqual([body, 422]);
		}
		// A request with this key still running on some node: 409.
		const k3 = key();
		const inFlight = crypto.randomUUID();
		const db = sys.env.PAYMENTS_DATABASE_URL;
		const now = new Date();
		await query(
			db,
			"INSERT INTO payments (id, user_id, amount, currency, description, payment_method, status, provider, amount_refunded, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, 'processing', 'simulated', 0, $7, $7)",
			[inFlight, a.user.id, order.amount, order.currency, order.description, order.payment_method, now]
		);
		await query(
			db,
			"INSERT INTO idempotency_keys (user_id, idem_key, fingerprint, status, payment_id, locked_at, expires_at, created_at, updated_at) VALUES ($1, $2, $3, 'in_progress', $4, $5, $6, $5, $5)",
			[a.user.id, k3, fingerprint(order), inFlight, now, new Date(now.getTime() + 3600_000)]
		);
		expect((await charge(order, k3)).status).toBe(409);

		const list = await c.call(sys.url, "get", "/api/v1/payments", { token: a.token, query: "limit=1&offset=1" });
		expect(list.status).toBe(200);
		expect(list.body).toMatchObject({ limit: 1, offset: 1, total: 3 });
		expect((await c.call(sys.url, "get", "/api/v1/payments", { token: a.token, query: "limit=0" })).status).toBe(422);
		expect((await c.call(sys.url, "get", "/api/v1/payments")).status).toBe(401);

		for (const path of ["/api/v1/payments/{id}", "/api/v1/payments/{id}/receipt"]) {
			expect((await c.call(sys.url, "get", path, { token: a.token, params: { id: paid.body.id } })).status).toBe(200);
			expect((await c.call(sys.url, "get", path, { token: b.token, params: { id: paid.body.id } })).status).toBe(403);
			expect((await c.call(sys.url, "get", path, { token: a.token, params: { id: crypto.randomUUID() } })).status).toBe(404);
			expect((await c.call(sys.url, "get", path, { token: a.token, params: { id: "nope" } })).status).toBe(422);
			expect((await c.call(sys.url, "get", path, { params: { id: paid.body.id } })).status).toBe(401);
		}
		expect((await c.call(sys.url, "get", "/api/v1/payments/{id}/receipt", { token: a.token, params: { id: declined.body.payment_id } })).status).toBe(404);

		const event = JSON.stringify({
			id: `evt_${crypto.randomUUID()}`,
			object: "event",
			type: "payment_intent.succeeded",
			created: 1,
			data: { object: { id: paid.body.provider_payment_id, object: "payment_intent" } }
		});
		const hook = (raw: string, signature: string, type = "application/json") =>
			c.call(sys.url, "post", "/api/v1/webhooks/stripe", { raw, headers: { "content-type": type, "stripe-signature": signature } });
		expect(c.errors(pointer("components", "schemas", "StripeEvent"), JSON.parse(event))).toEqual([]);
		expect((await hook(event, Stripe.webhooks.generateTestHeaderString({ payload: event, secret: WEBHOOK_SECRET }))).status).toBe(200);
		expect((await hook(event, Stripe.webhooks.generateTestHeaderString({ payload: event, secret: "whsec_wrong" }))).status).toBe(400);
		expect((await hook(event, "", "text/plain")).status).toBe(415);
	});

	it("jwks, health, ready and the problem for an unknown route", async () => {
		const jwks = await c.call(sys.url, "get", "/.well-known/jwks.json");
		expect(jwks.status).toBe(200);
		expect(jwks.body.keys.length).toBeGreaterThan(0);
		expect((await c.call(sys.url, "get", "/.well-known/jwks.json", { query: "kid=x" })).status).toBe(422);
		expect((await c.call(sys.url, "get", "/health")).body).toEqual({ status: "ok" });
		const ready = await c.call(sys.url, "get", "/health/ready");
		expect(ready.status).toBe(200);

		for (const path of ["/api/v1/nope", "/nope", "/api/v1/users/me/nope"]) {
			const res = await http(sys.url, "GET", path);
			expect([path, res.status]).toEqual([path, 404]);
			expect(res.headers.get("content-type")).toMatch(/^application\/problem\+json/);
			expect(res.headers.get("x-request-id")).toBe(res.body.request_id);
			expect(c.errors(pointer("components", "schemas", "Problem"), res.body)).toEqual([]);
			expect(res.body).toMatchObject({ status: 404, instance: path });
		}
	});

	it("serves a docs page that loads only local assets", async () => {
		const page = await c.call(sys.url, "get", "/api/docs");
		expect(page.status).toBe(200);
		expect(page.headers.get("content-type")).toMatch(/^text\/html/);
		expect(page.text).not.toMatch(/(https?:)?\/\/[a-z0-9.-]+\.[a-z]/i);
		const refs = [...page.text.matchAll(/\b(?:src|href)\s*=\s*["']([^"']+)["']/gi)].map(m => m[1]);
		expect(refs.length).toBeGreaterThan(0);
		const expected: Record<string, RegExp> = { ".css": /^text\/css/, ".js": /^(application|text)\/javascript/ };
		for (const ref of refs) {
			expect(ref).toMatch(/^\/api\/docs\/[A-Za-z0-9._-]+$/);
			const file = ref.slice("/api/docs/".length);
			const res = await c.call(sys.url, "get", "/api/docs/{file}", { params: { file } });
			expect([ref, res.status]).toEqual([ref, 200]);
			expect(res.headers.get("content-type")).toMatch(expected[file.slice(file.lastIndexOf("."))]);
			expect(res.text.length).toBeGreaterThan(0);
			if (file === "init.js") {
				expect(res.text).toContain("/api/openapi.json");
				expect(res.text).not.toMatch(/https?:\/\//);
			}
		}
		expect((await c.call(sys.url, "get", "/api/docs/{file}", { params: { file: "nope.js" } })).status).toBe(404);
	});

	it("serves the admin panel with local assets only", async () => {
		const page = await c.call(sys.url, "get", "/admin");
		expect(page.status).toBe(200);
		expect(page.text).not.toMatch(/(https?:)?\/\/[a-z0-9.-]+\.[a-z]/i);
		const refs = [...page.text.matchAll(/\b(?:src|href)\s*=\s*["']([^"']+)["']/gi)].map(m => m[1]);
		expect(refs.length).toBeGreaterThan(0);
		for (const ref of refs) {
			expect(ref).toMatch(/^\/admin\/assets\/[A-Za-z0-9._-]+$/);
			const res = await c.call(sys.url, "get", "/admin/assets/{file}", { params: { file: ref.slice("/admin/assets/".length) } });
			expect([ref, res.status]).toEqual([ref, 200]);
		}
		expect((await c.call(sys.url, "get", "/admin/assets/{file}", { params: { file: "nope.js" } })).status).toBe(404);
	});

	it("documents the answers of a gateway whose services are down: 503 and 429", async () => {
		// Only the gateway, no auth or users: every call is 503; the limiter still counts them.
		// RATE_LIMIT_MAX is the number of rate-limited calls before the last jwks one, which is then limited.
		const lone = await startSystem({ services: ["api"], sqlite: true, env: { RATE_LIMIT_MAX: "4" } });
		try {
			const ready = await c.call(lone.url, "get", "/health/ready");
			expect(ready.status).toBe(503);
			expect(ready.body).toEqual({ status: "unavailable", checks: { auth: "down", users: "down" } });
			expect((await c.call(lone.url, "post", "/api/v1/auth/register", { body: { email: uniqueEmail("oa"), password: PASSWORD, name: "Down" } })).status).toBe(503);
			expect((await c.call(lone.url, "get", "/api/v1/users/me", { token: "aaa.bbb.ccc" })).status).toBe(503);
			expect((await c.call(lone.url, "get", "/api/v1/notifications", { token: "aaa.bbb.ccc" })).status).toBe(503);
			expect((await c.call(lone.url, "get", "/.well-known/jwks.json")).status).toBe(503);
			const limited = await c.call(lone.url, "get", "/.well-known/jwks.json");
			expect(limited.status).toBe(429);
			expect(Number(limited.headers.get("retry-after"))).toBeGreaterThan(0);
			// Probes are never rate limited.
			expect((await c.call(lone.url, "get", "/health")).status).toBe(200);
		} finally {
			await lone.stop();
		}
	});

	it("exercised every operation, with its success and its error answers", () => {
		const expected: Record<string, number[]> = {
			"post /api/v1/auth/register": [201, 400, 409, 413, 415, 422, 503],
			"post /api/v1/auth/login": [200, 401, 403, 422, 429],
			"post /api/v1/auth/refresh": [200, 401, 422],
			"post /api/v1/auth/logout": [204, 401, 422],
			"post /api/v1/auth/password/forgot": [202, 422],
			"post /api/v1/auth/password/reset": [204, 400, 422],
			"post /api/v1/auth/email/verify": [204, 400, 422],
			"get /api/v1/auth/sessions": [200, 401, 422],
			"delete /api/v1/auth/sessions/{id}": [204, 401, 404],
			"get /api/v1/auth/oauth/{provider}/authorize": [404, 422, 503],
			"get /api/v1/auth/oauth/{provider}/callback": [400, 404, 422],
			"get /api/v1/users/me": [200, 401, 422, 503],
			"patch /api/v1/users/me": [200, 401, 422],
			"get /api/v1/users/{id}": [200, 401, 403, 404, 422],
			"get /api/v1/users/me/kyc": [200, 401],
			"post /api/v1/users/me/kyc": [202, 401, 409, 422],
			"get /.well-known/jwks.json": [200, 422, 429, 503],
			"get /health": [200],
			"get /health/ready": [200, 503],
			"get /api/openapi.json": [200],
			"get /api/docs": [200],
			"get /api/docs/{file}": [200, 404],
			"get /admin": [200],
			"get /admin/assets/{file}": [200, 404],
			"get /api/v1/notifications": [200, 401, 422, 503],
			"post /api/v1/payments/charge": [201, 400, 401, 402, 403, 409, 422],
			"get /api/v1/payments": [200, 401, 422],
			"get /api/v1/payments/{id}": [200, 401, 403, 404, 422],
			"get /api/v1/payments/{id}/receipt": [200, 401, 403, 404, 422],
			"post /api/v1/webhooks/stripe": [200, 400, 415],
			"get /api/v1/admin/me": [200, 401, 403],
			"get /api/v1/admin/users": [200, 401, 403, 422],
			"get /api/v1/admin/users/{id}": [200, 403, 404, 422],
			"post /api/v1/admin/users/{id}/suspend": [200, 401, 403, 404, 409, 422],
			"post /api/v1/admin/users/{id}/unsuspend": [200, 403, 404],
			"put /api/v1/admin/users/{id}/roles": [200, 403, 404, 409, 422],
			"get /api/v1/admin/kyc": [200, 403, 422],
			"post /api/v1/admin/kyc/{user_id}/decision": [200, 403, 404, 409, 422],
			"get /api/v1/admin/payments": [200, 403, 422],
			"post /api/v1/admin/payments/{id}/refund": [200, 403, 404, 409, 422],
			"get /api/v1/admin/audit": [200, 403, 422],
			"get /api/v1/admin/audit/verify": [200, 403],
			"get /api/v1/admin/system": [200, 403],
			"get /api/v1/admin/stats": [200, 403, 422],
			"get /api/v1/admin/jobs": [200, 401, 403, 422],
			"post /api/v1/admin/jobs/{name}/run": [202, 401, 403, 404, 422],
			"get /api/v1/admin/dead-letters": [200, 401, 403, 422],
			"post /api/v1/admin/dead-letters/{id}/redrive": [202, 401, 403, 404, 409, 422]
		};
		const operations = Object.entries(doc.paths).flatMap(([path, item]) => METHODS.filter(m => item[m as "get"]).map(m => `${m} ${path}`));
		expect(Object.keys(expected).sort()).toEqual(operations.sort());
		for (const [op, statuses] of Object.entries(expected)) {
			expect([op, [...(c.seen.get(op) ?? [])].sort()]).toEqual([op, expect.arrayContaining(statuses)]);
		}
	});
});
