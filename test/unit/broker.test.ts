import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Errors, ServiceBroker, type Context } from "moleculer";
import { brokerOptions } from "../../lib/broker";
import { runningContexts } from "../../lib/context-tracker";
import { loadConfig } from "../../lib/config";
import { broadcastBeforeAnswer, publishedToNats } from "../../lib/outages";
import { RenewedMap } from "../../lib/renewed-map";
import { natsServer, type NatsServer } from "../helpers/nats-server";
import { freePort } from "../helpers/node-process";
import { waitFor } from "../helpers/wait";

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

	it("keeps the calls awaiting an answer in a RenewedMap, and every one of 300 concurrent calls is answered", async () => {
		const pending = (caller.transit as unknown as { pendingRequests: RenewedMap<string, unknown> }).pendingRequests;
		expect(pending).toBeInstanceOf(RenewedMap);
		// Their own timeout: this broker's 150 ms is for the test below, and 300 calls on a busy machine can take longer.
		const answers = await Promise.all(Array.from({ length: 300 }, () => caller.call("slow.fast", {}, { timeout: 5000 })));
		expect(answers.every(a => a === "fast")).toBe(true);
		expect(pending.size).toBe(0);
	});

	it("is answered with RequestTimeoutError, forgotten by the tracker and counted by the circuit breaker", async () => {
		expect(await caller.call("slow.fast")).toBe("fast");
		const errors: Error[] = [];
		for (let i = 0; i < 3; i++) await caller.call("slow.hang").catch((err: Error) => errors.push(err));
		expect(errors.map(e => e.constructor)).toEqual([Errors.RequestTimeoutError, Errors.RequestTimeoutError, Errors.RequestTimeoutError]);

		// Nothing stays tracked, so a stop has nothing to wait for (Moleculer alone kept each one for ever).
		const tracked = () => runningContexts(caller);
		for (let i = 0; i < 50 && tracked() > 0; i++) await new Promise(r => setTimeout(r, 20));
		expect(tracked()).toBe(0);

		// Three timeouts out of four calls open the circuit: the next call is refused at once.
		await expect(caller.call("slow.hang")).rejects.toBeInstanceOf(Errors.ServiceNotAvailableError);
	});
});

/**
 * On a nats-server of the test's own, frozen with SIGSTOP to stand for a NATS that takes nothing (the
 * connection stays open, no PING is answered), and thawed with SIGCONT.
 */
describe("publishedToNats and broadcastBeforeAnswer", () => {
	let nats: NatsServer;
	let storeDir: string;
	const brokers: ServiceBroker[] = [];
	const received: unknown[] = [];
	let sender: ServiceBroker;

	beforeAll(async () => {
		storeDir = fs.mkdtempSync(path.join(os.tmpdir(), "msvc-flush-nats-"));
		nats = natsServer(await freePort(), storeDir);
		await nats.start();
		const namespace = `f${crypto.randomBytes(4).toString("hex")}`;
		for (const id of ["sender", "receiver"]) {
			brokers.push(new ServiceBroker({ nodeID: `${namespace}-${id}`, namespace, transporter: { type: "NATS", options: { url: nats.url } }, logger: false }));
		}
		[sender] = brokers;
		brokers[1].createService({ name: "listener", events: { "t.revoked"(ctx: Context) { received.push(ctx.params); } } });
		await Promise.all(brokers.map(b => b.start()));
		await sender.waitForServices("listener", 10000);
	});
	afterAll(async () => {
		nats.resume();
		await Promise.all(brokers.map(b => b.stop()));
		await nats.stop();
		fs.rmSync(storeDir, { recursive: true, force: true });
	});

	it("returns at once without NATS", async () => {
		await expect(publishedToNats(new ServiceBroker({ logger: false }))).resolves.toBeUndefined();
	});

	it("broadcastBeforeAnswer waits while NATS takes nothing, returns once it does, and the other node gets the event", async () => {
		await nats.pause();
		let settled = false;
		const answered = broadcastBeforeAnswer(sender, "t.revoked", { sids: ["s1"] }).then(() => (settled = true));
		await new Promise(r => setTimeout(r, 300));
		expect(settled).toBe(false);
		nats.resume();
		await answered;
		await waitFor(() => received.length === 1 || undefined, "the receiver to get the event");
		expect(received).toEqual([{ sids: ["s1"] }]);
	});

	it("does not hold the answer past its limit when NATS never answers", async () => {
		await nats.pause();
		try {
			// Settles (the test would time out otherwise), though NATS answers nothing.
			await expect(publishedToNats(sender, 200)).resolves.toBeUndefined();
		} finally {
			nats.resume();
		}
	});
});
