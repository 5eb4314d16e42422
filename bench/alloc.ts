/**
 * `npm run bench:alloc -- [name=path/to/dist ...]`: bytes allocated per request by the embedded node, and
 * which functions allocate them, for each build given (default: `dist`).
 *
 * CPU time on this shared machine moves by ±15 % from round to round; the bytes a request allocates do not
 * (they move with the code, not with the host), and every byte is paid for again by the garbage collector.
 * Each build runs as its own embedded node with V8's sampling heap profiler, set to keep the objects the
 * collector has already freed (`includeObjectsCollectedByMinorGC`/`MajorGC`): its samples then stand for
 * everything allocated, not only what is still alive. The node is loaded with authenticated
 * `GET /api/v1/users/me` (COMPARE_PATH) at 50 connections: a warm-up, then ALLOC_SECONDS (5) sampled.
 * Printed, and written to .compare/alloc-<time>.json: bytes per request in all and the top allocating
 * functions (ALLOC_TOP, 15), by the bytes each allocates itself per request. The total is what to compare
 * (two processes of one build measured 28 901 and 28 792 bytes); the split is rougher, since V8 credits
 * what an optimized function allocates for the functions inlined into it to that function. Builds are
 * given as for bench:compare (bench/client.ts, `parseBuilds`): a copy of `dist` inside the checkout, and
 * node flags after commas.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import autocannon from "autocannon";
import { ROOT } from "../test/helpers/node-process";
import { waitFor } from "../test/helpers/wait";
import { parseBuilds, startEmbedded, stopEmbedded, type Build } from "./client";

const SECONDS = Number(process.env.ALLOC_SECONDS ?? 5);
const TOP = Number(process.env.ALLOC_TOP ?? 15);
const URL_PATH = process.env.COMPARE_PATH ?? "/api/v1/users/me";
/** One sample per this many bytes allocated, on average (V8's default is 32 KiB: too few samples per request). */
const INTERVAL = 1024;

/** Loaded into the node with `--require`: SIGUSR2 starts sampling, the next SIGUSR2 writes the profile to ALLOC_OUT (whole, by a rename). */
const PRELOAD = `const inspector = require("node:inspector");
const fs = require("node:fs");
const session = new inspector.Session();
session.connect();
session.post("HeapProfiler.enable");
let sampling = false;
process.on("SIGUSR2", () => {
	if (!sampling) {
		sampling = true;
		session.post("HeapProfiler.startSampling", { samplingInterval: ${INTERVAL}, includeObjectsCollectedByMinorGC: true, includeObjectsCollectedByMajorGC: true });
		return;
	}
	session.post("HeapProfiler.stopSampling", (err, res) => {
		sampling = false;
		fs.writeFileSync(process.env.ALLOC_OUT + ".part", err ? JSON.stringify({ error: String(err) }) : JSON.stringify(res.profile));
		fs.renameSync(process.env.ALLOC_OUT + ".part", process.env.ALLOC_OUT);
	});
});
`;

interface ProfileNode {
	id: number;
	callFrame: { functionName: string; url: string; lineNumber: number };
	children: ProfileNode[];
}
interface HeapProfile {
	head: ProfileNode;
	samples: Array<{ size: number; nodeId: number }>;
}

/** Bytes per request in all, and by the function that allocated them (its own allocations, not its callees'). */
export function allocationsPerRequest(profile: HeapProfile, requests: number, top: number): { bytes_per_request: number; top: Array<{ fn: string; bytes_per_request: number }> } {
	const sizeOf = new Map<number, number>();
	for (const s of profile.samples) sizeOf.set(s.nodeId, (sizeOf.get(s.nodeId) ?? 0) + s.size);
	const byFn = new Map<string, number>();
	let total = 0;
	const walk = (n: ProfileNode) => {
		const size = sizeOf.get(n.id) ?? 0;
		if (size) {
			const f = n.callFrame;
			const file = f.url.replace(/^file:\/\//, "").replace(/^.*node_modules\//, "").replace(ROOT + path.sep, "");
			const where = file ? ` ${file}:${f.lineNumber + 1}` : "";
			const key = `${f.functionName || "(anonymous)"}${where}`;
			byFn.set(key, (byFn.get(key) ?? 0) + size);
			total += size;
		}
		n.children.forEach(walk);
	};
	walk(profile.head);
	return {
		bytes_per_request: Math.round(total / requests),
		top: [...byFn]
			.sort((a, b) => b[1] - a[1])
			.slice(0, top)
			.map(([fn, bytes]) => ({ fn, bytes_per_request: Math.round(bytes / requests) }))
	};
}

async function measure(build: Build, work: string): Promise<{ name: string; dist: string; requests: number; bytes_per_request: number; top: Array<{ fn: string; bytes_per_request: number }> }> {
	const preload = path.join(work, "preload.cjs");
	const out = path.join(work, `${build.name}.heapprofile`);
	fs.writeFileSync(preload, PRELOAD);
	const n = await startEmbedded(build, { env: { ALLOC_OUT: out }, flags: ["--require", preload] });
	try {
		const opts = { url: n.base + URL_PATH, connections: 50, headers: { authorization: `Bearer ${n.token}` } };
		await autocannon({ ...opts, duration: 3 });
		process.kill(n.node.proc.pid!, "SIGUSR2");
		const r = await autocannon({ ...opts, duration: SECONDS });
		process.kill(n.node.proc.pid!, "SIGUSR2");
		if (r.non2xx + r.errors + r.timeouts > 0) throw new Error(`${build.name}: ${r.non2xx} non-2xx answers, ${r.errors} errors, ${r.timeouts} timeouts`);
		await waitFor(() => fs.existsSync(out), `${build.name}'s heap profile`, 30000);
		const profile = JSON.parse(fs.readFileSync(out, "utf8")) as HeapProfile & { error?: string };
		if (profile.error) throw new Error(`${build.name}: ${profile.error}`);
		// autocannon stops without waiting for the requests in flight: at most one per connection more was sampled.
		return { name: build.name, dist: path.relative(ROOT, build.dist), requests: r.requests.total, ...allocationsPerRequest(profile, r.requests.total, TOP) };
	} finally {
		await stopEmbedded(n);
	}
}

async function main(): Promise<void> {
	const args = process.argv.slice(2);
	const builds = parseBuilds(args.length ? args : ["this=dist"]);
	const work = fs.mkdtempSync(path.join(os.tmpdir(), "msvc-alloc-"));
	try {
		const results = [];
		for (const b of builds) {
			const m = await measure(b, work);
			results.push(m);
			console.log(`${m.name}: ${m.bytes_per_request} bytes allocated per request (${m.requests} requests sampled)`);
			for (const t of m.top) console.log(`  ${String(t.bytes_per_request).padStart(6)}  ${t.fn}`);
		}
		const file = path.join(ROOT, ".compare", `alloc-${new Date().toISOString().replace(/[:.]/g, "-")}.json`);
		fs.mkdirSync(path.dirname(file), { recursive: true });
		fs.writeFileSync(file, JSON.stringify({ date: new Date().toISOString(), path: URL_PATH, seconds: SECONDS, sampling_interval: INTERVAL, node: process.version, results }, null, 2) + "\n");
		console.log(`written to ${path.relative(ROOT, file)}`);
	} finally {
		fs.rmSync(work, { recursive: true, force: true });
	}
}

if (require.main === module) {
	main().catch(err => {
		console.error(err instanceof Error ? err.message : err);
		process.exit(1);
	});
}
