import { Errors, ServiceBroker, type Context } from "moleculer";
import { brokerOptions } from "../../lib/broker";
import { loadConfig } from "../../lib/config";
import { runningContexts } from "../../lib/context-tracker";
import { Deadlines } from "../../lib/timeout";
import { waitFor } from "../helpers/wait";

/** The lean Timeout and ContextTracker (lib/timeout.ts, lib/context-tracker.ts) in a broker with the project's options. */
const sleep = (ms: number) => new Promise(r => setTimeout(r, ms));

function broker(env: Record<string, string> = {}): ServiceBroker {
	const cfg = loadConfig({ NODE_ENV: "test", LOG_LEVEL: "fatal", REQUEST_TIMEOUT_MS: "200", SHUTDOWN_TIMEOUT_MS: "600", ...env });
	return new ServiceBroker({ ...brokerOptions(cfg, {}), nodeID: `tt-${process.pid}-${Math.random().toString(16).slice(2)}` });
}

describe("Timeout", () => {
	const b = broker();
	const released: Array<() => void> = [];
	const timeouts = () =>
		(b.metrics.getMetric("moleculer.request.timeout.total")?.snapshot() as Array<{ value: number; labels: Record<string, string> }>) ?? [];

	beforeAll(async () => {
		b.createService({
			name: "t",
			actions: {
				wait: { params: { ms: "number" }, handler: (ctx: Context<{ ms: number }>) => sleep(ctx.params.ms).then(() => "done") },
				long: { timeout: 1000, handler: () => sleep(400).then(() => "long done") },
				hang: () => new Promise<void>(resolve => released.push(resolve)),
				// Calls `wait` with what is left of its own time (Moleculer's distributed timeout).
				outer: { timeout: 300, handler: async (ctx: Context) => { await sleep(200); return ctx.call("t.wait", { ms: 250 }, { timeout: 5000 }); } },
				throws: () => Promise.reject(new Errors.MoleculerClientError("no", 422, "NO"))
			}
		});
		await b.start();
	});
	afterAll(async () => {
		released.forEach(r => r());
		await b.stop();
	});

	it("answers a call that ends in time, and leaves no timer behind", async () => {
		const timers = () => process.getActiveResourcesInfo().filter(r => r === "Timeout").length;
		const before = timers();
		// Ten calls: a timer left behind by each would outnumber any other timer ending meanwhile.
		for (let i = 0; i < 10; i++) expect(await b.call("t.wait", { ms: 1 })).toBe("done");
		expect(timers()).toBeLessThan(before + 3);
	});

	it("rejects a call that outlives the broker's requestTimeout with RequestTimeoutError, and counts it", async () => {
		const started = Date.now();
		const err = await b.call("t.hang").catch((e: Error) => e);
		expect(err).toBeInstanceOf(Errors.RequestTimeoutError);
		expect((err as Errors.MoleculerError).code).toBe(504);
		expect(Date.now() - started).toBeGreaterThanOrEqual(190);
		expect(timeouts().find(s => s.labels.action === "t.hang")?.value).toBe(1);
	});

	it("gives an action its own timeout, and a call its own", async () => {
		expect(await b.call("t.long")).toBe("long done");
		expect(await b.call("t.wait", { ms: 300 }, { timeout: 1000 })).toBe("done");
		expect(await b.call("t.wait", { ms: 300 }, { timeout: 0 })).toBe("done");
		await expect(b.call("t.wait", { ms: 300 }, { timeout: 100 })).rejects.toBeInstanceOf(Errors.RequestTimeoutError);
	});

	it("gives a nested call only what is left of its caller's time", async () => {
		const started = Date.now();
		await expect(b.call("t.outer")).rejects.toBeInstanceOf(Errors.RequestTimeoutError);
		// outer has 300 ms; wait (250 ms) starts after 200 and is cut at about 300, not at its own 5000.
		expect(Date.now() - started).toBeLessThan(450);
	});

	it("times out each of many calls on the action's own timeout at its own deadline, and no other", async () => {
		// When each call started and when it was rejected; the quick calls must answer.
		const hang = () => {
			const startedAt = Date.now();
			return b.call("t.hang").then(
				() => ({ startedAt, rejectedAt: NaN }),
				() => ({ startedAt, rejectedAt: Date.now() })
			);
		};
		const first = hang();
		const quick = Array.from({ length: 20 }, (_, i) => b.call("t.wait", { ms: 5 * i }));
		await sleep(80);
		const second = hang();
		expect(await Promise.all(quick)).toEqual(quick.map(() => "done"));
		// Each is rejected no earlier than its own 200 ms: the second does not go with the first.
		for (const { startedAt, rejectedAt } of await Promise.all([first, second])) expect(rejectedAt - startedAt).toBeGreaterThanOrEqual(195);
	});

	it("passes other errors through unchanged", async () => {
		await expect(b.call("t.throws")).rejects.toMatchObject({ code: 422, type: "NO" });
	});
});

describe("ContextTracker", () => {
	it("a stop waits for the actions and events still running, and nothing is left counted", async () => {
		const b = broker();
		const done: string[] = [];
		const svc = b.createService({
			name: "w",
			actions: { slow: () => sleep(300).then(() => void done.push("action")) },
			events: { "w.happened": () => sleep(300).then(() => void done.push("event")) }
		});
		await b.start();
		const call = b.call("w.slow", {}, { timeout: 0 });
		b.emit("w.happened", {});
		await sleep(20);
		expect(runningContexts(svc)).toBe(2);
		await b.stop();
		expect(done.sort()).toEqual(["action", "event"]);
		await call;
		expect(runningContexts(svc)).toBe(0);
	});

	it("does not wait for a call made with tracking off", async () => {
		const b = broker();
		let release: () => void = () => undefined;
		const svc = b.createService({ name: "u", actions: { hang: () => new Promise<void>(r => (release = r)) } });
		await b.start();
		void b.call("u.hang", {}, { timeout: 0, tracking: false });
		await sleep(20);
		expect(runningContexts(svc)).toBe(0);
		const started = Date.now();
		await b.stop();
		expect(Date.now() - started).toBeLessThan(500);
		release();
	});

	it("gives up after the shutdown timeout, logs GracefulStopTimeoutError, and the broker still stops", async () => {
		const b = broker();
		const errors: unknown[] = [];
		let release: () => void = () => undefined;
		const svc = b.createService({ name: "v", actions: { hang: () => new Promise<void>(r => (release = r)) } });
		svc.logger.error = (...args: unknown[]) => void errors.push(...args);
		await b.start();
		void b.call("v.hang", {}, { timeout: 0 });
		await sleep(20);
		const started = Date.now();
		await b.stop();
		expect(Date.now() - started).toBeGreaterThanOrEqual(550);
		expect(errors.some(e => e instanceof Errors.GracefulStopTimeoutError)).toBe(true);
		release();
	});
});

describe("Deadlines", () => {
	it("runs what is due in order and never early, skips what ended, and stays off once nothing is waiting", async () => {
		const list = new Deadlines(50);
		const timer = () => (list as unknown as { timer?: NodeJS.Timeout }).timer;
		const fired: Array<{ name: string; late: number }> = [];
		const add = (name: string) => {
			const at = performance.now() + 50;
			return list.add(() => fired.push({ name, late: performance.now() - at }));
		};
		const a = add("a");
		await sleep(10);
		const b = add("b");
		add("c");
		list.remove(b);
		list.remove(b);
		// One timer for all three, and it does not hold the process open.
		expect(timer()?.hasRef()).toBe(false);
		await waitFor(() => fired.length === 2, "a and c to time out");
		expect(fired.map(f => f.name)).toEqual(["a", "c"]);
		for (const f of fired) expect(f.late).toBeGreaterThanOrEqual(0);
		await waitFor(() => timer() === undefined, "the timer to go off");
		// Removing what has already fired changes nothing. A list emptied by a call's end keeps its timer
		// until it fires, finds nothing due, and is not armed again.
		list.remove(a);
		const d = add("d");
		list.remove(d);
		expect(timer()).toBeDefined();
		await waitFor(() => timer() === undefined, "the timer to go off");
		await sleep(20);
		expect(fired.map(f => f.name)).toEqual(["a", "c"]);
	});
});
