import { ServiceBroker } from "moleculer";
import { eventLoopLagMetrics } from "../../lib/process-metrics";

/** The event-loop lag histogram wakes the loop 100 times a second, so it runs only when Prometheus exports it. */

const LAG = "process.eventloop.lag.p99";

async function brokerWith(exported: boolean): Promise<ServiceBroker> {
	const broker = new ServiceBroker({ logger: false, metrics: { enabled: true }, middlewares: [eventLoopLagMetrics(exported)] });
	await broker.start();
	return broker;
}

it("registers the lag gauges when Prometheus exports them", async () => {
	const broker = await brokerWith(true);
	try {
		expect(broker.metrics.getMetric(LAG)).toBeTruthy();
	} finally {
		await broker.stop();
	}
});

it("leaves the event loop alone when nothing exports the gauges", async () => {
	const broker = await brokerWith(false);
	try {
		expect(broker.metrics.getMetric(LAG)).toBeFalsy();
	} finally {
		await broker.stop();
	}
});
