import path from "node:path";
import { z } from "zod";

/** Services that own a database. Each one reads `<NAME>_DATABASE_URL`. */
export const DB_SERVICES = ["auth", "users", "admin", "payments", "notifications", "jobs"] as const;

/** An integer variable; empty counts as unset (not 0), and any bad value gets one plain message. */
const int = (def: number, min: number, max: number) => {
	const error = `must be an integer from ${min} to ${max}`;
	return z.preprocess(
		v => (typeof v === "string" && v.trim() === "" ? undefined : v),
		z.coerce.number({ error }).int({ error }).min(min, { error }).max(max, { error }).default(def)
	);
};

const oneOf = <T extends string>(values: readonly [T, ...T[]], def: T) =>
	z.enum(values, { error: `must be one of ${values.join(", ")}` }).default(def as never);

const optionalString = z
	.string()
	.optional()
	.transform(v => (v === undefined || v.trim() === "" ? undefined : v));

const optionalUrl = (protocols: string[]) =>
	optionalString.refine(
		v => {
			if (v === undefined) return true;
			try {
				return protocols.includes(new URL(v).protocol);
			} catch {
				return false;
			}
		},
		{ message: `must be a URL starting with ${protocols.map(p => p + "//").join(" or ")}` }
	);

const variables = z.object({
	NODE_ENV: oneOf(["development", "production", "test"], "development"),
	PORT: int(8000, 0, 65535),
	NAMESPACE: z.string().regex(/^[A-Za-z0-9_-]*$/, "letters, digits, _ and - only").default(""),
	NODE_ID: optionalString,
	TRANSPORTER: optionalUrl(["nats:", "tls:"]),
	/** Copies of each JetStream stream: 1 on a single NATS server, 3 on the k8s NATS cluster. */
	NATS_STREAM_REPLICAS: int(1, 1, 5),
	LOG_LEVEL: oneOf(["fatal", "error", "warn", "info", "debug", "trace"], "info"),
	DATA_DIR: z.string().min(1).default("./data"),
	REQUEST_TIMEOUT_MS: int(2000, 100, 600000),
	SHUTDOWN_TIMEOUT_MS: int(10000, 0, 600000),
	/** On SIGTERM: how long a node reports not ready (and has left the registry) while still serving, before it stops taking work. */
	SHUTDOWN_DELAY_MS: int(0, 0, 600000),

	JWT_ISSUER: z.string().min(1).default("moleculer-microservices"),
	JWT_AUDIENCE: z.string().min(1).default("moleculer-microservices-api"),
	JWT_PRIVATE_KEY: optionalString,
	JWT_KEY_ID: optionalString,
	ACCESS_TOKEN_TTL_S: int(900, 30, 900),
	REFRESH_TOKEN_TTL_S: int(30 * 24 * 3600, 300, 365 * 24 * 3600),
	TOKEN_CACHE_TTL_MS: int(60000, 0, 900000),
	/** Each node's read cache (profiles): how long an entry lives at most, 0 = no cache; and how many entries. */
	CACHE_TTL_S: int(60, 0, 3600),
	CACHE_MAX_ENTRIES: int(10000, 100, 1000000),
	BCRYPT_COST: int(12, 4, 15),
	/** After a request other than password work, how long bcrypt keeps one core free for it (0 = never). */
	BCRYPT_SPARE_CORE_MS: int(1000, 0, 60000),
	LOGIN_MAX_FAILURES: int(10, 1, 1000),
	LOGIN_WINDOW_MS: int(15 * 60 * 1000, 1000, 24 * 3600 * 1000),
	/** Public keys (PEM or JWK, comma-separated) of signing keys rotated out of JWT_PRIVATE_KEY: served in JWKS, still verified. */
	JWT_PREVIOUS_PUBLIC_KEYS: optionalString,
	/** Where the web app lives: email links are built on it (`<APP_URL>/reset-password?token=…`). */
	APP_URL: z.url({ protocol: /^https?$/, error: "must be an http:// or https:// URL" }).default("http://localhost:8000").transform(v => v.replace(/\/+$/, "")),
	/** OAuth 2.0 / OpenID Connect login providers, e.g. `google,github`; each needs OAUTH_<NAME>_ISSUER, _CLIENT_ID, _CLIENT_SECRET, _REDIRECT_URI. */
	OAUTH_PROVIDERS: z.string().regex(/^[a-z0-9,_ ]*$/i, "must be a comma list of provider names (letters, digits, _)").default(""),
	/** true: a user must verify their email address before logging in with a password. */
	REQUIRE_VERIFIED_EMAIL: z.enum(["true", "false", ""], { error: "must be true or false" }).default("false").transform(v => v === "true"),

	RATE_LIMIT_WINDOW_MS: int(60000, 1000, 3600000),
	RATE_LIMIT_MAX: int(600, 1, 1000000),
	REDIS_URL: optionalUrl(["redis:", "rediss:"]),
	TRUSTED_PROXIES: z.string().default(""),
	BODY_LIMIT_BYTES: int(1024 * 1024, 1024, 100 * 1024 * 1024),
	READY_SERVICES: z.string().regex(/^[a-z0-9,-]*$/, "must be a comma list of service names").default("auth,users,payments,notifications,jobs,admin"),

	ADMIN_EMAIL: optionalString.refine(v => v === undefined || /^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(v), {
		message: "must be an email address"
	}),
	ADMIN_PASSWORD: optionalString,
	DB_POOL_MAX: int(10, 2, 200),

	// Payments
	STRIPE_API_KEY: optionalString,
	STRIPE_WEBHOOK_SECRET: optionalString,
	STRIPE_API_URL: optionalUrl(["http:", "https:"]),
	IDEMPOTENCY_TTL_S: int(24 * 3600, 60, 30 * 24 * 3600),
	/** Longer than the charge action's 30 s timeout: a client retrying after a 503 gets 409 while the first attempt still runs. */
	IDEMPOTENCY_LOCK_MS: int(60000, 100, 3600000),
	OUTBOX_POLL_MS: int(1000, 10, 60000),

	// Notifications
	SMTP_URL: optionalUrl(["smtp:", "smtps:"]),
	EMAIL_FROM: z.string().min(3).default("Moleculer Microservices <no-reply@localhost>"),
	TWILIO_ACCOUNT_SID: optionalString,
	TWILIO_AUTH_TOKEN: optionalString,
	TWILIO_FROM: optionalString,
	TWILIO_API_URL: optionalUrl(["http:", "https:"]),
	NOTIFY_MAX_ATTEMPTS: int(5, 1, 50),
	NOTIFY_RETRY_BASE_MS: int(1000, 10, 3600000),
	NOTIFY_LEASE_MS: int(15000, 100, 3600000),
	NOTIFY_PUMP_MS: int(1000, 10, 60000),

	// Jobs
	JOBS_TICK_MS: int(1000, 10, 60000),
	JOBS_LEASE_MS: int(30000, 500, 3600000),
	/** Test only: a cron expression for an extra schedule (`test-tick`) whose run sleeps JOBS_TEST_SLEEP_MS. */
	JOBS_TEST_SCHEDULE: optionalString,
	JOBS_TEST_SLEEP_MS: int(0, 0, 600000),

	// Prometheus metrics (off unless set)
	METRICS_PORT: int(0, 0, 65535),
	/** Every node's probe server (`/live`, `/ready`); 0 = off. */
	HEALTH_PORT: int(0, 0, 65535),

	// Tracing (off unless set): spans of every action and event, trace id = request id
	TRACING_EXPORTER: oneOf(["none", "console", "zipkin"], "none"),
	TRACING_ZIPKIN_URL: optionalUrl(["http:", "https:"]),
	TRACING_SAMPLE_RATE: z.preprocess(
		v => (typeof v === "string" && v.trim() === "" ? undefined : v),
		z.coerce.number({ error: "must be a number from 0 to 1" }).min(0, { error: "must be a number from 0 to 1" }).max(1, { error: "must be a number from 0 to 1" }).default(1)
	),
	TRACING_FLUSH_MS: int(5000, 100, 600000)
});

/** Every variable the configuration reads, besides `<SERVICE>_DATABASE_URL`. */
export const CONFIG_VARIABLES = Object.keys(variables.shape);

const schema = variables.superRefine((c, ctx) => {
	if (c.NODE_ENV !== "test" && c.BCRYPT_COST < 10) {
		ctx.addIssue({ code: "custom", path: ["BCRYPT_COST"], message: "must be at least 10 outside tests" });
	}
	const twilio = [c.TWILIO_ACCOUNT_SID, c.TWILIO_AUTH_TOKEN, c.TWILIO_FROM].filter(Boolean).length;
	if (twilio > 0 && twilio < 3) {
		const missing = !c.TWILIO_ACCOUNT_SID ? "TWILIO_ACCOUNT_SID" : !c.TWILIO_AUTH_TOKEN ? "TWILIO_AUTH_TOKEN" : "TWILIO_FROM";
		ctx.addIssue({ code: "custom", path: [missing], message: "is required when any TWILIO_ variable is set" });
	}
	if (c.TRACING_EXPORTER === "zipkin" && !c.TRACING_ZIPKIN_URL) {
		ctx.addIssue({ code: "custom", path: ["TRACING_ZIPKIN_URL"], message: "is required when TRACING_EXPORTER is zipkin" });
	}
	if (c.ADMIN_EMAIL && !c.ADMIN_PASSWORD) {
		ctx.addIssue({ code: "custom", path: ["ADMIN_PASSWORD"], message: "is required when ADMIN_EMAIL is set" });
	}
	if (c.ADMIN_PASSWORD && Buffer.byteLength(c.ADMIN_PASSWORD) < 8) {
		ctx.addIssue({ code: "custom", path: ["ADMIN_PASSWORD"], message: "must be 8 to 72 bytes" });
	}
	if (c.ADMIN_PASSWORD && Buffer.byteLength(c.ADMIN_PASSWORD) > 72) {
		ctx.addIssue({ code: "custom", path: ["ADMIN_PASSWORD"], message: "must be 8 to 72 bytes" });
	}
});

/** One OAuth / OIDC login provider, from OAUTH_<NAME>_* variables. */
export interface OAuthProviderConfig {
	name: string;
	issuer: string;
	clientId: string;
	clientSecret: string;
	redirectUri: string;
}

export type Config = z.infer<typeof schema> & { DATA_DIR: string; OAUTH: OAuthProviderConfig[] };

/** The providers OAUTH_PROVIDERS names, each with all four of its variables (ConfigError names the first missing or bad one). */
function oauthProviders(list: string, env: NodeJS.ProcessEnv): OAuthProviderConfig[] {
	const names = [...new Set(list.split(",").map(v => v.trim().toLowerCase()).filter(Boolean))];
	return names.map(name => {
		const get = (field: "ISSUER" | "CLIENT_ID" | "CLIENT_SECRET" | "REDIRECT_URI") => {
			const variable = `OAUTH_${name.toUpperCase()}_${field}`;
			const v = env[variable]?.trim();
			if (!v) throw new ConfigError(variable, `is required when OAUTH_PROVIDERS names ${name}`);
			if (field === "ISSUER" || field === "REDIRECT_URI") {
				let url: URL;
				try {
					url = new URL(v);
				} catch {
					throw new ConfigError(variable, "must be an http:// or https:// URL");
				}
				if (url.protocol !== "https:" && url.protocol !== "http:") throw new ConfigError(variable, "must be an http:// or https:// URL");
			}
			return v;
		};
		return { name, issuer: get("ISSUER"), clientId: get("CLIENT_ID"), clientSecret: get("CLIENT_SECRET"), redirectUri: get("REDIRECT_URI") };
	});
}

export class ConfigError extends Error {
	constructor(public readonly variable: string, message: string) {
		super(`Invalid configuration: ${variable} ${message}`);
		this.name = "ConfigError";
	}
}

/** Parse and validate configuration from an environment. Throws ConfigError naming the first bad variable. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
	const parsed = schema.safeParse(env);
	if (!parsed.success) {
		const issue = parsed.error.issues[0];
		throw new ConfigError(String(issue.path[0] ?? "configuration"), issue.message);
	}
	for (const svc of DB_SERVICES) {
		const name = `${svc.toUpperCase()}_DATABASE_URL`;
		const v = env[name];
		if (v && !/^postgres(ql)?:\/\//.test(v)) throw new ConfigError(name, "must be a postgres:// URL");
	}
	return { ...parsed.data, DATA_DIR: path.resolve(parsed.data.DATA_DIR), OAUTH: oauthProviders(parsed.data.OAUTH_PROVIDERS, env) };
}

let cached: Config | undefined;

/** The process configuration, validated once. */
export function config(): Config {
	if (!cached) cached = loadConfig();
	return cached;
}

/** Forget the cached configuration (tests change the environment between brokers). */
export function resetConfig(): void {
	cached = undefined;
}

/** Where a service's database lives: its PostgreSQL URL, or an SQLite file under DATA_DIR. */
export function databaseFor(service: string, env: NodeJS.ProcessEnv = process.env): { dialect: "postgres"; url: string } | { dialect: "sqlite"; storage: string } {
	const url = env[`${service.toUpperCase()}_DATABASE_URL`];
	if (url) return { dialect: "postgres", url };
	const dataDir = env === process.env ? config().DATA_DIR : loadConfig(env).DATA_DIR;
	return { dialect: "sqlite", storage: path.join(dataDir, `${service}.sqlite`) };
}
