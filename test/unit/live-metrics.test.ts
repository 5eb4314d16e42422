import { Errors, ServiceBroker, type Context } from "moleculer";
import { bulkhead } from "../../lib/bulkhead";
import { MemoryCacher } from "../../lib/cacher";
import { Rate } from "../../lib/live-metrics";
import { requestMetrics } from "../../lib/request-metrics";
import { freePort } from "../helpers/node-process";

/** Request metrics and the bulkhead keep their counts in plain numbers; what reporters read must be what Moleculer's own gave. */

type Snapshot = { name: string; values: Array<Record<string, any>> };
const list = (broker: ServiceBroker, name: string) =>
	broker.call<Snapshot[], object>("$node.metrics", { includes: [name] }).then(all => all.find(m => m.name === name)?.values ?? []);

describe("request metrics", () => {
	let broker: ServiceBroker;
	let port: number;

	beforeAll(async () => {
		port = await freePort();
		broker = new ServiceBroker({
			logger: false,
			internalMiddlewares: false,
			middlewares: ["ErrorHandler", requestMetrics()] as never,
			metrics: { enabled: true, reporter: [{ type: "Prometheus", options: { port, path: "/metrics" } }] }
		});
		broker.createService({
			name: "m",
			actions: {
				ok: (ctx: Context<{ ms: number }>) => new Promise(r => setTimeout(() => r("ok"), ctx.params.ms)),
				fail: () => Promise.reject(new Errors.MoleculerClientError("nope", 422, "UNPROCESSABLE"))
			}
		});
		broker.createService({
			name: "caller",
			actions: {
				relay: (ctx: Context) => ctx.call("m.ok", { ms: 1 }),
				// The same action through the service's own wrapper (`this.actions`), which Moleculer wraps separately.
				self(this: { actions: Record<string, (p: object) => Promise<unknown>> }) {
					return this.actions.relay({});
				}
			}
		});
		await broker.start();
	});
	afterAll(() => broker.stop());

	it("counts calls by action and caller, with cumulative buckets and quantiles, and errors by code", async () => {
		// A timer may fire a little before performance.now() says its time is up: the slow call takes 40 ms, checked against 35.
		for (const ms of [1, 1, 1, 40]) await broker.call("m.ok", { ms });
		await broker.call("caller.relay");
		await broker.call("caller.self");
		await expect(broker.call("m.fail")).rejects.toThrow("nope");

		const totals = await list(broker, "moleculer.request.total");
		const direct = totals.find(v => v.labels.action === "m.ok" && v.labels.caller === null);
		const relayed = totals.find(v => v.labels.action === "m.ok" && v.labels.caller === "caller");
		expect(direct).toMatchObject({ value: 4, labels: { service: "m", type: "local" } });
		expect(relayed).toMatchObject({ value: 2 });
		// One series per label set, however many wrappers counted it.
		const keys = totals.map(v => v.key);
		expect(new Set(keys).size).toBe(keys.length);
		expect(totals.filter(v => v.labels.action === "caller.relay")).toHaveLength(1);
		expect(totals.find(v => v.labels.action === "caller.relay")).toMatchObject({ value: 2 });

		const times = await list(broker, "moleculer.request.time");
		const t = times.find(v => v.labels.action === "m.ok" && v.labels.caller === null)!;
		expect(t.count).toBe(4);
		expect(t.sum).toBeGreaterThanOrEqual(35);
		// Cumulative: every bound counts what is at or below it; the slow call is only under the larger bounds.
		const bounds = Object.keys(t.buckets).map(Number).sort((a, b) => a - b);
		for (let i = 1; i < bounds.length; i++) expect(t.buckets[bounds[i]]).toBeGreaterThanOrEqual(t.buckets[bounds[i - 1]]);
		expect(t.buckets[bounds[bounds.length - 1]]).toBe(4);
		expect(t.max).toBeGreaterThanOrEqual(35);
		expect(t.quantiles["0.5"]).toBeLessThan(35);
		expect(t.quantiles["0.99"]).toBe(t.max);

		const errors = await list(broker, "moleculer.request.error.total");
		expect(errors.find(v => v.labels.action === "m.fail")).toMatchObject({ value: 1, labels: { errorCode: 422, errorType: "UNPROCESSABLE" } });
	});

	it("shows the same series to Prometheus", async () => {
		const text = await fetch(`http://127.0.0.1:${port}/metrics`).then(r => r.text());
		expect(text).toMatch(/moleculer_request_total\{[^}]*action="m\.ok"[^}]*\} [1-9]/);
		expect(text).toMatch(/moleculer_request_time_bucket\{[^}]*action="m\.ok"[^}]*le="\+Inf"[^}]*\} [1-9]/);
		expect(text).toMatch(/moleculer_request_time\{[^}]*action="m\.ok"[^}]*quantile="0\.99"[^}]*\} [0-9.]+/);
		expect(text).toMatch(/moleculer_request_time_count\{[^}]*action="m\.ok"/);
	});

	it("keeps a per-minute rate the way Moleculer computes it", () => {
		const rate = new Rate();
		const t0 = Date.now();
		rate.tick(0, t0);
		rate.tick(50, t0 + 5000); // 10/s = 600/min: half-way from 0
		expect(rate.rate).toBeCloseTo(300);
		rate.tick(100, t0 + 10000);
		expect(rate.rate).toBeCloseTo(450);
	});
});

describe("bulkhead", () => {
	let broker: ServiceBroker;
	const gates: Array<() => void> = [];
	const seen: string[] = [];

	beforeAll(async () => {
		broker = new ServiceBroker({
			logger: false,
			internalMiddlewares: false,
			middlewares: [bulkhead()] as never,
			bulkhead: { enabled: true, concurrency: 2, maxQueueSize: 1 },
			metrics: { enabled: true }
		});
		broker.createService({
			name: "b",
			actions: {
				slow: (ctx: Context<{ id: string }>) => new Promise(r => gates.push(() => r(ctx.params.id))),
				free: { bulkhead: { enabled: false }, handler: (ctx: Context<{ id: string }>) => new Promise(r => gates.push(() => r(ctx.params.id))) },
				boom: () => Promise.reject(new Error("boom")),
				// Throws instead of rejecting (a handler that is not async).
				sync: () => {
					throw new Error("sync boom");
				}
			},
			events: {
				"b.seen"(ctx: Context<{ id: string }>) {
					seen.push(ctx.params.id);
				}
			}
		});
		await broker.start();
	});
	afterAll(() => broker.stop());

	const gauge = async (name: string, action: string) => (await list(broker, name)).find(v => v.labels.action === action)?.value;
	const tick = () => new Promise(r => setImmediate(r));

	it("runs at most `concurrency` calls at once, queues up to `maxQueueSize`, and refuses the rest", async () => {
		const calls = ["1", "2", "3"].map(id => broker.call("b.slow", { id }));
		await tick();
		expect(gates).toHaveLength(2);
		expect(await gauge("moleculer.request.bulkhead.inflight", "b.slow")).toBe(2);
		expect(await gauge("moleculer.request.bulkhead.queue.size", "b.slow")).toBe(1);

		const refused = await broker.call("b.slow", { id: "4" }).catch((e: unknown) => e);
		expect(refused).toBeInstanceOf(Errors.QueueIsFullError);
		expect(refused).toMatchObject({ code: 429, retryable: true });

		// A finished call lets the queued one in, in order.
		gates.shift()!();
		await tick();
		expect(gates).toHaveLength(2);
		gates.splice(0).forEach(open => open());
		expect(await Promise.all(calls)).toEqual(["1", "2", "3"]);
		expect(await gauge("moleculer.request.bulkhead.inflight", "b.slow")).toBe(0);
		expect(await gauge("moleculer.request.bulkhead.queue.size", "b.slow")).toBe(0);
	});

	it("frees its slot when a call fails or its handler throws", async () => {
		for (let i = 0; i < 4; i++) await expect(broker.call("b.boom")).rejects.toThrow("boom");
		expect(await gauge("moleculer.request.bulkhead.inflight", "b.boom")).toBe(0);
		for (let i = 0; i < 4; i++) await expect(broker.call("b.sync")).rejects.toThrow("sync boom");
		expect(await gauge("moleculer.request.bulkhead.inflight", "b.sync")).toBe(0);
	});

	it("leaves an action alone that turns it off, and limits event handlers too", async () => {
		const calls = ["a", "b", "c", "d"].map(id => broker.call("b.free", { id }));
		await tick();
		expect(gates).toHaveLength(4);
		gates.splice(0).forEach(open => open());
		expect(await Promise.all(calls)).toEqual(["a", "b", "c", "d"]);

		broker.emit("b.seen", { id: "e1" });
		await tick();
		expect(seen).toEqual(["e1"]);
		expect((await list(broker, "moleculer.event.bulkhead.inflight")).find(v => v.labels.event === "b.seen")).toMatchObject({ value: 0 });
	});
});

describe("memory cacher", () => {
	let broker: ServiceBroker;
	let port: number;
	let cacher: MemoryCacher;

	beforeAll(async () => {
		port = await freePort();
		cacher = new MemoryCacher({ max: 3, ttl: 60 });
		broker = new ServiceBroker({ logger: false, cacher, metrics: { enabled: true, reporter: [{ type: "Prometheus", options: { port, path: "/metrics" } }] } });
		await broker.start();
	});
	afterAll(() => broker.stop());

	it("gets, sets, deletes and cleans as Moleculer's MemoryLRU does, least recently used out first", async () => {
		await expect(cacher.get("a")).resolves.toBeUndefined();
		await expect(cacher.set("a", { v: 1 })).resolves.toEqual({ v: 1 });
		await expect(cacher.get("a")).resolves.toEqual({ v: 1 });
		await cacher.set("users.1", 1);
		await cacher.set("users.2", 2);
		await cacher.set("b", 3); // over max 3: "a" was used least lately
		await expect(cacher.get("a")).resolves.toBeUndefined();
		await cacher.clean("users.**");
		await expect(cacher.get("users.1")).resolves.toBeUndefined();
		await expect(cacher.get("b")).resolves.toBe(3);
		await cacher.del(["b"]);
		await expect(cacher.get("b")).resolves.toBeUndefined();
	});

	it("expires an entry after its ttl, and clones when asked to", async () => {
		await cacher.set("short", "x", 0.05);
		await new Promise(r => setTimeout(r, 80));
		await expect(cacher.get("short")).resolves.toBeUndefined();

		const cloning = new MemoryCacher({ clone: true });
		const b = new ServiceBroker({ logger: false, cacher: cloning });
		await b.start();
		const stored = { n: 1 };
		await cloning.set("k", stored);
		stored.n = 2;
		const read = await cloning.get("k");
		expect(read).toEqual({ n: 1 });
		expect(read).not.toBe(await cloning.get("k"));
		await b.stop();
	});

	it("caches an action's answer through Moleculer's Cacher middleware: a miss runs the handler, a hit does not", async () => {
		let runs = 0;
		const b = new ServiceBroker({ logger: false, cacher: new MemoryCacher({ ttl: 60 }) });
		b.createService({
			name: "profiles",
			actions: {
				get: { cache: { keys: ["id"] }, params: { id: "string" }, handler: (ctx: Context<{ id: string }>) => ({ id: ctx.params.id, run: ++runs }) }
			}
		});
		await b.start();
		await expect(b.call("profiles.get", { id: "a" })).resolves.toEqual({ id: "a", run: 1 });
		await expect(b.call("profiles.get", { id: "a" })).resolves.toEqual({ id: "a", run: 1 });
		await expect(b.call("profiles.get", { id: "b" })).resolves.toEqual({ id: "b", run: 2 });
		await b.cacher!.clean("profiles.**");
		await expect(b.call("profiles.get", { id: "a" })).resolves.toEqual({ id: "a", run: 3 });
		await b.stop();
	});

	it("reports Moleculer's cacher metrics under their names", async () => {
		const before = (await list(broker, "moleculer.cacher.get.total"))[0].value as number;
		const found = (await list(broker, "moleculer.cacher.found.total"))[0].value as number;
		await cacher.set("m", 1);
		await cacher.get("m");
		await cacher.get("missing");
		expect((await list(broker, "moleculer.cacher.get.total"))[0].value).toBe(before + 2);
		expect((await list(broker, "moleculer.cacher.found.total"))[0].value).toBe(found + 1);
		expect((await list(broker, "moleculer.cacher.get.time"))[0]).toMatchObject({ count: before + 2 });
		expect((await list(broker, "moleculer.cacher.del.total"))[0].value).toBe(1);
		expect((await list(broker, "moleculer.cacher.clean.total"))[0].value).toBeGreaterThanOrEqual(1);
		const text = await fetch(`http://127.0.0.1:${port}/metrics`).then(r => r.text());
		expect(text).toMatch(/moleculer_cacher_get_total(\{[^}]*\})? [1-9]/);
		expect(text).toMatch(/moleculer_cacher_get_time\{[^}]*quantile="0\.5"[^}]*\} [0-9.]+/);
	});
});
