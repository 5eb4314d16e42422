import { spawn, type ChildProcess } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { deleteStreams } from "../../lib/channels";
import { runnerCommand } from "../../lib/node-flags";
import { collectLines, freePort, ROOT } from "../helpers/node-process";
import { createDatabases, type TestDatabases } from "../helpers/pg";
import { http, registerAndLogin, type HttpResult } from "../helpers/system";

/**
 * The production start command, as a cluster: two OS processes running `moleculer-runner` on the
 * built code, finding each other over NATS, each with its own PostgreSQL database.
 */

// Built once for the whole run by test/global-setup.ts.
const BUILD = path.join(ROOT, "dist");
const NATS_URL = process.env.TEST_NATS_URL ?? "nats://127.0.0.1:4222";
const namespace = `c${crypto.randomBytes(4).toString("hex")}`;

interface NodeProc {
	name: string;
	proc: ChildProcess;
	lines: string[];
	stderr: string[];
	exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
	alive(): boolean;
}

/** Runs the start command from the Dockerfile and README: the runner, the built config, the built services. */
function startNode(name: string, env: Record<string, string>): NodeProc {
	const cmd = runnerCommand(BUILD, { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? os.tmpdir(), ...env });
	const proc = spawn(process.execPath, cmd.args, {
		cwd: ROOT,
		env: cmd.env,
		stdio: ["ignore", "pipe", "pipe"]
	});
	const lines: string[] = [];
	const stderr: string[] = [];
	collectLines(proc.stdout!, lines);
	collectLines(proc.stderr!, stderr);
	let running = true;
	const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>(resolve =>
		proc.once("exit", (code, signal) => {
			running = false;
			resolve({ code, signal });
		})
	);
	return { name, proc, lines, stderr, exited, alive: () => running };
}

const parseLog = (line: string): Record<string, unknown> | undefined => {
	try {
		const v = JSON.parse(line);
		return v && typeof v === "object" && !Array.isArray(v) ? v : undefined;
	} catch {
		return undefined;
	}
};

/** Polls until `check` returns something, or fails with what the nodes said. */
async function waitFor<T>(what: string, check: () => Promise<T | undefined>, nodes: NodeProc[], timeoutMs = 30000): Promise<T> {
	const deadline = Date.now() + timeoutMs;
	let reason = `no answer within ${timeoutMs} ms`;
	while (Date.now() < deadline) {
		// A node that died or that found no service to run will not come good: say so at once.
		const dead = nodes.find(n => !n.alive());
		const empty = nodes.flatMap(n => n.lines).find(l => /There is no (matched file|service files)/.test(l));
		if (dead || empty) {
			reason = dead ? `${dead.name} exited` : `moleculer-runner loaded no service: ${String(parseLog(empty!)?.msg ?? empty)}`;
			break;
		}
		const v = await check().catch(() => undefined);
		if (v !== undefined) return v;
		await new Promise(r => setTimeout(r, 250));
	}
	const tail = nodes.map(n => `--- ${n.name} (${n.alive() ? "running" : "exited"}) ---\n${[...n.lines.slice(-15), ...n.stderr.slice(-15)].join("\n")}`);
	throw new Error(`gave up waiting for ${what}: ${reason}\n${tail.join("\n")}`);
}

/** One request that must answer within `ms`: a hang is a failure, not a slow pass. */
async function within<T>(ms: number, p: Promise<T>): Promise<T> {
	let timer: NodeJS.Timeout | undefined;
	try {
		return await Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms)))]);
	} finally {
		clearTimeout(timer);
	}
}

describe("cluster: gateway+auth and users as two processes over NATS", () => {
	let dbs: TestDatabases;
	let url = "";
	let envA: Record<string, string>;
	let envB: Record<string, string>;
	const nodes: NodeProc[] = [];
	let a: NodeProc;
	let b: NodeProc;
	let token = "";
	const dataDirs: string[] = [];

	const ready = () => http(url, "GET", "/health/ready").then(r => (r.status === 200 ? r : undefined));
	const start = (name: string, env: Record<string, string>) => {
		const n = startNode(name, env);
		nodes.push(n);
		return n;
	};

	beforeAll(async () => {
		dbs = await createDatabases(["auth", "users"]);
		const port = await freePort();
		url = `http://127.0.0.1:${port}`;
		const common = {
			TRANSPORTER: NATS_URL,
			NAMESPACE: namespace,
			NODE_ENV: "test",
			BCRYPT_COST: "4",
			LOG_LEVEL: "info",
			PORT: String(port),
			READY_SERVICES: "auth,users"
		};
		const dataDir = () => {
			const d = fs.mkdtempSync(path.join(os.tmpdir(), "msvc-cluster-"));
			dataDirs.push(d);
			return d;
		};
		envA = { ...common, SERVICES: "api,auth", AUTH_DATABASE_URL: dbs.env.AUTH_DATABASE_URL, DATA_DIR: dataDir() };
		envB = { ...common, SERVICES: "users", USERS_DATABASE_URL: dbs.env.USERS_DATABASE_URL, DATA_DIR: dataDir() };
		b = start("node B (users)", envB);
		a = start("node A (api, auth)", envA);
		await waitFor("/health/ready to answer 200", ready, [a, b], 40000);
	}, 120000);

	afterAll(async () => {
		for (const n of nodes) if (n.alive()) n.proc.kill("SIGKILL");
		await Promise.all(nodes.map(n => n.exited));
		await dbs?.drop();
		// The users node's outbox relay makes this namespace's JetStream streams: remove them.
		await deleteStreams(NATS_URL, namespace);
		for (const d of dataDirs) fs.rmSync(d, { recursive: true, force: true });
	}, 30000);

	it("registers, logs in and reads the profile across the two nodes", async () => {
		const login = await registerAndLogin(url);
		token = login.token;
		const rid = `cluster-me-${crypto.randomBytes(4).toString("hex")}`;
		const me = await http(url, "GET", "/api/v1/users/me", { token, headers: { "X-Request-ID": rid } });
		expect(me.status).toBe(200);
		expect(me.body).toEqual(login.user);
		expect(me.headers.get("x-request-id")).toBe(rid);
	});

	it("writes JSON log lines that name their node and service, on both nodes", () => {
		for (const n of [a, b]) {
			expect(n.lines.length).toBeGreaterThan(0);
			const logs = n.lines.map(parseLog);
			expect(n.lines.filter((_, i) => !logs[i])).toEqual([]);
			for (const log of logs) {
				expect(log).toMatchObject({ level: expect.any(String), time: expect.any(String), msg: expect.any(String), node: expect.any(String), service: expect.any(String) });
			}
			// One node id per process.
			expect(new Set(logs.map(l => l!.node)).size).toBe(1);
		}
		const services = (n: NodeProc) => new Set(n.lines.map(l => parseLog(l)!.service));
		expect(services(b).has("users")).toBe(true);
		expect(services(b).has("auth")).toBe(false);
		expect(services(a).has("api")).toBe(true);
		expect(services(a).has("auth")).toBe(true);
		expect(services(a).has("users")).toBe(false);
		expect(parseLog(a.lines[0])!.node).not.toBe(parseLog(b.lines[0])!.node);
	});

	it("answers 503 with Retry-After, not a hang, when the users node dies, and logs the request id", async () => {
		b.proc.kill("SIGKILL");
		expect(await b.exited).toMatchObject({ signal: "SIGKILL" });

		const rid = `cluster-down-${crypto.randomBytes(4).toString("hex")}`;
		// The request timeout is 2 s; 15 s is far beyond it, so only a hang fails here.
		const me: HttpResult = await within(15000, http(url, "GET", "/api/v1/users/me", { token, headers: { "X-Request-ID": rid } }));
		expect(me.status).toBe(503);
		expect(me.headers.get("content-type")).toMatch(/^application\/problem\+json/);
		expect(Number(me.headers.get("retry-after"))).toBeGreaterThan(0);
		expect(me.body).toMatchObject({ status: 503, request_id: rid, instance: "/api/v1/users/me" });

		const notReady = await within(15000, http(url, "GET", "/health/ready"));
		expect(notReady.status).toBe(503);
		expect(notReady.body).toMatchObject({ status: "unavailable", checks: { auth: "ok", users: "down" } });

		// Node A logs the failed call with the request id that came in with it.
		const logged = await waitFor("the request id in node A's log", async () => a.lines.map(parseLog).find(l => l?.request_id === rid), [a]);
		expect(logged).toMatchObject({ node: parseLog(a.lines[0])!.node, service: expect.any(String), msg: expect.stringContaining("users.me") });
	});

	it("recovers once the users node is back", async () => {
		b = start("node B again (users)", envB);
		await waitFor("/health/ready to answer 200 again", ready, [a, b], 40000);
		// The dead node may still be listed until its heartbeat times out: wait for three good answers in a row.
		let good = 0;
		const me = await waitFor(
			"GET /users/me to answer 200 three times running",
			async () => {
				const r = await http(url, "GET", "/api/v1/users/me", { token });
				good = r.status === 200 ? good + 1 : 0;
				return good >= 3 ? r : undefined;
			},
			[a, b],
			40000
		);
		expect(me.body.id).toBeDefined();
	}, 90000);

	it("stops node A gracefully on SIGTERM, with exit code 0", async () => {
		a.proc.kill("SIGTERM");
		const exit = await within(15000, a.exited);
		expect(exit).toEqual({ code: 0, signal: null });
		const logs = a.lines.map(parseLog);
		expect(logs.some(l => l?.service === "broker" && /stopped/i.test(String(l.msg)))).toBe(true);
		// The calls that timed out while node B was dead hold nothing up.
		expect(logs.filter(l => /Waiting for \d+ running context|Unable to stop ServiceBroker gracefully/.test(JSON.stringify(l)))).toEqual([]);
	}, 20000);
});
