import { ServiceBroker } from "moleculer";
import { eventLoopLagMetrics } from "../../lib/process-metrics";

/** The event-loop lag histogram wakes the loop 100 times a second, so it runs only when Prometheus exports it. */

const LAG = "process.eventloop.lag.p99";

/** Whether a started broker with the lag middleware (`exported` or not) has the lag gauge. */
async function hasLagGauge(exported: boolean): Promise<boolean> {
	const broker = new ServiceBroker({ logger: false, metrics: { enabled: true }, middlewares: [eventLoopLagMetrics(exported)] });
	await broker.start();
	try {
		return !!broker.metrics.getMetric(LAG);
	} finally {
		await broker.stop();
	}
}

it("registers the lag gauges when Prometheus exports them", async () => {
	expect(await hasLagGauge(true)).toBe(true);
});

it("leaves the event loop alone when nothing exports the gauges", async () => {
	expect(await hasLagGauge(false)).toBe(false);
});
