import crypto from "node:crypto";
import { Errors, ServiceBroker, type Context } from "moleculer";
import { brokerOptions } from "../../lib/broker";
import { loadConfig } from "../../lib/config";
import { broadcastBeforeAnswer, publishedToNats } from "../../lib/outages";

const NATS_URL = process.env.TEST_NATS_URL ?? "nats://127.0.0.1:4222";

/** Two brokers over the real NATS server, with the project's broker options (short timeout, eager breaker). */
describe("broker options: a remote call that times out", () => {
	let caller: ServiceBroker;
	let callee: ServiceBroker;
	const hung: Array<() => void> = [];

	beforeAll(async () => {
		const cfg = loadConfig({ NODE_ENV: "test", LOG_LEVEL: "fatal", TRANSPORTER: NATS_URL, REQUEST_TIMEOUT_MS: "150" });
		const namespace = `b${crypto.randomBytes(4).toString("hex")}`;
		// Options per broker: middlewares (the channels adapter among them) belong to one broker each.
		const base = brokerOptions(cfg, {});
		caller = new ServiceBroker({
			...base,
			namespace,
			nodeID: `caller-${namespace}`,
			circuitBreaker: { ...base.circuitBreaker, minRequestCount: 3, threshold: 0.5 }
		});
		callee = new ServiceBroker({ ...brokerOptions(cfg, {}), namespace, nodeID: `callee-${namespace}` });
		callee.createService({
			name: "slow",
			actions: {
				hang: () => new Promise<void>(resolve => hung.push(resolve)),
				fast: () => "fast"
			}
		});
		await Promise.all([caller.start(), callee.start()]);
		await caller.waitForServices("slow", 10000);
	});

	afterAll(async () => {
		hung.forEach(release => release());
		await Promise.allSettled([callee?.stop(), caller?.stop()]);
	});

	it("is answered with RequestTimeoutError, forgotten by the tracker and counted by the circuit breaker", async () => {
		expect(await caller.call("slow.fast")).toBe("fast");
		const errors: Error[] = [];
		for (let i = 0; i < 3; i++) await caller.call("slow.hang").catch((err: Error) => errors.push(err));
		expect(errors.map(e => e.constructor)).toEqual([Errors.RequestTimeoutError, Errors.RequestTimeoutError, Errors.RequestTimeoutError]);

		// Nothing stays tracked, so a stop has nothing to wait for (Moleculer alone kept each one for ever).
		const tracked = () => (caller as unknown as { _trackedContexts: Context[] })._trackedContexts.length;
		for (let i = 0; i < 50 && tracked() > 0; i++) await new Promise(r => setTimeout(r, 20));
		expect(tracked()).toBe(0);

		// Three timeouts out of four calls open the circuit: the next call is refused at once.
		await expect(caller.call("slow.hang")).rejects.toBeInstanceOf(Errors.ServiceNotAvailableError);
	});
});

describe("publishedToNats", () => {
	it("returns at once without NATS, and waits for NATS to take what was published", async () => {
		const local = new ServiceBroker({ logger: false });
		await expect(publishedToNats(local)).resolves.toBeUndefined();

		let flushed = false;
		const withNats = { transit: { tx: { client: { flush: () => new Promise<void>(r => setTimeout(() => ((flushed = true), r()), 20)) } } } } as unknown as ServiceBroker;
		await publishedToNats(withNats);
		expect(flushed).toBe(true);
	});

	it("broadcastBeforeAnswer returns only once NATS has taken the broadcast", async () => {
		const steps: string[] = [];
		const broker = {
			broadcast: async (event: string) => void steps.push(`broadcast ${event}`),
			transit: { tx: { client: { flush: async () => void steps.push("flushed") } } }
		} as unknown as ServiceBroker;
		await broadcastBeforeAnswer(broker, "auth.sessions.revoked", { sids: ["s1"] });
		expect(steps).toEqual(["broadcast auth.sessions.revoked", "flushed"]);
	});

	it("does not hold the answer when NATS does not answer", async () => {
		const stuck = { transit: { tx: { client: { flush: () => new Promise<void>(() => undefined) } } } } as unknown as ServiceBroker;
		// Settles (the test would time out otherwise), though the flush never does.
		await expect(publishedToNats(stuck, 50)).resolves.toBeUndefined();
	});
});
