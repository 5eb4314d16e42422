import { execFile } from "node:child_process";
import crypto from "node:crypto";
import path from "node:path";
import { promisify } from "node:util";
import jwt from "jsonwebtoken";
import { query } from "../helpers/pg";
import { linkToken, startSmtp, smtpUrl, type Mail, type Smtp } from "../helpers/smtp";
import { waitFor } from "../helpers/wait";
import { http, registerAndLogin, startSystem, uniqueEmail, type TestSystem } from "../helpers/system";

// Email verification, password reset and sessions, end to end through the gateway, with the emails
// read from a real SMTP server.

const ROOT = path.resolve(__dirname, "../..");

interface KeyRow {
	kid: string;
	private_pem: string;
	status: string;
}

/** An access token signed with a stored key, with chosen times (the test plays the clock). */
function signWith(row: KeyRow, claims: { sub: string; sid: string; iat: number; exp: number }): string {
	const key = crypto.createPrivateKey(row.private_pem);
	return jwt.sign({ ...claims, roles: ["user"], jti: crypto.randomUUID() }, key, {
		algorithm: "ES256",
		keyid: row.kid,
		issuer: "moleculer-microservices",
		audience: "moleculer-microservices-api"
	});
}

const NOTIFY_ENV = { NOTIFY_RETRY_BASE_MS: "20", NOTIFY_PUMP_MS: "50", OUTBOX_POLL_MS: "50" };
const PASSWORD = "correct horse battery";

describe("email verification, password reset and sessions", () => {
	let sys: TestSystem;
	let smtp: Smtp;
	const mailTo = (to: string, subject: RegExp) =>
		waitFor(() => smtp.mails.find((m: Mail) => m.envelope.to.includes(to) && subject.test(m.headers.subject ?? "")), `a mail to ${to}`);

	beforeAll(async () => {
		smtp = await startSmtp();
		sys = await startSystem({
			services: ["api", "auth", "users", "notifications"],
			env: { ...NOTIFY_ENV, SMTP_URL: smtpUrl(smtp), APP_URL: "https://app.example.test/" }
		});
	});

	afterAll(async () => {
		await sys?.stop();
		await smtp?.close();
	});

	it("registration sends a verification link; the token verifies the email once", async () => {
		const { email, user, token } = await registerAndLogin(sys.url);
		expect(user.email_verified).toBe(false);
		const mail = await mailTo(email, /confirm your email/i);
		expect(mail.text).toContain("https://app.example.test/verify-email?token=");
		const verifyToken = linkToken(mail);
		expect(verifyToken.length).toBeGreaterThanOrEqual(43);

		// Only the hash is stored.
		const rows = await query<{ token_hash: string }>(sys.env.AUTH_DATABASE_URL, "SELECT token_hash FROM action_tokens WHERE user_id = $1", [user.id]);
		expect(rows).toHaveLength(1);
		expect(rows[0].token_hash).not.toContain(verifyToken);

		expect((await http(sys.url, "POST", "/api/v1/auth/email/verify", { body: { token: verifyToken } })).status).toBe(204);
		expect((await http(sys.url, "GET", "/api/v1/users/me", { token })).body.email_verified).toBe(true);

		const again = await http(sys.url, "POST", "/api/v1/auth/email/verify", { body: { token: verifyToken } });
		expect(again.status).toBe(400);
		expect(again.headers.get("content-type")).toContain("application/problem+json");
		expect(again.body.detail).toMatch(/already been used/);

		const unknown = await http(sys.url, "POST", "/api/v1/auth/email/verify", { body: { token: "x".repeat(43) } });
		expect(unknown.status).toBe(400);
		expect(unknown.body.detail).toMatch(/unknown/);
	});

	it("an expired verification token is 400", async () => {
		const { email, user } = await registerAndLogin(sys.url);
		const verifyToken = linkToken(await mailTo(email, /confirm your email/i));
		await query(sys.env.AUTH_DATABASE_URL, "UPDATE action_tokens SET expires_at = now() - interval '1 second' WHERE user_id = $1", [user.id]);
		const res = await http(sys.url, "POST", "/api/v1/auth/email/verify", { body: { token: verifyToken } });
		expect(res.status).toBe(400);
		expect(res.body.detail).toMatch(/expired/);
	});

	it("forgot answers 202 for known and unknown emails; the reset revokes every session", async () => {
		const { email, token, tokens } = await registerAndLogin(sys.url);
		const second = await http(sys.url, "POST", "/api/v1/auth/login", { body: { email, password: PASSWORD } });
		expect(second.status).toBe(200);

		const unknown = await http(sys.url, "POST", "/api/v1/auth/password/forgot", { body: { email: uniqueEmail("nobody") } });
		expect(unknown.status).toBe(202);
		const known = await http(sys.url, "POST", "/api/v1/auth/password/forgot", { body: { email: email.toUpperCase() } });
		expect(known.status).toBe(202);
		expect(known.text).toBe(unknown.text);

		const mail = await mailTo(email, /reset your password/i);
		expect(mail.text).toContain("https://app.example.test/reset-password?token=");
		const resetToken = linkToken(mail);

		// A bad new password does not use up the token.
		const weak = await http(sys.url, "POST", "/api/v1/auth/password/reset", { body: { token: resetToken, password: "short" } });
		expect(weak.status).toBe(422);

		const NEW = "a brand new passphrase";
		expect((await http(sys.url, "POST", "/api/v1/auth/password/reset", { body: { token: resetToken, password: NEW } })).status).toBe(204);

		// Every session: both access tokens and the refresh tokens fail at once.
		expect((await http(sys.url, "GET", "/api/v1/users/me", { token })).status).toBe(401);
		expect((await http(sys.url, "GET", "/api/v1/users/me", { token: second.body.access_token })).status).toBe(401);
		expect((await http(sys.url, "POST", "/api/v1/auth/refresh", { body: { refresh_token: tokens.refresh_token } })).status).toBe(401);

		expect((await http(sys.url, "POST", "/api/v1/auth/login", { body: { email, password: PASSWORD } })).status).toBe(401);
		expect((await http(sys.url, "POST", "/api/v1/auth/login", { body: { email, password: NEW } })).status).toBe(200);

		const reused = await http(sys.url, "POST", "/api/v1/auth/password/reset", { body: { token: resetToken, password: "yet another passphrase" } });
		expect(reused.status).toBe(400);
		expect(reused.body.detail).toMatch(/already been used/);
	});

	it("an expired reset token is 400, and a verification token is no reset token", async () => {
		const { email, user } = await registerAndLogin(sys.url);
		const verifyToken = linkToken(await mailTo(email, /confirm your email/i));
		const wrongKind = await http(sys.url, "POST", "/api/v1/auth/password/reset", { body: { token: verifyToken, password: "whatever passphrase" } });
		expect(wrongKind.status).toBe(400);

		expect((await http(sys.url, "POST", "/api/v1/auth/password/forgot", { body: { email } })).status).toBe(202);
		const resetToken = linkToken(await mailTo(email, /reset your password/i));
		await query(sys.env.AUTH_DATABASE_URL, "UPDATE action_tokens SET expires_at = now() - interval '1 second' WHERE user_id = $1 AND purpose = 'password_reset'", [user.id]);
		const res = await http(sys.url, "POST", "/api/v1/auth/password/reset", { body: { token: resetToken, password: "whatever passphrase" } });
		expect(res.status).toBe(400);
		expect(res.body.detail).toMatch(/expired/);
	});

	it("forgot is rate limited per email address", async () => {
		const email = uniqueEmail("limited");
		const statuses: number[] = [];
		for (let i = 0; i < 7; i++) statuses.push((await http(sys.url, "POST", "/api/v1/auth/password/forgot", { body: { email } })).status);
		expect(statuses.slice(0, 5)).toEqual([202, 202, 202, 202, 202]);
		expect(statuses[6]).toBe(429);
		const res = await http(sys.url, "POST", "/api/v1/auth/password/forgot", { body: { email } });
		expect(res.status).toBe(429);
		expect(Number(res.headers.get("retry-after"))).toBeGreaterThan(0);
	});

	it("lists the caller's sessions and revokes one at once", async () => {
		const { email, token } = await registerAndLogin(sys.url);
		const other = await http(sys.url, "POST", "/api/v1/auth/login", { body: { email, password: PASSWORD }, headers: { "user-agent": "second-device/1.0" } });
		expect(other.status).toBe(200);

		const list = await http(sys.url, "GET", "/api/v1/auth/sessions", { token });
		expect(list.status).toBe(200);
		expect(list.body).toMatchObject({ total: 2, limit: 20, offset: 0 });
		const current = list.body.items.find((s: { current: boolean }) => s.current);
		const second = list.body.items.find((s: { current: boolean }) => !s.current);
		expect(second).toMatchObject({ user_agent: "second-device/1.0", ip: expect.any(String) });
		for (const s of list.body.items) {
			expect(Object.keys(s).sort()).toEqual(["created_at", "current", "id", "ip", "last_used_at", "user_agent"]);
			expect(new Date(s.created_at).toISOString()).toBe(s.created_at);
		}

		// Its token works (and is cached by the gateway), then fails at once after the revocation.
		expect((await http(sys.url, "GET", "/api/v1/users/me", { token: other.body.access_token })).status).toBe(200);
		expect((await http(sys.url, "DELETE", `/api/v1/auth/sessions/${second.id}`, { token })).status).toBe(204);
		expect((await http(sys.url, "GET", "/api/v1/users/me", { token: other.body.access_token })).status).toBe(401);
		expect((await http(sys.url, "POST", "/api/v1/auth/refresh", { body: { refresh_token: other.body.refresh_token } })).status).toBe(401);
		expect((await http(sys.url, "GET", "/api/v1/users/me", { token })).status).toBe(200);

		const after = await http(sys.url, "GET", "/api/v1/auth/sessions", { token });
		expect(after.body.items.map((s: { id: string }) => s.id)).toEqual([current.id]);

		// Another user's session, an unknown one and an already revoked one are all 404.
		const stranger = await registerAndLogin(sys.url);
		const res = await http(sys.url, "DELETE", `/api/v1/auth/sessions/${current.id}`, { token: stranger.token });
		expect(res.status).toBe(404);
		expect((await http(sys.url, "GET", "/api/v1/users/me", { token })).status).toBe(200);
		expect((await http(sys.url, "DELETE", "/api/v1/auth/sessions/00000000-0000-4000-8000-000000000000", { token })).status).toBe(404);
		expect((await http(sys.url, "DELETE", `/api/v1/auth/sessions/${second.id}`, { token })).status).toBe(404);
		expect((await http(sys.url, "GET", "/api/v1/auth/sessions")).status).toBe(401);
	});
});

describe("REQUIRE_VERIFIED_EMAIL=true", () => {
	let sys: TestSystem;
	let smtp: Smtp;

	beforeAll(async () => {
		smtp = await startSmtp();
		sys = await startSystem({
			services: ["api", "auth", "users", "notifications"],
			env: { ...NOTIFY_ENV, SMTP_URL: smtpUrl(smtp), REQUIRE_VERIFIED_EMAIL: "true" }
		});
	});

	afterAll(async () => {
		await sys?.stop();
		await smtp?.close();
	});

	it("refuses a password login until the email is verified", async () => {
		const email = uniqueEmail();
		expect((await http(sys.url, "POST", "/api/v1/auth/register", { body: { email, password: PASSWORD, name: "Unverified" } })).status).toBe(201);
		const refused = await http(sys.url, "POST", "/api/v1/auth/login", { body: { email, password: PASSWORD } });
		expect(refused.status).toBe(403);
		expect(refused.body.detail).toMatch(/not verified/);
		// A wrong password still gets the plain 401: the 403 tells nothing to someone without the password.
		expect((await http(sys.url, "POST", "/api/v1/auth/login", { body: { email, password: "wrong password!" } })).status).toBe(401);

		const mail = await waitFor(() => smtp.mails.find(m => m.envelope.to.includes(email) && /confirm/i.test(m.headers.subject ?? "")), "the verification mail");
		expect((await http(sys.url, "POST", "/api/v1/auth/email/verify", { body: { token: linkToken(mail) } })).status).toBe(204);
		expect((await http(sys.url, "POST", "/api/v1/auth/login", { body: { email, password: PASSWORD } })).status).toBe(200);
	});
});

describe("signing key rotation", () => {
	let sys: TestSystem;
	const keys = () => query<KeyRow>(sys.env.AUTH_DATABASE_URL, "SELECT kid, private_pem, status FROM signing_keys ORDER BY created_at");
	const jwks = async () => (await http(sys.url, "GET", "/.well-known/jwks.json")).body.keys.map((k: { kid: string }) => k.kid).sort();
	const kidOf = (token: string) => (jwt.decode(token, { complete: true }) as jwt.Jwt).header.kid;

	beforeAll(async () => {
		sys = await startSystem();
	});

	afterAll(async () => {
		await sys?.stop();
	});

	it("a new key signs new tokens; the old one keeps verifying until its tokens expired, then it is retired", async () => {
		const a = await registerAndLogin(sys.url);
		const [k1] = await keys();
		expect(kidOf(a.token)).toBe(k1.kid);
		expect(await jwks()).toEqual([k1.kid]);

		// The CLI, on the same auth database (no cluster: it runs auth itself).
		const run = promisify(execFile);
		const env: NodeJS.ProcessEnv = { ...process.env, NODE_ENV: "test", LOG_LEVEL: "warn", BCRYPT_COST: "4", AUTH_DATABASE_URL: sys.env.AUTH_DATABASE_URL, TRANSPORTER: "" };
		delete env.ADMIN_EMAIL;
		const out = await run(process.execPath, ["--import", "tsx", "scripts/rotate-keys.ts"], { cwd: ROOT, env });
		const all = await keys();
		const k2 = all.find(k => k.status === "current")!;
		expect(out.stdout).toContain(k2.kid);
		expect(all.map(k => k.status).sort()).toEqual(["current", "previous"]);

		// The running node picks the new key up (as a broadcast from a cluster's rotation would make it).
		await sys.broker.broadcast("auth.keys.changed", {});
		await waitFor(async () => (await jwks()).length === 2, "both keys in JWKS");
		expect(await jwks()).toEqual([k1.kid, k2.kid].sort());
		const b = await http(sys.url, "POST", "/api/v1/auth/login", { body: { email: a.email, password: PASSWORD } });
		expect(kidOf(b.body.access_token)).toBe(k2.kid);
		expect((await http(sys.url, "GET", "/api/v1/users/me", { token: b.body.access_token })).status).toBe(200);
		// The old key's token is still good.
		expect((await http(sys.url, "GET", "/api/v1/users/me", { token: a.token })).status).toBe(200);

		// A token of the old key after its expiry is refused.
		const now = Math.floor(Date.now() / 1000);
		const claims = { sub: a.user.id, sid: (jwt.decode(a.token) as { sid: string }).sid };
		const expired = signWith(k1, { ...claims, iat: now - 1000, exp: now - 100 });
		expect((await http(sys.url, "GET", "/api/v1/users/me", { token: expired })).status).toBe(401);
		const fresh = signWith(k1, { ...claims, iat: now, exp: now + 600 });
		expect((await http(sys.url, "GET", "/api/v1/users/me", { token: fresh })).status).toBe(200);

		// Once ACCESS_TOKEN_TTL_S + skew have passed since the rotation, the old key is retired: gone from JWKS, its tokens 401.
		await query(sys.env.AUTH_DATABASE_URL, "UPDATE signing_keys SET rotated_at = now() - interval '1 hour' WHERE kid = $1", [k1.kid]);
		await sys.broker.broadcast("auth.keys.changed", {});
		await waitFor(async () => (await jwks()).length === 1, "the old key retired");
		expect(await jwks()).toEqual([k2.kid]);
		expect((await keys()).find(k => k.kid === k1.kid)!.status).toBe("retired");
		expect((await http(sys.url, "GET", "/api/v1/users/me", { token: a.token })).status).toBe(401);
		expect((await http(sys.url, "GET", "/api/v1/users/me", { token: signWith(k1, { ...claims, iat: now, exp: now + 600 }) })).status).toBe(401);
		expect((await http(sys.url, "GET", "/api/v1/users/me", { token: b.body.access_token })).status).toBe(200);
	});

	it("an emergency rotation retires the old key at once, even for tokens the gateway had cached", async () => {
		const a = await registerAndLogin(sys.url);
		expect((await http(sys.url, "GET", "/api/v1/users/me", { token: a.token })).status).toBe(200);
		const r = await sys.broker.call<{ kid: string; keys: string[] }, object>("auth.rotateKeys", { retire_previous: true });
		expect(r.keys).toEqual([r.kid]);
		await waitFor(async () => (await http(sys.url, "GET", "/api/v1/users/me", { token: a.token })).status === 401, "the old token refused");
		expect(await jwks()).toEqual([r.kid]);
		const b = await http(sys.url, "POST", "/api/v1/auth/login", { body: { email: a.email, password: PASSWORD } });
		expect(kidOf(b.body.access_token)).toBe(r.kid);
	});
});

describe("signing keys from a secret (JWT_PRIVATE_KEY + JWT_PREVIOUS_PUBLIC_KEYS)", () => {
	let sys: TestSystem;
	const old = crypto.generateKeyPairSync("ec", { namedCurve: "P-256" });
	const current = crypto.generateKeyPairSync("ec", { namedCurve: "P-256" });

	beforeAll(async () => {
		sys = await startSystem({
			env: {
				JWT_PRIVATE_KEY: current.privateKey.export({ format: "pem", type: "pkcs8" }).toString(),
				JWT_KEY_ID: "current-key",
				JWT_PREVIOUS_PUBLIC_KEYS: [
					JSON.stringify({ ...old.publicKey.export({ format: "jwk" }), kid: "old-key" }),
					crypto.generateKeyPairSync("ec", { namedCurve: "P-256" }).publicKey.export({ format: "pem", type: "spki" }).toString()
				].join(",")
			}
		});
	});

	afterAll(async () => {
		await sys?.stop();
	});

	it("serves and accepts the previous public keys, signs with the secret's key", async () => {
		const a = await registerAndLogin(sys.url);
		expect((jwt.decode(a.token, { complete: true }) as jwt.Jwt).header.kid).toBe("current-key");
		const kids = (await http(sys.url, "GET", "/.well-known/jwks.json")).body.keys.map((k: { kid: string }) => k.kid);
		expect(kids).toHaveLength(3);
		expect(kids).toEqual(expect.arrayContaining(["current-key", "old-key"]));

		const now = Math.floor(Date.now() / 1000);
		const claims = { sub: a.user.id, sid: (jwt.decode(a.token) as { sid: string }).sid };
		const sign = (iat: number, exp: number) =>
			jwt.sign({ ...claims, roles: ["user"], iat, exp }, old.privateKey, { algorithm: "ES256", keyid: "old-key", issuer: "moleculer-microservices", audience: "moleculer-microservices-api" });
		expect((await http(sys.url, "GET", "/api/v1/users/me", { token: sign(now, now + 600) })).status).toBe(200);
		expect((await http(sys.url, "GET", "/api/v1/users/me", { token: sign(now - 1000, now - 100) })).status).toBe(401);

		// Rotation of a secret's key is the secret's business.
		await expect(sys.broker.call("auth.rotateKeys", {})).rejects.toMatchObject({ code: 409 });
	});
});

describe("login lockout across replicas and restarts", () => {
	let first: TestSystem;
	let second: TestSystem | undefined;

	afterAll(async () => {
		await second?.stop();
		await first?.stop();
	});

	it("two auth nodes on one database share the failure count, and a restart keeps it", async () => {
		const env = { LOGIN_MAX_FAILURES: "3" };
		first = await startSystem({ env });
		const dbs = first.dbs!;
		second = await startSystem({ env, dbs });
		const { email } = await registerAndLogin(first.url);
		const wrong = (url: string) => http(url, "POST", "/api/v1/auth/login", { body: { email, password: "wrong password!" } });
		const right = (url: string) => http(url, "POST", "/api/v1/auth/login", { body: { email, password: PASSWORD } });

		expect((await wrong(first.url)).status).toBe(401);
		expect((await wrong(second.url)).status).toBe(401);
		expect((await wrong(first.url)).status).toBe(401);
		// Three failures over two nodes: the account is locked on both, even with the right password.
		expect((await right(second.url)).status).toBe(429);
		expect((await right(first.url)).status).toBe(429);

		// A restarted node still knows.
		await second.stop();
		second = await startSystem({ env, dbs });
		const res = await right(second.url);
		expect(res.status).toBe(429);
		expect(Number(res.headers.get("retry-after"))).toBeGreaterThan(0);
	});
});
