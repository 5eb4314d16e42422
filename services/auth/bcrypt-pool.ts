import os from "node:os";
import { Worker } from "node:worker_threads";
import { foregroundWithin } from "../../lib/foreground";

/**
 * bcrypt on worker threads that run at the lowest CPU priority (nice 19; Linux keeps a nice value per
 * thread). bcrypt's own async API would use libuv's pool, whose threads compete with the event loop as
 * equals. Priority alone did not keep other requests' p99 from doubling beside saturating logins on a
 * two-vCPU VM (BENCHMARKS.md), so while the gateway in this process has begun other requests within the
 * last `spareMs` (lib/foreground.ts), jobs start on at most `size - 1` threads; with only password work
 * waiting, on all `size`. It re-decides as each job ends. The price: logins beside other traffic get
 * (cores − 1) ÷ cores of the CPU.
 * A small pool of our own rather than a library: its worker is inline code, so it runs the same from
 * the TypeScript sources (tests) and the build.
 */

const WORKER_CODE = (bcryptPath: string) => `
const { parentPort } = require("node:worker_threads");
const bcrypt = require(${JSON.stringify(bcryptPath)});
try { require("node:os").setPriority(19); } catch {}
parentPort.on("message", ({ op, a, b }) => {
	try {
		parentPort.postMessage({ ok: op === "hash" ? bcrypt.hashSync(a, b) : bcrypt.compareSync(a, b) });
	} catch (err) {
		parentPort.postMessage({ error: String((err && err.message) || err) });
	}
});`;

interface Job {
	op: "hash" | "compare";
	a: string;
	b: string | number;
	resolve(v: unknown): void;
	reject(e: Error): void;
}

interface Slot {
	worker: Worker;
	job?: Job;
	idle?: NodeJS.Timeout;
}

/** A worker with nothing to do for this long ends (each holds a V8 isolate, some MiB). */
const IDLE_MS = 10000;

export class BcryptPool {
	private readonly slots: Slot[] = [];
	private readonly queue: Job[] = [];
	private readonly code = WORKER_CODE(require.resolve("bcrypt"));

	constructor(
		private readonly size = Math.max(1, os.availableParallelism()),
		private readonly idleMs = IDLE_MS,
		/** How long after another request a core stays free; 0, until the auth service sets BCRYPT_SPARE_CORE_MS: every thread. */
		public spareMs = 0
	) {}

	/** Jobs running now. */
	get running(): number {
		return this.slots.filter(s => s.job).length;
	}

	/** Threads jobs may start on now: one fewer while other requests are being served. */
	limit(): number {
		return this.size > 1 && this.spareMs > 0 && foregroundWithin(this.spareMs) ? this.size - 1 : this.size;
	}

	hash(password: string, cost: number): Promise<string> {
		return this.run("hash", password, cost) as Promise<string>;
	}

	compare(password: string, hash: string): Promise<boolean> {
		return this.run("compare", password, hash) as Promise<boolean>;
	}

	/** Ends every worker; jobs still queued fail. */
	async close(): Promise<void> {
		for (const job of this.queue.splice(0)) job.reject(new Error("bcrypt pool closed"));
		await Promise.all(this.slots.splice(0).map(s => s.worker.terminate()));
	}

	private run(op: Job["op"], a: string, b: string | number): Promise<unknown> {
		return new Promise((resolve, reject) => {
			this.queue.push({ op, a, b, resolve, reject });
			this.pump();
		});
	}

	private pump(): void {
		while (this.queue.length && this.running < this.limit()) {
			let slot = this.slots.find(s => !s.job);
			if (!slot && this.slots.length < this.size) slot = this.spawn();
			if (!slot) return;
			const job = this.queue.shift()!;
			clearTimeout(slot.idle);
			slot.worker.ref();
			slot.job = job;
			slot.worker.postMessage({ op: job.op, a: job.a, b: job.b });
		}
	}

	private remove(slot: Slot): void {
		const i = this.slots.indexOf(slot);
		if (i >= 0) this.slots.splice(i, 1);
	}

	private spawn(): Slot {
		const slot: Slot = { worker: new Worker(this.code, { eval: true }) };
		slot.worker.on("message", (msg: { ok?: unknown; error?: string }) => {
			const job = slot.job;
			slot.job = undefined;
			if (msg.error !== undefined) job?.reject(new Error(msg.error));
			else job?.resolve(msg.ok);
			this.pump();
			if (!slot.job) {
				slot.worker.unref();
				// Out of the pool before it ends, so no job is handed to a worker on its way out.
				slot.idle = setTimeout(() => {
					this.remove(slot);
					void slot.worker.terminate();
				}, this.idleMs).unref();
			}
		});
		// A worker that dies fails its job and leaves the pool; the next job starts a new one.
		const drop = (err: Error) => {
			clearTimeout(slot.idle);
			this.remove(slot);
			slot.job?.reject(err);
			slot.job = undefined;
			this.pump();
		};
		slot.worker.on("error", drop);
		slot.worker.on("exit", code => drop(new Error(`bcrypt worker exited with code ${code}`)));
		// A busy worker keeps the process alive (ref in pump), an idle one never does (unref when its job ends).
		this.slots.push(slot);
		return slot;
	}
}
