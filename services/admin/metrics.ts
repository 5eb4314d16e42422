import type { Context, ServiceBroker } from "moleculer";

export interface RequestStats {
	service: string;
	requests_per_s: number;
	p50_ms: number;
	p99_ms: number;
	errors: number;
}

interface MetricValue {
	labels: Record<string, string | null>;
	value?: number;
	rate?: number;
	count?: number;
	quantiles?: Record<string, number | undefined>;
}
interface MetricObject {
	name: string;
	values: MetricValue[];
}

const NAMES = ["moleculer.request.total", "moleculer.request.error.total", "moleculer.request.time"];
const round = (n: number, digits = 2) => Math.round(n * 10 ** digits) / 10 ** digits;

/**
 * Requests per service over every available node, from each node's Moleculer metrics (`$node.metrics`).
 * Only requests a node handled itself (`type: local`) count, so a call is not counted by caller and callee.
 * The rate is Moleculer's per-minute rate over the last seconds; p50 is the count-weighted mean of the
 * nodes' p50, p99 the largest node p99 (over the last minute); errors the total since each node started.
 */
export async function collectRequestStats(broker: ServiceBroker, ctx: Context): Promise<RequestStats[]> {
	const nodes = broker.registry.getNodeList({ onlyAvailable: true, withServices: false }) as { id: string }[];
	const per = new Map<string, { rate: number; errors: number; count: number; p50sum: number; p99: number }>();
	const entry = (service: string) => {
		let e = per.get(service);
		if (!e) per.set(service, (e = { rate: 0, errors: 0, count: 0, p50sum: 0, p99: 0 }));
		return e;
	};
	await Promise.all(
		nodes.map(async node => {
			let metrics: MetricObject[];
			try {
				metrics = await ctx.call<MetricObject[], object>("$node.metrics", { includes: NAMES }, { nodeID: node.id, timeout: 3000, retries: 0 });
			} catch {
				return;
			}
			for (const m of metrics) {
				for (const v of m.values ?? []) {
					const service = v.labels?.service;
					if (!service || v.labels.type !== "local" || service.startsWith("$")) continue;
					const e = entry(service);
					if (m.name === "moleculer.request.total") e.rate += (v.rate ?? 0) / 60;
					else if (m.name === "moleculer.request.error.total") e.errors += v.value ?? 0;
					else if (m.name === "moleculer.request.time") {
						const q = v.quantiles ?? {};
						const n = v.count ?? 0;
						const p50 = Number(q["0.5"] ?? 0);
						const p99 = Number(q["0.99"] ?? 0);
						if (n > 0 && Number.isFinite(p50)) {
							e.count += n;
							e.p50sum += p50 * n;
						}
						if (Number.isFinite(p99)) e.p99 = Math.max(e.p99, p99);
					}
				}
			}
		})
	);
	return [...per.entries()]
		.map(([service, e]) => ({
			service,
			requests_per_s: round(e.rate),
			p50_ms: round(e.count ? e.p50sum / e.count : 0),
			p99_ms: round(e.p99),
			errors: e.errors
		}))
		.sort((a, b) => a.service.localeCompare(b.service));
}
