import crypto from "node:crypto";
import jwt from "jsonwebtoken";
import { generateKey, parsePrivateKey, publicJwk, thumbprint, toPem, type SigningKey } from "../../services/auth/keys";
import { hashToken, newRefreshToken, signAccessToken, verifyAccessToken, type TokenSettings } from "../../services/auth/tokens";

const settings: TokenSettings = { issuer: "test-issuer", audience: "test-audience", accessTtlSeconds: 900 };
const SUB = "6f1c1f8e-8f5e-4a39-9a54-3c1f1b2d9a10";
const SID = "0b7e3a52-2f5b-4f43-8d7e-1d4c1c6c1e11";

const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString("base64url");
const nowS = () => Math.floor(Date.now() / 1000);
const claims = (extra: Record<string, unknown> = {}) => ({
	iss: settings.issuer,
	aud: settings.audience,
	sub: SUB,
	sid: SID,
	roles: ["user"],
	iat: nowS(),
	exp: nowS() + 600,
	jti: crypto.randomUUID(),
	...extra
});
/** A token signed with the key's own algorithm but with the given claims. */
const signRaw = (key: SigningKey, payload: Record<string, unknown>, kid = key.kid) =>
	jwt.sign(payload, key.privateKey, { algorithm: key.alg, keyid: kid });

describe("access tokens", () => {
	const key = generateKey();
	const keys = new Map([[key.kid, key]]);

	it("verifies what it signs, with every claim the contract names", () => {
		const token = signAccessToken(key, settings, SUB, SID, ["user", "admin"]);
		const header = jwt.decode(token, { complete: true })!.header;
		expect(header).toMatchObject({ alg: "ES256", kid: key.kid });
		const c = verifyAccessToken(token, keys, settings);
		expect(c).toMatchObject({ iss: settings.issuer, aud: settings.audience, sub: SUB, sid: SID, roles: ["user", "admin"] });
		expect(c!.exp - c!.iat).toBe(900);
		expect(c!.jti).toMatch(/^[0-9a-f-]{36}$/);
		expect(signAccessToken(key, settings, SUB, SID, ["user"])).not.toBe(signAccessToken(key, settings, SUB, SID, ["user"]));
	});

	it("refuses alg none", () => {
		const token = `${b64({ alg: "none", typ: "JWT", kid: key.kid })}.${b64(claims())}.`;
		expect(verifyAccessToken(token, keys, settings)).toBeNull();
		const noKid = `${b64({ alg: "none", typ: "JWT" })}.${b64(claims())}.`;
		expect(verifyAccessToken(noKid, keys, settings)).toBeNull();
	});

	it("refuses HS256 signed with the public key as the secret", () => {
		const pem = key.publicKey.export({ format: "pem", type: "spki" }).toString();
		for (const secret of [pem, JSON.stringify(publicJwk(key))]) {
			const head = `${b64({ alg: "HS256", typ: "JWT", kid: key.kid })}.${b64(claims())}`;
			const sig = crypto.createHmac("sha256", secret).update(head).digest("base64url");
			expect(verifyAccessToken(`${head}.${sig}`, keys, settings)).toBeNull();
		}
	});

	it("refuses an unknown kid, a missing kid and another key posing as ours", () => {
		const other = generateKey();
		expect(verifyAccessToken(signRaw(other, claims()), keys, settings)).toBeNull();
		expect(verifyAccessToken(jwt.sign(claims(), key.privateKey, { algorithm: "ES256" }), keys, settings)).toBeNull();
		expect(verifyAccessToken(signRaw(other, claims(), key.kid), keys, settings)).toBeNull();
	});

	it("refuses a tampered payload", () => {
		const [h, , s] = signAccessToken(key, settings, SUB, SID, ["user"]).split(".");
		expect(verifyAccessToken(`${h}.${b64(claims({ roles: ["admin"] }))}.${s}`, keys, settings)).toBeNull();
	});

	it("refuses a wrong issuer or audience", () => {
		expect(verifyAccessToken(signAccessToken(key, { ...settings, issuer: "someone-else" }, SUB, SID, []), keys, settings)).toBeNull();
		expect(verifyAccessToken(signAccessToken(key, { ...settings, audience: "another-api" }, SUB, SID, []), keys, settings)).toBeNull();
	});

	it("refuses an expired token", () => {
		expect(verifyAccessToken(signRaw(key, claims({ iat: nowS() - 1000, exp: nowS() - 100 })), keys, settings)).toBeNull();
	});

	it("refuses a token that lives longer than 15 minutes, accepts exactly 15", () => {
		const iat = nowS();
		expect(verifyAccessToken(signRaw(key, claims({ iat, exp: iat + 901 })), keys, settings)).toBeNull();
		expect(verifyAccessToken(signRaw(key, claims({ iat, exp: iat + 900 })), keys, settings)).not.toBeNull();
	});

	it("refuses a token without sid, roles or iat", () => {
		const { sid: _sid, ...noSid } = claims();
		const { roles: _roles, ...noRoles } = claims();
		expect(verifyAccessToken(signRaw(key, noSid), keys, settings)).toBeNull();
		expect(verifyAccessToken(signRaw(key, noRoles), keys, settings)).toBeNull();
		const { iat: _iat, ...noIat } = claims();
		expect(verifyAccessToken(jwt.sign(noIat, key.privateKey, { algorithm: "ES256", keyid: key.kid, noTimestamp: true }), keys, settings)).toBeNull();
	});

	it("refuses garbage", () => {
		for (const junk of ["", "a.b.c", "not-a-token", `${b64({ alg: "ES256", kid: key.kid })}.${b64("a string")}.x`]) {
			expect(verifyAccessToken(junk, keys, settings)).toBeNull();
		}
	});
});

describe("signing keys", () => {
	it("reads a PEM, also with escaped newlines as an env var carries it", () => {
		const original = generateKey();
		const pem = toPem(original);
		const key = parsePrivateKey(pem);
		expect(key.alg).toBe("ES256");
		expect(key.kid).toBe(original.kid);
		expect(key.kid).toBe(thumbprint(original.publicKey));
		expect(parsePrivateKey(pem.replace(/\n/g, "\\n")).kid).toBe(original.kid);
		expect(parsePrivateKey(pem, "my-kid").kid).toBe("my-kid");
	});

	it("reads a JWK given as JSON", () => {
		const original = generateKey();
		const jwk = JSON.stringify(original.privateKey.export({ format: "jwk" }));
		const key = parsePrivateKey(jwk);
		expect(key).toMatchObject({ alg: "ES256", kid: original.kid });
		const token = signAccessToken(key, settings, SUB, SID, ["user"]);
		expect(verifyAccessToken(token, new Map([[original.kid, original]]), settings)).not.toBeNull();
	});

	it("signs with RS256 given a 2048-bit RSA key, and its public JWK has no private part", () => {
		const { privateKey } = crypto.generateKeyPairSync("rsa", { modulusLength: 2048 });
		const key = parsePrivateKey(privateKey.export({ format: "pem", type: "pkcs1" }).toString());
		expect(key.alg).toBe("RS256");
		const token = signAccessToken(key, settings, SUB, SID, ["user"]);
		expect(jwt.decode(token, { complete: true })!.header.alg).toBe("RS256");
		expect(verifyAccessToken(token, new Map([[key.kid, key]]), settings)).toMatchObject({ sub: SUB });
		const jwk = publicJwk(key);
		expect(jwk).toMatchObject({ kty: "RSA", kid: key.kid, alg: "RS256", use: "sig" });
		expect(jwk.d).toBeUndefined();
	});

	it("refuses a 1024-bit RSA key and a P-384 key", () => {
		const weak = crypto.generateKeyPairSync("rsa", { modulusLength: 1024 }).privateKey;
		expect(() => parsePrivateKey(weak.export({ format: "pem", type: "pkcs8" }).toString())).toThrow(/RSA \(2048 bits or more\)/);
		const p384 = crypto.generateKeyPairSync("ec", { namedCurve: "P-384" }).privateKey;
		expect(() => parsePrivateKey(p384.export({ format: "pem", type: "pkcs8" }).toString())).toThrow(/EC P-256/);
		expect(() => parsePrivateKey(JSON.stringify(p384.export({ format: "jwk" })))).toThrow(/EC P-256/);
	});

	it("refuses a public key and junk", () => {
		const pub = generateKey().publicKey.export({ format: "pem", type: "spki" }).toString();
		expect(() => parsePrivateKey(pub)).toThrow();
		expect(() => parsePrivateKey("not a key")).toThrow();
	});
});

describe("refresh tokens", () => {
	it("are 256 random bits, stored only as a SHA-256 hash", () => {
		const t = newRefreshToken();
		expect(Buffer.from(t, "base64url")).toHaveLength(32);
		expect(newRefreshToken()).not.toBe(t);
		expect(hashToken(t)).toMatch(/^[0-9a-f]{64}$/);
		expect(hashToken(t)).toBe(hashToken(t));
		expect(hashToken(t)).not.toContain(t);
	});
});
