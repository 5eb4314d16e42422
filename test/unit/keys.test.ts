import crypto from "node:crypto";
import { parsePublicKey, parsePublicKeyList, thumbprint } from "../../services/auth/keys";

describe("previous public keys (JWT_PREVIOUS_PUBLIC_KEYS)", () => {
	const ec = crypto.generateKeyPairSync("ec", { namedCurve: "P-256" }).publicKey;
	const rsa = crypto.generateKeyPairSync("rsa", { modulusLength: 2048 }).publicKey;

	it("reads a comma list of PEM and JWK keys, keeping a JWK's commas and kid", () => {
		const jwk = JSON.stringify({ ...ec.export({ format: "jwk" }), kid: "old-1" });
		const pem = rsa.export({ format: "pem", type: "spki" }).toString().replace(/\n/g, "\\n");
		const keys = parsePublicKeyList(`${jwk}, ${pem}`);
		expect(keys.map(k => [k.kid, k.alg])).toEqual([["old-1", "ES256"], [thumbprint(rsa), "RS256"]]);
		expect(parsePublicKeyList(" ")).toEqual([]);
	});

	it("refuses weak or unknown key types", () => {
		const small = crypto.generateKeyPairSync("rsa", { modulusLength: 1024 }).publicKey.export({ format: "pem", type: "spki" }).toString();
		expect(() => parsePublicKey(small)).toThrow(/EC P-256 or an RSA/);
		const ed = crypto.generateKeyPairSync("ed25519").publicKey.export({ format: "pem", type: "spki" }).toString();
		expect(() => parsePublicKey(ed)).toThrow();
	});
});
