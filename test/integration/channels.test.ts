import crypto from "node:crypto";
import { ServiceBroker, type Context } from "moleculer";
import { channelOptions, channelsMiddleware, deleteStreams } from "../../lib/channels";
import type { Config } from "../../lib/config";
import { waitFor } from "../helpers/wait";

/**
 * Two nodes of one service starting at the same moment on real NATS: both create the channel's durable
 * consumer, JetStream refuses one ("consumer name already in use"), and that node must subscribe again
 * instead of failing to start. Each message is then handled once, by one of them.
 */

const NATS = process.env.TEST_NATS_URL ?? "nats://127.0.0.1:4222";
const namespace = `ch${crypto.randomBytes(4).toString("hex")}`;
const brokers: ServiceBroker[] = [];

afterAll(async () => {
	await Promise.all(brokers.map(b => b.stop()));
	await deleteStreams(NATS, namespace).catch(() => undefined);
});

it("two nodes subscribing one consumer group at once both start, and a message is handled once", async () => {
	const cfg = { TRANSPORTER: NATS, NAMESPACE: namespace, NATS_STREAM_REPLICAS: 1 } as unknown as Config;
	const handled: string[] = [];
	for (const id of ["a", "b"]) {
		const broker = new ServiceBroker({
			nodeID: `${namespace}-${id}`,
			namespace,
			transporter: { type: "NATS", options: { url: NATS } },
			logger: { type: "Console", options: { level: "error" } },
			middlewares: [channelsMiddleware(cfg)]
		});
		broker.createService({
			name: "race",
			channels: {
				"race.work": {
					...channelOptions("race"),
					handler(ctx: Context<{ n: string }>) {
						handled.push(`${id}:${ctx.params.n}`);
					}
				}
			}
		} as never);
		brokers.push(broker);
	}
	// Started together: both subscribe at the same moment.
	await Promise.all(brokers.map(b => b.start()));

	await (brokers[0] as unknown as { sendToChannel(name: string, payload: object): Promise<void> }).sendToChannel("race.work", { n: "1" });
	await waitFor(() => handled.length >= 1 || undefined, "the message handled");
	await new Promise(r => setTimeout(r, 500));
	expect(handled).toHaveLength(1);
	expect(handled[0]).toMatch(/^[ab]:1$/);
});
