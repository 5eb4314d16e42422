import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import type { AddressInfo } from "node:net";
import { ServiceBroker, type ServiceSchema } from "moleculer";
import { brokerOptions } from "../../lib/broker";
import { DB_SERVICES, loadConfig, resetConfig } from "../../lib/config";
import { createDatabases, type TestDatabases } from "./pg";

/** A service schema by name, as `services/<name>.service.ts` exports it. */
export function serviceSchema(name: string): ServiceSchema<any, any, any> {
	return require(`../../services/${name}.service`).default;
}

export interface TestSystem {
	broker: ServiceBroker;
	/** Base URL of the gateway, e.g. http://127.0.0.1:41234 (empty when no api service runs). */
	url: string;
	env: Record<string, string>;
	dbs?: TestDatabases;
	dataDir: string;
	stop(): Promise<void>;
}

export interface StartOptions {
	/** Services this node runs (default: api, auth, users). */
	services?: string[];
	/** Extra environment for this system (merged over the test defaults). */
	env?: Record<string, string>;
	/** Use these databases instead of making new ones. */
	dbs?: TestDatabases;
	/** Use SQLite files under a temp DATA_DIR instead of PostgreSQL. */
	sqlite?: boolean;
}

let starting = 0;
let savedEnv: NodeJS.ProcessEnv | undefined;

export const TEST_ENV: Record<string, string> = {
	NODE_ENV: "test",
	LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? "fatal",
	BCRYPT_COST: "4",
	PORT: "0"
};

/**
 * Starts a broker in this process with the given services, each on its own fresh PostgreSQL
 * database, the gateway on a free port. The environment is applied while the services are created.
 */
export async function startSystem(opts: StartOptions = {}): Promise<TestSystem> {
	const services = opts.services ?? ["api", "auth", "users"];
	const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "msvc-test-"));
	const ownDbs = !opts.dbs && !opts.sqlite;
	const dbs = opts.dbs ?? (opts.sqlite ? undefined : await createDatabases(services.filter(s => (DB_SERVICES as readonly string[]).includes(s))));
	const env: Record<string, string> = {
		...TEST_ENV,
		DATA_DIR: dataDir,
		NAMESPACE: `t${crypto.randomBytes(4).toString("hex")}`,
		READY_SERVICES: services.filter(s => s !== "api").join(",") || "auth,users",
		...(dbs?.env ?? {}),
		...(opts.env ?? {})
	};
	// Services read the environment while they start. Starts that overlap share one saved copy, and the
	// last to finish puts it back (overlapping starts must use the same databases, as the migration race test does).
	if (starting++ === 0) savedEnv = { ...process.env };
	const saved = savedEnv!;
	for (const svc of ["AUTH", "USERS", "ADMIN", "PAYMENTS", "NOTIFICATIONS", "JOBS"]) delete process.env[`${svc}_DATABASE_URL`];
	Object.assign(process.env, env);
	resetConfig();
	const cfg = loadConfig(process.env);
	const broker = new ServiceBroker({ ...brokerOptions(cfg), nodeID: `test-${crypto.randomBytes(3).toString("hex")}` });
	try {
		for (const name of services) broker.createService(serviceSchema(name));
		await broker.start();
	} catch (err) {
		if (--starting === 0) process.env = saved;
		resetConfig();
		await broker.stop().catch(() => undefined);
		throw err;
	}
	if (--starting === 0) process.env = saved;
	resetConfig();
	const api = services.includes("api") ? broker.getLocalService("api") : undefined;
	const port = api ? ((api as unknown as { server: { address(): AddressInfo } }).server.address().port) : 0;
	return {
		broker,
		url: port ? `http://127.0.0.1:${port}` : "",
		env,
		dbs,
		dataDir,
		async stop() {
			await broker.stop();
			if (ownDbs && dbs) await dbs.drop();
			fs.rmSync(dataDir, { recursive: true, force: true });
		}
	};
}

export interface HttpResult<T = any> {
	status: number;
	headers: Headers;
	body: T;
	text: string;
}

/** One HTTP request to the gateway; JSON bodies are encoded and decoded. */
export async function http<T = any>(
	base: string,
	method: string,
	pathname: string,
	opts: { body?: unknown; raw?: string | Buffer; token?: string; headers?: Record<string, string> } = {}
): Promise<HttpResult<T>> {
	const headers: Record<string, string> = { ...(opts.headers ?? {}) };
	let body: string | Buffer | undefined;
	if (opts.raw !== undefined) body = opts.raw;
	else if (opts.body !== undefined) {
		body = JSON.stringify(opts.body);
		headers["content-type"] ??= "application/json";
	}
	if (opts.token) headers.authorization = `Bearer ${opts.token}`;
	const res = await fetch(base + pathname, { method, headers, body });
	const text = await res.text();
	let parsed: unknown;
	try {
		parsed = text ? JSON.parse(text) : undefined;
	} catch {
		parsed = undefined;
	}
	return { status: res.status, headers: res.headers, body: parsed as T, text };
}

let counter = 0;
/** A fresh email for this run. */
export function uniqueEmail(prefix = "user"): string {
	return `${prefix}.${process.pid}.${Date.now()}.${counter++}@example.com`;
}

/** Registers and logs in a user; returns its id and token pair. */
export async function registerAndLogin(base: string, overrides: Record<string, unknown> = {}) {
	const email = uniqueEmail();
	const password = "correct horse battery";
	const reg = await http(base, "POST", "/api/v1/auth/register", { body: { email, password, name: "Test User", ...overrides } });
	if (reg.status !== 201) throw new Error(`register failed: ${reg.status} ${reg.text}`);
	const login = await http(base, "POST", "/api/v1/auth/login", { body: { email: reg.body.email, password } });
	if (login.status !== 200) throw new Error(`login failed: ${login.status} ${login.text}`);
	return { user: reg.body, email: reg.body.email as string, password, tokens: login.body, token: login.body.access_token as string };
}
