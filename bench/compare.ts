/**
 * `npm run bench:compare -- before=.compare/before this=dist`: CPU per request of two or more builds of
 * the embedded node, in paired rounds, for changes too small for `npm run bench` to see.
 *
 * Each build runs as its own embedded node. In every round all of them are loaded at once, each by its own
 * autocannon (authenticated GET /api/v1/users/me, 50 connections), so a change of this shared machine's
 * speed hits them alike; a node's CPU per request is its CPU time (/proc/<pid>/stat) over the requests it
 * answered, and each round gives every build's ratio to the first build's. A run starts fresh nodes and
 * measures a few rounds; the ratio of a run is the mean of its rounds, and the mean over runs and its
 * standard error (over runs) are printed and written to .compare/results-<time>.json.
 * Two sources of error found here, and what this does about them:
 *   - the order the loads start in: started always in the same order, identical builds measured 5 % apart
 *     (two at a time) and 16–19 % apart (three at a time), the one started later dearer. Each round starts
 *     a different build's load first.
 *   - the process: rounds of one pair of processes agree to ±0.5 %, but fresh processes of the same two
 *     builds measured up to 4 % apart (a process's JIT and heap layout stay with it). Hence several runs,
 *     each with fresh nodes started in a rotating order, and the error over runs, not rounds.
 * Builds whose answers differ compare too, less exactly: the load generators share the cores with the
 * nodes, and an answer that makes its load generator work less leaves the nodes more CPU.
 *
 * A build is a copy of `dist` anywhere inside this checkout (its modules resolve from the checkout's
 * node_modules), e.g. `git stash && npm run build && cp -r dist .compare/before && git stash pop && npm run build`.
 * A build may carry node flags: `big=dist,--max-semi-space-size=64`. Environment: COMPARE_RUNS (4),
 * COMPARE_ROUNDS per run (4), COMPARE_SECONDS per round (5), COMPARE_PATH (/api/v1/users/me).
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import autocannon from "autocannon";
import { ROOT } from "../test/helpers/node-process";
import { cpuMs, parseBuilds, startEmbedded, stopEmbedded, type Build, type EmbeddedNode } from "./client";

const RUNS = Number(process.env.COMPARE_RUNS ?? 4);
const ROUNDS = Number(process.env.COMPARE_ROUNDS ?? 4);
const SECONDS = Number(process.env.COMPARE_SECONDS ?? 5);
const URL_PATH = process.env.COMPARE_PATH ?? "/api/v1/users/me";

function parseCompared(args: string[]): Build[] {
	const builds = parseBuilds(args);
	if (builds.length < 2) throw new Error("give two builds or more: name=path/to/dist ...");
	return builds;
}

function load(node: EmbeddedNode, seconds: number): Promise<autocannon.Result> {
	return autocannon({ url: node.base + URL_PATH, connections: 50, duration: seconds, headers: { authorization: `Bearer ${node.token}` } });
}

async function stop(nodes: EmbeddedNode[]): Promise<void> {
	await Promise.all(nodes.splice(0).map(stopEmbedded));
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const sd = (xs: number[]) => {
	const m = mean(xs);
	return Math.sqrt(xs.reduce((a, b) => a + (b - m) ** 2, 0) / Math.max(1, xs.length - 1));
};

async function main(): Promise<void> {
	const builds = parseCompared(process.argv.slice(2));
	const nodes: EmbeddedNode[] = [];
	// rounds[run][round][build]: µs per request
	const runs: number[][][] = [];
	try {
		for (let run = 0; run < RUNS; run++) {
			// Fresh processes each run, started in a rotating order: a process's own luck (JIT, heap layout) moves
			// its CPU per request by a few per cent for as long as it lives.
			for (let k = 0; k < builds.length; k++) nodes[(k + run) % builds.length] = await startEmbedded(builds[(k + run) % builds.length]);
			await Promise.all(nodes.map(n => load(n, 3))); // warm-up
			const rounds: number[][] = [];
			for (let r = 0; r < ROUNDS; r++) {
				const before = nodes.map(n => cpuMs(n.node.proc.pid!));
				// The load of each build starts first in turn: the one started later measured dearer per request.
				const order = nodes.map((_, i) => (i + r + run) % nodes.length);
				const started: Promise<autocannon.Result>[] = [];
				for (const i of order) started[i] = load(nodes[i], SECONDS);
				const results = await Promise.all(started);
				const after = nodes.map(n => cpuMs(n.node.proc.pid!));
				const bad = results.findIndex(x => x.non2xx + x.errors + x.timeouts > 0);
				if (bad >= 0) throw new Error(`${nodes[bad].build.name}: ${results[bad].non2xx} non-2xx answers, ${results[bad].errors} errors`);
				const us = nodes.map((_, i) => ((after[i] - before[i]) * 1000) / results[i].requests.total);
				rounds.push(us);
				console.log(`run ${run + 1} round ${r + 1}: ${nodes.map((n, i) => `${n.build.name} ${Math.round(results[i].requests.total / SECONDS)} rps, ${us[i].toFixed(1)} µs/request`).join(" | ")}`);
			}
			runs.push(rounds);
			await stop(nodes);
		}
		const summary = builds.map((b, i) => {
			// One ratio per run (the mean of its rounds); the standard error is over runs, since rounds of one run share its processes.
			const perRun = runs.map(rounds => mean(rounds.map(us => us[i] / us[0])));
			const all = runs.flat().map(us => us[i]).sort((x, y) => x - y);
			return {
				name: b.name,
				dist: path.relative(ROOT, b.dist),
				flags: b.flags,
				cpu_ratio_mean: +mean(perRun).toFixed(4),
				cpu_ratio_se: +(sd(perRun) / Math.sqrt(perRun.length)).toFixed(4),
				cpu_ratio_per_run: perRun.map(x => +x.toFixed(4)),
				median_us_per_request: +all[(all.length - 1) >> 1].toFixed(1)
			};
		});
		for (const s of summary) console.log(`${s.name}: CPU per request ${s.cpu_ratio_mean.toFixed(3)} ± ${s.cpu_ratio_se.toFixed(3)} of ${builds[0].name}'s (runs ${s.cpu_ratio_per_run.map(x => x.toFixed(3)).join(", ")}; median ${s.median_us_per_request} µs)`);
		const out = path.join(ROOT, ".compare", `results-${new Date().toISOString().replace(/[:.]/g, "-")}.json`);
		fs.mkdirSync(path.dirname(out), { recursive: true });
		fs.writeFileSync(out, JSON.stringify({ date: new Date().toISOString(), runs: RUNS, rounds_per_run: ROUNDS, seconds: SECONDS, path: URL_PATH, cpus: os.cpus().length, cpu_model: os.cpus()[0]?.model, summary, rounds_us: runs }, null, 2) + "\n");
		console.log(`written to ${path.relative(ROOT, out)}`);
	} finally {
		await stop(nodes);
	}
}

main().catch(err => {
	console.error(err instanceof Error ? err.message : err);
	process.exit(1);
});
