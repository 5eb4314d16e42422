import crypto from "node:crypto";
import http, { type Server as HttpServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import type { Context, ServiceSchema } from "moleculer";
import ApiGateway from "moleculer-web";
import { composeThen } from "moleculer-web/src/utils";
import proxyaddr from "proxy-addr";
import { config } from "../lib/config";
import { markForeground } from "../lib/foreground";
import { batchResponses } from "../lib/http-batching";
import { unauthorized } from "../lib/errors";
import { acceptRequestId, requestScope } from "../lib/request-context";
import type { AuthUser } from "../lib/types";
import { sendAdminAsset, sendAdminPage } from "./api/admin-panel";
import { AliasIndex, type Alias, type Found } from "./api/alias-index";
import { sendDocsAsset, sendDocsPage } from "./api/docs";
import { GatewayResponse } from "./api/gateway-response";
import { openapiDocument } from "./api/openapi";
import { toProblem } from "./api/problem";
import { consume, createRateLimit, type RateLimit } from "./api/rate-limit";
import { TokenCache } from "./api/token-cache";

type Req = IncomingMessage & {
	$ctx: Context<unknown, Record<string, any>>;
	$alias?: { action?: string };
	originalUrl?: string;
	body?: unknown;
	clientIp?: string;
	parsedUrl?: string;
	query?: Record<string, unknown>;
	$route?: Route;
	$params?: Record<string, unknown>;
};
type Res = ServerResponse & { $route?: Route };
type Next = (err?: unknown) => void;
type Step = (req: Req, res: Res, next: Next) => void;
/** What moleculer-web's routeHandler reads of a route. */
interface Route {
	path: string;
	opts: { mergeParams?: boolean };
	middlewares: Step[];
	cors?: unknown;
}

/** moleculer-web's own methods the gateway's versions fall back to. */
const gatewayMethods = (
	ApiGateway as unknown as {
		methods: {
			resolveAlias(this: unknown, url: string, method: string): Found | false;
			createServer(this: unknown): void;
			routeHandler(this: unknown, ctx: Context, route: Route, req: Req, res: Res, found?: Found): Promise<unknown>;
		};
	}
).methods;
const scanAliases = gatewayMethods.resolveAlias;

/** The gateway's own route steps: each always calls `next`, with an error or without (see routeHandler). */
const SETTLING_STEPS = new WeakSet<Step>();
const isSettling = (step: Step) => SETTLING_STEPS.has(step);

/**
 * What moleculer-web's once("error") listener does for a response: a write after its end, reported by Node as an
 * "error" event (thrown when nothing listens), does not take the node down.
 */
function ignoreLateError(): void {}

/** Actions a client may call without a token. */
const PUBLIC_ACTIONS = new Set([
	"auth.register",
	"auth.login",
	"auth.refresh",
	"auth.jwks",
	"auth.forgotPassword",
	"auth.resetPassword",
	"auth.verifyEmail",
	"auth.oauthAuthorize",
	"auth.oauthCallback"
]);

/** Actions that hash or check a password: their requests do not count as other traffic to the bcrypt pool. */
const PASSWORD_WORK = new Set<string | undefined>(["auth.register", "auth.login", "auth.resetPassword"]);

interface Vars {
	/** Services the API cannot answer without; `/health/ready` checks each one and its database. */
	readyServices: string[];
	tokens: TokenCache;
	rateLimit: RateLimit;
	/** Which hops of X-Forwarded-For are trusted proxies; null when none is (the client is the socket's peer). */
	trust: ((addr: string, i: number) => boolean) | null;
	server: HttpServer;
	/** Open connections (see `drain`): tracked per connection, so a request costs nothing here. */
	connections: Set<Socket>;
	/** moleculer-web's aliases, kept by moleculer-web. */
	aliases: Alias[];
	aliasIndex: AliasIndex;
}
type Methods = {
	authenticate(ctx: Context<unknown, any>, route: unknown, req: Req): Promise<AuthUser | null>;
	verifyToken(ctx: Context, token: string): Promise<AuthUser>;
	sendProblem(req: Req, res: Res, err: unknown): void;
	errorHandler(req: Req, res: Res, err: unknown): void;
	readiness(): Promise<{ ready: boolean; checks: Record<string, "ok" | "down"> }>;
	clientIp(req: Req): string;
	drain(): Promise<void>;
	resolveAlias(url: string, method?: string): Found | false;
	createServer(): void;
	routeHandler(ctx: Context, route: Route, req: Req, res: Res, found?: Found): Promise<unknown>;
};
type This = Vars & Methods & {
	settings: Record<string, any>;
	logRequest(req: Req): void;
	corsHandler(route: Route, req: Req, res: Res): boolean;
	aliasHandler(req: Req, res: Res, alias: Alias): Promise<unknown>;
	logger: import("moleculer").Logger;
	broker: import("moleculer").ServiceBroker;
	httpHandler: (req: IncomingMessage, res: ServerResponse) => void;
	isHTTPS: boolean;
};

function sendJson(res: Res, status: number, body: unknown, headers: Record<string, string> = {}): void {
	res.statusCode = status;
	for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);
	res.setHeader("Content-Type", "application/json; charset=utf-8");
	res.end(JSON.stringify(body));
}

/** The responses being written on these connections (Node sets `_httpMessage` from a request's start to its response's end). */
function inFlight(connections: Set<Socket>): Res[] {
	const out: Res[] = [];
	for (const socket of connections) {
		const res = (socket as Socket & { _httpMessage?: Res | null })._httpMessage;
		if (res) out.push(res);
	}
	return out;
}

/** Whether the request carries a body (chunked, or a non-zero Content-Length). */
function hasBody(req: Req): boolean {
	const length = req.headers["content-length"];
	return req.headers["transfer-encoding"] !== undefined || (length !== undefined && length !== "0");
}

/** 415 for a body that is not JSON, before anything reads it. */
function requireJson(req: Req, _res: Res, next: Next): void {
	const type = (req.headers["content-type"] ?? "").split(";")[0].trim().toLowerCase();
	if (hasBody(req) && type !== "application/json" && !/^application\/[a-z0-9.+-]+\+json$/.test(type)) {
		const err = Object.assign(new Error("body must be application/json"), { code: 415, type: "UNSUPPORTED_MEDIA_TYPE" });
		return next(err);
	}
	next();
}

/** A JSON body must be an object: arrays and scalars are refused before they reach an action. */
function requireObjectBody(req: Req, _res: Res, next: Next): void {
	if (req.body !== undefined && (req.body === null || typeof req.body !== "object" || Array.isArray(req.body))) {
		return next(Object.assign(new Error("body must be a JSON object"), { code: 422, type: "UNPROCESSABLE" }));
	}
	next();
}

const ApiService: ServiceSchema<Record<string, any>, Methods, This> = {
	name: "api",
	mixins: [ApiGateway as unknown as Partial<ServiceSchema>],

	actions: {
		// moleculer-web runs every HTTP request through its `rest` action. No bulkhead around it (each action it
		// calls has its own), and no circuit breaker: one failing service would open it for the whole API.
		rest: { bulkhead: { enabled: false }, circuitBreaker: { enabled: false } }
	},

	settings: {
		ip: "0.0.0.0",
		// Set before any route: a valid client request id is kept, anything else replaced.
		rootCallOptions(this: This, options: Record<string, unknown>, req: Req, res: Res) {
			const requestID = acceptRequestId(req.headers["x-request-id"]) ?? crypto.randomUUID();
			options.requestID = requestID;
			// `rest` itself is not tracked for the graceful stop: the drain waits for its HTTP answer, and the
			// actions it calls are tracked by their own services.
			options.tracking = false;
			// X-Request-ID is set from it by moleculer-web's `rest`, the first thing it does.
			res.setHeader("X-Content-Type-Options", "nosniff");
			res.setHeader("Referrer-Policy", "no-referrer");
			res.setHeader("X-Frame-Options", "DENY");
		},
		log4XXResponses: false,
		// Access lines at debug: a line per read at info would cost the hot paths. Writes get one info line
		// (onAfterCall). Set in created(): off unless LOG_LEVEL is debug or trace, since moleculer-web builds
		// (and colours) each line before the logger can drop it.
		logRequest: null,
		logResponse: null,
		logRequestParams: null,
		logResponseData: null,
		// Routes are added in created(): they need this node's limiter and token cache.
		routes: null,
		onError(this: This, req: Req, res: Res, err: unknown) {
			this.sendProblem(req, res, err);
		}
	},

	methods: {
		/** Replaces moleculer-web's handler, which logs a second line with the stack for every 5xx. */
		errorHandler(this: This, req: Req, res: Res, err: unknown) {
			this.sendProblem(req, res, err);
		},

		/**
		 * Graceful stop of the HTTP side, run by DrainBeforeStop (lib/broker.ts) after SHUTDOWN_DELAY_MS and
		 * before any service stops: no new connections, `Connection: close` on every answer from now on, idle
		 * keep-alive connections closed; resolves once the last in-flight request is answered (after
		 * SHUTDOWN_TIMEOUT_MS, whatever is left is cut).
		 */
		async drain(this: This) {
			const server = this.server;
			if (!server?.listening) return;
			server.prependListener("request", (_req: IncomingMessage, res: Res) => res.setHeader("Connection", "close"));
			for (const res of inFlight(this.connections)) if (!res.headersSent) res.setHeader("Connection", "close");
			const closed = new Promise<void>(resolve => server.close(() => resolve()));
			// A connection whose last answer went out keep-alive before the drain is closed once it is idle.
			const sweep = setInterval(() => server.closeIdleConnections(), 100);
			let unanswered = 0;
			const cut = setTimeout(() => {
				unanswered = inFlight(this.connections).length;
				server.closeAllConnections();
			}, config().SHUTDOWN_TIMEOUT_MS);
			await closed;
			clearInterval(sweep);
			clearTimeout(cut);
			if (unanswered) this.logger.warn(`API gateway closed: ${unanswered} request(s) still running after SHUTDOWN_TIMEOUT_MS were cut`);
			else this.logger.info("API gateway closed after answering every in-flight request");
		},

		/**
		 * moleculer-web's, for plain HTTP (TLS ends in front of the gateway), with the gateway's response
		 * class: its usual headers go out through one `writeHead` (services/api/gateway-response.ts).
		 */
		createServer(this: This) {
			if (this.server) return;
			if (this.settings.https || this.settings.http2) return gatewayMethods.createServer.call(this);
			this.server = http.createServer({ ServerResponse: GatewayResponse }, this.httpHandler);
			this.isHTTPS = false;
			if (this.settings.httpServerTimeout) this.server.setTimeout(this.settings.httpServerTimeout);
			this.server.requestTimeout = this.settings.requestTimeout;
		},

		/** moleculer-web's, with a request for a fixed path found without trying every alias before it. */
		resolveAlias(this: This, url: string, method = "GET") {
			return this.aliasIndex.find(this.aliases, url, method) ?? scanAliases.call(this, url, method);
		},

		/**
		 * moleculer-web's, lighter for a request to an action alias on a route whose steps are all the
		 * gateway's own. moleculer-web wraps every request in a promise that also settles on the response's
		 * finish, close or error (three listeners a request), for answers that an alias function or a step that
		 * never calls `next` writes. Neither happens here: the same steps run in the same order, and the
		 * action's answer settles the request. Anything else (alias functions, the webhook route) is moleculer-web's.
		 * Measured on authenticated `GET /users/me`: about 0.92 of the CPU per request, 1.7 KB less allocated.
		 */
		routeHandler(this: This, ctx: Context, route: Route, req: Req, res: Res, found?: Found) {
			const alias = found?.alias as (Alias & { action?: string; handler?: unknown }) | undefined;
			if (!found || !alias?.action || alias.handler || route.opts.mergeParams === false || !route.middlewares.every(isSettling)) {
				return gatewayMethods.routeHandler.call(this, ctx, route, req, res, found);
			}
			req.$route = route;
			res.$route = route;
			res.on("error", ignoreLateError);
			this.logRequest(req);
			return composeThen.call<This, [Req, Res, ...Step[]], Promise<void>>(this, req, res, ...route.middlewares).then(() => {
				if (this.corsHandler(route, req, res)) return true;
				const body = req.body;
				req.$params = Object.assign({}, body !== null && (typeof body === "object" || typeof body === "function") ? body : undefined, req.query, found.params);
				this.logger.debug("  Alias:", alias.toString());
				req.$alias = alias;
				return this.aliasHandler(req, res, alias);
			});
		},

		clientIp(this: This, req: Req) {
			return this.trust ? proxyaddr(req, this.trust) : (req.socket.remoteAddress ?? "");
		},

		async authenticate(this: This, ctx: Context<unknown, any>, _route: unknown, req: Req) {
			ctx.meta.client = { ip: req.clientIp ?? this.clientIp(req), user_agent: req.headers["user-agent"]?.slice(0, 512) };
			const action = req.$alias?.action;
			if (action && PUBLIC_ACTIONS.has(action)) return null;
			const header = req.headers.authorization;
			if (!header) throw unauthorized("missing bearer token");
			// A token verified before is found by the header's text; only a new one has its format checked.
			const known = header.startsWith("Bearer ") ? this.tokens.get(header.slice(7)) : undefined;
			if (known) return known;
			const match = /^Bearer ([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*)$/.exec(header);
			if (!match) throw unauthorized("malformed Authorization header; expected: Bearer <access_token>");
			return this.verifyToken(ctx, match[1]);
		},

		/** Asks auth about a token the cache does not hold (authenticate looked), and keeps the answer. */
		async verifyToken(this: This, ctx: Context, token: string) {
			const user = await ctx.call<AuthUser, { token: string }>("auth.verify", { token });
			this.tokens.set(token, user);
			return user;
		},

		sendProblem(this: This, req: Req, res: Res, err: unknown) {
			const requestId = String(res.getHeader("X-Request-ID") ?? req.$ctx?.requestID ?? crypto.randomUUID());
			const instance = (req.originalUrl ?? req.url ?? "/").split("?")[0];
			const { status, body, headers, internal } = toProblem(err, instance, requestId);
			if (internal || status >= 500) {
				const e = err as Error;
				requestScope.run({ requestID: requestId }, () =>
					this.logger.error(`Request failed: ${req.method} ${instance} -> ${status} ${e?.name ?? ""}: ${e?.message ?? ""}`)
				);
			}
			if (res.headersSent) return void res.end();
			res.statusCode = status;
			for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);
			res.setHeader("Content-Type", "application/problem+json");
			res.setHeader("Cache-Control", "no-store");
			res.end(JSON.stringify(body));
		},

		async readiness(this: This) {
			// Stopping (SIGTERM): out of rotation at once, while requests are still served for SHUTDOWN_DELAY_MS.
			if (!this.broker.started) return { ready: false, checks: {} };
			const checks: Record<string, "ok" | "down"> = {};
			await Promise.all(
				this.readyServices.map(async name => {
					try {
						const r = await this.broker.call<{ db: boolean }, object>(`${name}.health`, {}, { timeout: 1000, retries: 0 });
						checks[name] = r.db ? "ok" : "down";
					} catch {
						checks[name] = "down";
					}
				})
			);
			return { ready: Object.values(checks).every(v => v === "ok"), checks };
		}
	},

	events: {
		// Broadcast by auth on logout, refresh-token reuse, password reset or suspension.
		"auth.sessions.revoked"(this: This, ctx: Context<{ sids: string[] }>) {
			this.tokens.revokeSessions(ctx.params.sids);
		},
		// Broadcast by auth on key rotation: when keys were retired, cached tokens they signed must fail at once.
		"auth.keys.changed"(this: This, ctx: Context<{ retired?: boolean }>) {
			if (ctx.params.retired) this.tokens.clear();
		}
	},

	created(this: This) {
		const cfg = config();
		// moleculer-web created the server in its own created(), which runs first.
		if (this.server) batchResponses(this.server);
		this.connections = new Set();
		this.aliasIndex = new AliasIndex();
		this.server?.on("connection", (socket: Socket) => {
			this.connections.add(socket);
			socket.once("close", () => this.connections.delete(socket));
		});
		this.tokens = new TokenCache(cfg.TOKEN_CACHE_TTL_MS);
		this.readyServices = cfg.READY_SERVICES.split(",").map(v => v.trim()).filter(Boolean);
		const proxies = cfg.TRUSTED_PROXIES.split(",").map(s => s.trim()).filter(Boolean);
		this.trust = proxies.length ? proxyaddr.compile(proxies) : null;
		this.rateLimit = createRateLimit({
			windowMs: cfg.RATE_LIMIT_WINDOW_MS,
			max: cfg.RATE_LIMIT_MAX,
			redisUrl: cfg.REDIS_URL,
			keyPrefix: `rl:${cfg.NAMESPACE || "default"}`
		});

		const rateLimited = (req: Req, res: Res, next: Next) => {
			req.clientIp = this.clientIp(req);
			// `.catch(next)` also takes a `setHeader` that throws because the answer has already gone.
			consume(this.rateLimit.limiter, req.clientIp).then(d => {
				res.setHeader("RateLimit-Limit", String(d.limit));
				res.setHeader("RateLimit-Remaining", String(Math.max(0, d.remaining)));
				res.setHeader("RateLimit-Reset", String(d.resetSeconds));
				if (!d.allowed) {
					return next(Object.assign(new Error("rate limit exceeded"), { code: 429, type: "TOO_MANY_REQUESTS", data: { retry_after: d.resetSeconds } }));
				}
				next();
			}).catch(next);
		};
		const rawText = ApiGateway.bodyParser.text({ limit: cfg.BODY_LIMIT_BYTES, type: () => true });
		const json = ApiGateway.bodyParser.json({ limit: cfg.BODY_LIMIT_BYTES, strict: true, type: ["application/json", "application/*+json"] });
		// One route middleware for the body (each `use` entry is a step of its own on every request): a request
		// without a body gets `{}` as body-parser would give it; one with a body must be a JSON object.
		const parseBody = (req: Req, res: Res, next: Next) => {
			if (!hasBody(req)) {
				req.body ??= {};
				return next();
			}
			requireJson(req, res, err => (err ? next(err) : json(req, res, (err2?: unknown) => (err2 ? next(err2) : requireObjectBody(req, res, next)))));
		};
		SETTLING_STEPS.add(rateLimited);
		SETTLING_STEPS.add(parseBody);
		const api = {
			mappingPolicy: "restrict",
			autoAliases: false,
			bodyParsers: false,
			use: [rateLimited, parseBody],
			authentication: true,
			callOptions: {},
			onError(this: This, req: Req, res: Res, err: unknown) {
				this.sendProblem(req, res, err);
			}
		};

		this.settings.port = cfg.PORT;
		const accessLines = cfg.LOG_LEVEL === "debug" || cfg.LOG_LEVEL === "trace" ? "debug" : null;
		this.settings.logRequest = accessLines;
		this.settings.logResponse = accessLines;
		const routes = [
			{
				...api,
				name: "v1",
				path: "/api/v1",
				aliases: {
					"POST /auth/register": "auth.register",
					"POST /auth/login": "auth.login",
					"POST /auth/refresh": "auth.refresh",
					"POST /auth/logout": "auth.logout",
					"POST /auth/password/forgot": "auth.forgotPassword",
					"POST /auth/password/reset": "auth.resetPassword",
					"POST /auth/email/verify": "auth.verifyEmail",
					"GET /auth/sessions": "auth.sessions",
					"DELETE /auth/sessions/:id": "auth.revokeSession",
					"GET /auth/oauth/:provider/authorize": "auth.oauthAuthorize",
					"GET /auth/oauth/:provider/callback": "auth.oauthCallback",
					"GET /users/me": "users.me",
					"PATCH /users/me": "users.updateMe",
					"GET /users/me/kyc": "users.kycStatus",
					"POST /users/me/kyc": "users.submitKyc",
					"GET /users/:id": "users.getById",
					"POST /payments/charge": "payments.charge",
					"GET /payments": "payments.list",
					"GET /payments/:id": "payments.get",
					"GET /payments/:id/receipt": "payments.receipt",
					"GET /notifications": "notifications.list",
					"GET /admin/me": "admin.me",
					"GET /admin/users": "admin.users",
					"GET /admin/users/:id": "admin.user",
					"POST /admin/users/:id/suspend": "admin.suspend",
					"POST /admin/users/:id/unsuspend": "admin.unsuspend",
					"PUT /admin/users/:id/roles": "admin.setRoles",
					"GET /admin/kyc": "admin.kyc",
					"POST /admin/kyc/:user_id/decision": "admin.kycDecision",
					"GET /admin/payments": "admin.payments",
					"POST /admin/payments/:id/refund": "admin.refund",
					"GET /admin/audit": "admin.auditLog",
					"GET /admin/audit/verify": "admin.auditVerify",
					"GET /admin/system": "admin.system",
					"GET /admin/stats": "admin.stats",
					"GET /admin/jobs": "jobs.list",
					"POST /admin/jobs/:name/run": "jobs.run",
					"GET /admin/dead-letters": "jobs.deadLetters",
					"POST /admin/dead-letters/:id/redrive": "jobs.redrive"
				},
				onAfterCall(this: This, ctx: Context<unknown, any>, _route: unknown, req: Req, res: Res, data: unknown) {
					if (req.method !== "GET") this.logger.info(`${req.method} ${(req.originalUrl ?? req.url ?? "").split("?")[0]} -> ${ctx.meta.$statusCode ?? res.statusCode}`);
					return data;
				},
				onBeforeCall(this: This, ctx: Context<unknown, any>, _route: unknown, req: Req) {
					// Other requests than password work: the bcrypt pool in this process leaves them a core.
					if (!PASSWORD_WORK.has(req.$alias?.action)) markForeground();
					// Headers an action needs travel as meta, never as params a client could also send in the body.
					const key = req.headers["idempotency-key"];
					ctx.meta.idempotencyKey = typeof key === "string" ? key : undefined;
					// The OAuth callback checks the cookie that binds the login to the browser that started it.
					if (req.$alias?.action === "auth.oauthCallback") ctx.meta.cookie = typeof req.headers.cookie === "string" ? req.headers.cookie : undefined;
				}
			},
			{
				// Stripe signs the raw bytes: the body reaches the action as text, unparsed, with its signature.
				name: "webhooks",
				path: "/api/v1/webhooks",
				mappingPolicy: "restrict",
				autoAliases: false,
				bodyParsers: false,
				mergeParams: false,
				use: [rateLimited, requireJson, rawText],
				aliases: { "POST /stripe": "payments.stripeWebhook" },
				onBeforeCall(this: This, ctx: Context<unknown, any>, _route: unknown, req: Req & { $params: Record<string, unknown> }) {
					const sig = req.headers["stripe-signature"];
					req.$params = { payload: typeof req.body === "string" ? req.body : "", signature: typeof sig === "string" ? sig : "" };
				},
				onError(this: This, req: Req, res: Res, err: unknown) {
					this.sendProblem(req, res, err);
				}
			},
			{
				...api,
				name: "well-known",
				path: "/.well-known",
				aliases: { "GET /jwks.json": "auth.jwks" }
			},
			{
				// Probes and docs: never rate limited, no body, no token.
				name: "meta",
				path: "",
				mappingPolicy: "restrict",
				autoAliases: false,
				bodyParsers: false,
				aliases: {
					"GET /health"(_req: Req, res: Res) {
						sendJson(res, 200, { status: "ok" }, { "Cache-Control": "no-store" });
					},
					async "GET /health/ready"(this: This, _req: Req, res: Res) {
						const { ready, checks } = await this.readiness();
						if (ready) sendJson(res, 200, { status: "ok", checks }, { "Cache-Control": "no-store" });
						else sendJson(res, 503, { status: "unavailable", checks }, { "Cache-Control": "no-store", "Retry-After": "5" });
					},
					"GET /api/openapi.json"(_req: Req, res: Res) {
						sendJson(res, 200, openapiDocument());
					},
					"GET /api/docs"(_req: Req, res: Res) {
						sendDocsPage(res);
					},
					"GET /api/docs/:file"(this: This, req: Req & { $params: { file: string } }, res: Res) {
						if (!sendDocsAsset(res, req.$params.file)) this.sendProblem(req, res, Object.assign(new Error(""), { name: "NotFoundError", code: 404, type: "NOT_FOUND" }));
					},
					"GET /admin"(_req: Req, res: Res) {
						sendAdminPage(res);
					},
					"GET /admin/assets/:file"(this: This, req: Req & { $params: { file: string } }, res: Res) {
						if (!sendAdminAsset(res, req.$params.file)) this.sendProblem(req, res, Object.assign(new Error(""), { name: "NotFoundError", code: 404, type: "NOT_FOUND" }));
					}
				},
				onError(this: This, req: Req, res: Res, err: unknown) {
					this.sendProblem(req, res, err);
				}
			}
		];
		// Without access lines, moleculer-web still times and formats each one unless the route says `logging: false`.
		routes.forEach(route => (this as unknown as { addRoute(r: unknown): void }).addRoute({ logging: accessLines !== null, ...route }));
		// moleculer-web passes every request's alias to a debug line as `alias.toString()`, which pads and colours
		// it before the logger can drop the line; the text is made once here instead.
		for (const alias of this.aliases as unknown as Array<{ toString(): string }>) {
			const text = alias.toString();
			alias.toString = () => text;
		}
	},

	async started(this: This) {
		// Without this, the first requests after start would be counted only in this node's memory.
		await this.rateLimit.ready;
		const addr = this.server?.address() as AddressInfo | null;
		if (addr) this.logger.info(`API gateway listening on http://127.0.0.1:${addr.port}`);
	},

	async stopped(this: This) {
		await this.rateLimit.close();
	}
};

export default ApiService;
