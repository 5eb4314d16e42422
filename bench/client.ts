import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { freePort, ROOT, startNode, waitForStatus, type NodeProcess } from "../test/helpers/node-process";

/** What the bench scripts (bench/run.ts, bench/compare.ts, bench/alloc.ts) share: the nodes' environment, HTTP helpers and CPU readings. */

export const BCRYPT_COST = Number(process.env.BCRYPT_COST ?? 12);

const TICK_MS = 1000 / 100; // USER_HZ, 100 on Linux

/** CPU time (user + system, ms) a process has used so far, from /proc. */
export function cpuMs(pid: number): number {
	const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
	const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
	return (Number(fields[11]) + Number(fields[12])) * TICK_MS;
}

/**
 * A bench node's environment: the real configuration, with only the rate limit raised to 1 000 000
 * requests per 10 s (one client IP sends all the load; a minute's million ran out at 40 000 requests/s).
 */
export function nodeEnv(extra: Record<string, string>): Record<string, string> {
	return { NODE_ENV: "production", LOG_LEVEL: "warn", RATE_LIMIT_MAX: "1000000", RATE_LIMIT_WINDOW_MS: "10000", BCRYPT_COST: String(BCRYPT_COST), ...extra };
}

/** One JSON request; throws on a non-2xx answer. */
export async function json(base: string, method: string, p: string, body?: unknown, token?: string): Promise<any> {
	const res = await fetch(base + p, {
		method,
		headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
		body: body === undefined ? undefined : JSON.stringify(body)
	});
	const text = await res.text();
	if (!res.ok) throw new Error(`${method} ${p}: ${res.status} ${text}`);
	return text ? JSON.parse(text) : undefined;
}

/** Registers a new user and returns its access token. */
export async function userToken(base: string): Promise<string> {
	const email = `bench.${crypto.randomBytes(4).toString("hex")}@example.com`;
	await json(base, "POST", "/api/v1/auth/register", { email, password: "bench password 1", name: "Bench" });
	return (await json(base, "POST", "/api/v1/auth/login", { email, password: "bench password 1" })).access_token;
}

/** A build to measure: a copy of `dist` inside the checkout (its modules resolve from the checkout's node_modules), and node flags. */
export interface Build {
	name: string;
	dist: string;
	flags: string[];
}

/** `name=path/to/dist[,--node-flag...]` (or just a path, named after itself), as bench:compare and bench:alloc take them. */
export function parseBuilds(args: string[]): Build[] {
	return args.map(arg => {
		const [name, rest] = arg.includes("=") ? [arg.slice(0, arg.indexOf("=")), arg.slice(arg.indexOf("=") + 1)] : [arg, arg];
		const [dist, ...flags] = rest.split(",");
		const abs = path.resolve(dist);
		if (!fs.existsSync(path.join(abs, "moleculer.config.js"))) throw new Error(`${arg}: ${abs} is not a build (no moleculer.config.js)`);
		if (!abs.startsWith(ROOT + path.sep)) throw new Error(`${arg}: a build must be inside the checkout, to find its node_modules`);
		return { name, dist: abs, flags };
	});
}

export interface EmbeddedNode {
	build: Build;
	node: NodeProcess;
	base: string;
	/** A new user's access token, for authenticated GET /api/v1/users/me. */
	token: string;
	dataDir: string;
}

/** Starts `build` as an embedded node (with `extra` environment and node flags), once it is ready, with a user to call as. */
export async function startEmbedded(build: Build, extra: { env?: Record<string, string>; flags?: string[] } = {}): Promise<EmbeddedNode> {
	const port = await freePort();
	const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "msvc-bench-"));
	const node = startNode(nodeEnv({ PORT: String(port), DATA_DIR: dataDir, ...extra.env }), [], { dist: build.dist, nodeFlags: [...build.flags, ...(extra.flags ?? [])] });
	const base = `http://127.0.0.1:${port}`;
	try {
		await waitForStatus(`${base}/health/ready`, 200, 90000);
		return { build, node, base, token: await userToken(base), dataDir };
	} catch (err) {
		await stopEmbedded({ node, dataDir });
		throw err;
	}
}

/** Kills the node outright (nothing of it is measured any more) and removes its data. */
export async function stopEmbedded(n: Pick<EmbeddedNode, "node" | "dataDir">): Promise<void> {
	await n.node.stop("SIGKILL");
	fs.rmSync(n.dataDir, { recursive: true, force: true });
}
