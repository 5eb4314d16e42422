import crypto, { type KeyObject } from "node:crypto";
import { query } from "../helpers/pg";
import { http, registerAndLogin, startSystem, uniqueEmail, type HttpResult, type TestSystem } from "../helpers/system";

const PASSWORD = "correct horse battery";
const PROBLEM_KEYS = ["type", "title", "status", "detail", "instance", "request_id"];
const PRIVATE_JWK_MEMBERS = ["d", "p", "q", "dp", "dq", "qi", "k", "oth"];

interface Jwt {
	header: Record<string, any>;
	payload: Record<string, any>;
	signature: string;
}

const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString("base64url");
const nowS = () => Math.floor(Date.now() / 1000);

function decodeJwt(token: string): Jwt {
	const [h, p, s] = token.split(".");
	return { header: JSON.parse(Buffer.from(h, "base64url").toString()), payload: JSON.parse(Buffer.from(p, "base64url").toString()), signature: s };
}

/** Signs a JWT by hand, so any header and claims can be sent. */
function signJwt(header: Record<string, unknown>, payload: Record<string, unknown>, key: KeyObject): string {
	const input = `${b64(header)}.${b64(payload)}`;
	const alg = header.alg;
	const sig =
		alg === "ES256"
			? crypto.sign("sha256", Buffer.from(input), { key, dsaEncoding: "ieee-p1363" })
			: crypto.sign("sha256", Buffer.from(input), key);
	return `${input}.${sig.toString("base64url")}`;
}

/** Checks the RFC 9457 shape every error shares; returns the body. */
function expectProblem(res: HttpResult, status: number, instance?: string) {
	expect(res.status).toBe(status);
	expect(res.headers.get("content-type")).toMatch(/^application\/problem\+json/);
	for (const k of PROBLEM_KEYS) expect(res.body).toHaveProperty(k);
	expect(res.body.status).toBe(status);
	expect(typeof res.body.title).toBe("string");
	expect(typeof res.body.detail).toBe("string");
	const rid = res.headers.get("x-request-id");
	expect(rid).toBeTruthy();
	expect(res.body.request_id).toBe(rid);
	if (instance) expect(res.body.instance).toBe(instance);
	expect(res.text).not.toMatch(/\$2[aby]\$|at .+\.(ts|js):\d+|SELECT |INSERT /);
	return res.body;
}

describe("auth API through the gateway", () => {
	let sys: TestSystem;
	let url: string;
	let authDb: string;

	const register = (body: unknown, headers?: Record<string, string>) => http(url, "POST", "/api/v1/auth/register", { body, headers });
	const login = (email: string, password: string, headers?: Record<string, string>) =>
		http(url, "POST", "/api/v1/auth/login", { body: { email, password }, headers });
	const refresh = (refresh_token: string) => http(url, "POST", "/api/v1/auth/refresh", { body: { refresh_token } });
	const me = (token: string) => http(url, "GET", "/api/v1/users/me", { token });
	const meWith = (authorization: string) => http(url, "GET", "/api/v1/users/me", { headers: { authorization } });

	/** The embedded signing key, read from auth_db. */
	async function serverKey(): Promise<{ kid: string; alg: string; key: KeyObject }> {
		const rows = await query<{ kid: string; alg: string; private_pem: string }>(
			authDb,
			"SELECT kid, alg, private_pem FROM signing_keys WHERE retired_at IS NULL ORDER BY created_at ASC LIMIT 1"
		);
		expect(rows).toHaveLength(1);
		return { kid: rows[0].kid, alg: rows[0].alg, key: crypto.createPrivateKey(rows[0].private_pem) };
	}

	beforeAll(async () => {
		// The gateway's per-IP limit is not under test here; every request comes from 127.0.0.1.
		sys = await startSystem({ env: { RATE_LIMIT_MAX: "100000" } });
		url = sys.url;
		authDb = sys.env.AUTH_DATABASE_URL;
	});
	afterAll(async () => {
		await sys?.stop();
	});

	describe("POST /api/v1/auth/register", () => {
		it("creates a user: 201, email lowercased, no password or hash in the body", async () => {
			const local = uniqueEmail("Mixed.Case");
			const email = local.replace("@example.com", "@Example.COM");
			const res = await register({ email, password: PASSWORD, name: "Ada Lovelace", phone: "+14155550123" });
			expect(res.status).toBe(201);
			expect(res.headers.get("content-type")).toMatch(/^application\/json/);
			expect(res.headers.get("x-request-id")).toBeTruthy();
			expect(res.body).toMatchObject({
				email: email.toLowerCase(),
				name: "Ada Lovelace",
				phone: "+14155550123",
				status: "active",
				roles: ["user"],
				email_verified: false,
				kyc_status: "none"
			});
			expect(res.body.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
			expect(new Date(res.body.created_at).toISOString()).toBe(res.body.created_at);
			for (const k of ["password", "password_hash", "hash"]) expect(res.body).not.toHaveProperty(k);
			expect(res.text).not.toContain(PASSWORD);
			expect(res.text).not.toMatch(/\$2[aby]\$/);

			// Stored with bcrypt, never in clear.
			const creds = await query<{ password_hash: string }>(authDb, "SELECT password_hash FROM credentials WHERE user_id = $1", [res.body.id]);
			expect(creds).toHaveLength(1);
			expect(creds[0].password_hash).toMatch(/^\$2[aby]\$\d{2}\$/);

			// The lowercased address logs in, and so does any other casing of it.
			expect((await login(email.toLowerCase(), PASSWORD)).status).toBe(200);
			expect((await login(email.toUpperCase(), PASSWORD)).status).toBe(200);
		});

		it("refuses an email already registered, in any letter case, with 409", async () => {
			const email = uniqueEmail("dup");
			expect((await register({ email, password: PASSWORD, name: "First" })).status).toBe(201);
			for (const variant of [email, email.toUpperCase(), email[0].toUpperCase() + email.slice(1)]) {
				const res = await register({ email: variant, password: PASSWORD, name: "Second" });
				expectProblem(res, 409, "/api/v1/auth/register");
			}
			// The first account is untouched.
			expect((await login(email, PASSWORD)).status).toBe(200);
		});

		it("lets exactly one of several concurrent registrations of the same email through", async () => {
			const email = uniqueEmail("race");
			const variants = [email, email.toUpperCase(), email, email.toUpperCase(), email];
			const results = await Promise.all(variants.map((e, i) => register({ email: e, password: `${PASSWORD} ${i}`, name: `Racer ${i}` })));
			const statuses = results.map(r => r.status).sort();
			expect(statuses).toEqual([201, 409, 409, 409, 409]);
			for (const r of results.filter(x => x.status === 409)) expectProblem(r, 409);
			const winner = results.findIndex(r => r.status === 201);
			expect((await login(email, `${PASSWORD} ${winner}`)).status).toBe(200);
		});

		it.each([
			["roles", ["admin"]],
			["status", "active"],
			["id", "00000000-0000-4000-8000-000000000001"],
			["email_verified", true],
			["kyc_status", "verified"]
		])("refuses `%s` in the body with 422 and stores nothing", async (field, value) => {
			const email = uniqueEmail("mass");
			const res = await register({ email, password: PASSWORD, name: "Mallory", [field]: value });
			const body = expectProblem(res, 422, "/api/v1/auth/register");
			expect(Array.isArray(body.errors)).toBe(true);
			expect(body.errors.map((e: { field: string }) => e.field)).toContain(field);
			for (const e of body.errors) expect(typeof e.message).toBe("string");
			// Nothing was created: the same email still registers, as a plain user.
			const again = await register({ email, password: PASSWORD, name: "Mallory" });
			expect(again.status).toBe(201);
			expect(again.body.roles).toEqual(["user"]);
			expect(again.body.email_verified).toBe(false);
			expect(again.body.kyc_status).toBe("none");
		});

		it.each([
			["7 bytes", "a".repeat(7)],
			["73 bytes", "a".repeat(73)],
			["73 bytes of multi-byte characters", "é".repeat(36) + "a"],
			["6 bytes of 2-byte characters", "ééé"]
		])("refuses a password of %s with 422", async (_label, password) => {
			const res = await register({ email: uniqueEmail("pw"), password, name: "Short" });
			const body = expectProblem(res, 422, "/api/v1/auth/register");
			expect(body.errors.map((e: { field: string }) => e.field)).toContain("password");
			expect(res.text).not.toContain(password);
		});

		it.each([
			["8 ASCII bytes", "a".repeat(8)],
			["72 ASCII bytes", "b".repeat(72)],
			["72 bytes of 2-byte characters", "é".repeat(36)],
			["72 bytes of 4-byte characters", "🔑".repeat(18)],
			["72 bytes of 3-byte characters", "€".repeat(24)]
		])("accepts a password of %s with 201, and it logs in", async (_label, password) => {
			expect(Buffer.byteLength(password)).toBeLessThanOrEqual(72);
			const email = uniqueEmail("pwok");
			const res = await register({ email, password, name: "Long" });
			expect(res.status).toBe(201);
			expect((await login(email, password)).status).toBe(200);
		});

		it("does not cut a 72-byte password: a different 72nd byte does not log in", async () => {
			const email = uniqueEmail("pw72");
			const password = "c".repeat(71) + "x";
			expect((await register({ email, password, name: "Edge" })).status).toBe(201);
			expectProblem(await login(email, "c".repeat(71) + "y"), 401);
		});

		it.each([
			["no at sign", "not-an-email"],
			["no domain dot", "user@localhost"],
			["a space", "user name@example.com"],
			["empty", ""],
			["a number", 12345],
			["too long", `${"a".repeat(320)}@example.com`]
		])("refuses an invalid email (%s) with 422", async (_label, email) => {
			const res = await register({ email, password: PASSWORD, name: "Bad Email" });
			const body = expectProblem(res, 422, "/api/v1/auth/register");
			expect(body.errors.map((e: { field: string }) => e.field)).toContain("email");
		});

		it("refuses missing fields, an empty name, a bad phone and an unknown field with 422", async () => {
			const cases: [Record<string, unknown>, string][] = [
				[{ password: PASSWORD, name: "No Email" }, "email"],
				[{ email: uniqueEmail(), name: "No Password" }, "password"],
				[{ email: uniqueEmail(), password: PASSWORD }, "name"],
				[{ email: uniqueEmail(), password: PASSWORD, name: "" }, "name"],
				[{ email: uniqueEmail(), password: PASSWORD, name: "Phone", phone: "555-1234" }, "phone"],
				[{ email: uniqueEmail(), password: PASSWORD, name: "Extra", nickname: "x" }, "nickname"]
			];
			for (const [body, field] of cases) {
				const res = await register(body);
				const problem = expectProblem(res, 422, "/api/v1/auth/register");
				expect(problem.errors.map((e: { field: string }) => e.field)).toContain(field);
			}
		});

		it("refuses a body that is not JSON (415), broken JSON (400) and a JSON array (422)", async () => {
			const path = "/api/v1/auth/register";
			expectProblem(await http(url, "POST", path, { raw: "email=a@b.co", headers: { "content-type": "application/x-www-form-urlencoded" } }), 415, path);
			expectProblem(await http(url, "POST", path, { raw: '{"email": "a@b.co",', headers: { "content-type": "application/json" } }), 400, path);
			expectProblem(await http(url, "POST", path, { raw: "[]", headers: { "content-type": "application/json" } }), 422, path);
		});
	});

	describe("POST /api/v1/auth/login", () => {
		it("answers 200 with a token pair whose access token is an asymmetric JWT with the contract's claims", async () => {
			const { user, email } = await registerAndLogin(url);
			const res = await login(email, PASSWORD);
			expect(res.status).toBe(200);
			expect(Object.keys(res.body).sort()).toEqual(["access_token", "expires_in", "refresh_token", "token_type", "user_id"]);
			expect(res.body.token_type).toBe("Bearer");
			expect(Number.isInteger(res.body.expires_in)).toBe(true);
			expect(res.body.expires_in).toBeGreaterThan(0);
			expect(res.body.expires_in).toBeLessThanOrEqual(900);
			expect(res.body.user_id).toBe(user.id);
			// Opaque refresh token of at least 256 bits, not a JWT.
			expect(typeof res.body.refresh_token).toBe("string");
			expect(Buffer.from(res.body.refresh_token, "base64url").length).toBeGreaterThanOrEqual(32);
			expect(res.body.refresh_token.split(".")).toHaveLength(1);

			const { header, payload } = decodeJwt(res.body.access_token);
			expect(["ES256", "RS256"]).toContain(header.alg);
			expect(typeof header.kid).toBe("string");
			expect(header.kid.length).toBeGreaterThan(0);
			for (const c of ["iss", "aud", "sub", "iat", "exp", "jti", "sid", "roles"]) expect(payload).toHaveProperty(c);
			expect(payload.sub).toBe(user.id);
			expect(payload.roles).toEqual(["user"]);
			expect(payload.exp - payload.iat).toBeGreaterThan(0);
			expect(payload.exp - payload.iat).toBeLessThanOrEqual(900);
			expect(payload.exp - payload.iat).toBe(res.body.expires_in);
			expect(typeof payload.jti).toBe("string");
			expect(typeof payload.sid).toBe("string");

			// Two logins are two sessions with distinct token ids.
			const second = decodeJwt((await login(email, PASSWORD)).body.access_token).payload;
			expect(second.sid).not.toBe(payload.sid);
			expect(second.jti).not.toBe(payload.jti);

			// The signature verifies with the JWKS key its kid names.
			const jwks = await http(url, "GET", "/.well-known/jwks.json");
			const jwk = jwks.body.keys.find((k: { kid: string }) => k.kid === header.kid);
			expect(jwk).toBeDefined();
			expect(jwk.alg).toBe(header.alg);
			const [h, p, s] = res.body.access_token.split(".");
			const pub = crypto.createPublicKey({ key: jwk, format: "jwk" });
			const ok = crypto.verify("sha256", Buffer.from(`${h}.${p}`), header.alg === "ES256" ? { key: pub, dsaEncoding: "ieee-p1363" } : pub, Buffer.from(s, "base64url"));
			expect(ok).toBe(true);

			// The refresh token is stored only as a hash.
			const raw = await query(authDb, "SELECT 1 FROM refresh_tokens WHERE token_hash = $1", [res.body.refresh_token]);
			expect(raw).toHaveLength(0);
			const hashed = crypto.createHash("sha256").update(res.body.refresh_token).digest("hex");
			const stored = await query<{ token_hash: string }>(authDb, "SELECT token_hash FROM refresh_tokens WHERE session_id = $1", [payload.sid]);
			expect(stored.map(r => r.token_hash)).not.toContain(res.body.refresh_token);
			expect(stored.map(r => r.token_hash)).toContain(hashed);
		});

		it("answers a wrong password and an unknown email with the same 401 body", async () => {
			const { email } = await registerAndLogin(url);
			const wrong = await login(email, "wrong password!!");
			const unknown = await login(uniqueEmail("nobody"), "wrong password!!");
			const a = expectProblem(wrong, 401, "/api/v1/auth/login");
			const b = expectProblem(unknown, 401, "/api/v1/auth/login");
			const strip = ({ request_id: _r, instance: _i, ...rest }: Record<string, unknown>) => rest;
			expect(strip(a)).toEqual(strip(b));
			expect(a.request_id).not.toBe(b.request_id);
			expect(wrong.headers.get("www-authenticate")).toBe(unknown.headers.get("www-authenticate"));
		});

		it("refuses a missing field, a wrong type and an unknown field with 422, broken JSON with 400", async () => {
			const path = "/api/v1/auth/login";
			for (const body of [{ email: uniqueEmail() }, { password: PASSWORD }, { email: 42, password: PASSWORD }, { email: uniqueEmail(), password: PASSWORD, remember: true }]) {
				expectProblem(await http(url, "POST", path, { body }), 422, path);
			}
			expectProblem(await http(url, "POST", path, { raw: "{not json", headers: { "content-type": "application/json" } }), 400, path);
		});

		it("locks the account after 10 failed logins: the 11th attempt, even with the right password, is 429 with Retry-After", async () => {
			const { email } = await registerAndLogin(url);
			for (let i = 0; i < 10; i++) expectProblem(await login(email, `wrong password ${i}`), 401, "/api/v1/auth/login");
			const locked = await login(email, PASSWORD);
			expectProblem(locked, 429, "/api/v1/auth/login");
			const retry = Number(locked.headers.get("retry-after"));
			expect(Number.isInteger(retry)).toBe(true);
			expect(retry).toBeGreaterThan(0);
			expect(retry).toBeLessThanOrEqual(15 * 60);
			// Any letter case of the address is the same account.
			expectProblem(await login(email.toUpperCase(), PASSWORD), 429);
			// Other accounts are unaffected.
			const other = await registerAndLogin(url);
			expect((await login(other.email, PASSWORD)).status).toBe(200);
		});

		it("counts concurrent failed logins too: of 25 wrong guesses sent at once, at most 10 are checked", async () => {
			const { email } = await registerAndLogin(url);
			const results = await Promise.all(Array.from({ length: 25 }, (_, i) => login(email, `parallel guess ${i}`)));
			const statuses = results.map(r => r.status);
			expect(statuses.filter(s => s === 401).length).toBeLessThanOrEqual(10);
			expect(statuses.filter(s => s !== 401 && s !== 429)).toEqual([]);
			for (const r of results.filter(x => x.status === 429)) expect(Number(r.headers.get("retry-after"))).toBeGreaterThan(0);
			expectProblem(await login(email, PASSWORD), 429);
		});

		it("lets a user log in after fewer than 10 failures, which then start again from zero", async () => {
			const { email } = await registerAndLogin(url);
			for (let i = 0; i < 9; i++) expectProblem(await login(email, "nope nope nope"), 401);
			expect((await login(email, PASSWORD)).status).toBe(200);
			for (let i = 0; i < 9; i++) expectProblem(await login(email, "nope nope nope"), 401);
			expect((await login(email, PASSWORD)).status).toBe(200);
		});

		it("refuses a suspended account with 403", async () => {
			const { user, email } = await registerAndLogin(url);
			await sys.broker.call("users.update", { id: user.id, status: "suspended" });
			const res = await login(email, PASSWORD);
			const body = expectProblem(res, 403, "/api/v1/auth/login");
			expect(body).not.toHaveProperty("access_token");
		});
	});

	describe("access tokens on GET /api/v1/users/me", () => {
		let token: string;
		let claims: Record<string, any>;
		let header: Record<string, any>;
		let userId: string;

		beforeAll(async () => {
			const r = await registerAndLogin(url);
			token = r.token;
			userId = r.user.id;
			({ header, payload: claims } = decodeJwt(token));
		});

		it("accepts the token login gave", async () => {
			const res = await me(token);
			expect(res.status).toBe(200);
			expect(res.body.id).toBe(userId);
		});

		it.each([
			["no Authorization header", undefined],
			["an empty header", ""],
			["the word Bearer alone", "Bearer"],
			["Bearer and a space", "Bearer "],
			["another scheme", "Basic dXNlcjpwYXNzd29yZA=="],
			["a token that is not a JWT", "Bearer not-a-jwt"],
			["two parts only", "Bearer abc.def"],
			["lowercase scheme and junk", "bearer x.y.z"],
			["garbage base64 in a JWT shape", "Bearer aaaa.bbbb.cccc"]
		])("refuses %s with 401", async (_label, authorization) => {
			const res = authorization === undefined ? await http(url, "GET", "/api/v1/users/me") : await meWith(authorization);
			expectProblem(res, 401, "/api/v1/users/me");
		});

		it("refuses alg none, with and without the server's kid", async () => {
			for (const h of [{ alg: "none", typ: "JWT" }, { alg: "none", typ: "JWT", kid: header.kid }, { alg: "None", kid: header.kid }]) {
				const forged = `${b64(h)}.${b64({ ...claims, roles: ["admin"] })}.`;
				expectProblem(await me(forged), 401, "/api/v1/users/me");
				// The original signature attached does not help either.
				expectProblem(await me(`${b64(h)}.${b64(claims)}.${token.split(".")[2]}`), 401);
			}
		});

		it("refuses an HS256 token signed with the public key (algorithm confusion)", async () => {
			const jwks = await http(url, "GET", "/.well-known/jwks.json");
			const jwk = jwks.body.keys.find((k: { kid: string }) => k.kid === header.kid);
			const pub = crypto.createPublicKey({ key: jwk, format: "jwk" });
			const secrets = [pub.export({ type: "spki", format: "pem" }).toString(), pub.export({ type: "spki", format: "der" }), JSON.stringify(jwk)];
			for (const secret of secrets) {
				for (const alg of ["HS256", "HS384", "HS512"]) {
					const input = `${b64({ alg, typ: "JWT", kid: header.kid })}.${b64(claims)}`;
					const mac = crypto.createHmac(`sha${alg.slice(2)}`, secret).update(input).digest("base64url");
					expectProblem(await me(`${input}.${mac}`), 401, "/api/v1/users/me");
				}
			}
		});

		it("refuses a tampered payload that keeps the original signature", async () => {
			const [h, , s] = token.split(".");
			for (const change of [{ roles: ["admin"] }, { roles: ["user", "admin"] }, { sub: crypto.randomUUID() }, { exp: claims.exp + 3600 }]) {
				const res = await me(`${h}.${b64({ ...claims, ...change })}.${s}`);
				expectProblem(res, 401, "/api/v1/users/me");
			}
			// A flipped signature byte fails too.
			const sig = Buffer.from(s, "base64url");
			sig[0] ^= 0xff;
			expectProblem(await me(`${token.split(".")[0]}.${token.split(".")[1]}.${sig.toString("base64url")}`), 401);
		});

		it("refuses a token signed by a key the server does not know, under a new kid or under the server's kid", async () => {
			const { privateKey } = crypto.generateKeyPairSync("ec", { namedCurve: "P-256" });
			expectProblem(await me(signJwt({ alg: "ES256", typ: "JWT", kid: "attacker-key" }, claims, privateKey)), 401, "/api/v1/users/me");
			expectProblem(await me(signJwt({ alg: "ES256", typ: "JWT" }, claims, privateKey)), 401);
			expectProblem(await me(signJwt({ alg: "ES256", typ: "JWT", kid: header.kid }, claims, privateKey)), 401);
			const rsa = crypto.generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey;
			expectProblem(await me(signJwt({ alg: "RS256", typ: "JWT", kid: header.kid }, claims, rsa)), 401);
		});

		it("with the server's own key: refuses expired, wrong iss, wrong aud and a dead session; accepts a valid token", async () => {
			const { kid, alg, key } = await serverKey();
			expect(kid).toBe(header.kid);
			const h = { alg, typ: "JWT", kid };
			const fresh = (): Record<string, any> => ({ ...claims, jti: crypto.randomUUID(), iat: nowS() - 5, exp: nowS() + 300 });

			// Control: a token made this way is accepted, so each refusal below is for the one claim changed.
			const valid = await me(signJwt(h, fresh(), key));
			expect(valid.status).toBe(200);
			expect(valid.body.id).toBe(userId);

			expectProblem(await me(signJwt(h, { ...fresh(), iat: nowS() - 1000, exp: nowS() - 100 }, key)), 401, "/api/v1/users/me");
			expectProblem(await me(signJwt(h, { ...fresh(), iss: "https://evil.example.com" }, key)), 401);
			expectProblem(await me(signJwt(h, { ...fresh(), aud: "some-other-api" }, key)), 401);
			const { iss: _iss, ...noIss } = fresh();
			expectProblem(await me(signJwt(h, noIss, key)), 401);
			const { aud: _aud, ...noAud } = fresh();
			expectProblem(await me(signJwt(h, noAud, key)), 401);
			// The right signature does not revive a session that does not exist.
			expectProblem(await me(signJwt(h, { ...fresh(), sid: crypto.randomUUID() }, key)), 401);
			// The alg in the header must match the key, even when the signature is by that key.
			expectProblem(await me(signJwt({ ...h, alg: alg === "ES256" ? "ES384" : "RS512" }, fresh(), key)), 401);
		});
	});

	describe("POST /api/v1/auth/refresh", () => {
		it("rotates: a new pair for the same session, the old refresh token fails, and that reuse revokes the session", async () => {
			const { tokens, user } = await registerAndLogin(url);
			const first = decodeJwt(tokens.access_token).payload;

			const rotated = await refresh(tokens.refresh_token);
			expect(rotated.status).toBe(200);
			expect(Object.keys(rotated.body).sort()).toEqual(["access_token", "expires_in", "refresh_token", "token_type", "user_id"]);
			expect(rotated.body.token_type).toBe("Bearer");
			expect(rotated.body.user_id).toBe(user.id);
			expect(rotated.body.expires_in).toBeLessThanOrEqual(900);
			expect(rotated.body.refresh_token).not.toBe(tokens.refresh_token);
			expect(rotated.body.access_token).not.toBe(tokens.access_token);
			const second = decodeJwt(rotated.body.access_token).payload;
			expect(second.sid).toBe(first.sid);
			expect(second.sub).toBe(user.id);
			expect(second.jti).not.toBe(first.jti);

			// Both access tokens work now (and sit in the gateway's cache).
			expect((await me(rotated.body.access_token)).status).toBe(200);
			expect((await me(tokens.access_token)).status).toBe(200);

			// Presenting the rotated-out refresh token again: 401, and the whole session goes.
			expectProblem(await refresh(tokens.refresh_token), 401, "/api/v1/auth/refresh");
			expectProblem(await refresh(rotated.body.refresh_token), 401, "/api/v1/auth/refresh");
			expectProblem(await me(rotated.body.access_token), 401, "/api/v1/users/me");
			expectProblem(await me(tokens.access_token), 401, "/api/v1/users/me");

			// Other sessions of the same user are not touched.
			const other = await login(user.email, PASSWORD);
			expect(other.status).toBe(200);
			expect((await me(other.body.access_token)).status).toBe(200);
		});

		it("keeps rotating while each new refresh token is used once", async () => {
			const { tokens } = await registerAndLogin(url);
			let current = tokens.refresh_token as string;
			for (let i = 0; i < 3; i++) {
				const r = await refresh(current);
				expect(r.status).toBe(200);
				expect((await me(r.body.access_token)).status).toBe(200);
				current = r.body.refresh_token;
			}
		});

		it("refuses an unknown refresh token with 401 and a bad body with 422", async () => {
			expectProblem(await refresh(crypto.randomBytes(32).toString("base64url")), 401, "/api/v1/auth/refresh");
			const path = "/api/v1/auth/refresh";
			for (const body of [{}, { refresh_token: "" }, { refresh_token: 42 }, { refresh_token: "x", extra: 1 }]) {
				expectProblem(await http(url, "POST", path, { body }), 422, path);
			}
			expectProblem(await refresh("not-a-refresh-token"), 401, path);
			// A near miss of a real token is unknown too, and does not harm the real one's session.
			const { tokens } = await registerAndLogin(url);
			const real = tokens.refresh_token as string;
			const nearMiss = (real[0] === "A" ? "B" : "A") + real.slice(1);
			expectProblem(await refresh(nearMiss), 401, path);
			expect((await refresh(real)).status).toBe(200);
		});
	});

	describe("POST /api/v1/auth/logout", () => {
		it("answers 204; the access token fails at once even though the gateway had cached it, and the refresh token fails", async () => {
			const { token, tokens } = await registerAndLogin(url);
			// Warm the gateway's token cache.
			expect((await me(token)).status).toBe(200);
			expect((await me(token)).status).toBe(200);

			const out = await http(url, "POST", "/api/v1/auth/logout", { token });
			expect(out.status).toBe(204);
			expect(out.text).toBe("");
			expect(out.headers.get("x-request-id")).toBeTruthy();

			expectProblem(await me(token), 401, "/api/v1/users/me");
			expectProblem(await refresh(tokens.refresh_token), 401, "/api/v1/auth/refresh");
			// Logging out again with the dead token is 401 too.
			expectProblem(await http(url, "POST", "/api/v1/auth/logout", { token }), 401, "/api/v1/auth/logout");
		});

		it("refuses a logout without a valid token with 401", async () => {
			const path = "/api/v1/auth/logout";
			expectProblem(await http(url, "POST", path), 401, path);
			expectProblem(await http(url, "POST", path, { body: {} }), 401, path);
			expectProblem(await http(url, "POST", path, { headers: { authorization: "Bearer nope" } }), 401, path);
			const { refresh_token } = (await registerAndLogin(url)).tokens;
			// A refresh token alone does not log anyone out.
			expectProblem(await http(url, "POST", path, { body: { refresh_token } }), 401, path);
			expect((await refresh(refresh_token)).status).toBe(200);
		});

		it("with refresh_token also ends that session of the same user, but never another user's", async () => {
			const a = await registerAndLogin(url);
			const a2 = (await login(a.email, PASSWORD)).body;
			const b = await registerAndLogin(url);
			for (const t of [a.token, a2.access_token, b.token]) expect((await me(t)).status).toBe(200);

			const out = await http(url, "POST", "/api/v1/auth/logout", { token: a.token, body: { refresh_token: a2.refresh_token } });
			expect(out.status).toBe(204);
			expectProblem(await me(a.token), 401);
			expectProblem(await me(a2.access_token), 401);
			expectProblem(await refresh(a2.refresh_token), 401);

			// Another user's refresh token in the body is ignored.
			const a3 = (await login(a.email, PASSWORD)).body;
			expect((await http(url, "POST", "/api/v1/auth/logout", { token: a3.access_token, body: { refresh_token: b.tokens.refresh_token } })).status).toBe(204);
			expect((await me(b.token)).status).toBe(200);
			expect((await refresh(b.tokens.refresh_token)).status).toBe(200);
		});

		it("refuses an unknown field in the logout body with 422", async () => {
			const { token } = await registerAndLogin(url);
			expectProblem(await http(url, "POST", "/api/v1/auth/logout", { token, body: { all: true } }), 422, "/api/v1/auth/logout");
			expect((await me(token)).status).toBe(200);
		});
	});

	describe("GET /.well-known/jwks.json", () => {
		it("publishes the public signing keys only", async () => {
			const res = await http(url, "GET", "/.well-known/jwks.json");
			expect(res.status).toBe(200);
			expect(res.headers.get("content-type")).toMatch(/^application\/json/);
			expect(Array.isArray(res.body.keys)).toBe(true);
			expect(res.body.keys.length).toBeGreaterThanOrEqual(1);
			for (const k of res.body.keys) {
				expect(["EC", "RSA", "OKP"]).toContain(k.kty);
				expect(typeof k.kid).toBe("string");
				expect(["ES256", "RS256", "EdDSA"]).toContain(k.alg);
				expect(k.use).toBe("sig");
				for (const m of PRIVATE_JWK_MEMBERS) expect(k).not.toHaveProperty(m);
				// Each is a usable public key.
				expect(crypto.createPublicKey({ key: k, format: "jwk" }).type).toBe("public");
			}
			const kids = res.body.keys.map((k: { kid: string }) => k.kid);
			expect(new Set(kids).size).toBe(kids.length);
			const { kid } = await serverKey();
			expect(kids).toContain(kid);
			expect(res.text).not.toContain("PRIVATE");
		});

		it("needs no token and ignores a bad one", async () => {
			expect((await http(url, "GET", "/.well-known/jwks.json", { headers: { authorization: "Bearer junk" } })).status).toBe(200);
		});
	});

	describe("errors and request ids", () => {
		it("answers every error as problem+json with X-Request-ID", async () => {
			const responses: [HttpResult, number, string][] = [
				[await login(uniqueEmail(), "wrong password"), 401, "/api/v1/auth/login"],
				[await register({}), 422, "/api/v1/auth/register"],
				[await http(url, "GET", "/api/v1/auth/nope"), 404, "/api/v1/auth/nope"],
				[await http(url, "GET", "/api/v1/auth/login"), 404, "/api/v1/auth/login"]
			];
			for (const [res, status, instance] of responses) {
				const body = expectProblem(res, status, instance);
				expect(body.type).toBe("about:blank");
			}
		});

		it("echoes a valid client X-Request-ID in the header and the problem body", async () => {
			const rid = `client-${crypto.randomBytes(6).toString("hex")}.A_b:9`;
			const res = await login(uniqueEmail(), "wrong password", { "x-request-id": rid });
			expectProblem(res, 401);
			expect(res.headers.get("x-request-id")).toBe(rid);
			expect(res.body.request_id).toBe(rid);

			const max = "r".repeat(128);
			const ok = await http(url, "GET", "/.well-known/jwks.json", { headers: { "x-request-id": max } });
			expect(ok.status).toBe(200);
			expect(ok.headers.get("x-request-id")).toBe(max);
		});

		it.each([
			["200 characters", "a".repeat(200)],
			["129 characters", "a".repeat(129)],
			["spaces", "has spaces in it"],
			["a slash", "abc/def"],
			["quotes and angle brackets", '"<script>"']
		])("replaces an invalid client X-Request-ID (%s)", async (_label, rid) => {
			const res = await login(uniqueEmail(), "wrong password", { "x-request-id": rid });
			expectProblem(res, 401);
			const got = res.headers.get("x-request-id");
			expect(got).toBeTruthy();
			expect(got).not.toBe(rid);
			expect(got).toMatch(/^[A-Za-z0-9._:-]{1,128}$/);
			expect(res.body.request_id).toBe(got);
			expect(res.text).not.toContain(rid);
		});

		it("gives every request its own id when the client sends none", async () => {
			const a = await login(uniqueEmail(), "wrong password");
			const b = await login(uniqueEmail(), "wrong password");
			expect(a.headers.get("x-request-id")).not.toBe(b.headers.get("x-request-id"));
		});
	});
});
