import crypto from "node:crypto";
import type { ServiceSchema } from "moleculer";
import { Op } from "sequelize";
import { dbMixin, type DbMethods, type DbVars } from "../mixins/db.mixin";
import { outboxMixin, type OutboxMethods } from "../mixins/outbox.mixin";
import { PAGE_PARAMS, requireUser, SAFE_TO_RETRY } from "../lib/access";
import { CHANNELS } from "../lib/channels";
import { config } from "../lib/config";
import { badRequest, conflict, forbidden, isUniqueViolation, notFound, tooManyRequests, unauthorized, unprocessable } from "../lib/errors";
import { broadcastBeforeAnswer } from "../lib/outages";
import type { AppContext } from "../lib/types";
import type { UserView } from "./users/view";
import { consumeActionToken, createActionToken, spendAllTokens, type Purpose } from "./auth/action-tokens";
import { generateKey, parsePrivateKey, parsePublicKeyList, publicJwk, toPem, type SigningKey, type VerifyKey } from "./auth/keys";
import { clearFailures, releaseAttempt, reserveAttempt, type LockoutPolicy } from "./auth/lockout";
import { defineModels, type AuthModels } from "./auth/models";
import { migrations } from "./auth/migrations";
import { BINDING_COOKIE, consumeState, cookieValue, finishLogin, OAuthClients, startLogin, STATE_TTL_S, type ProviderIdentity } from "./auth/oauth";
import { checkPassword, dummyHash, hashPassword, passwordProblem, setSpareCoreMs, storedHash } from "./auth/passwords";
import { isSessionLive, issueRefreshToken, openSession, revokeSessions } from "./auth/sessions";
import { hashToken, signAccessToken, tokenKid, verifyAccessToken, type TokenSettings } from "./auth/tokens";

type Settings = Record<string, never>;

interface TokenPair {
	access_token: string;
	token_type: "Bearer";
	expires_in: number;
	refresh_token: string;
	user_id: string;
}

type Methods = DbMethods & OutboxMethods & {
	loadKeys(): Promise<void>;
	oauthUser(ctx: AppContext, provider: string, id: ProviderIdentity): Promise<UserView>;
	sendLink(t: import("sequelize").Transaction, user: UserView, purpose: Purpose, requestId?: string | null): Promise<void>;
	tokenPair(user: UserView, sid: string, refreshToken: string): TokenPair;
	revoke(where: { id?: string | string[]; user_id?: string }, reason: string): Promise<string[]>;
	ensureAdmin(email: string, password: string): Promise<UserView>;
};

interface Vars {
	keys: Map<string, VerifyKey>;
	currentKey: SigningKey;
	/** true: keys come from JWT_PRIVATE_KEY (+ JWT_PREVIOUS_PUBLIC_KEYS), not from auth_db. */
	keysFromEnv: boolean;
	keysLoadedAt: number;
	keyTimer?: NodeJS.Timeout;
	appUrl: string;
	requireVerifiedEmail: boolean;
	oauth: OAuthClients;
	tokenSettings: TokenSettings;
	lockout: LockoutPolicy;
	bcryptCost: number;
	refreshTtlSeconds: number;
}

type This = DbVars<AuthModels> & Methods & Vars & { broker: import("moleculer").ServiceBroker; logger: import("moleculer").Logger };

const emailParam = { type: "email", max: 320 } as const;
const passwordParam = { type: "string", max: 1024 } as const;
const INVALID_LOGIN = "invalid email or password";

/**
 * A previous key is retired ACCESS_TOKEN_TTL_S + this long after it was rotated out: its tokens have all
 * expired by then, also those a replica signed before it reloaded (within a minute) and clock skew.
 */
const KEY_RETIRE_SKEW_S = 120;
/** Password-reset requests: per email address and per client IP, per hour. */
const FORGOT_PER_EMAIL = { maxFailures: 5, windowMs: 3600 * 1000 };
const FORGOT_PER_IP = { maxFailures: 30, windowMs: 3600 * 1000 };
const providerParam = { type: "string", pattern: /^[A-Za-z0-9_]{1,64}$/ } as const;
const LINK_PATHS: Record<Purpose, string> = { email_verification: "/verify-email", password_reset: "/reset-password" };
const LINK_EVENTS: Record<Purpose, string> = { email_verification: "auth.email_verification_requested", password_reset: "auth.password_reset_requested" };

const AuthService: ServiceSchema<Settings, Methods, This> = {
	name: "auth",
	mixins: [dbMixin({ service: "auth", primary: "Credential", models: defineModels, migrations }), outboxMixin()],

	actions: {
		register: {
			// bcrypt-bound: under a burst of logins the thread pool queues hashes longer than the 2 s default.
			timeout: 10000,
			params: {
				$$strict: true,
				email: emailParam,
				password: passwordParam,
				name: { type: "string", trim: true, min: 1, max: 100 },
				phone: { type: "string", pattern: /^\+[1-9][0-9]{6,14}$/, optional: true, messages: { stringPattern: "phone must be in E.164 format, e.g. +14155550123" } }
			},
			async handler(this: This, ctx: AppContext<{ email: string; password: string; name: string; phone?: string }>) {
				const problem = passwordProblem(ctx.params.password);
				if (problem) throw unprocessable(problem.message, [problem]);
				const hash = await hashPassword(ctx.params.password, this.bcryptCost);
				const id = crypto.randomUUID();
				const user = await ctx.call<UserView, object>("users.create", {
					id,
					email: ctx.params.email.toLowerCase(),
					name: ctx.params.name,
					...(ctx.params.phone ? { phone: ctx.params.phone } : {})
				});
				try {
					// The credential and the verification email commit together.
					await this.transaction(async t => {
						await this.models.Credential.create({ user_id: id, password_hash: hash }, { transaction: t });
						await this.sendLink(t, user, "email_verification", ctx.requestID);
					});
					this.kickOutbox();
				} catch (err) {
					// Without a credential the account is unusable: undo the profile so the email can register again.
					await ctx.call("users.remove", { id }).catch(() => undefined);
					throw err;
				}
				ctx.meta.$statusCode = 201;
				ctx.meta.$location = `/api/v1/users/${id}`;
				return user;
			}
		},

		login: {
			// bcrypt-bound: under a burst of logins the thread pool queues hashes longer than the 2 s default.
			timeout: 10000,
			params: { $$strict: true, email: { type: "string", max: 320 }, password: passwordParam },
			async handler(this: This, ctx: AppContext<{ email: string; password: string }>) {
				const email = ctx.params.email.trim().toLowerCase();
				// Counted before the check, so concurrent guesses cannot slip past the limit.
				const wait = await reserveAttempt(this.sequelize, email, this.lockout);
				if (wait > 0) throw tooManyRequests("too many failed logins; try again later", wait);

				let user: UserView | null;
				let ok: boolean;
				try {
					user = await ctx.call<UserView | null, object>("users.findByEmail", { email });
					const stored = user ? await storedHash(this.sequelize, user.id) : null;
					ok = (await checkPassword(ctx.params.password, stored ?? (await dummyHash(this.bcryptCost)))) && !!user && stored !== null;
				} catch (err) {
					// Our failure, not a wrong guess: it does not count against the account.
					await releaseAttempt(this.sequelize, email).catch(() => undefined);
					throw err;
				}
				if (!ok || !user) throw unauthorized(INVALID_LOGIN);
				await clearFailures(this.sequelize, email);
				if (user.status !== "active") throw forbidden("this account is suspended");
				if (this.requireVerifiedEmail && !user.email_verified) {
					throw forbidden("this email address is not verified yet; open the link in the verification email first");
				}

				const { sid, refreshToken } = await this.transaction(t =>
					openSession(this.models, t, user.id, ctx.meta.client ?? {}, this.refreshTtlSeconds)
				);
				return this.tokenPair(user, sid, refreshToken);
			}
		},

		refresh: {
			params: { $$strict: true, refresh_token: { type: "string", min: 1, max: 512 } },
			async handler(this: This, ctx: AppContext<{ refresh_token: string }>) {
				const row = await this.models.RefreshToken.findOne({ where: { token_hash: hashToken(ctx.params.refresh_token) } });
				if (!row) throw unauthorized("invalid refresh token");
				const sid = row.get("session_id");
				// Single use: only the request that flips `used_at` may rotate. Any other use is a replay.
				const [flipped] = await this.models.RefreshToken.update(
					{ used_at: new Date() },
					{ where: { id: row.get("id"), used_at: { [Op.is]: null }, expires_at: { [Op.gt]: new Date() } } }
				);
				if (flipped !== 1) {
					await row.reload();
					if (row.get("used_at")) {
						await this.revoke({ id: sid }, "refresh_token_reuse");
						this.logger.warn(`Refresh token reuse detected; session ${sid} revoked`);
					}
					throw unauthorized("invalid refresh token");
				}
				const session = await this.models.Session.findByPk(sid);
				if (!session || session.get("revoked_at") || new Date(session.get("expires_at")) <= new Date()) {
					throw unauthorized("session is no longer valid");
				}
				const user = await ctx.call<UserView, object>("users.get", { id: session.get("user_id") });
				if (user.status !== "active") {
					await this.revoke({ id: sid }, "suspended");
					throw unauthorized("session is no longer valid");
				}
				const refreshToken = await this.transaction(async t => {
					await session.update({ last_used_at: new Date() }, { transaction: t });
					return issueRefreshToken(this.models, t, sid, this.refreshTtlSeconds);
				});
				return this.tokenPair(user, sid, refreshToken);
			}
		},

		logout: {
			params: { $$strict: true, refresh_token: { type: "string", min: 1, max: 512, optional: true } },
			async handler(this: This, ctx: AppContext<{ refresh_token?: string }>) {
				const me = requireUser(ctx);
				const sids = [me.sid];
				if (ctx.params.refresh_token) {
					const row = await this.models.RefreshToken.findOne({ where: { token_hash: hashToken(ctx.params.refresh_token) } });
					const other = row ? await this.models.Session.findByPk(row.get("session_id")) : null;
					if (other && other.get("user_id") === me.id) sids.push(other.get("id"));
				}
				await this.revoke({ id: sids, user_id: me.id }, "logout");
				ctx.meta.$statusCode = 204;
				return null;
			}
		},

		forgotPassword: {
			timeout: 10000,
			params: { $$strict: true, email: { type: "string", max: 320 } },
			async handler(this: This, ctx: AppContext<{ email: string }>) {
				const email = ctx.params.email.trim().toLowerCase();
				const ip = ctx.meta.client?.ip ?? "unknown";
				// Counted per address and per client, in auth_db: the limit holds across replicas.
				const waitEmail = await reserveAttempt(this.sequelize, `forgot:email:${email}`, FORGOT_PER_EMAIL);
				const waitIp = await reserveAttempt(this.sequelize, `forgot:ip:${ip}`, FORGOT_PER_IP);
				if (waitEmail > 0 || waitIp > 0) throw tooManyRequests("too many password reset requests; try again later", Math.max(waitEmail, waitIp));
				// The same work whether or not the address is known: a lookup, a token, a transaction; the email goes out later.
				const user = /^[^\s@]+@[^\s@]+$/.test(email) ? await ctx.call<UserView | null, object>("users.findByEmail", { email }) : null;
				await this.transaction(async t => {
					if (user && user.status === "active") await this.sendLink(t, user, "password_reset", ctx.requestID);
					else await this.models.ActionToken.findByPk(hashToken(crypto.randomBytes(32).toString("base64url")), { transaction: t });
				});
				if (user) this.kickOutbox();
				ctx.meta.$statusCode = 202;
				return null;
			}
		},

		resetPassword: {
			timeout: 10000,
			params: { $$strict: true, token: { type: "string", min: 1, max: 256 }, password: passwordParam },
			async handler(this: This, ctx: AppContext<{ token: string; password: string }>) {
				// A bad new password does not use up the token.
				const problem = passwordProblem(ctx.params.password);
				if (problem) throw unprocessable(problem.message, [problem]);
				const userId = await consumeActionToken(this.models, ctx.params.token, "password_reset");
				const password_hash = await hashPassword(ctx.params.password, this.bcryptCost);
				// An account made by OAuth has no password yet: the reset gives it one.
				await this.models.Credential.upsert({ user_id: userId, password_hash });
				await spendAllTokens(this.models, userId, "password_reset");
				await this.revoke({ user_id: userId }, "password_reset");
				const user = await ctx.call<UserView | null, object>("users.get", { id: userId }).catch(() => null);
				if (user) await clearFailures(this.sequelize, user.email);
				ctx.meta.$statusCode = 204;
				return null;
			}
		},

		verifyEmail: {
			params: { $$strict: true, token: { type: "string", min: 1, max: 256 } },
			async handler(this: This, ctx: AppContext<{ token: string }>) {
				const userId = await consumeActionToken(this.models, ctx.params.token, "email_verification");
				await ctx.call("users.update", { id: userId, email_verified: true });
				ctx.meta.$statusCode = 204;
				return null;
			}
		},

		oauthAuthorize: {
			// Strict: no redirect or return parameter is taken from the request, so none can point elsewhere.
			params: { $$strict: true, provider: providerParam },
			async handler(this: This, ctx: AppContext<{ provider: string }>) {
				const p = this.oauth.provider(ctx.params.provider);
				if (!p) throw notFound("no such login provider");
				const client = await this.oauth.client(p);
				const { url, binding } = await startLogin(this.models, client, p);
				const secure = p.redirectUri.startsWith("https:") ? "; Secure" : "";
				ctx.meta.$statusCode = 302;
				ctx.meta.$location = url;
				ctx.meta.$responseHeaders = {
					"Cache-Control": "no-store",
					"Set-Cookie": `${BINDING_COOKIE}=${binding}; Path=/api/v1/auth/oauth; Max-Age=${STATE_TTL_S}; HttpOnly; SameSite=Lax${secure}`
				};
				return null;
			}
		},

		oauthCallback: {
			timeout: 15000,
			params: {
				$$strict: true,
				provider: providerParam,
				code: { type: "string", min: 1, max: 2048, optional: true },
				state: { type: "string", min: 1, max: 512, optional: true },
				iss: { type: "string", max: 2048, optional: true },
				session_state: { type: "string", max: 2048, optional: true },
				error: { type: "string", max: 256, optional: true },
				error_description: { type: "string", max: 1024, optional: true }
			},
			async handler(this: This, ctx: AppContext<{ provider: string; code?: string; state?: string; iss?: string; error?: string; error_description?: string }>) {
				const p = this.oauth.provider(ctx.params.provider);
				if (!p) throw notFound("no such login provider");
				if (!ctx.params.state) throw badRequest("the callback has no state; start the login again");
				const checks = await consumeState(this.models, p.name, ctx.params.state, cookieValue(ctx.meta.cookie, BINDING_COOKIE));
				if (ctx.params.error) throw badRequest(`the login provider refused the login: ${ctx.params.error}`);
				if (!ctx.params.code) throw badRequest("the callback has no code");
				const client = await this.oauth.client(p);
				const identity = await finishLogin(client, p, { code: ctx.params.code, state: ctx.params.state, ...(ctx.params.iss ? { iss: ctx.params.iss } : {}) }, checks);
				const user = await this.oauthUser(ctx, p.name, identity);
				if (user.status !== "active") throw forbidden("this account is suspended");
				if (this.requireVerifiedEmail && !user.email_verified) throw forbidden("this email address is not verified yet");
				const { sid, refreshToken } = await this.transaction(t =>
					openSession(this.models, t, user.id, ctx.meta.client ?? {}, this.refreshTtlSeconds)
				);
				ctx.meta.$responseHeaders = { "Cache-Control": "no-store", "Set-Cookie": `${BINDING_COOKIE}=; Path=/api/v1/auth/oauth; Max-Age=0; HttpOnly; SameSite=Lax` };
				return this.tokenPair(user, sid, refreshToken);
			}
		},

		sessions: {
			params: {
				$$strict: true,
				...PAGE_PARAMS
			},
			async handler(this: This, ctx: AppContext<{ limit: number; offset: number }>) {
				const me = requireUser(ctx);
				const { limit, offset } = ctx.params;
				const { rows, count } = await this.models.Session.findAndCountAll({
					where: { user_id: me.id, revoked_at: { [Op.is]: null }, expires_at: { [Op.gt]: new Date() } },
					order: [["last_used_at", "DESC"], ["id", "ASC"]],
					limit,
					offset
				});
				const iso = (d: Date | string) => new Date(d).toISOString();
				const items = rows.map(r => ({
					id: r.get("id"),
					user_agent: r.get("user_agent") ?? null,
					ip: r.get("ip") ?? null,
					created_at: iso(r.get("created_at")),
					last_used_at: iso(r.get("last_used_at")),
					current: r.get("id") === me.sid
				}));
				return { items, total: count, limit, offset };
			}
		},

		revokeSession: {
			params: { $$strict: true, id: { type: "string", max: 64 } },
			async handler(this: This, ctx: AppContext<{ id: string }>) {
				const me = requireUser(ctx);
				const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
				// Another user's session is as unknown as one that does not exist.
				const revoked = uuid.test(ctx.params.id) ? await this.revoke({ id: ctx.params.id, user_id: me.id }, "revoked_by_user") : [];
				if (!revoked.length) throw notFound("session not found");
				ctx.meta.$statusCode = 204;
				return null;
			}
		},

		jwks: {
			...SAFE_TO_RETRY,
			params: { $$strict: true },
			handler(this: This, ctx: AppContext) {
				ctx.meta.$responseHeaders = { "Cache-Control": "public, max-age=300" };
				return { keys: [...this.keys.values()].map(publicJwk) };
			}
		},

		// ---- Internal ----
		verify: {
			visibility: "public",
			...SAFE_TO_RETRY,
			params: { token: { type: "string", min: 1, max: 4096 } },
			async handler(this: This, ctx: AppContext<{ token: string }>) {
				let claims = verifyAccessToken(ctx.params.token, this.keys, this.tokenSettings);
				const kid = claims ? undefined : tokenKid(ctx.params.token);
				if (!claims && kid && !this.keys.has(kid) && !this.keysFromEnv && Date.now() - this.keysLoadedAt > 1000) {
					// Another replica may have rotated a moment ago: look in auth_db once before refusing.
					await this.loadKeys();
					claims = verifyAccessToken(ctx.params.token, this.keys, this.tokenSettings);
				}
				if (!claims) throw unauthorized("invalid or expired access token");
				if (!(await isSessionLive(this.models, claims.sid, claims.sub))) throw unauthorized("access token has been revoked");
				return { id: claims.sub, sid: claims.sid, roles: claims.roles, exp: claims.exp };
			}
		},

		revokeUserSessions: {
			visibility: "public",
			params: { user_id: { type: "uuid" }, reason: { type: "string", max: 64 } },
			async handler(this: This, ctx: AppContext<{ user_id: string; reason: string }>) {
				const revoked = await this.revoke({ user_id: ctx.params.user_id }, ctx.params.reason);
				return { revoked: revoked.length };
			}
		},

		rotateKeys: {
			visibility: "public",
			params: { retire_previous: { type: "boolean", optional: true } },
			async handler(this: This, ctx: AppContext<{ retire_previous?: boolean }>) {
				if (this.keysFromEnv) {
					throw conflict("signing keys come from JWT_PRIVATE_KEY: put the new key there and the old public key in JWT_PREVIOUS_PUBLIC_KEYS");
				}
				const fresh = generateKey();
				const now = new Date();
				await this.transaction(async t => {
					// retire_previous: an emergency (a leaked key) — tokens of older keys fail at once.
					if (ctx.params.retire_previous) {
						await this.models.SigningKey.update({ status: "retired", retired_at: now }, { where: { status: ["current", "previous"] }, transaction: t });
					} else {
						await this.models.SigningKey.update({ status: "previous", rotated_at: now }, { where: { status: "current" }, transaction: t });
					}
					await this.models.SigningKey.create({ kid: fresh.kid, alg: fresh.alg, private_pem: toPem(fresh), status: "current" }, { transaction: t });
				});
				await this.loadKeys();
				// Every auth replica reloads; gateways drop cached tokens when keys were retired, before the answer leaves.
				await broadcastBeforeAnswer(this.broker, "auth.keys.changed", { kid: fresh.kid, retired: !!ctx.params.retire_previous });
				this.logger.info(`Signing key rotated; ${fresh.kid} signs new tokens`);
				return { kid: fresh.kid, keys: [...this.keys.keys()] };
			}
		},

		ensureAdmin: {
			visibility: "public",
			params: { email: { type: "email", max: 320 }, password: passwordParam },
			async handler(this: This, ctx: AppContext<{ email: string; password: string }>) {
				return this.ensureAdmin(ctx.params.email, ctx.params.password);
			}
		},

		/** For the jobs service: deletes expired refresh tokens, and sessions expired or revoked more than `revoked_days` ago. */
		cleanup: {
			visibility: "public",
			params: { $$strict: true, revoked_days: { type: "number", integer: true, min: 0, max: 365, default: 30, convert: true } },
			async handler(this: This, ctx: AppContext<{ revoked_days: number }>) {
				const now = new Date();
				const revokedBefore = new Date(now.getTime() - ctx.params.revoked_days * 86400000);
				return this.transaction(async t => {
					const gone = await this.models.Session.findAll({
						attributes: ["id"],
						where: { [Op.or]: [{ expires_at: { [Op.lt]: now } }, { revoked_at: { [Op.lt]: revokedBefore } }] },
						transaction: t
					});
					const ids = gone.map(s => s.id as string);
					const tokens = await this.models.RefreshToken.destroy({
						where: { [Op.or]: [{ expires_at: { [Op.lt]: now } }, ...(ids.length ? [{ session_id: { [Op.in]: ids } }] : [])] },
						transaction: t
					});
					const sessions = ids.length ? await this.models.Session.destroy({ where: { id: { [Op.in]: ids } }, transaction: t }) : 0;
					return { refresh_tokens: tokens, sessions };
				});
			}
		}
	},

	methods: {
		async loadKeys(this: This) {
			const cfg = config();
			const keys = new Map<string, VerifyKey>();
			if (cfg.JWT_PRIVATE_KEY) {
				// A cluster with its key from a secret: rotated-out keys are listed as public keys only.
				this.keysFromEnv = true;
				for (const k of parsePublicKeyList(cfg.JWT_PREVIOUS_PUBLIC_KEYS ?? "")) keys.set(k.kid, k);
				this.currentKey = parsePrivateKey(cfg.JWT_PRIVATE_KEY, cfg.JWT_KEY_ID);
			} else {
				this.keysFromEnv = false;
				// Previous keys whose tokens have all expired leave JWKS and stop verifying.
				const cutoff = new Date(Date.now() - (this.tokenSettings.accessTtlSeconds + KEY_RETIRE_SKEW_S) * 1000);
				const [retired] = await this.models.SigningKey.update(
					{ status: "retired", retired_at: new Date() },
					{ where: { status: "previous", rotated_at: { [Op.lt]: cutoff } } }
				);
				// The others reload too, and gateways forget tokens that key had signed.
				if (retired > 0) void this.broker.broadcast("auth.keys.changed", { retired: true });
				// Embedded default: one key made on first start and kept in auth_db, so tokens survive restarts.
				// Replicas that race to create it all settle on the oldest current key.
				const find = () => this.models.SigningKey.findAll({ where: { status: ["current", "previous"] }, order: [["created_at", "ASC"]] });
				let rows = await find();
				if (!rows.some(r => r.get("status") === "current")) {
					const fresh = generateKey();
					await this.models.SigningKey.create({ kid: fresh.kid, alg: fresh.alg, private_pem: toPem(fresh), status: "current" });
					rows = await find();
				}
				const parsed = rows.map(r => ({ key: parsePrivateKey(r.get("private_pem"), r.get("kid")), status: r.get("status") }));
				parsed.forEach(k => keys.set(k.key.kid, k.key));
				this.currentKey = parsed.find(k => k.status === "current")!.key;
			}
			keys.set(this.currentKey.kid, this.currentKey);
			this.keys = keys;
			this.keysLoadedAt = Date.now();
		},

		/** The user of a provider account: linked before, linked now by a verified email, or created. */
		async oauthUser(this: This, ctx: AppContext, provider: string, id: ProviderIdentity) {
			const linked = await this.models.OAuthIdentity.findOne({ where: { provider, subject: id.subject } });
			if (linked) return ctx.call<UserView, object>("users.get", { id: linked.get("user_id") });
			if (!id.email) throw forbidden("the login provider did not share an email address");
			const email = id.email;
			const find = () => ctx.call<UserView | null, object>("users.findByEmail", { email });
			let user = await find();
			if (!user) {
				const name = (id.name?.trim() || email.split("@")[0]).slice(0, 100) || "User";
				user = await ctx
					.call<UserView, object>("users.create", { email, name, email_verified: id.emailVerified })
					.catch(async err => ((err as { code?: number }).code === 409 ? await find() : Promise.reject(err)));
				if (!user) throw new Error("the account vanished while being created");
			} else if (!id.emailVerified) {
				// An address the provider has not verified proves nothing: it never takes over an account.
				throw conflict("an account with this email address already exists, and the login provider has not verified the address; log in with your password");
			} else if (!user.email_verified) {
				user = await ctx.call<UserView, object>("users.update", { id: user.id, email_verified: true });
			}
			try {
				await this.models.OAuthIdentity.create({ provider, subject: id.subject, user_id: user.id, email });
			} catch (err) {
				if (!isUniqueViolation(err)) throw err;
				const row = await this.models.OAuthIdentity.findOne({ where: { provider, subject: id.subject } });
				if (row && row.get("user_id") !== user.id) return ctx.call<UserView, object>("users.get", { id: row.get("user_id") });
			}
			return user;
		},

		async sendLink(this: This, t: import("sequelize").Transaction, user: UserView, purpose: Purpose, requestId?: string | null) {
			const token = await createActionToken(this.models, t, user.id, purpose);
			const link = `${this.appUrl}${LINK_PATHS[purpose]}?token=${encodeURIComponent(token)}`;
			await this.addToOutbox(t, {
				channel: CHANNELS.authEvents,
				type: LINK_EVENTS[purpose],
				data: { user_id: user.id, email: user.email, name: user.name, link },
				requestId
			});
		},

		tokenPair(this: This, user: UserView, sid: string, refreshToken: string): TokenPair {
			return {
				access_token: signAccessToken(this.currentKey, this.tokenSettings, user.id, sid, user.roles),
				token_type: "Bearer",
				expires_in: this.tokenSettings.accessTtlSeconds,
				refresh_token: refreshToken,
				user_id: user.id
			};
		},

		async revoke(this: This, where: { id?: string | string[]; user_id?: string }, reason: string) {
			const sids = await revokeSessions(this.models, where, reason);
			// Every gateway drops cached tokens of these sessions at once: the broadcast is with NATS before the answer leaves.
			if (sids.length) await broadcastBeforeAnswer(this.broker, "auth.sessions.revoked", { sids, reason });
			return sids;
		},

		async ensureAdmin(this: This, email: string, password: string) {
			const problem = passwordProblem(password);
			if (problem) throw unprocessable(problem.message, [problem]);
			// Idempotent and safe to run twice at once (start-up bootstrap and the CLI): a lost race is not an error.
			const find = () => this.broker.call<UserView | null, object>("users.findByEmail", { email });
			let user = await find();
			if (!user) {
				user = await this.broker
					.call<UserView, object>("users.create", { email, name: "Administrator", roles: ["admin", "user"], email_verified: true })
					.catch(async err => ((err as { code?: number }).code === 409 ? await find() : Promise.reject(err)));
				if (!user) throw new Error("admin account vanished while being created");
			}
			if (!user.roles.includes("admin")) {
				user = await this.broker.call<UserView, object>("users.update", { id: user.id, roles: [...user.roles, "admin"] });
			}
			if (!(await this.models.Credential.findByPk(user.id))) {
				const password_hash = await hashPassword(password, this.bcryptCost);
				await this.models.Credential.create({ user_id: user.id, password_hash }).catch(err => {
					if (!isUniqueViolation(err)) throw err;
				});
			}
			this.logger.info(`Admin account ${user.id} is in place`);
			return user;
		}
	},

	created(this: This) {
		const cfg = config();
		this.tokenSettings = { issuer: cfg.JWT_ISSUER, audience: cfg.JWT_AUDIENCE, accessTtlSeconds: cfg.ACCESS_TOKEN_TTL_S };
		this.lockout = { maxFailures: cfg.LOGIN_MAX_FAILURES, windowMs: cfg.LOGIN_WINDOW_MS };
		// Read once here, not per request: the environment the service was created with is the one that counts.
		this.bcryptCost = cfg.BCRYPT_COST;
		setSpareCoreMs(cfg.BCRYPT_SPARE_CORE_MS);
		this.refreshTtlSeconds = cfg.REFRESH_TOKEN_TTL_S;
		this.appUrl = cfg.APP_URL;
		this.requireVerifiedEmail = cfg.REQUIRE_VERIFIED_EMAIL;
		this.oauth = new OAuthClients(cfg.OAUTH);
	},

	events: {
		// Broadcast by rotateKeys: every replica signs with the new key from now on.
		async "auth.keys.changed"(this: This) {
			if (!this.keysFromEnv) await this.loadKeys().catch(err => this.logger.warn(`Could not reload signing keys: ${(err as Error).message}`));
		}
	},

	async started(this: This) {
		await this.loadKeys();
		// Retires previous keys once their tokens have expired, on every replica.
		this.keyTimer = setInterval(() => {
			if (!this.keysFromEnv) void this.loadKeys().catch(err => this.logger.warn(`Could not reload signing keys: ${(err as Error).message}`));
		}, 60000);
		this.keyTimer.unref();
		const { ADMIN_EMAIL, ADMIN_PASSWORD } = config();
		if (ADMIN_EMAIL && ADMIN_PASSWORD) {
			// In a cluster the users service may come up later: wait for it without holding up this start.
			this.broker
				.waitForServices(["users"], 120000)
				.then(() => this.ensureAdmin(ADMIN_EMAIL.toLowerCase(), ADMIN_PASSWORD))
				.catch(err => this.logger.error("Could not make sure the admin account exists", err));
		}
	},

	stopped(this: This) {
		if (this.keyTimer) clearInterval(this.keyTimer);
	}
};

export default AuthService;
