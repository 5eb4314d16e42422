import { execFile } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { Client } from "pg";
import { deleteStreams, ensureStreams } from "../../lib/channels";
import { freePort, startNode, waitForStatus, type NodeProcess } from "../helpers/node-process";
import { natsServer, type NatsServer } from "../helpers/nats-server";
import { createDatabases, query, type TestDatabases } from "../helpers/pg";
import { startSmtp, smtpUrl, type Smtp } from "../helpers/smtp";
import { http as request, registerAndLogin } from "../helpers/system";
import { waitFor } from "../helpers/wait";

// Faults of issue 7 against the cluster as separate OS processes (the built start command): what the
// client sees, and that nothing was lost or done twice. Each part starts its own nodes; NATS and
// PostgreSQL are restarted only as private instances started here.

const NATS_URL = process.env.TEST_NATS_URL ?? "nats://127.0.0.1:4222";
const PG_BIN = process.env.TEST_PG_BIN ?? "/usr/lib/postgresql/15/bin";
const run = promisify(execFile);
const sleep = (ms: number) => new Promise(r => setTimeout(r, ms));

const REQUEST_TIMEOUT_MS = 2000;
/** Kubernetes' terminationGracePeriodSeconds (k8s/*.yaml): a node told to stop must be gone by then. */
const GRACE_PERIOD_MS = 30000;
/** A call may be tried three times (retries: 2) before the gateway answers: past this, a request hangs. */
const HANG_MS = 3 * REQUEST_TIMEOUT_MS + 9000;

const COMMON = {
	NODE_ENV: "test",
	LOG_LEVEL: "info",
	BCRYPT_COST: "4",
	REQUEST_TIMEOUT_MS: String(REQUEST_TIMEOUT_MS),
	RATE_LIMIT_MAX: "1000000",
	FAILPOINTS: ""
};

const tmpDirs: string[] = [];
function tmpDir(prefix: string): string {
	const d = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
	tmpDirs.push(d);
	return d;
}
afterAll(() => {
	for (const d of tmpDirs) fs.rmSync(d, { recursive: true, force: true });
});

const alive = (n: NodeProcess | undefined): n is NodeProcess => !!n && n.proc.exitCode === null && n.proc.signalCode === null;

const parseLog = (line: string): Record<string, unknown> => {
	try {
		return JSON.parse(line);
	} catch {
		return { msg: line };
	}
};

interface NodePorts {
	health: number;
	metrics: number;
	/** The gateway's HTTP port (PORT), for nodes that run the api service. */
	http: number;
}

/**
 * The nodes a part started, by name. Each start takes fresh ports (a port picked long before may have been
 * taken since by some connection's local end), so a restarted node has new ones too.
 */
class Nodes {
	all: { name: string; node: NodeProcess }[] = [];
	private byName = new Map<string, { node: NodeProcess; ports: NodePorts; env: Record<string, string>; id: string }>();
	constructor(private readonly namespace: string) {}

	async start(name: string, env: Record<string, string>): Promise<NodeProcess> {
		const ports = { health: await freePort(), metrics: await freePort(), http: env.SERVICES.split(",").includes("api") ? await freePort() : 0 };
		const id = `${this.namespace}-${name}-${this.all.length}`;
		const node = startNode({
			...COMMON,
			NAMESPACE: this.namespace,
			NODE_ID: id,
			HEALTH_PORT: String(ports.health),
			METRICS_PORT: String(ports.metrics),
			...(ports.http ? { PORT: String(ports.http) } : {}),
			DATA_DIR: tmpDir("msvc-cf-"),
			...env
		});
		this.all.push({ name, node });
		this.byName.set(name, { node, ports, env, id });
		return node;
	}
	/** Starts the named node again, with the environment it had. */
	restart(name: string): Promise<NodeProcess> {
		return this.start(name, this.byName.get(name)!.env);
	}
	get(name: string): NodeProcess {
		return this.byName.get(name)!.node;
	}
	/** The NODE_ID of the named node's current process. */
	id(name: string): string {
		return this.byName.get(name)!.id;
	}
	/** Waits until `name` has seen each of `others` join (a gateway must know a node before it can notice it gone). */
	async knows(name: string, others: string[]): Promise<void> {
		for (const other of others) {
			const joined = new RegExp(`Node '${this.id(other)}' (re)?connected`);
			await waitFor(() => this.get(name).lines.some(l => joined.test(l)), `${name} to see ${other} join`, 60000, this.diag);
		}
	}
	ports(name: string): NodePorts {
		return this.byName.get(name)!.ports;
	}
	url(name: string, port: keyof NodePorts = "http"): string {
		return `http://127.0.0.1:${this.ports(name)[port]}`;
	}
	/** Waits for the node's /ready to answer 200; fails with what every node said. */
	ready(name: string): Promise<void> {
		return this.ok(`${this.url(name, "health")}/ready`, name);
	}
	/** Waits for a gateway's own /health/ready (it also checks the services it needs); fails with what every node said. */
	gatewayReady(name: string): Promise<void> {
		return this.ok(`${this.url(name)}/health/ready`, name);
	}
	private async ok(url: string, name: string): Promise<void> {
		await waitForStatus(url, 200, 60000).catch(err => {
			throw new Error(`${name}: ${(err as Error).message}\n${this.diag()}`);
		});
	}
	diag = (): string =>
		[...this.byName.entries()]
			.map(([name, { node }]) => `--- ${name} (${node.proc.exitCode === null && node.proc.signalCode === null ? "running" : `exited ${node.proc.exitCode ?? node.proc.signalCode}`}) ---\n${node.lines.slice(-10).join("\n")}`)
			.join("\n");
	async killAll(): Promise<void> {
		for (const { node } of this.all) if (alive(node)) node.proc.kill("SIGKILL");
		await Promise.all(this.all.map(({ node }) => node.exited));
	}
}

// ---- The client side: a steady load, every outcome recorded ----

interface Outcome {
	at: number;
	ms: number;
	status: number;
	retryAfter?: string | null;
	type?: string | null;
	body?: unknown;
	error?: string;
}

/** Loads still running (a test that failed half-way): stopped before the nodes go. */
const loads = new Set<{ stop(): Promise<Outcome[]> }>();
const stopLoads = () => Promise.all([...loads].map(l => l.stop()));

/** `workers` clients, each sending `send()` again as soon as it answers, until stopped. A request past HANG_MS is cut and recorded as status 0. */
function steadyLoad(send: (signal: AbortSignal) => Promise<Response>, workers = 6) {
	const outcomes: Outcome[] = [];
	let running = true;
	const worker = async () => {
		while (running) {
			const at = Date.now();
			try {
				const res = await send(AbortSignal.timeout(HANG_MS));
				const text = await res.text();
				const o: Outcome = { at, ms: Date.now() - at, status: res.status };
				if (res.status !== 200) Object.assign(o, { retryAfter: res.headers.get("retry-after"), type: res.headers.get("content-type"), body: parseLog(text) });
				outcomes.push(o);
			} catch (err) {
				const e = err as Error & { cause?: Error };
				outcomes.push({ at, ms: Date.now() - at, status: 0, error: `${e.name}: ${e.message}${e.cause ? ` (${e.cause.message})` : ""}` });
				await sleep(50);
			}
		}
	};
	const done = Promise.all(Array.from({ length: workers }, worker));
	const load = {
		outcomes,
		/** Resolves once `n` more requests have been answered. */
		async more(n: number) {
			const target = outcomes.length + n;
			await waitFor(() => outcomes.length >= target, `${n} more answered requests`, 120000);
		},
		async stop() {
			running = false;
			await done;
			loads.delete(load);
			return outcomes;
		}
	};
	loads.add(load);
	return load;
}

const summary = (outcomes: Outcome[]) => {
	const counts: Record<string, number> = {};
	for (const o of outcomes) counts[o.status] = (counts[o.status] ?? 0) + 1;
	return counts;
};

/** A 503 the way the gateway says "unavailable, retry": problem+json with Retry-After. */
const isCleanUnavailable = (o: Outcome) =>
	o.status === 503 && Number(o.retryAfter) > 0 && /^application\/problem\+json/.test(o.type ?? "") && (o.body as { status?: number })?.status === 503;

// ---- A load balancer in front of the gateways, as k8s Service/Ingress or a compose proxy would be ----

interface Upstream {
	name: string;
	port: number;
	healthPort: number;
	ready: boolean;
}

interface Balancer {
	url: string;
	upstreams: Upstream[];
	/** Requests the balancer could not pass on (connection refused or reset by a gateway): each one a failed request. */
	errors: string[];
	close(): Promise<void>;
}

/**
 * Routes each request round-robin to a gateway whose `/ready` (on HEALTH_PORT) answered 200 at its last
 * poll, every 200 ms, over keep-alive connections; never retries. A gateway that closes a connection under
 * a request, or a port closed too early, shows up as a failed request.
 */
async function startBalancer(upstreams: Upstream[]): Promise<Balancer> {
	const agent = new http.Agent({ keepAlive: true, maxSockets: 32 });
	const errors: string[] = [];
	let next = 0;
	let polling = true;
	const poll = async (u: Upstream) => {
		while (polling) {
			try {
				const res = await fetch(`http://127.0.0.1:${u.healthPort}/ready`, { signal: AbortSignal.timeout(1000) });
				await res.arrayBuffer();
				u.ready = res.status === 200;
			} catch {
				u.ready = false;
			}
			await sleep(200);
		}
	};
	const polls = upstreams.map(poll);
	const server = http.createServer((req, res) => {
		const ready = upstreams.filter(u => u.ready);
		if (!ready.length) {
			res.writeHead(503, { "content-type": "text/plain", "x-balancer": "no ready gateway" });
			return void res.end("no ready gateway");
		}
		const u = ready[next++ % ready.length];
		const headers = { ...req.headers };
		delete headers.connection;
		const up = http.request({ host: "127.0.0.1", port: u.port, method: req.method, path: req.url, headers, agent }, upRes => {
			const out = { ...upRes.headers };
			delete out.connection;
			delete out["keep-alive"];
			res.writeHead(upRes.statusCode ?? 502, out);
			upRes.pipe(res);
		});
		up.on("error", err => {
			errors.push(`${u.name}: ${err.message}`);
			if (!res.headersSent) res.writeHead(502, { "content-type": "text/plain", "x-balancer": "upstream error" });
			res.end(`upstream error: ${err.message}`);
		});
		req.pipe(up);
	});
	await new Promise<void>(resolve => server.listen(0, "127.0.0.1", resolve));
	return {
		url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
		upstreams,
		errors,
		async close() {
			polling = false;
			await Promise.all(polls);
			server.closeAllConnections();
			await new Promise<void>(resolve => server.close(() => resolve()));
			agent.destroy();
		}
	};
}

/** Requests a users node has answered for users.me, from its Prometheus metrics. */
async function servedMe(metricsPort: number): Promise<number> {
	const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
	let n = 0;
	for (const line of text.split("\n")) {
		const m = /^moleculer_request_total\{([^}]*)\} (\d+)/.exec(line);
		if (m && m[1].includes('action="users.me"')) n += Number(m[2]);
	}
	return n;
}

/** True when nothing listens on the port any more. */
function portClosed(port: number): Promise<boolean> {
	return new Promise(resolve => {
		const s = net.connect(port, "127.0.0.1");
		s.once("connect", () => {
			s.destroy();
			resolve(false);
		});
		s.once("error", () => resolve(true));
	});
}

// ---- 1 and 2: two gateways behind a balancer, two users nodes, one auth node ----

describe("cluster faults: two gateways behind a balancer, two users nodes", () => {
	const namespace = `cf${crypto.randomBytes(4).toString("hex")}`;
	const nodes = new Nodes(namespace);
	let dbs: TestDatabases;
	let lb: Balancer;
	let token = "";
	const NAMES = ["auth", "users-a", "users-b", "gw1", "gw2"];

	/** Points the balancer at a gateway's current ports (a restarted gateway has new ones). */
	const upstream = (name: string): Upstream => {
		const u = lb.upstreams.find(x => x.name === name)!;
		Object.assign(u, { port: nodes.ports(name).http, healthPort: nodes.ports(name).health });
		return u;
	};
	/** Every node ready, both gateways see auth and users, and the balancer routes to both. */
	const clusterReady = async () => {
		for (const name of NAMES) await nodes.ready(name);
		for (const gw of ["gw1", "gw2"]) await nodes.gatewayReady(gw);
		// Ready needs only one users node; kill -9 and SIGTERM need both gateways to know both.
		for (const gw of ["gw1", "gw2"]) await nodes.knows(gw, NAMES.filter(n => n !== gw));
		await waitFor(() => lb.upstreams.every(u => u.ready), "the balancer to route to both gateways");
	};
	const me = (signal?: AbortSignal) => fetch(`${lb.url}/api/v1/users/me`, { headers: { authorization: `Bearer ${token}` }, signal });
	const served = (name: string) => servedMe(nodes.ports(name).metrics);
	const stopProblems = (n: NodeProcess) => n.lines.map(parseLog).filter(l => /Waiting for \d+ running context|GracefulStopTimeout|Unable to stop/.test(JSON.stringify(l)));

	beforeAll(async () => {
		dbs = await createDatabases(["auth", "users"]);
		const common = { TRANSPORTER: NATS_URL, SHUTDOWN_DELAY_MS: "2000" };
		const users = { ...common, SERVICES: "users", USERS_DATABASE_URL: dbs.env.USERS_DATABASE_URL };
		const gateway = { ...common, SERVICES: "api", READY_SERVICES: "auth,users" };
		await nodes.start("auth", { ...common, SERVICES: "auth", AUTH_DATABASE_URL: dbs.env.AUTH_DATABASE_URL });
		await nodes.start("users-a", users);
		// One users node migrates the shared database first.
		await nodes.ready("users-a");
		await nodes.start("users-b", users);
		await nodes.start("gw1", gateway);
		await nodes.start("gw2", gateway);
		lb = await startBalancer(["gw1", "gw2"].map(name => ({ name, port: nodes.ports(name).http, healthPort: nodes.ports(name).health, ready: false })));
		await clusterReady();
		token = (await registerAndLogin(lb.url)).token;
	}, 180000);

	afterAll(async () => {
		await stopLoads();
		await lb?.close();
		await nodes.killAll();
		await dbs?.drop();
		await deleteStreams(NATS_URL, namespace).catch(() => undefined);
	}, 60000);

	it("1. kill -9 one of two users nodes under load: 200 or a 503 + Retry-After, none hangs; the other node serves; the restarted node serves again", async () => {
		await clusterReady();
		const load = steadyLoad(me);
		await load.more(200);
		const victim = nodes.get("users-b");
		const victimId = nodes.id("users-b");
		const survivorBefore = await served("users-a");
		const killedAt = Date.now();
		victim.proc.kill("SIGKILL");
		await victim.exited;
		// Each gateway drops the dead node once its heartbeats stop (heartbeatTimeout, lib/broker.ts).
		for (const gw of ["gw1", "gw2"]) {
			await waitFor(
				() => nodes.get(gw).lines.some(l => l.includes(`Node '${victimId}' disconnected unexpectedly`)),
				`${gw} to notice that ${victimId} is gone`,
				60000
			);
		}
		const detectedAt = Date.now();
		await load.more(300);
		const survivorAfter = await served("users-a");

		// The killed node comes back (a new process, as a restarted pod would): found, and given work again.
		const restarted = await nodes.restart("users-b");
		await nodes.ready("users-b");
		// Served at least 20 calls: waitFor fails the test otherwise.
		await waitFor(
			async () => (await served("users-b").catch(() => 0)) >= 20,
			"the restarted users node to serve users.me",
			60000
		);
		const outcomes = await load.stop();
		const during = outcomes.filter(o => o.at >= killedAt && o.at <= detectedAt);
		const afterDetection = outcomes.filter(o => o.at > detectedAt);
		console.log(
			`kill -9 users-b: ${outcomes.length} requests ${JSON.stringify(summary(outcomes))}; from the kill to its detection (${detectedAt - killedAt} ms): ${JSON.stringify(summary(during))}, slowest ${Math.max(0, ...during.map(o => o.ms))} ms; after: ${JSON.stringify(summary(afterDetection))}`
		);

		// Every request answered: 200, or 503 with Retry-After as problem+json; nothing else, and nothing hung (status 0).
		expect(outcomes.filter(o => o.status !== 200 && !isCleanUnavailable(o))).toEqual([]);
		// Most were served all along, and every one once the dead node was dropped: by the other node.
		expect(outcomes.filter(o => o.status === 200).length).toBeGreaterThan(outcomes.length / 2);
		expect(afterDetection.length).toBeGreaterThan(0);
		expect(afterDetection.filter(o => o.status !== 200)).toEqual([]);
		expect(survivorAfter).toBeGreaterThan(survivorBefore);
		expect(alive(restarted)).toBe(true);
	}, 240000);

	it("2a. SIGTERM a gateway under load: not ready at once, still serving through the drain delay, in-flight requests finished, exit 0, zero failed requests", async () => {
		await clusterReady();
		const load = steadyLoad(me);
		await load.more(200);
		const gw = nodes.get("gw1");
		const direct = nodes.url("gw1");

		// A request in flight across the drain: its body is sent in two parts, the second once the port is closed.
		const agent = new http.Agent({ keepAlive: true });
		const patch = http.request(`${direct}/api/v1/users/me`, {
			method: "PATCH",
			agent,
			headers: { authorization: `Bearer ${token}`, "content-type": "application/json", "transfer-encoding": "chunked" }
		});
		const patched = new Promise<{ status: number; connection: string | undefined; body: string }>((resolve, reject) => {
			patch.on("response", res => {
				let body = "";
				res.setEncoding("utf8");
				res.on("data", c => (body += c));
				res.on("end", () => resolve({ status: res.statusCode ?? 0, connection: res.headers.connection, body }));
			});
			patch.on("error", reject);
		});
		patched.catch(() => undefined); // awaited below; a failure before then is not an unhandled rejection
		patch.write('{"name":');
		await sleep(200);

		const termAt = Date.now();
		gw.proc.kill("SIGTERM");
		// Not ready at once (the balancer takes it out of rotation) ...
		await waitForStatus(`${nodes.url("gw1", "health")}/ready`, 503, 10000);
		expect((await request(direct, "GET", "/health/ready")).status).toBe(503);
		// ... while a client that still reaches it directly is served.
		expect((await request(direct, "GET", "/api/v1/users/me", { token })).status).toBe(200);
		// After SHUTDOWN_DELAY_MS it closes its port; the PATCH it is reading is then finished and answered, with Connection: close.
		await waitFor(() => portClosed(nodes.ports("gw1").http), "gw1 to close its HTTP port", 30000);
		expect(alive(gw)).toBe(true);
		patch.end('"Drained"}');
		const answered = await patched;
		agent.destroy();
		expect(answered).toMatchObject({ status: 200, connection: "close" });
		expect(JSON.parse(answered.body)).toMatchObject({ name: "Drained" });

		expect(await gw.exited).toBe(0);
		expect(Date.now() - termAt).toBeLessThan(GRACE_PERIOD_MS);
		await load.more(200);
		const outcomes = await load.stop();
		console.log(`SIGTERM gw1: ${outcomes.length} requests ${JSON.stringify(summary(outcomes))}; balancer errors: ${lb.errors.length}`);
		expect(outcomes.filter(o => o.status !== 200)).toEqual([]);
		expect(lb.errors).toEqual([]);
		expect(gw.lines.map(parseLog).some(l => l.msg === "API gateway closed after answering every in-flight request")).toBe(true);
		expect(stopProblems(gw)).toEqual([]);

		await nodes.restart("gw1");
		upstream("gw1");
	}, 180000);

	it("2b. SIGTERM a users node under load: it leaves the registry first, the other users node takes the calls, zero failed requests, exit 0", async () => {
		await clusterReady();
		const load = steadyLoad(me);
		await load.more(200);
		const victim = nodes.get("users-a");
		const otherBefore = await served("users-b");
		const termAt = Date.now();
		victim.proc.kill("SIGTERM");
		await waitForStatus(`${nodes.url("users-a", "health")}/ready`, 503, 10000);
		expect(await victim.exited).toBe(0);
		expect(Date.now() - termAt).toBeLessThan(GRACE_PERIOD_MS);
		await load.more(300);
		const outcomes = await load.stop();
		const refused = victim.lines.map(parseLog).filter(l => /is dropped because broker is stopped/.test(String(l.msg)));
		console.log(`SIGTERM users-a: ${outcomes.length} requests ${JSON.stringify(summary(outcomes))}; calls it refused while stopping: ${refused.length}`);
		expect(outcomes.filter(o => o.status !== 200)).toEqual([]);
		expect(lb.errors).toEqual([]);
		expect(await served("users-b")).toBeGreaterThan(otherBefore);
		expect(stopProblems(victim)).toEqual([]);
	}, 180000);
});

// ---- 3: a private NATS server restarted during a stream of charges ----


describe("cluster faults: NATS restarted during a stream of charges (gateway, payments and notifications as three processes)", () => {
	const namespace = `cn${crypto.randomBytes(4).toString("hex")}`;
	const nodes = new Nodes(namespace);
	let nats: NatsServer;
	let dbs: TestDatabases;
	let smtp: Smtp;
	let url = "";

	beforeAll(async () => {
		nats = natsServer(await freePort(), tmpDir("msvc-cn-nats-"));
		await nats.start();
		await ensureStreams(nats.url, namespace);
		dbs = await createDatabases(["auth", "users", "payments", "notifications"]);
		smtp = await startSmtp();
		const common = { TRANSPORTER: nats.url, SHUTDOWN_DELAY_MS: "500" };
		await nodes.start("gw", {
			...common,
			SERVICES: "api,auth,users",
			READY_SERVICES: "auth,users,payments,notifications",
			AUTH_DATABASE_URL: dbs.env.AUTH_DATABASE_URL,
			USERS_DATABASE_URL: dbs.env.USERS_DATABASE_URL
		});
		await nodes.start("payments", { ...common, SERVICES: "payments", PAYMENTS_DATABASE_URL: dbs.env.PAYMENTS_DATABASE_URL, OUTBOX_POLL_MS: "100" });
		await nodes.start("notifications", {
			...common,
			SERVICES: "notifications",
			NOTIFICATIONS_DATABASE_URL: dbs.env.NOTIFICATIONS_DATABASE_URL,
			SMTP_URL: smtpUrl(smtp),
			NOTIFY_PUMP_MS: "100",
			NOTIFY_RETRY_BASE_MS: "100",
			NOTIFY_MAX_ATTEMPTS: "30"
		});
		url = nodes.url("gw");
		await nodes.gatewayReady("gw");
	}, 180000);

	afterAll(async () => {
		await nodes.killAll();
		await deleteStreams(nats.url, namespace).catch(() => undefined);
		await nats?.stop();
		await smtp?.close();
		await dbs?.drop();
	}, 60000);

	it("3. every charge the client saw succeed gets exactly one receipt; charges during the outage get a 503, and a retry with the same Idempotency-Key charges once", async () => {
		const { user, token, email } = await registerAndLogin(url);
		type Charge = { key: string; requestId: string; at: number; ms?: number; status?: number; retryAfter?: string | null; type?: string | null; body?: any; error?: string; paymentId?: string };
		const charges: Charge[] = [];
		const send = async (c: Charge) => {
			try {
				const res = await fetch(`${url}/api/v1/payments/charge`, {
					method: "POST",
					headers: { authorization: `Bearer ${token}`, "content-type": "application/json", "idempotency-key": c.key, "x-request-id": c.requestId },
					body: JSON.stringify({ amount: 1250, currency: "usd", payment_method: "pm_card_visa", description: "NATS restart" }),
					// The charge action's own timeout is 30 s: past it plus a margin, the request hangs.
					signal: AbortSignal.timeout(45000)
				});
				const text = await res.text();
				Object.assign(c, { ms: Date.now() - c.at, status: res.status, retryAfter: res.headers.get("retry-after"), type: res.headers.get("content-type"), body: parseLog(text) });
				if (res.status === 201) c.paymentId = c.body.id;
			} catch (err) {
				Object.assign(c, { ms: Date.now() - c.at, status: 0, error: (err as Error).message });
			}
		};
		// A charge every 100 ms, each with its own key, none waiting for the one before.
		const inFlight: Promise<void>[] = [];
		let sending = true;
		const stream = (async () => {
			for (let i = 0; sending; i++) {
				const c: Charge = { key: crypto.randomUUID(), requestId: `nats-restart-${namespace}-${i}`, at: Date.now() };
				charges.push(c);
				inFlight.push(send(c));
				await sleep(100);
			}
		})();
		await waitFor(() => charges.filter(c => c.status === 201).length >= 10, "ten charges answered 201 before the outage", 60000);
		const stoppedAt = Date.now();
		await nats.stop();
		// The gateway says it is not ready while its NATS connection is down.
		const notReady = await waitFor(
			async () => {
				const r = await request(nodes.url("gw", "health"), "GET", "/ready");
				return r.status === 503 ? r : undefined;
			},
			"the gateway's /ready to answer 503",
			10000
		);
		expect(notReady.body.checks).toMatchObject({ transporter: "down" });
		await sleep(2000);
		await nats.start();
		const restartedAt = Date.now();
		await waitForStatus(`${nodes.url("gw", "health")}/ready`, 200, 30000);
		await waitFor(() => charges.filter(c => c.at > restartedAt && c.status === 201).length >= 10, "ten charges answered 201 after NATS is back", 90000);
		sending = false;
		await stream;
		await Promise.all(inFlight);

		const outage = charges.filter(c => c.at >= stoppedAt && c.at <= restartedAt);
		console.log(
			`NATS restart: ${charges.length} charges ${JSON.stringify(summary(charges as Outcome[]))}; sent during the outage: ${JSON.stringify(summary(outage as Outcome[]))}, slowest answer ${Math.max(...charges.map(c => c.ms ?? 0))} ms; not 201 [status, sent at (ms from the stop), answered after (ms)]: ${JSON.stringify(charges.filter(c => c.status !== 201).map(c => [c.status, c.at - stoppedAt, c.ms]))}; NATS was down from 0 to ${restartedAt - stoppedAt} ms`
		);
		// What the client saw: 201, or a 503 with Retry-After as problem+json; never a hang or another error.
		expect(charges.filter(c => c.status !== 201 && !isCleanUnavailable(c as Outcome))).toEqual([]);

		// The client retries each failed charge with the same Idempotency-Key (and request id) until it is answered.
		let replayed = 0;
		for (const c of charges.filter(x => x.status !== 201)) {
			const again = await waitFor(
				async () => {
					const r = await request(url, "POST", "/api/v1/payments/charge", {
						token,
						headers: { "Idempotency-Key": c.key, "X-Request-ID": c.requestId },
						body: { amount: 1250, currency: "usd", payment_method: "pm_card_visa", description: "NATS restart" }
					});
					return r.status === 201 ? r : undefined;
				},
				`the retry of ${c.requestId} to answer 201`,
				60000
			);
			if (again.headers.get("idempotent-replayed") === "true") replayed++;
			c.paymentId = again.body.id;
		}
		console.log(`NATS restart: ${charges.filter(c => c.status !== 201).length} retried, of which ${replayed} had been charged already (the answer replayed)`);

		// One payment per charge, every one succeeded: nothing charged twice, nothing lost.
		const payments = await query<{ id: string; status: string }>(dbs.env.PAYMENTS_DATABASE_URL, "SELECT id, status FROM payments WHERE user_id = $1", [user.id]);
		expect(payments.map(p => p.id).sort()).toEqual(charges.map(c => c.paymentId).sort());
		expect(payments.filter(p => p.status !== "succeeded")).toEqual([]);

		// Exactly one receipt email per charge.
		const receiptsOf = (c: Charge) => smtp.mails.filter(m => m.headers["x-request-id"] === c.requestId);
		await waitFor(
			() => charges.every(c => receiptsOf(c).length > 0),
			"a receipt for every charge",
			120000
		).catch(err => {
			throw new Error(`${(err as Error).message}; missing: ${charges.filter(c => !receiptsOf(c).length).map(c => c.requestId).join(", ")}\n${nodes.diag()}`);
		});
		await waitFor(
			async () => {
				const rows = await query<{ n: string }>(dbs.env.NOTIFICATIONS_DATABASE_URL, "SELECT count(*) AS n FROM deliveries WHERE user_id = $1 AND template = 'receipt' AND status = 'sent'", [user.id]);
				return Number(rows[0].n) === charges.length;
			},
			"every receipt delivery marked sent",
			60000
		);
		expect(charges.filter(c => receiptsOf(c).length !== 1).map(c => [c.requestId, receiptsOf(c).length])).toEqual([]);
		expect(charges.every(c => receiptsOf(c)[0].envelope.to.includes(email))).toBe(true);
		const ids = smtp.mails.map(m => m.headers["message-id"]);
		expect(ids.filter((id, i) => ids.indexOf(id) !== i)).toEqual([]);
	}, 300000);
});

// ---- 4: a private PostgreSQL restarted under a users node ----

interface Postgres {
	url(db: string): string;
	start(): Promise<void>;
	stop(): Promise<void>;
}

/** A PostgreSQL instance of its own (initdb as the postgres user, trust auth) on a free port, in a temp dir. */
async function privatePostgres(port: number): Promise<Postgres> {
	const dir = tmpDir("msvc-cf-pg-");
	fs.chownSync(dir, Number((await run("id", ["-u", "postgres"])).stdout), Number((await run("id", ["-g", "postgres"])).stdout));
	const data = path.join(dir, "data");
	const asPostgres = (bin: string, args: string[]) => run("runuser", ["-u", "postgres", "--", path.join(PG_BIN, bin), ...args]);
	await asPostgres("initdb", ["-D", data, "-A", "trust", "-U", "postgres"]);
	return {
		url: db => `postgres://postgres@127.0.0.1:${port}/${db}`,
		async start() {
			await asPostgres("pg_ctl", ["start", "-w", "-D", data, "-l", path.join(dir, "log"), "-o", `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1`]);
		},
		async stop() {
			await asPostgres("pg_ctl", ["stop", "-w", "-D", data, "-m", "fast"]).catch(() => undefined);
		}
	};
}

describe("cluster faults: PostgreSQL restarted under the users node", () => {
	const namespace = `cp${crypto.randomBytes(4).toString("hex")}`;
	const nodes = new Nodes(namespace);
	let pg: Postgres | undefined;
	let dbs: TestDatabases;
	let url = "";
	let usersReady = "";

	beforeAll(async () => {
		pg = await privatePostgres(await freePort());
		await pg.start();
		const admin = new Client({ connectionString: pg.url("postgres") });
		await admin.connect();
		await admin.query("CREATE DATABASE users_db");
		await admin.end();
		dbs = await createDatabases(["auth"]);
		const common = { TRANSPORTER: NATS_URL };
		await nodes.start("gw", { ...common, SERVICES: "api,auth", READY_SERVICES: "auth,users", AUTH_DATABASE_URL: dbs.env.AUTH_DATABASE_URL });
		await nodes.start("users", { ...common, SERVICES: "users", USERS_DATABASE_URL: pg.url("users_db") });
		url = nodes.url("gw");
		usersReady = `${nodes.url("users", "health")}/ready`;
		await nodes.gatewayReady("gw");
	}, 180000);

	afterAll(async () => {
		await nodes.killAll();
		await pg?.stop();
		await dbs?.drop();
		await deleteStreams(NATS_URL, namespace).catch(() => undefined);
	}, 60000);

	it("4. readiness goes 503 then 200; a request that needs the database gets a 503 problem meanwhile (no hang); after, it succeeds with no restart", async () => {
		const { token, user } = await registerAndLogin(url);
		const users = nodes.get("users");
		expect((await request(url, "GET", "/api/v1/users/me", { token })).status).toBe(200);
		const rename = (name: string) => request(url, "PATCH", "/api/v1/users/me", { token, body: { name } });

		await pg!.stop();
		await waitForStatus(usersReady, 503, 30000);
		// A write must reach the database (a profile read may be answered from the node's cache).
		const during = [];
		for (let i = 0; i < 5; i++) {
			const at = Date.now();
			const r = await rename(`Outage ${i}`);
			during.push({ status: r.status, ms: Date.now() - at, retryAfter: r.headers.get("retry-after"), type: r.headers.get("content-type"), body: r.body });
		}
		const read = await request(url, "GET", "/api/v1/users/me", { token });
		console.log(`PostgreSQL down: PATCH /users/me answered ${JSON.stringify(during.map(d => [d.status, d.ms, d.body?.detail]))}; GET /users/me answered ${read.status}`);
		expect(during.filter(d => !isCleanUnavailable(d as unknown as Outcome))).toEqual([]);

		await pg!.start();
		await waitForStatus(usersReady, 200, 60000);
		const after = await rename("After the outage");
		expect(after.status).toBe(200);
		expect(after.body).toMatchObject({ id: user.id, name: "After the outage" });
		expect((await request(url, "GET", "/api/v1/users/me", { token })).body).toMatchObject({ name: "After the outage" });
		// The same process all along.
		expect(alive(users)).toBe(true);
	}, 120000);
});
