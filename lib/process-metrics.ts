import { monitorEventLoopDelay, type IntervalHistogram } from "node:perf_hooks";
import type { Middleware, ServiceBroker } from "moleculer";

/** Every INTERVAL_MS, the event loop's delay over that window (Moleculer measures no event-loop lag itself). */
const INTERVAL_MS = 5000;
/** The sampling timer's period: the histogram records whole periods, so the lag is what exceeds it. */
const RESOLUTION_MS = 10;
const NAMES = { p50: "process.eventloop.lag.p50", p99: "process.eventloop.lag.p99", max: "process.eventloop.lag.max" } as const;

/**
 * Gauges `process_eventloop_lag_{p50,p99,max}` (milliseconds) for Prometheus: on when `exported` (METRICS_PORT
 * is set), as nothing else reads them. The histogram's timer wakes the event loop every RESOLUTION_MS, 100
 * times a second, busy or idle: on this project's two-vCPU host an idle embedded node's main thread used
 * 13–16 ms of CPU a second with it and 7–9 ms without (BENCHMARKS.md).
 */
export function eventLoopLagMetrics(exported: boolean): Middleware {
	let histogram: IntervalHistogram | undefined;
	let timer: NodeJS.Timeout | undefined;
	return {
		name: "EventLoopLag",
		started(broker: ServiceBroker) {
			if (!exported || !broker.isMetricsEnabled()) return;
			for (const name of Object.values(NAMES)) broker.metrics.register({ type: "gauge", name, unit: "millisecond", description: "Event loop delay over the last 5 s" });
			histogram = monitorEventLoopDelay({ resolution: RESOLUTION_MS });
			const lag = (ns: number) => Math.max(0, ns / 1e6 - RESOLUTION_MS);
			histogram.enable();
			timer = setInterval(() => {
				const h = histogram!;
				if (h.count > 0) {
					broker.metrics.set(NAMES.p50, lag(h.percentile(50)));
					broker.metrics.set(NAMES.p99, lag(h.percentile(99)));
					broker.metrics.set(NAMES.max, lag(h.max));
				}
				h.reset();
			}, INTERVAL_MS).unref();
		},
		stopped() {
			clearInterval(timer);
			histogram?.disable();
		}
	} as unknown as Middleware;
}
