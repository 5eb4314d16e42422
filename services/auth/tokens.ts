import crypto from "node:crypto";
import jwt from "jsonwebtoken";
import type { SigningKey, VerifyKey } from "./keys";

export interface AccessClaims {
	iss: string;
	aud: string;
	sub: string;
	iat: number;
	exp: number;
	jti: string;
	sid: string;
	roles: string[];
}

export interface TokenSettings {
	issuer: string;
	audience: string;
	accessTtlSeconds: number;
}

export function signAccessToken(key: SigningKey, s: TokenSettings, sub: string, sid: string, roles: string[]): string {
	return jwt.sign({ sid, roles }, key.privateKey, {
		algorithm: key.alg,
		keyid: key.kid,
		issuer: s.issuer,
		audience: s.audience,
		subject: sub,
		expiresIn: s.accessTtlSeconds,
		jwtid: crypto.randomUUID()
	});
}

/**
 * Verifies an access token against the known keys: the header's `kid` picks the key and the key
 * pins the algorithm, so `none`, HMAC and algorithm-swap tokens never verify. Returns null when invalid.
 */
export function verifyAccessToken(token: string, keys: Map<string, VerifyKey>, s: TokenSettings): AccessClaims | null {
	const decoded = jwt.decode(token, { complete: true });
	if (!decoded || typeof decoded.payload === "string") return null;
	const kid = decoded.header.kid;
	const key = kid ? keys.get(kid) : undefined;
	if (!key || decoded.header.alg !== key.alg) return null;
	try {
		const claims = jwt.verify(token, key.publicKey, {
			algorithms: [key.alg],
			issuer: s.issuer,
			audience: s.audience
		}) as Partial<AccessClaims>;
		if (typeof claims.sub !== "string" || typeof claims.sid !== "string" || !Array.isArray(claims.roles)) return null;
		if (typeof claims.exp !== "number" || typeof claims.iat !== "number") return null;
		if (claims.exp - claims.iat > 900) return null;
		return claims as AccessClaims;
	} catch {
		return null;
	}
}

/** The `kid` in a token's header, if it has one. */
export function tokenKid(token: string): string | undefined {
	const decoded = jwt.decode(token, { complete: true });
	return typeof decoded?.header.kid === "string" ? decoded.header.kid : undefined;
}

/** An opaque refresh token: 256 random bits, base64url. */
export function newRefreshToken(): string {
	return crypto.randomBytes(32).toString("base64url");
}

/** Refresh tokens are stored only as this hash. */
export function hashToken(token: string): string {
	return crypto.createHash("sha256").update(token).digest("hex");
}
