import fs from "node:fs";
import bcrypt from "bcrypt";
import { markForeground } from "../../lib/foreground";
import { BcryptPool } from "../../services/auth/bcrypt-pool";

/** bcrypt on low-priority worker threads: same hashes as the library, errors surface, workers recover. */

let pool: BcryptPool;
beforeEach(() => (pool = new BcryptPool(2)));
afterEach(() => pool.close());

it("hashes and compares exactly as bcrypt does", async () => {
	const hash = await pool.hash("correct horse battery", 4);
	expect(await bcrypt.compare("correct horse battery", hash)).toBe(true);
	expect(await pool.compare("correct horse battery", hash)).toBe(true);
	expect(await pool.compare("wrong horse battery", hash)).toBe(false);
	expect(await pool.compare("x", await bcrypt.hash("x", 4))).toBe(true);
});

it("runs many jobs on at most `size` threads, each at nice 19, off the main thread", async () => {
	const before = new Set(fs.readdirSync("/proc/self/task"));
	const hashes = await Promise.all(Array.from({ length: 8 }, (_, i) => pool.hash(`password ${i}`, 4)));
	expect(new Set(hashes).size).toBe(8);
	const added = fs.readdirSync("/proc/self/task").filter(t => !before.has(t));
	const nice = (tid: string) => Number(fs.readFileSync(`/proc/self/task/${tid}/stat`, "utf8").split(") ")[1].split(" ")[16]);
	// Each worker thread brings a few helper threads of its own; the ones that ran bcrypt are niced.
	expect(added.filter(t => nice(t) === 19)).toHaveLength(2);
	expect(nice(String(process.pid))).toBe(0);
});

it("fails a bad call with bcrypt's error and keeps serving", async () => {
	await expect(pool.hash("password", 99)).rejects.toThrow(/rounds|salt/i);
	await expect(pool.compare("password", "not a hash")).resolves.toBe(false);
	expect(await pool.compare("password", await pool.hash("password", 4))).toBe(true);
});

it("replaces a worker that died", async () => {
	await pool.hash("warm", 4);
	const slots = (pool as unknown as { slots: { worker: { terminate(): Promise<number> } }[] }).slots;
	await slots[0].worker.terminate();
	expect(await pool.compare("password", await pool.hash("password", 4))).toBe(true);
});

it("takes an idle worker out of the pool as it ends it, so the next job starts a new one", async () => {
	const quick = new BcryptPool(1, 50);
	try {
		await quick.hash("warm", 4);
		const slots = (quick as unknown as { slots: unknown[] }).slots;
		expect(slots).toHaveLength(1);
		await new Promise(r => setTimeout(r, 80));
		// Gone from the pool when its idle timer fired, before its thread has even exited.
		expect(slots).toHaveLength(0);
		expect(await quick.compare("password", await quick.hash("password", 4))).toBe(true);
	} finally {
		await quick.close();
	}
});

describe("while other requests are being served", () => {
	it("leaves a core to them, and takes it back once they stop", async () => {
		const spare = new BcryptPool(2, 10000, 500);
		try {
			markForeground();
			const jobs = [1, 2, 3].map(i => spare.hash(`password ${i}`, 4));
			// One thread of two while the gateway has just begun another request.
			expect(spare.running).toBe(1);
			await jobs[0];
			// Still within 500 ms of it: the next job waited for the first to end, the third waits too.
			expect(spare.running).toBe(1);
			await Promise.all(jobs);
			// Quiet for longer than that: both threads again.
			await new Promise(r => setTimeout(r, 520));
			const more = [4, 5].map(i => spare.hash(`password ${i}`, 4));
			expect(spare.running).toBe(2);
			await Promise.all(more);
		} finally {
			await spare.close();
		}
	});

	it("uses every thread when told to (spareMs 0), and one when it has only one", async () => {
		markForeground();
		const all = new BcryptPool(2, 10000, 0);
		const one = new BcryptPool(1, 10000, 1000);
		try {
			const jobs = [all.hash("a password", 4), all.hash("b password", 4), one.hash("c password", 4)];
			expect(all.running).toBe(2);
			expect(one.running).toBe(1);
			await Promise.all(jobs);
		} finally {
			await Promise.all([all.close(), one.close()]);
		}
	});
});
