/**
 * `npm run bench:compare -- before=.compare/before this=dist`: CPU per request of two or more builds of
 * the embedded node, in paired rounds, for changes too small for `npm run bench` to see.
 *
 * Each build runs as its own embedded node. In every round all of them are loaded at once, each by its own
 * autocannon (authenticated GET /api/v1/users/me, 50 connections), so a change of this shared machine's
 * speed hits them alike; a node's CPU per request is its CPU time (/proc/<pid>/stat) over the requests it
 * answered. Each round gives every build's ratio to the first build; the mean of the ratios and its
 * standard error are printed and written to .compare/results-<time>.json. The loads start in a rotating
 * order, one build first in each round: started always in the same order, identical builds measured 5 %
 * apart (two at a time) and 16–19 % apart (three at a time), the one whose load started later dearer;
 * rotated, two and three identical builds measure within ±1 % (±0.2–0.7 % standard error over 9–10 rounds).
 * Only builds that give the same answers compare: the load generators share the cores with the nodes, and
 * a build whose answers make its load generator work less gets more of them (three headers fewer measured
 * 0.70 here, against 0–15 % less measured alone).
 *
 * A build is a copy of `dist` anywhere inside this checkout (its modules resolve from the checkout's
 * node_modules), e.g. `git stash && npm run build && cp -r dist .compare/before && git stash pop && npm run build`.
 * A build may carry node flags: `big=dist,--max-semi-space-size=64`. Environment: COMPARE_ROUNDS (12),
 * COMPARE_SECONDS (5), COMPARE_PATH (/api/v1/users/me).
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import autocannon from "autocannon";
import { freePort, ROOT, startNode, waitForStatus, type NodeProcess } from "../test/helpers/node-process";
import { userToken } from "./client";

const ROUNDS = Number(process.env.COMPARE_ROUNDS ?? 12);
const SECONDS = Number(process.env.COMPARE_SECONDS ?? 5);
const URL_PATH = process.env.COMPARE_PATH ?? "/api/v1/users/me";
const TICKS_PER_S = 100;

interface Build {
	name: string;
	dist: string;
	flags: string[];
}

interface Node {
	build: Build;
	node: NodeProcess;
	base: string;
	token: string;
	dataDir: string;
}

function parseBuilds(args: string[]): Build[] {
	const builds = args.map(arg => {
		const [name, rest] = arg.includes("=") ? [arg.slice(0, arg.indexOf("=")), arg.slice(arg.indexOf("=") + 1)] : [arg, arg];
		const [dist, ...flags] = rest.split(",");
		const abs = path.resolve(dist);
		if (!fs.existsSync(path.join(abs, "moleculer.config.js"))) throw new Error(`${arg}: ${abs} is not a build (no moleculer.config.js)`);
		if (!abs.startsWith(ROOT + path.sep)) throw new Error(`${arg}: a build must be inside the checkout, to find its node_modules`);
		return { name, dist: abs, flags };
	});
	if (builds.length < 2) throw new Error("give two builds or more: name=path/to/dist ...");
	return builds;
}

function cpuTicks(pid: number): number {
	const fields = fs.readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
	return Number(fields[11]) + Number(fields[12]); // utime + stime
}

async function start(build: Build): Promise<Node> {
	const port = await freePort();
	const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "msvc-compare-"));
	const node = startNode({ NODE_ENV: "production", LOG_LEVEL: "warn", RATE_LIMIT_MAX: "1000000", RATE_LIMIT_WINDOW_MS: "10000", PORT: String(port), DATA_DIR: dataDir }, [], { dist: build.dist, nodeFlags: build.flags });
	const base = `http://127.0.0.1:${port}`;
	await waitForStatus(`${base}/health/ready`, 200, 90000);
	return { build, node, base, token: await userToken(base), dataDir };
}

function load(node: Node, seconds: number): Promise<autocannon.Result> {
	return autocannon({ url: node.base + URL_PATH, connections: 50, duration: seconds, headers: { authorization: `Bearer ${node.token}` } });
}

async function main(): Promise<void> {
	const builds = parseBuilds(process.argv.slice(2));
	const nodes: Node[] = [];
	try {
		for (const build of builds) nodes.push(await start(build));
		await Promise.all(nodes.map(n => load(n, 3))); // warm-up
		const rounds: number[][] = [];
		for (let r = 0; r < ROUNDS; r++) {
			const before = nodes.map(n => cpuTicks(n.node.proc.pid!));
			// The load of each build starts first in turn: the one started first measured cheaper per request.
			const order = nodes.map((_, i) => (i + r) % nodes.length);
			const started: Promise<autocannon.Result>[] = [];
			for (const i of order) started[i] = load(nodes[i], SECONDS);
			const results = await Promise.all(started);
			const after = nodes.map(n => cpuTicks(n.node.proc.pid!));
			const bad = results.findIndex(x => x.non2xx + x.errors + x.timeouts > 0);
			if (bad >= 0) throw new Error(`${nodes[bad].build.name}: ${results[bad].non2xx} non-2xx answers, ${results[bad].errors} errors`);
			const us = nodes.map((_, i) => (((after[i] - before[i]) / TICKS_PER_S) * 1e6) / results[i].requests.total);
			rounds.push(us);
			console.log(`round ${r + 1}: ${nodes.map((n, i) => `${n.build.name} ${Math.round(results[i].requests.total / SECONDS)} rps, ${us[i].toFixed(1)} µs/request`).join(" | ")}`);
		}
		const summary = nodes.map((n, i) => {
			const ratios = rounds.map(us => us[i] / us[0]);
			const mean = ratios.reduce((a, b) => a + b, 0) / ratios.length;
			const sd = Math.sqrt(ratios.reduce((a, b) => a + (b - mean) ** 2, 0) / Math.max(1, ratios.length - 1));
			const median = [...rounds.map(us => us[i])].sort((a, b) => a - b)[(rounds.length - 1) >> 1];
			return { name: n.build.name, dist: path.relative(ROOT, n.build.dist), flags: n.build.flags, cpu_ratio_mean: +mean.toFixed(4), cpu_ratio_se: +(sd / Math.sqrt(ratios.length)).toFixed(4), median_us_per_request: +median.toFixed(1) };
		});
		for (const s of summary) console.log(`${s.name}: CPU per request ${s.cpu_ratio_mean.toFixed(3)} ± ${s.cpu_ratio_se.toFixed(3)} of ${builds[0].name}'s (median ${s.median_us_per_request} µs)`);
		const out = path.join(ROOT, ".compare", `results-${new Date().toISOString().replace(/[:.]/g, "-")}.json`);
		fs.mkdirSync(path.dirname(out), { recursive: true });
		fs.writeFileSync(out, JSON.stringify({ date: new Date().toISOString(), rounds: ROUNDS, seconds: SECONDS, path: URL_PATH, cpus: os.cpus().length, cpu_model: os.cpus()[0]?.model, summary, rounds_us: rounds }, null, 2) + "\n");
		console.log(`written to ${path.relative(ROOT, out)}`);
	} finally {
		for (const n of nodes) {
			n.node.proc.kill("SIGKILL");
			fs.rmSync(n.dataDir, { recursive: true, force: true });
		}
	}
}

main().catch(err => {
	console.error(err instanceof Error ? err.message : err);
	process.exit(1);
});
