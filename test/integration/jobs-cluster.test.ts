import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createDatabases, query, type TestDatabases } from "../helpers/pg";
import { startNode, type NodeProcess } from "../helpers/node-process";

// Two worker processes (SERVICES=jobs) on one jobs database, over the shared NATS, running a test
// schedule every 2 s whose runs sleep 700 ms.

const NATS_URL = process.env.TEST_NATS_URL ?? "nats://127.0.0.1:4222";
const sleep = (ms: number) => new Promise(r => setTimeout(r, ms));

async function waitFor<T>(what: string, fn: () => Promise<T | null | undefined | false>, nodes: NodeProcess[], timeoutMs = 30000): Promise<T> {
	const end = Date.now() + timeoutMs;
	for (;;) {
		const v = await fn();
		if (v) return v;
		if (Date.now() > end) throw new Error(`timed out waiting for ${what}\n${nodes.map(n => n.lines.slice(-20).join("\n")).join("\n---\n")}`);
		await sleep(100);
	}
}

interface RunRow {
	slot: string;
	attempt: number;
	status: string;
	owner: string | null;
	error: string | null;
	created_at: Date;
}

describe("jobs cluster: two worker processes, one jobs database, NATS", () => {
	let dbs: TestDatabases;
	let env: Record<string, string>;
	const nodes: NodeProcess[] = [];
	const dataDirs: string[] = [];
	const runs = () => query<RunRow>(dbs.env.JOBS_DATABASE_URL, "SELECT slot, attempt, status, owner, error, created_at FROM job_runs WHERE job = 'test-tick' ORDER BY slot, attempt").catch(err => {
			// Before the first worker has migrated the database.
			if (/does not exist/.test((err as Error).message)) return [] as RunRow[];
			throw err;
		});
	const start = () => {
		const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "msvc-jobs-"));
		dataDirs.push(dataDir);
		const n = startNode({ ...env, DATA_DIR: dataDir });
		nodes.push(n);
		return n;
	};
	const alive = (n: NodeProcess) => n.proc.exitCode === null && n.proc.signalCode === null;
	/** How many times the handler started each (slot, attempt), over every process's log. */
	const starts = () => {
		const seen = new Map<string, number>();
		for (const n of nodes) {
			for (const line of n.lines) {
				const m = /test-tick (\S+) attempt (\d+) started/.exec(line);
				if (m) seen.set(`${m[1]}#${m[2]}`, (seen.get(`${m[1]}#${m[2]}`) ?? 0) + 1);
			}
		}
		return seen;
	};

	beforeAll(async () => {
		dbs = await createDatabases(["jobs"]);
		env = {
			TRANSPORTER: NATS_URL,
			NAMESPACE: `jc${crypto.randomBytes(4).toString("hex")}`,
			NODE_ENV: "test",
			LOG_LEVEL: "info",
			SERVICES: "jobs",
			JOBS_DATABASE_URL: dbs.env.JOBS_DATABASE_URL,
			JOBS_TEST_SCHEDULE: "*/2 * * * * *",
			JOBS_TEST_SLEEP_MS: "700",
			JOBS_TICK_MS: "200",
			JOBS_LEASE_MS: "1500"
		};
	});

	afterAll(async () => {
		for (const n of nodes) if (alive(n)) n.proc.kill("SIGKILL");
		await Promise.all(nodes.map(n => n.exited));
		await dbs?.drop();
		for (const d of dataDirs) fs.rmSync(d, { recursive: true, force: true });
	}, 30000);

	it("runs each slot once; a run whose worker is killed is retried once; a slot missed by both is caught up once", async () => {
		const a = start();
		const b = start();
		// 1. Both up: every slot runs once, whoever claims it.
		await waitFor("six runs", async () => (await runs()).filter(r => r.status === "succeeded").length >= 6, [a, b], 40000);
		for (const [key, n] of starts()) expect([key, n]).toEqual([key, 1]);

		// 2. Kill -9 the worker in the middle of a run: the run is retried once, by the other.
		const victimRun = await waitFor("a run in progress", async () => (await runs()).find(r => r.status === "running" && r.attempt === 1), [a, b]);
		const victim = [a, b].find(n => victimRun.owner?.endsWith(`-${n.proc.pid}`))!;
		const survivor = victim === a ? b : a;
		expect(victim).toBeDefined();
		victim.proc.kill("SIGKILL");
		await victim.exited;
		const retried = await waitFor("the retry of the killed run", async () => {
			const r = (await runs()).filter(x => x.slot === victimRun.slot);
			return r.length === 2 && r[1].status === "succeeded" ? r : null;
		}, [survivor]);
		expect(retried[0]).toMatchObject({ attempt: 1, status: "failed", error: expect.stringMatching(/lease ran out/) });
		expect(retried[1]).toMatchObject({ attempt: 2, status: "succeeded" });
		expect(retried[1].owner).toMatch(new RegExp(`-${survivor.proc.pid}$`));
		expect((await runs()).filter(r => r.slot === victimRun.slot)).toHaveLength(2);

		// 3. Both down across several slots, then one up: only the latest missed slot is caught up.
		await survivor.stop("SIGTERM");
		const before = await runs();
		const lastBefore = before.filter(r => !r.slot.startsWith("manual:")).map(r => r.slot).sort().pop()!;
		await sleep(5000);
		const c = start();
		const after = await waitFor("a run after the restart", async () => {
			const r = (await runs()).filter(x => x.slot > lastBefore && x.status === "succeeded");
			return r.length ? r : null;
		}, [c], 40000);
		const first = after.sort((x, y) => (x.slot < y.slot ? -1 : 1))[0];
		await c.stop("SIGTERM");
		// The first run after the restart is for a slot already past when it was claimed: the catch-up.
		expect(new Date(first.slot).getTime()).toBeLessThan(new Date(first.created_at).getTime());
		// Slots between the last run before the stop and the caught-up one were missed and not run (not N catch-ups).
		const missed = (new Date(first.slot).getTime() - new Date(lastBefore).getTime()) / 2000 - 1;
		expect(missed).toBeGreaterThanOrEqual(1);
		const all = await runs();
		expect(all.filter(r => r.slot > lastBefore && r.slot < first.slot)).toHaveLength(0);
		expect(all.filter(r => r.slot === first.slot)).toHaveLength(1);
		for (const [key, n] of starts()) expect([key, n]).toEqual([key, 1]);
	}, 90000);
});
