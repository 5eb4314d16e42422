import { Cachers, Utils } from "moleculer";
import { Rate, registerLive, Series } from "./live-metrics";

type Op = "get" | "set" | "del" | "clean";
const OPS: Op[] = ["get", "set", "del", "clean"];
const RATE_TICK_MS = 5000;

/** What Moleculer's MemoryLRU cacher has and its typings leave out. */
interface MemoryLRUInternals {
	cache: { get(key: string): unknown; set(key: string, value: unknown, opts: { ttl: number }): void; delete(key: string): void; keys(): IterableIterator<string> };
	clone: ((v: unknown) => unknown) | undefined;
}

/**
 * Moleculer's MemoryLRU cacher, counted in plain numbers. Its own `get` made three registry calls
 * (`moleculer.cacher.get.total`, `.found.total` and the `.get.time` timer) on every cached read, and
 * kept V8 recompiling the registry's `increment` and `Gauge.set` (every attempt aborted, "maps became
 * deprecated"): measured here at about 30 % of the CPU of an authenticated `GET /users/me`. The metrics
 * keep their names; their values are read when metrics are collected (live-metrics.ts).
 */
export class MemoryCacher extends Cachers.MemoryLRU {
	/** Per operation: its calls (count, per-minute rate) and their times. No buckets, as Moleculer registers these. */
	private readonly ops = Object.fromEntries(OPS.map(op => [op, new Series({}, [])])) as Record<Op, Series>;
	private found = 0;
	private readonly foundRate = new Rate();
	private rateTimer: NodeJS.Timeout | undefined;

	registerMoleculerMetrics(): void {
		const broker = this.broker;
		const quantiles = [...(broker.metrics as unknown as { opts: { defaultQuantiles: number[] } }).opts.defaultQuantiles].sort((a, b) => a - b);
		const counter = (name: string, description: string, read: () => { value: number; rate: number }) =>
			registerLive(broker, { name, type: "counter", labelNames: [], description, rate: true }, () => [{ labels: {}, ...read() }]);
		for (const op of OPS) {
			const s = this.ops[op];
			counter(`moleculer.cacher.${op}.total`, `Number of cacher ${op} calls`, () => ({ value: s.count, rate: s.rate.rate }));
			registerLive(broker, { name: `moleculer.cacher.${op}.time`, type: "histogram", labelNames: [], unit: "millisecond", description: `Cacher ${op} time`, quantiles: true }, () => [s.snapshot(quantiles)]);
		}
		counter("moleculer.cacher.found.total", "Number of cacher hits", () => ({ value: this.found, rate: this.foundRate.rate }));
		// Moleculer's MemoryLRU never counts expiries (the LRU drops them itself); registered as it does.
		broker.metrics.register({ name: "moleculer.cacher.expired.total", type: "counter", rate: true });
		this.rateTimer = setInterval(() => {
			const now = Date.now();
			for (const op of OPS) this.ops[op].rate.tick(this.ops[op].count, now);
			this.foundRate.tick(this.found, now);
		}, RATE_TICK_MS).unref();
	}

	private get lru(): MemoryLRUInternals {
		return this as unknown as MemoryLRUInternals;
	}

	private timed<T>(op: Op, start: number, result: T): T {
		this.ops[op].observe(performance.now() - start);
		return result;
	}

	override get(key: string): Promise<Record<string, unknown> | null> {
		const start = performance.now();
		const item = this.lru.cache.get(key);
		// A miss answers `missingResponse` (undefined by default), which Moleculer's Cacher middleware compares against.
		if (item === undefined) return this.timed("get", start, Promise.resolve((this.opts as { missingResponse?: Record<string, unknown> | null }).missingResponse as Record<string, unknown> | null));
		this.found++;
		const clone = this.lru.clone;
		return this.timed("get", start, Promise.resolve((clone ? clone(item) : item) as Record<string, unknown>));
	}

	override set(key: string, data: unknown, ttl?: number): Promise<void> {
		const start = performance.now();
		const seconds = ttl ?? this.opts.ttl;
		const clone = this.lru.clone;
		const value = clone ? clone(data) : data;
		this.lru.cache.set(key, value, { ttl: seconds ? seconds * 1000 : 0 });
		// Moleculer's cacher resolves with the stored value (its typings say void).
		return this.timed("set", start, Promise.resolve(value as void));
	}

	override del(key: string | string[]): Promise<void> {
		const start = performance.now();
		for (const k of Array.isArray(key) ? key : [key]) this.lru.cache.delete(k);
		return this.timed("del", start, Promise.resolve());
	}

	override clean(match: string | string[] = "**"): Promise<void> {
		const start = performance.now();
		const patterns = Array.isArray(match) ? match : [match];
		for (const key of [...this.lru.cache.keys()]) if (patterns.some(p => Utils.match(key, p))) this.lru.cache.delete(key);
		return this.timed("clean", start, Promise.resolve());
	}

	override close(): Promise<void> {
		clearInterval(this.rateTimer);
		return super.close();
	}
}
