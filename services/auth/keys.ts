import crypto, { type JsonWebKey, type KeyObject } from "node:crypto";

export type SigningAlg = "ES256" | "RS256";

export interface SigningKey {
	kid: string;
	alg: SigningAlg;
	privateKey: KeyObject;
	publicKey: KeyObject;
}

/** A key that only verifies: a previous key whose private half this node does not hold. */
export type VerifyKey = Omit<SigningKey, "privateKey">;

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

/** Reads a public key given as PEM or as a JWK (JSON), e.g. one of JWT_PREVIOUS_PUBLIC_KEYS. */
export function parsePublicKey(text: string): VerifyKey {
	const trimmed = text.trim();
	const jwk = trimmed.startsWith("{") ? (JSON.parse(trimmed) as JsonWebKey & { kid?: string }) : undefined;
	const publicKey = jwk
		? crypto.createPublicKey({ key: { kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y, n: jwk.n, e: jwk.e }, format: "jwk" })
		: crypto.createPublicKey(trimmed.replace(/\\n/g, "\n"));
	return { kid: (typeof jwk?.kid === "string" && jwk.kid) || thumbprint(publicKey), alg: algFor(publicKey), publicKey };
}

/** JWT_PREVIOUS_PUBLIC_KEYS: PEM or JWK public keys, separated by commas (a PEM holds none; a JWK's own commas are kept). */
export function parsePublicKeyList(text: string): VerifyKey[] {
	const items: string[] = [];
	let depth = 0;
	let cur = "";
	for (const ch of text) {
		if (ch === "{") depth++;
		if (ch === "}") depth--;
		if (ch === "," && depth === 0) {
			items.push(cur);
			cur = "";
		} else cur += ch;
	}
	items.push(cur);
	return items.map(i => i.trim()).filter(Boolean).map(parsePublicKey);
}

export function generateKey(): SigningKey {
	const { privateKey, publicKey } = crypto.generateKeyPairSync("ec", { namedCurve: "P-256" });
	return { kid: thumbprint(publicKey), alg: "ES256", privateKey, publicKey };
}

export function toPem(key: SigningKey): string {
	return key.privateKey.export({ format: "pem", type: "pkcs8" }).toString();
}

export function publicJwk(key: VerifyKey): PublicJwk {
	return { ...key.publicKey.export({ format: "jwk" }), kid: key.kid, alg: key.alg, use: "sig" };
}
