import crypto from "node:crypto";
import jwt from "jsonwebtoken";
import { http, registerAndLogin, startSystem, uniqueEmail, type TestSystem } from "../helpers/system";

describe("signing keys from the environment (cluster setting)", () => {
	const systems: TestSystem[] = [];
	afterAll(async () => {
		for (const s of systems) await s.stop();
	});

	it("a PEM key (newlines escaped, as in an env file) signs tokens that verify against the JWKS", async () => {
		const { privateKey, publicKey } = crypto.generateKeyPairSync("ec", { namedCurve: "P-256" });
		const pem = privateKey.export({ format: "pem", type: "pkcs8" }).toString().replace(/\n/g, "\\n");
		const sys = await startSystem({ env: { JWT_PRIVATE_KEY: pem, JWT_KEY_ID: "ops-2026-11" } });
		systems.push(sys);
		const { token } = await registerAndLogin(sys.url);
		const header = jwt.decode(token, { complete: true })!.header;
		expect(header).toMatchObject({ alg: "ES256", kid: "ops-2026-11" });
		expect(() => jwt.verify(token, publicKey, { algorithms: ["ES256"] })).not.toThrow();
		const jwks = await http(sys.url, "GET", "/.well-known/jwks.json");
		expect(jwks.body.keys.map((k: { kid: string }) => k.kid)).toEqual(["ops-2026-11"]);
	});

	it("an RSA key given as a JWK signs RS256 tokens, kid = its RFC 7638 thumbprint", async () => {
		const { privateKey } = crypto.generateKeyPairSync("rsa", { modulusLength: 2048 });
		const sys = await startSystem({ env: { JWT_PRIVATE_KEY: JSON.stringify(privateKey.export({ format: "jwk" })) } });
		systems.push(sys);
		const { token } = await registerAndLogin(sys.url);
		const header = jwt.decode(token, { complete: true })!.header;
		expect(header.alg).toBe("RS256");
		const jwks = await http(sys.url, "GET", "/.well-known/jwks.json");
		expect(jwks.body.keys).toHaveLength(1);
		expect(jwks.body.keys[0]).toMatchObject({ kty: "RSA", alg: "RS256", use: "sig", kid: header.kid });
		expect(jwks.body.keys[0].d).toBeUndefined();
		const me = await http(sys.url, "GET", "/api/v1/users/me", { token });
		expect(me.status).toBe(200);
	});
});

describe("graceful stop", () => {
	it("answers a request already in flight before the node stops", async () => {
		// A real bcrypt cost makes the login take long enough to stop the broker in the middle of it.
		const sys = await startSystem({ env: { BCRYPT_COST: "12" } });
		try {
			const email = uniqueEmail();
			expect((await http(sys.url, "POST", "/api/v1/auth/register", { body: { email, password: "drain me please", name: "D" } })).status).toBe(201);
			const inflight = http(sys.url, "POST", "/api/v1/auth/login", { body: { email, password: "drain me please" } });
			await new Promise(r => setTimeout(r, 30));
			const stopping = sys.broker.stop();
			const res = await inflight;
			await stopping;
			expect(res.status).toBe(200);
			expect(res.body.access_token).toBeTruthy();
		} finally {
			await sys.stop().catch(() => undefined);
		}
	});
});
