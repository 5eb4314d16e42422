import crypto, { type JsonWebKey, type KeyObject } from "node:crypto";

export type SigningAlg = "ES256" | "RS256";

export interface SigningKey {
	kid: string;
	alg: SigningAlg;
	privateKey: KeyObject;
	publicKey: KeyObject;
}

export interface PublicJwk extends JsonWebKey {
	kid: string;
	alg: SigningAlg;
	use: "sig";
}

function algFor(key: KeyObject): SigningAlg {
	if (key.asymmetricKeyType === "ec" && key.asymmetricKeyDetails?.namedCurve === "prime256v1") return "ES256";
	if (key.asymmetricKeyType === "rsa" && (key.asymmetricKeyDetails?.modulusLength ?? 0) >= 2048) return "RS256";
	throw new Error("JWT_PRIVATE_KEY must be an EC P-256 or an RSA (2048 bits or more) private key");
}

/** RFC 7638 thumbprint of a public key, used as its `kid` when none is given. */
export function thumbprint(publicKey: KeyObject): string {
	const jwk = publicKey.export({ format: "jwk" });
	const members = jwk.kty === "EC" ? { crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y } : { e: jwk.e, kty: jwk.kty, n: jwk.n };
	return crypto.createHash("sha256").update(JSON.stringify(members)).digest("base64url");
}

/** Reads a private key given as PEM or as a JWK (JSON). */
export function parsePrivateKey(text: string, kid?: string): SigningKey {
	const trimmed = text.trim();
	const privateKey = trimmed.startsWith("{")
		? crypto.createPrivateKey({ key: JSON.parse(trimmed), format: "jwk" })
		: crypto.createPrivateKey(trimmed.replace(/\\n/g, "\n"));
	const publicKey = crypto.createPublicKey(privateKey);
	return { kid: kid ?? thumbprint(publicKey), alg: algFor(privateKey), privateKey, publicKey };
}

export function generateKey(): SigningKey {
	const { privateKey, publicKey } = crypto.generateKeyPairSync("ec", { namedCurve: "P-256" });
	return { kid: thumbprint(publicKey), alg: "ES256", privateKey, publicKey };
}

export function toPem(key: SigningKey): string {
	return key.privateKey.export({ format: "pem", type: "pkcs8" }).toString();
}

export function publicJwk(key: SigningKey): PublicJwk {
	return { ...key.publicKey.export({ format: "jwk" }), kid: key.kid, alg: key.alg, use: "sig" };
}
