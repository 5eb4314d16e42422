import path from "node:path";
import { ConfigError, databaseFor, loadConfig } from "../../lib/config";

describe("loadConfig", () => {
	it("fills every default from an empty environment", () => {
		const cfg = loadConfig({});
		expect(cfg).toMatchObject({
			NODE_ENV: "development",
			PORT: 8000,
			NAMESPACE: "",
			LOG_LEVEL: "info",
			DATA_DIR: path.resolve("./data"),
			REQUEST_TIMEOUT_MS: 2000,
			ACCESS_TOKEN_TTL_S: 900,
			BCRYPT_COST: 12,
			LOGIN_MAX_FAILURES: 10,
			LOGIN_WINDOW_MS: 15 * 60 * 1000,
			RATE_LIMIT_WINDOW_MS: 60000,
			RATE_LIMIT_MAX: 600,
			BODY_LIMIT_BYTES: 1024 * 1024
		});
		expect(cfg.TRANSPORTER).toBeUndefined();
		expect(cfg.REDIS_URL).toBeUndefined();
		expect(cfg.ADMIN_EMAIL).toBeUndefined();
	});

	it("reads good values and treats empty ones as unset", () => {
		const cfg = loadConfig({
			PORT: "9001",
			TRANSPORTER: "nats://127.0.0.1:4222",
			LOG_LEVEL: "debug",
			NODE_ENV: "test",
			BCRYPT_COST: "4",
			DATA_DIR: "/tmp/somewhere",
			REQUEST_TIMEOUT_MS: "",
			ADMIN_EMAIL: "",
			USERS_DATABASE_URL: "postgresql://u@h/db"
		});
		expect(cfg).toMatchObject({ PORT: 9001, TRANSPORTER: "nats://127.0.0.1:4222", LOG_LEVEL: "debug", BCRYPT_COST: 4, DATA_DIR: "/tmp/somewhere", REQUEST_TIMEOUT_MS: 2000 });
		expect(cfg.ADMIN_EMAIL).toBeUndefined();
	});

	it.each([
		[{ PORT: "abc" }, "PORT"],
		[{ PORT: "70000" }, "PORT"],
		[{ PORT: "80.5" }, "PORT"],
		[{ TRANSPORTER: "http://x" }, "TRANSPORTER"],
		[{ TRANSPORTER: "not a url" }, "TRANSPORTER"],
		[{ LOG_LEVEL: "loud" }, "LOG_LEVEL"],
		[{ NODE_ENV: "prod" }, "NODE_ENV"],
		[{ BCRYPT_COST: "8" }, "BCRYPT_COST"],
		[{ BCRYPT_COST: "8", NODE_ENV: "production" }, "BCRYPT_COST"],
		[{ ADMIN_EMAIL: "root@example.com" }, "ADMIN_PASSWORD"],
		[{ ADMIN_EMAIL: "not-an-email", ADMIN_PASSWORD: "long enough pw" }, "ADMIN_EMAIL"],
		[{ USERS_DATABASE_URL: "mysql://x" }, "USERS_DATABASE_URL"],
		[{ AUTH_DATABASE_URL: "sqlite:./auth.db" }, "AUTH_DATABASE_URL"],
		[{ APP_URL: "ftp://app.example.com" }, "APP_URL"],
		[{ REQUIRE_VERIFIED_EMAIL: "yes" }, "REQUIRE_VERIFIED_EMAIL"],
		[{ OAUTH_PROVIDERS: "google" }, "OAUTH_GOOGLE_ISSUER"],
		[{ OAUTH_PROVIDERS: "google", OAUTH_GOOGLE_ISSUER: "https://accounts.google.com", OAUTH_GOOGLE_CLIENT_ID: "id", OAUTH_GOOGLE_CLIENT_SECRET: "s" }, "OAUTH_GOOGLE_REDIRECT_URI"],
		[{ OAUTH_PROVIDERS: "g", OAUTH_G_ISSUER: "not a url", OAUTH_G_CLIENT_ID: "id", OAUTH_G_CLIENT_SECRET: "s", OAUTH_G_REDIRECT_URI: "https://x/cb" }, "OAUTH_G_ISSUER"],
		[{ OAUTH_PROVIDERS: "bad-name" }, "OAUTH_PROVIDERS"]
	])("refuses %j with one line naming %s", (env, variable) => {
		let caught: unknown;
		try {
			loadConfig(env);
		} catch (err) {
			caught = err;
		}
		expect(caught).toBeInstanceOf(ConfigError);
		const err = caught as ConfigError;
		expect(err.variable).toBe(variable);
		expect(err.message).toContain(variable);
		expect(err.message).not.toMatch(/[\r\n]/);
		expect(err.message.length).toBeLessThan(200);
	});

	it("reads auth settings: APP_URL, REQUIRE_VERIFIED_EMAIL and the OAuth providers", () => {
		expect(loadConfig({})).toMatchObject({ APP_URL: "http://localhost:8000", REQUIRE_VERIFIED_EMAIL: false, OAUTH: [] });
		const cfg = loadConfig({
			APP_URL: "https://app.example.com/",
			REQUIRE_VERIFIED_EMAIL: "true",
			OAUTH_PROVIDERS: "Google, github",
			OAUTH_GOOGLE_ISSUER: "https://accounts.google.com",
			OAUTH_GOOGLE_CLIENT_ID: "gid",
			OAUTH_GOOGLE_CLIENT_SECRET: "gsecret",
			OAUTH_GOOGLE_REDIRECT_URI: "https://api.example.com/api/v1/auth/oauth/google/callback",
			OAUTH_GITHUB_ISSUER: "https://github.example.com",
			OAUTH_GITHUB_CLIENT_ID: "hid",
			OAUTH_GITHUB_CLIENT_SECRET: "hsecret",
			OAUTH_GITHUB_REDIRECT_URI: "https://api.example.com/api/v1/auth/oauth/github/callback"
		});
		expect(cfg.APP_URL).toBe("https://app.example.com");
		expect(cfg.REQUIRE_VERIFIED_EMAIL).toBe(true);
		expect(cfg.OAUTH.map(p => [p.name, p.clientId])).toEqual([["google", "gid"], ["github", "hid"]]);
	});

	it("allows a low bcrypt cost under NODE_ENV=test only", () => {
		expect(loadConfig({ NODE_ENV: "test", BCRYPT_COST: "4" }).BCRYPT_COST).toBe(4);
		expect(() => loadConfig({ NODE_ENV: "development", BCRYPT_COST: "9" })).toThrow(ConfigError);
	});

	it("needs a Zipkin URL when tracing to Zipkin, and a sample rate from 0 to 1", () => {
		expect(loadConfig({}).TRACING_EXPORTER).toBe("none");
		expect(() => loadConfig({ TRACING_EXPORTER: "zipkin" })).toThrow("TRACING_ZIPKIN_URL is required when TRACING_EXPORTER is zipkin");
		expect(loadConfig({ TRACING_EXPORTER: "zipkin", TRACING_ZIPKIN_URL: "http://zipkin:9411", TRACING_SAMPLE_RATE: "0.1" })).toMatchObject({ TRACING_SAMPLE_RATE: 0.1 });
		expect(() => loadConfig({ TRACING_SAMPLE_RATE: "2" })).toThrow("TRACING_SAMPLE_RATE must be a number from 0 to 1");
		expect(() => loadConfig({ TRACING_EXPORTER: "jaeger" })).toThrow("TRACING_EXPORTER must be one of none, console, zipkin");
	});

	it("does not echo the admin password when it is refused", () => {
		const secret = "x".repeat(80);
		expect(() => loadConfig({ ADMIN_EMAIL: "root@example.com", ADMIN_PASSWORD: secret })).toThrow(ConfigError);
		try {
			loadConfig({ ADMIN_EMAIL: "root@example.com", ADMIN_PASSWORD: secret });
		} catch (err) {
			expect((err as Error).message).not.toContain(secret);
		}
	});
});

describe("databaseFor", () => {
	it("uses the service's PostgreSQL URL when it is set", () => {
		const url = "postgres://postgres@127.0.0.1:5432/users_db";
		expect(databaseFor("users", { USERS_DATABASE_URL: url, DATA_DIR: "/tmp/x" })).toEqual({ dialect: "postgres", url });
	});

	it("falls back to DATA_DIR/<service>.sqlite", () => {
		expect(databaseFor("users", { DATA_DIR: "/tmp/msvc-data" })).toEqual({ dialect: "sqlite", storage: "/tmp/msvc-data/users.sqlite" });
		expect(databaseFor("auth", { AUTH_DATABASE_URL: "", DATA_DIR: "/tmp/msvc-data" })).toEqual({ dialect: "sqlite", storage: "/tmp/msvc-data/auth.sqlite" });
		expect(databaseFor("auth", {})).toEqual({ dialect: "sqlite", storage: path.resolve("./data/auth.sqlite") });
	});

	it("never takes another service's URL", () => {
		const target = databaseFor("auth", { USERS_DATABASE_URL: "postgres://h/users_db", DATA_DIR: "/tmp/d" });
		expect(target).toEqual({ dialect: "sqlite", storage: "/tmp/d/auth.sqlite" });
	});
});
