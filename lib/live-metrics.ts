import type { ServiceBroker } from "moleculer";

/**
 * Metrics whose values are kept by the code that counts them, in plain numbers, and read only when a
 * reporter or `$node.metrics` asks (each metric's `snapshot()`). Moleculer's registry calls
 * (`increment`, `set`, `observe`) cost several microseconds each and, at a few thousand requests per
 * second, kept V8 recompiling `Gauge.set` (every attempt aborted): measured here at 130 µs of CPU per
 * request for two metric updates per call, and 56 µs for the Bulkhead's four gauge updates per call.
 */

export type Labels = Record<string, string | number | null>;

export interface LiveValue {
	labels: Labels;
	value: number;
	/** Per-minute rate, as Moleculer reports it (`rate: true`). */
	rate?: number;
}

export interface LiveHistogramValue {
	labels: Labels;
	count: number;
	sum: number;
	lastValue: number | null;
	/** Cumulative counts by upper bound. */
	buckets: Record<string, number>;
	min: number | null;
	mean: number | null;
	variance: number | null;
	stdDev: number | null;
	max: number | null;
	quantiles: Record<string, number | undefined>;
	rate?: number;
}

type MetricDef = { name: string; type: "counter" | "gauge" | "histogram"; labelNames: string[]; unit?: string; description: string; rate?: boolean; buckets?: boolean; quantiles?: boolean };

/** Registers a metric in the broker's registry whose values come from `read()` at each snapshot. */
export function registerLive(broker: ServiceBroker, def: MetricDef, read: () => Array<LiveValue | LiveHistogramValue>): void {
	const metric = broker.metrics.register(def as Parameters<ServiceBroker["metrics"]["register"]>[0]) as unknown as { snapshot(): unknown; hashingLabels(l: Labels): string } | null;
	if (!metric) return;
	metric.snapshot = () => read().map(v => ({ key: metric.hashingLabels(v.labels), timestamp: Date.now(), ...v }));
}

/** Moleculer's per-minute rate (metrics/rates.js): half-way towards the last 5 s's rate at every tick. */
export class Rate {
	private last = 0;
	private lastTick = Date.now();
	rate = 0;

	tick(count: number, now = Date.now()): void {
		const elapsed = (now - this.lastTick) / 1000;
		if (elapsed <= 0) return;
		const perMinute = ((count - this.last) / elapsed) * 60;
		this.last = count;
		this.lastTick = now;
		const r = this.rate + (perMinute - this.rate) * 0.5;
		this.rate = Math.abs(r) < 0.05 ? 0 : r;
	}
}

/** Counts, sum, buckets and a window of the last samples (for quantiles) of one label set. */
export class Series {
	count = 0;
	sum = 0;
	lastValue: number | null = null;
	readonly rate = new Rate();
	private readonly counts: Float64Array;
	private readonly window: Float64Array;
	private filled = 0;
	private next = 0;

	constructor(
		readonly labels: Labels,
		private readonly bounds: number[],
		windowSize = 1024
	) {
		this.counts = new Float64Array(bounds.length);
		this.window = new Float64Array(windowSize);
	}

	observe(value: number): void {
		this.count++;
		this.sum += value;
		this.lastValue = value;
		const b = this.bounds;
		for (let i = 0; i < b.length; i++) {
			if (value <= b[i]) {
				this.counts[i]++;
				break;
			}
		}
		this.window[this.next] = value;
		this.next = (this.next + 1) % this.window.length;
		if (this.filled < this.window.length) this.filled++;
	}

	snapshot(quantiles: number[]): LiveHistogramValue {
		const buckets: Record<string, number> = {};
		let cumulative = 0;
		this.bounds.forEach((b, i) => (buckets[b] = cumulative += this.counts[i]));
		const samples = Array.from(this.window.subarray(0, this.filled)).sort((a, b) => a - b);
		const n = samples.length;
		const mean = n ? samples.reduce((a, b) => a + b, 0) / n : null;
		const variance = n > 1 && mean !== null ? samples.reduce((a, b) => a + (b - mean) ** 2, 0) / (n - 1) : null;
		const q: Record<string, number | undefined> = {};
		for (const p of quantiles) q[p] = samples[Math.ceil(p * n) - 1];
		return {
			labels: this.labels,
			count: this.count,
			sum: this.sum,
			lastValue: this.lastValue,
			buckets,
			min: n ? samples[0] : null,
			mean,
			variance,
			stdDev: variance ? Math.sqrt(variance) : null,
			max: n ? samples[n - 1] : null,
			quantiles: q,
			rate: this.rate.rate
		};
	}
}
