/**
 * The whole system as a cluster of OS processes, each one the built `moleculer-runner` (what `npm start`
 * runs), over the shared NATS (127.0.0.1:4222) under a namespace of its own, each service on its own fresh
 * PostgreSQL database, gateways sharing Redis for rate limits, and a real SMTP server for the emails.
 *
 *   const cluster = await startCluster();      // waits until every node's /ready and both gateways answer 200
 *   cluster.gateways                           // ["http://127.0.0.1:<A>", "http://127.0.0.1:<B>"]
 *   cluster.node("payments").logs()            // that node's log lines, parsed (JSON)
 *   cluster.logsWith(requestId)                // every node's log lines carrying request_id === requestId
 *   await cluster.node("users").stop("SIGKILL")
 *   await cluster.restart("users")             // the same node (name, env, ports) started again, ready
 *   await cluster.startNode({ name: "gateway-c", services: ["api"], env: { RATE_LIMIT_MAX: "5" } })
 *   await cluster.stop()                       // teardown: every node, the databases, the JetStream streams, SMTP
 *
 * Nodes (names): gateway-a, gateway-b (SERVICES=api, each on its own port), auth, users, payments,
 * notifications-1 and notifications-2 (two worker nodes), jobs, admin. Every node has HEALTH_PORT and
 * METRICS_PORT on free ports (`healthUrl`, `metric()`), LOG_LEVEL=info, BCRYPT_COST=4, NODE_ENV=test, and a
 * DATA_DIR of its own. The auth node bootstraps the admin account `cluster.admin` (ADMIN_EMAIL/ADMIN_PASSWORD);
 * startCluster waits until it is in place. Signing keys come from one JWT_PRIVATE_KEY (as a cluster should).
 * Node ids are the default (`<services>-<host>-<pid>`), as in production. A node is ready when its /ready answers
 * 200; a gateway also needs its /health/ready (every READY_SERVICES service reachable, so not while one is down).
 *
 * Options: `env` goes to every node, `nodeEnv[name]` to one node (both over the defaults), `workers` the
 * number of notification nodes (default 2).
 */
import { spawn, type ChildProcess } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { deleteStreams } from "../../lib/channels";
import { DB_SERVICES } from "../../lib/config";
import { runnerCommand } from "../../lib/node-flags";
import { collectLines, freePort, ROOT } from "./node-process";
import { createDatabases, type TestDatabases } from "./pg";
import { smtpUrl, startSmtp, type Smtp } from "./smtp";

export const NATS_URL = process.env.TEST_NATS_URL ?? "nats://127.0.0.1:4222";
export const REDIS_URL = process.env.TEST_REDIS_URL ?? "redis://127.0.0.1:6379";
const DIST = path.join(ROOT, "dist");

/** One JSON log line of a node. */
export interface LogLine {
	level: string;
	time: string;
	msg: string;
	node: string;
	service: string;
	request_id?: string;
	[field: string]: unknown;
}

export interface NodeSpec {
	name: string;
	/** What SERVICES the node runs. A node with `api` gets a PORT of its own and a `url`. */
	services: string[];
	/** Environment over the cluster's defaults for this node. */
	env?: Record<string, string>;
}

export interface Exit {
	code: number | null;
	signal: NodeJS.Signals | null;
}

export interface ClusterNode {
	readonly name: string;
	readonly services: string[];
	/** The whole environment the process got. */
	readonly env: Record<string, string>;
	readonly proc: ChildProcess;
	/** Base URL of the gateway on this node (nodes running `api` only). */
	readonly url?: string;
	/** http://127.0.0.1:<HEALTH_PORT> (`/live`, `/ready`). */
	readonly healthUrl: string;
	/** Every line the process wrote, stdout and stderr, whole lines only. */
	readonly lines: string[];
	readonly exited: Promise<Exit>;
	/** The lines that are JSON log lines, parsed. */
	logs(): LogLine[];
	alive(): boolean;
	/** Sends `signal` (default SIGTERM); SIGKILL after `killAfterMs` if it has not exited. Resolves on exit. */
	stop(signal?: NodeJS.Signals, killAfterMs?: number): Promise<Exit>;
	/** The sum of a Prometheus metric's samples whose labels include `labels`, from this node's METRICS_PORT. */
	metric(name: string, labels?: Record<string, string>): Promise<number>;
}

export interface Cluster {
	namespace: string;
	natsUrl: string;
	/** Gateway base URLs: gateway-a first, then gateway-b. */
	gateways: string[];
	smtp: Smtp;
	dbs: TestDatabases;
	/** The admin account the auth node made sure of at start. */
	admin: { email: string; password: string };
	/** The running incarnation of a node, by name (throws for an unknown name). */
	node(name: string): ClusterNode;
	/** The current node of every name. */
	nodes(): ClusterNode[];
	/** Starts one more node in this cluster (e.g. a gateway with other settings) and waits until it is ready. */
	startNode(spec: NodeSpec): Promise<ClusterNode>;
	/** Stops the node (SIGTERM) if it runs, starts it again with the same env and ports (plus `env`), waits until ready. */
	restart(name: string, env?: Record<string, string>): Promise<ClusterNode>;
	/** Waits until these nodes' /ready (and a gateway's /health/ready) answer 200; default every running node. A node that is not running fails it. */
	waitReady(names?: string[], timeoutMs?: number): Promise<void>;
	/** Log lines of every node (every incarnation) that carry this request id. */
	logsWith(requestId: string): { node: string; log: LogLine }[];
	/** The last lines of every node, for a failure message. */
	diag(lines?: number): string;
	/** Teardown: stops every node, drops the databases, deletes the namespace's streams, closes SMTP. */
	stop(): Promise<void>;
}

export interface ClusterOptions {
	/** Over the defaults, for every node. */
	env?: Record<string, string>;
	/** Over the defaults and `env`, per node name. */
	nodeEnv?: Record<string, Record<string, string>>;
	/** Notification worker nodes (default 2). */
	workers?: number;
}

export function parseLog(line: string): LogLine | undefined {
	try {
		const v = JSON.parse(line);
		return v && typeof v === "object" && !Array.isArray(v) && typeof v.msg === "string" ? (v as LogLine) : undefined;
	} catch {
		return undefined;
	}
}

const sleep = (ms: number) => new Promise(r => setTimeout(r, ms));

function spawnNode(name: string, services: string[], env: Record<string, string>, url: string | undefined): ClusterNode {
	// Only what the node is given: nothing leaks in from the test runner's environment.
	const cmd = runnerCommand(DIST, { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? os.tmpdir(), ...env });
	const proc = spawn(process.execPath, cmd.args, {
		cwd: ROOT,
		env: cmd.env,
		stdio: ["ignore", "pipe", "pipe"]
	});
	const lines: string[] = [];
	collectLines(proc.stdout!, lines);
	collectLines(proc.stderr!, lines);
	let running = true;
	const exited = new Promise<Exit>(resolve =>
		proc.once("exit", (code, signal) => {
			running = false;
			resolve({ code, signal });
		})
	);
	const metricsUrl = `http://127.0.0.1:${env.METRICS_PORT}/metrics`;
	return {
		name,
		services,
		env,
		proc,
		url,
		healthUrl: `http://127.0.0.1:${env.HEALTH_PORT}`,
		lines,
		exited,
		logs: () => lines.map(parseLog).filter((l): l is LogLine => !!l),
		alive: () => running,
		async stop(signal: NodeJS.Signals = "SIGTERM", killAfterMs = 20000) {
			if (!running) return exited;
			proc.kill(signal);
			const timer = setTimeout(() => running && proc.kill("SIGKILL"), killAfterMs);
			try {
				return await exited;
			} finally {
				clearTimeout(timer);
			}
		},
		async metric(metric: string, labels: Record<string, string> = {}) {
			const text = await (await fetch(metricsUrl)).text();
			let sum = 0;
			for (const line of text.split("\n")) {
				const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
				if (!m || m[1] !== metric) continue;
				const have = Object.fromEntries([...(m[2] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map(x => [x[1], x[2]]));
				if (Object.entries(labels).every(([k, v]) => have[k] === v)) sum += Number(m[3]);
			}
			return sum;
		}
	};
}

async function answers200(url: string): Promise<boolean> {
	try {
		const res = await fetch(url, { signal: AbortSignal.timeout(3000) });
		await res.arrayBuffer();
		return res.status === 200;
	} catch {
		return false;
	}
}

/** Starts the cluster and waits until it is ready; on failure, whatever started is torn down. */
export async function startCluster(opts: ClusterOptions = {}): Promise<Cluster> {
	const namespace = `cj${crypto.randomBytes(4).toString("hex")}`;
	const admin = { email: `admin.${namespace}@example.com`, password: "cluster admin password" };
	const current = new Map<string, ClusterNode>();
	const all: ClusterNode[] = [];
	const specs = new Map<string, { services: string[]; env: Record<string, string> }>();
	const dataDirs: string[] = [];
	let dbs: TestDatabases | undefined;
	let smtp: Smtp | undefined;
	let common: Record<string, string> = {};

	const node = (name: string) => {
		const n = current.get(name);
		if (!n) throw new Error(`no node named ${name} (nodes: ${[...current.keys()].join(", ")})`);
		return n;
	};

	const diag = (count = 15) =>
		[...current.values()]
			.map(n => `--- ${n.name} (${n.alive() ? "running" : "exited"}) ---\n${n.lines.slice(-count).join("\n")}`)
			.join("\n");

	/** The full environment of a new node: the cluster's, its services' databases, its own ports and data dir. */
	const envFor = async (spec: NodeSpec): Promise<Record<string, string>> => {
		const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), `msvc-cluster-${spec.name}-`));
		dataDirs.push(dataDir);
		const env: Record<string, string> = {
			...common,
			SERVICES: spec.services.join(","),
			DATA_DIR: dataDir,
			HEALTH_PORT: String(await freePort()),
			METRICS_PORT: String(await freePort())
		};
		for (const s of spec.services) if ((DB_SERVICES as readonly string[]).includes(s)) env[`${s.toUpperCase()}_DATABASE_URL`] = dbs!.env[`${s.toUpperCase()}_DATABASE_URL`];
		if (spec.services.includes("api")) env.PORT = String(await freePort());
		if (spec.services.includes("auth")) Object.assign(env, { ADMIN_EMAIL: admin.email, ADMIN_PASSWORD: admin.password });
		if (spec.services.includes("notifications")) env.SMTP_URL = smtpUrl(smtp!);
		return { ...env, ...(opts.nodeEnv?.[spec.name] ?? {}), ...(spec.env ?? {}) };
	};

	const launch = (name: string, services: string[], env: Record<string, string>) => {
		specs.set(name, { services, env });
		const n = spawnNode(name, services, env, services.includes("api") ? `http://127.0.0.1:${env.PORT}` : undefined);
		current.set(name, n);
		all.push(n);
		return n;
	};

	const waitReady = async (names = [...current.values()].filter(n => n.alive()).map(n => n.name), timeoutMs = 90000) => {
		const end = Date.now() + timeoutMs;
		const pending = new Set(names);
		while (pending.size) {
			for (const name of [...pending]) {
				const n = node(name);
				if (!n.alive()) throw new Error(`node ${name} is not running (it exited)\n${diag(30)}`);
				const ready = (await answers200(`${n.healthUrl}/ready`)) && (!n.url || (await answers200(`${n.url}/health/ready`)));
				if (ready) pending.delete(name);
			}
			if (!pending.size) break;
			if (Date.now() > end) throw new Error(`nodes not ready within ${timeoutMs} ms: ${[...pending].join(", ")}\n${diag(30)}`);
			await sleep(250);
		}
	};

	const stopAll = async () => {
		await Promise.all(all.map(n => n.stop("SIGTERM", 15000)));
	};

	const teardown = async () => {
		await stopAll();
		await deleteStreams(NATS_URL, namespace).catch(() => undefined);
		await dbs?.drop();
		await smtp?.close();
		for (const d of dataDirs) fs.rmSync(d, { recursive: true, force: true });
	};

	try {
		dbs = await createDatabases([...DB_SERVICES]);
		smtp = await startSmtp();
		const { privateKey } = crypto.generateKeyPairSync("ec", { namedCurve: "P-256" });
		common = {
			NODE_ENV: "test",
			LOG_LEVEL: "info",
			BCRYPT_COST: "4",
			TRANSPORTER: NATS_URL,
			NAMESPACE: namespace,
			REDIS_URL,
			JWT_PRIVATE_KEY: privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
			FAILPOINTS: "",
			...(opts.env ?? {})
		};
		const workers = opts.workers ?? 2;
		const layout: NodeSpec[] = [
			{ name: "auth", services: ["auth"] },
			{ name: "users", services: ["users"] },
			{ name: "payments", services: ["payments"] },
			...Array.from({ length: workers }, (_, i) => ({ name: `notifications-${i + 1}`, services: ["notifications"] })),
			{ name: "jobs", services: ["jobs"] },
			{ name: "admin", services: ["admin"] },
			{ name: "gateway-a", services: ["api"] },
			{ name: "gateway-b", services: ["api"] }
		];
		for (const spec of layout) launch(spec.name, spec.services, await envFor(spec));
		await waitReady();
		// The auth node makes sure of the admin account once users answers.
		const end = Date.now() + 60000;
		while (!node("auth").logs().some(l => /^Admin account .* is in place/.test(l.msg))) {
			if (Date.now() > end || !node("auth").alive()) throw new Error(`the admin account was not made\n${diag(30)}`);
			await sleep(200);
		}
	} catch (err) {
		await teardown().catch(() => undefined);
		throw err;
	}

	return {
		namespace,
		natsUrl: NATS_URL,
		gateways: [node("gateway-a").url!, node("gateway-b").url!],
		smtp,
		dbs,
		admin,
		node,
		nodes: () => [...current.values()],
		async startNode(spec) {
			if (current.get(spec.name)?.alive()) throw new Error(`node ${spec.name} is already running`);
			launch(spec.name, spec.services, await envFor(spec));
			await waitReady([spec.name]);
			return node(spec.name);
		},
		async restart(name, env = {}) {
			const spec = specs.get(name);
			if (!spec) throw new Error(`no node named ${name}`);
			await node(name).stop();
			launch(name, spec.services, { ...spec.env, ...env });
			await waitReady([name]);
			return node(name);
		},
		waitReady,
		logsWith: requestId => all.flatMap(n => n.logs().filter(l => l.request_id === requestId).map(log => ({ node: n.name, log }))),
		diag,
		stop: teardown
	};
}
