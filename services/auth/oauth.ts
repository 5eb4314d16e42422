import crypto from "node:crypto";
import { Errors } from "moleculer";
import { errors as oidcErrors, generators, Issuer, type BaseClient } from "openid-client";
import { Op } from "sequelize";
import type { OAuthProviderConfig } from "../../lib/config";
import { badRequest, unauthorized } from "../../lib/errors";
import type { AuthModels } from "./models";
import { hashToken } from "./tokens";

/** An authorization request lives this long: the user logs in at the provider in the meantime. */
export const STATE_TTL_S = 10 * 60;
/** The cookie that binds a login to the browser that started it (only its hash is stored). */
export const BINDING_COOKIE = "oauth_binding";

/** The provider (discovery, token endpoint) cannot be reached: 503, never 500. */
export function providerDown(name: string, err: unknown): Errors.MoleculerError {
	// Not a retryable error: a retried callback would find its state already used.
	return new Errors.MoleculerError(`the login provider ${name} cannot be reached: ${(err as Error)?.message ?? err}`, 503, "PROVIDER_UNAVAILABLE");
}

/** OIDC clients of the configured providers, each discovered once (a failed discovery is tried again next time). */
export class OAuthClients {
	private readonly clients = new Map<string, Promise<BaseClient>>();
	private readonly byName: Map<string, OAuthProviderConfig>;

	constructor(providers: OAuthProviderConfig[]) {
		this.byName = new Map(providers.map(p => [p.name, p]));
	}

	provider(name: string): OAuthProviderConfig | undefined {
		return this.byName.get(name.toLowerCase());
	}

	async client(p: OAuthProviderConfig): Promise<BaseClient> {
		let c = this.clients.get(p.name);
		if (!c) {
			c = Issuer.discover(p.issuer).then(
				issuer =>
					new issuer.Client({
						client_id: p.clientId,
						client_secret: p.clientSecret,
						redirect_uris: [p.redirectUri],
						response_types: ["code"],
						token_endpoint_auth_method: "client_secret_basic"
					})
			);
			this.clients.set(p.name, c);
			c.catch(() => this.clients.delete(p.name));
		}
		try {
			return await c;
		} catch (err) {
			throw providerDown(p.name, err);
		}
	}
}

export interface StartedLogin {
	url: string;
	/** The value of the binding cookie for this browser. */
	binding: string;
}

/** A new authorization request: state, nonce and PKCE S256, remembered server-side, bound to the browser. */
export async function startLogin(models: AuthModels, client: BaseClient, p: OAuthProviderConfig): Promise<StartedLogin> {
	const state = generators.state();
	const nonce = generators.nonce();
	const verifier = generators.codeVerifier();
	const binding = crypto.randomBytes(32).toString("base64url");
	await models.OAuthState.create({
		state_hash: hashToken(state),
		provider: p.name,
		nonce,
		code_verifier: verifier,
		binding_hash: hashToken(binding),
		expires_at: new Date(Date.now() + STATE_TTL_S * 1000)
	});
	const url = client.authorizationUrl({
		scope: "openid email profile",
		redirect_uri: p.redirectUri,
		response_type: "code",
		state,
		nonce,
		code_challenge: generators.codeChallenge(verifier),
		code_challenge_method: "S256"
	});
	return { url, binding };
}

/** Uses a state once: unknown, used, expired, another provider's or another browser's state is 400. */
export async function consumeState(models: AuthModels, provider: string, state: string, binding: string | undefined) {
	const row = await models.OAuthState.findByPk(hashToken(state));
	if (!row || row.get("provider") !== provider) throw badRequest("this login state is unknown; start the login again");
	const [flipped] = await models.OAuthState.update(
		{ used_at: new Date() },
		{ where: { state_hash: row.get("state_hash"), used_at: { [Op.is]: null }, expires_at: { [Op.gt]: new Date() } } }
	);
	if (flipped !== 1) {
		await row.reload();
		throw badRequest(row.get("used_at") ? "this login state has already been used; start the login again" : "this login state has expired; start the login again");
	}
	// Checked after the state is spent, so a state seen by someone else is of no use to them either.
	if (!binding || !crypto.timingSafeEqual(Buffer.from(hashToken(binding)), Buffer.from(row.get("binding_hash")))) {
		throw badRequest("this login was started in another browser; start the login again");
	}
	return { nonce: row.get("nonce"), verifier: row.get("code_verifier") };
}

export interface ProviderIdentity {
	subject: string;
	email?: string;
	emailVerified: boolean;
	name?: string;
}

/** Swaps the code for tokens and checks the ID token (signature, iss, aud, exp, nonce) and the PKCE verifier. */
export async function finishLogin(
	client: BaseClient,
	p: OAuthProviderConfig,
	params: { code: string; state: string; iss?: string },
	checks: { nonce: string; verifier: string }
): Promise<ProviderIdentity> {
	let claims;
	try {
		const tokens = await client.callback(p.redirectUri, params, { state: params.state, nonce: checks.nonce, code_verifier: checks.verifier, response_type: "code" });
		claims = tokens.claims();
	} catch (err) {
		if (err instanceof oidcErrors.OPError) throw unauthorized(`the login provider refused the code (${err.error}); start the login again`);
		if (err instanceof oidcErrors.RPError) throw unauthorized(`the login provider's answer failed verification: ${err.message}`);
		throw providerDown(p.name, err);
	}
	return {
		subject: claims.sub,
		email: typeof claims.email === "string" ? claims.email.trim().toLowerCase() : undefined,
		emailVerified: claims.email_verified === true,
		name: typeof claims.name === "string" ? claims.name : undefined
	};
}

/** The value of one cookie in a Cookie header. */
export function cookieValue(header: string | undefined, name: string): string | undefined {
	for (const part of (header ?? "").split(";")) {
		const i = part.indexOf("=");
		if (i > 0 && part.slice(0, i).trim() === name) return decodeURIComponent(part.slice(i + 1).trim());
	}
	return undefined;
}
