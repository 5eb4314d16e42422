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
	private readonly counts = { get: 0, found: 0, set: 0, del: 0, clean: 0 };
	private readonly times = new Map<Op, Series>();
	private rateTimer: NodeJS.Timeout | undefined;

	registerMoleculerMetrics(): void {
		const broker = this.broker;
		const n = this.counts;
		const quantiles = [...(broker.metrics as unknown as { opts: { defaultQuantiles: number[] } }).opts.defaultQuantiles].sort((a, b) => a - b);
		const rates = new Map((Object.keys(n) as Array<keyof typeof n>).map(name => [name, new Rate()]));
		for (const [name, rate] of rates) {
			registerLive(broker, { name: `moleculer.cacher.${name}.total`, type: "counter", labelNames: [], description: `Number of cacher ${name === "found" ? "hits" : `${name} calls`}`, rate: true }, () => [
				{ labels: {}, value: n[name], rate: rate.rate }
			]);
		}
		for (const op of OPS) {
			// No buckets, as Moleculer registers these: quantiles only.
			const s = new Series({}, []);
			this.times.set(op, s);
			registerLive(broker, { name: `moleculer.cacher.${op}.time`, type: "histogram", labelNames: [], unit: "millisecond", description: `Cacher ${op} time`, quantiles: true }, () => [s.snapshot(quantiles)]);
		}
		// Moleculer's MemoryLRU never counts expiries (the LRU drops them itself); registered as it does.
		broker.metrics.register({ name: "moleculer.cacher.expired.total", type: "counter", rate: true });
		this.rateTimer = setInterval(() => {
			const now = Date.now();
			for (const [name, rate] of rates) rate.tick(n[name], now);
		}, RATE_TICK_MS).unref();
	}

	private get lru(): MemoryLRUInternals {
		return this as unknown as MemoryLRUInternals;
	}

	private timed<T>(op: Op, start: number, result: T): T {
		this.times.get(op)?.observe(performance.now() - start);
		return result;
	}

	override get(key: string): Promise<Record<string, unknown> | null> {
		const start = performance.now();
		this.counts.get++;
		const item = this.lru.cache.get(key);
		// A miss answers `missingResponse` (undefined by default), which Moleculer's Cacher middleware compares against.
		if (item === undefined) return this.timed("get", start, Promise.resolve((this.opts as { missingResponse?: Record<string, unknown> | null }).missingResponse as Record<string, unknown> | null));
		this.counts.found++;
		const clone = this.lru.clone;
		return this.timed("get", start, Promise.resolve((clone ? clone(item) : item) as Record<string, unknown>));
	}

	override set(key: string, data: unknown, ttl?: number): Promise<void> {
		const start = performance.now();
		this.counts.set++;
		const seconds = ttl ?? this.opts.ttl;
		const clone = this.lru.clone;
		const value = clone ? clone(data) : data;
		this.lru.cache.set(key, value, { ttl: seconds ? seconds * 1000 : 0 });
		// Moleculer's cacher resolves with the stored value (its typings say void).
		return this.timed("set", start, Promise.resolve(value as void));
	}

	override del(key: string | string[]): Promise<void> {
		const start = performance.now();
		this.counts.del++;
		for (const k of Array.isArray(key) ? key : [key]) this.lru.cache.delete(k);
		return this.timed("del", start, Promise.resolve());
	}

	override clean(match: string | string[] = "**"): Promise<void> {
		const start = performance.now();
		this.counts.clean++;
		const patterns = Array.isArray(match) ? match : [match];
		for (const key of [...this.lru.cache.keys()]) if (patterns.some(p => Utils.match(key, p))) this.lru.cache.delete(key);
		return this.timed("clean", start, Promise.resolve());
	}

	override close(): Promise<void> {
		clearInterval(this.rateTimer);
		return super.close();
	}
}
