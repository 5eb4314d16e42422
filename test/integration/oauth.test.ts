import crypto from "node:crypto";
import { freePort } from "../helpers/node-process";
import { Browser, startOidcProvider, type OidcProvider } from "../helpers/oidc";
import { query } from "../helpers/pg";
import { http, registerAndLogin, startSystem, uniqueEmail, type TestSystem } from "../helpers/system";

// OAuth 2.0 / OpenID Connect login through the gateway, against a real OpenID Provider
// (`oidc-provider`) started by the test.

const body = (res: Response): Promise<any> => res.json();

const CLIENT = { clientId: "msvc-test-client", clientSecret: "a-test-client-secret" };

describe("OAuth / OIDC login", () => {
	let sys: TestSystem;
	let op: OidcProvider;
	let redirectUri: string;
	let authorizeUrl: string;

	const account = (over: { email?: string; email_verified?: boolean; name?: string } = {}) => ({
		sub: `sub-${crypto.randomUUID()}`,
		email: uniqueEmail("oidc"),
		email_verified: true,
		name: "Oidc User",
		...over
	});

	/** Authorize at the gateway, log in at the provider; returns the callback URL the provider sends the browser to. */
	async function toCallback(browser: Browser, acct: ReturnType<typeof account>, tamper?: (providerUrl: URL) => void): Promise<string> {
		await op.nextLogin(acct);
		const res = await browser.get(authorizeUrl);
		expect(res.status).toBe(302);
		const providerUrl = new URL(res.headers.get("location")!);
		tamper?.(providerUrl);
		return browser.followUntil(providerUrl.toString(), redirectUri);
	}

	beforeAll(async () => {
		const port = await freePort();
		redirectUri = `http://127.0.0.1:${port}/api/v1/auth/oauth/test/callback`;
		authorizeUrl = `http://127.0.0.1:${port}/api/v1/auth/oauth/test/authorize`;
		op = await startOidcProvider({ ...CLIENT, redirectUri });
		const downPort = await freePort();
		sys = await startSystem({
			env: {
				PORT: String(port),
				OAUTH_PROVIDERS: "test,down",
				OAUTH_TEST_ISSUER: op.issuer,
				OAUTH_TEST_CLIENT_ID: CLIENT.clientId,
				OAUTH_TEST_CLIENT_SECRET: CLIENT.clientSecret,
				OAUTH_TEST_REDIRECT_URI: redirectUri,
				OAUTH_DOWN_ISSUER: `http://127.0.0.1:${downPort}`,
				OAUTH_DOWN_CLIENT_ID: "x",
				OAUTH_DOWN_CLIENT_SECRET: "y",
				OAUTH_DOWN_REDIRECT_URI: `http://127.0.0.1:${port}/api/v1/auth/oauth/down/callback`
			}
		});
	});

	afterAll(async () => {
		await sys?.stop();
		await op?.stop();
	});

	it("happy path: authorization code with PKCE S256, state and nonce; the first login creates the user", async () => {
		const browser = new Browser();
		const acct = account({ name: "Grace Hopper" });
		await op.nextLogin(acct);
		const start = await browser.get(authorizeUrl);
		expect(start.status).toBe(302);
		expect(start.headers.get("cache-control")).toBe("no-store");
		expect(start.headers.get("set-cookie")).toMatch(/^oauth_binding=[^;]+; Path=\/api\/v1\/auth\/oauth; Max-Age=600; HttpOnly; SameSite=Lax/);
		const providerUrl = new URL(start.headers.get("location")!);
		expect(providerUrl.origin).toBe(op.issuer);
		const q = providerUrl.searchParams;
		expect(q.get("response_type")).toBe("code");
		expect(q.get("client_id")).toBe(CLIENT.clientId);
		expect(q.get("redirect_uri")).toBe(redirectUri);
		expect(q.get("code_challenge_method")).toBe("S256");
		expect(q.get("code_challenge")).toMatch(/^[A-Za-z0-9_-]{43}$/);
		expect(q.get("state")!.length).toBeGreaterThanOrEqual(32);
		expect(q.get("nonce")!.length).toBeGreaterThanOrEqual(32);

		const callbackUrl = await browser.followUntil(providerUrl.toString(), redirectUri);
		expect(new URL(callbackUrl).searchParams.get("code")).toBeTruthy();
		const done = await browser.get(callbackUrl);
		expect(done.status).toBe(200);
		const pair = await body(done);
		expect(pair).toMatchObject({ token_type: "Bearer", access_token: expect.any(String), refresh_token: expect.any(String), user_id: expect.any(String) });

		const me = await http(sys.url, "GET", "/api/v1/users/me", { token: pair.access_token });
		expect(me.body).toMatchObject({ id: pair.user_id, email: acct.email, name: "Grace Hopper", email_verified: true });

		// The same provider account logs in to the same user.
		const again = await browser.get(await toCallback(browser, acct));
		expect(again.status).toBe(200);
		expect((await body(again)).user_id).toBe(pair.user_id);

		// The account has no password: a password login gets the same 401 as a wrong password.
		const pw = await http(sys.url, "POST", "/api/v1/auth/login", { body: { email: acct.email, password: "any password at all" } });
		const unknown = await http(sys.url, "POST", "/api/v1/auth/login", { body: { email: uniqueEmail("none"), password: "any password at all" } });
		expect(pw.status).toBe(401);
		expect(pw.body.detail).toBe(unknown.body.detail);
	});

	it("an unverified provider email creates the user unverified", async () => {
		const browser = new Browser();
		const acct = account({ email_verified: false });
		const done = await browser.get(await toCallback(browser, acct));
		expect(done.status).toBe(200);
		const pair = await body(done);
		expect((await http(sys.url, "GET", "/api/v1/users/me", { token: pair.access_token })).body.email_verified).toBe(false);
	});

	it("a bad, reused, expired or foreign state is 400", async () => {
		const browser = new Browser();
		const callbackUrl = await toCallback(browser, account());
		// From another browser (without the binding cookie) the state is refused, and spent.
		const foreign = await new Browser().get(callbackUrl);
		expect(foreign.status).toBe(400);
		expect((await body(foreign)).detail).toMatch(/another browser/);
		const reused = await browser.get(callbackUrl);
		expect(reused.status).toBe(400);
		expect((await body(reused)).detail).toMatch(/already been used/);

		const fresh = await toCallback(browser, account());
		expect((await browser.get(fresh)).status).toBe(200);
		expect((await browser.get(fresh)).status).toBe(400);

		const bad = new URL(callbackUrl);
		bad.searchParams.set("state", crypto.randomBytes(32).toString("base64url"));
		const unknown = await browser.get(bad.toString());
		expect(unknown.status).toBe(400);
		expect((await body(unknown)).detail).toMatch(/unknown/);
		bad.searchParams.delete("state");
		expect((await browser.get(bad.toString())).status).toBe(400);

		const late = await toCallback(browser, account());
		await query(sys.env.AUTH_DATABASE_URL, "UPDATE oauth_states SET expires_at = now() - interval '1 second' WHERE used_at IS NULL");
		const expired = await browser.get(late);
		expect(expired.status).toBe(400);
		expect((await body(expired)).detail).toMatch(/expired/);
	});

	it("a code is used once: replayed with a fresh state it fails", async () => {
		const browser = new Browser();
		const first = new URL(await toCallback(browser, account()));
		expect((await browser.get(first.toString())).status).toBe(200);
		// A new login in the same browser gives a fresh state (and binding); the old code rides on it.
		const start = await browser.get(authorizeUrl);
		const state = new URL(start.headers.get("location")!).searchParams.get("state")!;
		const replay = new URL(first.toString());
		replay.searchParams.set("state", state);
		const res = await browser.get(replay.toString());
		expect(res.status).toBe(401);
		expect((await body(res)).detail).toMatch(/refused the code/);
	});

	it("an ID token with another nonce is refused", async () => {
		const browser = new Browser();
		const callbackUrl = await toCallback(browser, account(), u => u.searchParams.set("nonce", crypto.randomBytes(32).toString("base64url")));
		const res = await browser.get(callbackUrl);
		expect(res.status).toBe(401);
		expect((await body(res)).detail).toMatch(/nonce/);
	});

	it("open-redirect attempts are refused", async () => {
		const browser = new Browser();
		for (const extra of ["redirect_uri=https%3A%2F%2Fevil.example%2Fcb", "return_to=https%3A%2F%2Fevil.example%2F", "next=%2F%2Fevil.example"]) {
			const res = await browser.get(`${authorizeUrl}?${extra}`);
			expect([extra, res.status]).toEqual([extra, 422]);
			expect(res.headers.get("location")).toBeNull();
		}
		// A redirect_uri changed on the way to the provider is refused there: the browser is never sent elsewhere.
		await op.nextLogin(account());
		const start = await browser.get(authorizeUrl);
		const tampered = new URL(start.headers.get("location")!);
		tampered.searchParams.set("redirect_uri", "https://evil.example/cb");
		const res = await browser.get(tampered.toString());
		expect(res.headers.get("location") ?? "").not.toMatch(/evil\.example/);
		expect(res.status).toBe(400);
	});

	it("a verified provider email links to the existing account; an unverified one never takes it over", async () => {
		const { email, user } = await registerAndLogin(sys.url);
		const b1 = new Browser();
		const refused = await b1.get(await toCallback(b1, account({ email, email_verified: false })));
		expect(refused.status).toBe(409);
		expect((await body(refused)).detail).toMatch(/not verified/);

		const b2 = new Browser();
		const linked = await b2.get(await toCallback(b2, account({ email: email.toUpperCase(), email_verified: true })));
		expect(linked.status).toBe(200);
		const pair = await body(linked);
		expect(pair.user_id).toBe(user.id);
		expect((await http(sys.url, "GET", "/api/v1/users/me", { token: pair.access_token })).body.email_verified).toBe(true);
	});

	it("an unknown provider is 404; a provider that cannot be reached is 503", async () => {
		const browser = new Browser();
		const unknown = await browser.get(authorizeUrl.replace("/test/", "/nope/"));
		expect(unknown.status).toBe(404);
		const down = await browser.get(authorizeUrl.replace("/test/", "/down/"));
		expect(down.status).toBe(503);
		expect(down.headers.get("retry-after")).toBeTruthy();

		// The provider goes away between the login and the callback.
		const callbackUrl = await toCallback(browser, account());
		await op.stop();
		const res = await browser.get(callbackUrl);
		expect(res.status).toBe(503);
	});
});
