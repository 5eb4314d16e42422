import { connect, StringCodec, type NatsConnection } from "nats";
import crypto from "node:crypto";
import { natsBatching } from "../../lib/nats-batching";

/** lib/nats-batching.ts: what one event-loop turn publishes goes out in one socket write, in order, and nothing is lost. */

const NATS_URL = process.env.TEST_NATS_URL ?? "nats://127.0.0.1:4222";
const sc = StringCodec();
let nc: NatsConnection;
let writes = 0;

beforeAll(async () => {
	nc = await connect({ servers: NATS_URL });
	const transport = (nc as unknown as { protocol: { transport: { send(d: Uint8Array): void } } }).protocol.transport;
	const send = transport.send.bind(transport);
	transport.send = (d: Uint8Array) => {
		writes++;
		send(d);
	};
});
afterAll(() => nc?.close());

const turn = () => new Promise(resolve => setImmediate(resolve));

it("is installed for the nats.js version in package.json", () => {
	expect(natsBatching()).toBe(true);
});

it("sends everything published in one turn, across microtasks, in one write", async () => {
	const subject = `batch.${crypto.randomBytes(4).toString("hex")}`;
	const got: string[] = [];
	const sub = nc.subscribe(subject, { max: 60 });
	const done = (async () => {
		for await (const m of sub) got.push(sc.decode(m.data));
	})();
	await nc.flush();
	await turn();

	writes = 0;
	for (let i = 0; i < 20; i++) nc.publish(subject, sc.encode(`a${i}`));
	// Microtasks of the same turn join the same write (nats.js alone wrote at the first checkpoint).
	await Promise.resolve();
	for (let i = 0; i < 20; i++) nc.publish(subject, sc.encode(`b${i}`));
	expect(writes).toBe(0);
	await turn();
	expect(writes).toBe(1);

	// Later turns write again, and every message arrives once, in order.
	for (let i = 0; i < 20; i++) {
		nc.publish(subject, sc.encode(`c${i}`));
		await turn();
	}
	await done;
	const twenty = (prefix: string) => Array.from({ length: 20 }, (_, i) => `${prefix}${i}`);
	expect(got).toEqual([...twenty("a"), ...twenty("b"), ...twenty("c")]);
});

it("answers requests as before", async () => {
	const subject = `batch.req.${crypto.randomBytes(4).toString("hex")}`;
	const sub = nc.subscribe(subject, { callback: (_err, m) => m.respond(sc.encode(`re:${sc.decode(m.data)}`)) });
	await nc.flush();
	const answers = await Promise.all([1, 2, 3].map(i => nc.request(subject, sc.encode(String(i)), { timeout: 2000 })));
	expect(answers.map(a => sc.decode(a.data))).toEqual(["re:1", "re:2", "re:3"]);
	sub.unsubscribe();
});
