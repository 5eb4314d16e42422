import crypto from "node:crypto";
import { channelsConnected, deleteStreams, ensureStreams } from "../../lib/channels";
import { query } from "../helpers/pg";
import { smtpUrl, startSmtp, type Mail, type Smtp } from "../helpers/smtp";
import { startSystem, uniqueEmail, type TestSystem } from "../helpers/system";
import { waitFor } from "../helpers/wait";

/**
 * A worker told to stop while it is sending a mail (a queue message in flight over real NATS JetStream)
 * finishes that message before it exits: the mail goes out once, the delivery is recorded as sent, and
 * nothing is left for another worker to send again.
 */

const NATS = process.env.TEST_NATS_URL ?? "nats://127.0.0.1:4222";
const namespace = `dr${crypto.randomBytes(4).toString("hex")}`;
let smtp: Smtp;
let worker: TestSystem | undefined;
let other: TestSystem | undefined;
let hold: (() => void) | undefined;
let held: ((m: Mail) => void) | undefined;

beforeAll(async () => {
	await ensureStreams(NATS, namespace);
	// The server holds each message until the test lets it go.
	smtp = await startSmtp(0, {
		beforeAccept: mail =>
			new Promise<void>(resolve => {
				hold = resolve;
				held?.(mail);
			})
	});
});

afterAll(async () => {
	hold?.();
	await other?.stop();
	await worker?.stop().catch(() => undefined);
	await smtp?.close();
	await deleteStreams(NATS, namespace).catch(() => undefined);
});

it("finishes the message in flight, then stops; the mail is sent once", async () => {
	const env = { TRANSPORTER: NATS, NAMESPACE: namespace, SMTP_URL: smtpUrl(smtp), NOTIFY_PUMP_MS: "50" };
	worker = await startSystem({ services: ["users", "notifications"], env });
	const email = uniqueEmail("drain");
	const arrived = new Promise<Mail>(resolve => (held = resolve));
	await worker.broker.call("users.create", { email, name: "Drained" });
	const mail = await arrived;
	expect(mail.envelope.to).toEqual([email]);

	// SIGTERM's path: the broker stops while the SMTP server still holds the mail.
	let stopped = false;
	const stopping = worker.broker.stop().then(() => (stopped = true));
	await new Promise(r => setTimeout(r, 1000));
	expect(stopped).toBe(false);
	hold!();
	await stopping;

	// Sent once and recorded as sent by the worker that sent it.
	expect(smtp.mails.filter(m => m.envelope.to.includes(email))).toHaveLength(1);
	const rows = await query<{ status: string; attempts: number }>(worker.env.NOTIFICATIONS_DATABASE_URL, `SELECT status, attempts FROM deliveries WHERE "to" = $1`, [email]);
	expect(rows).toEqual([{ status: "sent", attempts: 1 }]);

	// A second worker on the same queue and database finds nothing left to send.
	held = () => hold?.();
	other = await startSystem({ services: ["users", "notifications"], dbs: worker.dbs, env });
	await waitFor(() => channelsConnected(other!.broker) || undefined, "the second worker's queue");
	await new Promise(r => setTimeout(r, 3000));
	expect(smtp.mails.filter(m => m.envelope.to.includes(email))).toHaveLength(1);
});
