import crypto from "node:crypto";
import type { ServiceSchema } from "moleculer";
import { Op } from "sequelize";
import { dbMixin, type DbMethods, type DbVars } from "../mixins/db.mixin";
import { requireUser, SAFE_TO_RETRY } from "../lib/access";
import { config } from "../lib/config";
import { forbidden, isUniqueViolation, tooManyRequests, unauthorized, unprocessable } from "../lib/errors";
import type { AppContext } from "../lib/types";
import type { UserView } from "./users/view";
import { generateKey, parsePrivateKey, publicJwk, toPem, type SigningKey } from "./auth/keys";
import { clearFailures, releaseAttempt, reserveAttempt, type LockoutPolicy } from "./auth/lockout";
import { defineModels, type AuthModels } from "./auth/models";
import { migrations } from "./auth/migrations";
import { checkPassword, dummyHash, hashPassword, passwordProblem } from "./auth/passwords";
import { isSessionLive, issueRefreshToken, openSession, revokeSessions } from "./auth/sessions";
import { hashToken, signAccessToken, verifyAccessToken, type TokenSettings } from "./auth/tokens";

type Settings = Record<string, never>;

interface TokenPair {
	access_token: string;
	token_type: "Bearer";
	expires_in: number;
	refresh_token: string;
	user_id: string;
}

type Methods = DbMethods & {
	loadKeys(): Promise<void>;
	tokenPair(user: UserView, sid: string, refreshToken: string): TokenPair;
	revoke(where: { id?: string | string[]; user_id?: string }, reason: string): Promise<string[]>;
	ensureAdmin(email: string, password: string): Promise<UserView>;
};

interface Vars {
	keys: Map<string, SigningKey>;
	currentKey: SigningKey;
	tokenSettings: TokenSettings;
	lockout: LockoutPolicy;
	bcryptCost: number;
	refreshTtlSeconds: number;
}

type This = DbVars<AuthModels> & Methods & Vars & { broker: import("moleculer").ServiceBroker; logger: import("moleculer").Logger };

const emailParam = { type: "email", max: 320 } as const;
const passwordParam = { type: "string", max: 1024 } as const;
const INVALID_LOGIN = "invalid email or password";

const AuthService: ServiceSchema<Settings, Methods, This> = {
	name: "auth",
	mixins: [dbMixin({ service: "auth", primary: "Credential", models: defineModels, migrations })],

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
					await this.models.Credential.create({ user_id: id, password_hash: hash });
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
					const credential = user ? await this.models.Credential.findByPk(user.id) : null;
					const hash = credential?.get("password_hash") ?? (await dummyHash(this.bcryptCost));
					ok = (await checkPassword(ctx.params.password, hash)) && !!user && !!credential;
				} catch (err) {
					// Our failure, not a wrong guess: it does not count against the account.
					await releaseAttempt(this.sequelize, email).catch(() => undefined);
					throw err;
				}
				if (!ok || !user) throw unauthorized(INVALID_LOGIN);
				await clearFailures(this.sequelize, email);
				if (user.status !== "active") throw forbidden("this account is suspended");

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
				const claims = verifyAccessToken(ctx.params.token, this.keys, this.tokenSettings);
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

		ensureAdmin: {
			visibility: "public",
			params: { email: { type: "email", max: 320 }, password: passwordParam },
			async handler(this: This, ctx: AppContext<{ email: string; password: string }>) {
				return this.ensureAdmin(ctx.params.email, ctx.params.password);
			}
		}
	},

	methods: {
		async loadKeys(this: This) {
			const cfg = config();
			const keys = new Map<string, SigningKey>();
			if (cfg.JWT_PRIVATE_KEY) {
				this.currentKey = parsePrivateKey(cfg.JWT_PRIVATE_KEY, cfg.JWT_KEY_ID);
			} else {
				// Embedded default: one key made on first start and kept in auth_db, so tokens survive restarts.
				// Replicas that race to create it all settle on the oldest live key.
				const find = () => this.models.SigningKey.findAll({ where: { retired_at: { [Op.is]: null } }, order: [["created_at", "ASC"]] });
				let rows = await find();
				if (!rows.length) {
					const fresh = generateKey();
					await this.models.SigningKey.create({ kid: fresh.kid, alg: fresh.alg, private_pem: toPem(fresh) });
					rows = await find();
				}
				const parsed = rows.map(r => parsePrivateKey(r.get("private_pem"), r.get("kid")));
				parsed.forEach(k => keys.set(k.kid, k));
				this.currentKey = parsed[0];
			}
			keys.set(this.currentKey.kid, this.currentKey);
			this.keys = keys;
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
			// Every gateway drops cached tokens of these sessions at once.
			if (sids.length) await this.broker.broadcast("auth.sessions.revoked", { sids, reason });
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
		this.refreshTtlSeconds = cfg.REFRESH_TOKEN_TTL_S;
	},

	async started(this: This) {
		await this.loadKeys();
		const { ADMIN_EMAIL, ADMIN_PASSWORD } = config();
		if (ADMIN_EMAIL && ADMIN_PASSWORD) {
			// In a cluster the users service may come up later: wait for it without holding up this start.
			this.broker
				.waitForServices(["users"], 120000)
				.then(() => this.ensureAdmin(ADMIN_EMAIL.toLowerCase(), ADMIN_PASSWORD))
				.catch(err => this.logger.error("Could not make sure the admin account exists", err));
		}
	}
};

export default AuthService;
