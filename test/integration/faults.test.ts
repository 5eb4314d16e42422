import crypto from "node:crypto";
import fs from "node:fs";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { connect, headers as natsHeaders } from "nats";
import { SMTPServer } from "smtp-server";
import { CHANNELS, ensureStreams, streamName } from "../../lib/channels";
import { freePort, startNode, type NodeProcess } from "../helpers/node-process";
import { natsServer, type NatsServer } from "../helpers/nats-server";
import { waitFor } from "../helpers/wait";
import { createDatabases, query, type TestDatabases } from "../helpers/pg";
import { http, registerAndLogin, startSystem, type HttpResult, type TestSystem } from "../helpers/system";

// The faults issue 3 names, each against real parts: what the user sees, and that nothing is lost or
// done twice. Emails are counted at a real SMTP server started here; rows in the real databases.


const sleep = (ms: number) => new Promise(r => setTimeout(r, ms));

const rid = (name: string) => `fault:${name}.${crypto.randomBytes(3).toString("hex")}`;

// ---- A real SMTP server that can stall a message: read it whole, never answer ----

interface Mail {
	headers: Record<string, string>;
	to: string[];
}

interface Smtp {
	port: number;
	/** Messages the server accepted (answered 250 to). */
	accepted: Mail[];
	/** Messages read in full and never answered: the client never completed them. */
	stalled: Mail[];
	/** The next message `match` picks is stalled; `onStall` runs the moment it is in. */
	stallNext(match: (m: Mail) => boolean, onStall: (m: Mail) => void): void;
	/** The next message `match` picks is accepted, but its 250 is sent only after `ms`. */
	lateReplyNext(match: (m: Mail) => boolean, ms: number): void;
	close(): Promise<void>;
}

function parseHeaders(raw: string): Record<string, string> {
	const m = /\r?\n\r?\n/.exec(raw);
	const head = m ? raw.slice(0, m.index) : raw;
	const out: Record<string, string> = {};
	for (const line of head.replace(/\r?\n[ \t]+/g, " ").split(/\r?\n/)) {
		const i = line.indexOf(":");
		if (i > 0) out[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
	}
	return out;
}

function startSmtp(port = 0): Promise<Smtp> {
	const accepted: Mail[] = [];
	const stalled: Mail[] = [];
	let stall: { match: (m: Mail) => boolean; onStall: (m: Mail) => void } | undefined;
	let late: { match: (m: Mail) => boolean; ms: number } | undefined;
	const server = new SMTPServer({
		authOptional: true,
		disabledCommands: ["STARTTLS", "AUTH"],
		logger: false,
		onData(stream, session, cb) {
			const chunks: Buffer[] = [];
			stream.on("data", (c: Buffer) => chunks.push(c));
			stream.on("end", () => {
				const mail = { headers: parseHeaders(Buffer.concat(chunks).toString("utf8")), to: session.envelope.rcptTo.map(r => r.address) };
				if (stall?.match(mail)) {
					const { onStall } = stall;
					stall = undefined;
					stalled.push(mail);
					onStall(mail);
					return; // no answer to the DATA: the client waits
				}
				if (late?.match(mail)) {
					const { ms } = late;
					late = undefined;
					// The server takes the message and answers 250, but only after `ms`: by then the client may be gone.
					setTimeout(() => {
						accepted.push(mail);
						cb();
					}, ms);
					return;
				}
				accepted.push(mail);
				cb();
			});
		}
	});
	return new Promise((resolve, reject) => {
		server.once("error", reject);
		server.listen(port, "127.0.0.1", () => {
			resolve({
				port: (server.server.address() as AddressInfo).port,
				accepted,
				stalled,
				stallNext: (match, onStall) => (stall = { match, onStall }),
				lateReplyNext: (match, ms) => (late = { match, ms }),
				close: () => new Promise<void>(r => server.close(() => r()))
			});
		});
	});
}

const byRequest = (mails: Mail[], requestId: string) => mails.filter(m => m.headers["x-request-id"] === requestId);

const chargeBody = { amount: 1999, currency: "usd", payment_method: "pm_card_visa", description: "Fault tea" };

function charge(base: string, token: string, key: string, requestId: string): Promise<HttpResult> {
	return http(base, "POST", "/api/v1/payments/charge", { token, body: chargeBody, headers: { "Idempotency-Key": key, "X-Request-ID": requestId } });
}

type NotificationItem = { template: string; request_id: string; status: string; attempts: number };

/** Waits until the receipt of a request, as its customer sees it in GET /api/v1/notifications, is `ready`. */
function receiptWhen(base: string, token: string, requestId: string, ready: (r: NotificationItem) => boolean, what: string): Promise<NotificationItem> {
	return waitFor(
		async () => {
			const list = await http(base, "GET", "/api/v1/notifications", { token });
			const r = (list.body.items as NotificationItem[]).find(i => i.template === "receipt" && i.request_id === requestId);
			return r && ready(r) ? r : undefined;
		},
		what,
		30000
	);
}

/** One process with everything a charge and its receipt go through, sending mail to `smtpPort` and retrying fast. */
function startChargeSystem(smtpPort: number, env: Record<string, string>): Promise<TestSystem> {
	return startSystem({
		services: ["api", "auth", "users", "payments", "notifications"],
		env: { SMTP_URL: `smtp://127.0.0.1:${smtpPort}`, NOTIFY_RETRY_BASE_MS: "50", NOTIFY_PUMP_MS: "50", OUTBOX_POLL_MS: "100", ...env }
	});
}

// ---- 1. SMTP down during a charge (one process) ----

describe("faults: the SMTP server is down during a charge", () => {
	let sys: TestSystem;
	let smtpPort: number;
	let smtp: Smtp | undefined;

	beforeAll(async () => {
		smtpPort = await freePort();
		// Recovery here does not wait on leases: a long one keeps a slow send on a loaded machine from being taken over.
		sys = await startChargeSystem(smtpPort, { NOTIFY_LEASE_MS: "20000", NOTIFY_MAX_ATTEMPTS: "50" });
	});
	afterAll(async () => {
		await sys?.stop();
		await smtp?.close();
	});

	it("answers the charge 201 at once, shows the receipt failed and retrying, and sends it once when SMTP is back", async () => {
		const { user, token } = await registerAndLogin(sys.url);
		const requestId = rid("smtp-down");

		// Nothing listens on the SMTP port: the charge does not wait for (or fail with) the email.
		const res = await charge(sys.url, token, crypto.randomUUID(), requestId);
		expect(res.status).toBe(201);
		expect(res.body).toMatchObject({ status: "succeeded", amount: 1999, currency: "usd", user_id: user.id });

		// The customer sees the receipt failed, tried more than once.
		const failed = await receiptWhen(sys.url, token, requestId, r => r.status === "failed" && r.attempts >= 2, "the receipt to show failed after retries");
		expect(failed).toMatchObject({ channel: "email", to: user.email, sent_at: null });

		smtp = await startSmtp(smtpPort);
		const sent = await receiptWhen(sys.url, token, requestId, r => r.status === "sent", "the receipt marked sent");
		expect(sent.attempts).toBeGreaterThan(failed.attempts);
		const receipts = byRequest(smtp.accepted, requestId);
		expect(receipts).toHaveLength(1);
		expect(receipts[0].to).toEqual([user.email]);
		expect(receipts[0].headers.subject).toContain("$19.99");

		// One payment, one event, one delivery.
		const payments = await query(sys.env.PAYMENTS_DATABASE_URL, "SELECT status FROM payments WHERE user_id = $1", [user.id]);
		expect(payments).toEqual([{ status: "succeeded" }]);
		const deliveries = await query(sys.env.NOTIFICATIONS_DATABASE_URL, "SELECT status FROM deliveries WHERE request_id = $1", [requestId]);
		expect(deliveries).toEqual([{ status: "sent" }]);
	}, 60000);
});

describe("faults: the SMTP server answers a receipt after the send has given up", () => {
	let sys: TestSystem;
	let smtp: Smtp;

	beforeAll(async () => {
		smtp = await startSmtp();
		// A send gives up after half a lease: 3 s here.
		sys = await startChargeSystem(smtp.port, { NOTIFY_LEASE_MS: "6000" });
	});
	afterAll(async () => {
		await sys?.stop();
		await smtp?.close();
	});

	it("sends it again under the same Message-ID, by which the receiving side can drop the copy: one delivery, one payment", async () => {
		const { user, token } = await registerAndLogin(sys.url);
		const requestId = rid("smtp-late");
		// The server has the receipt, but its 250 comes after the client's 3 s timeout: SMTP cannot tell
		// that from a lost message (RFC 1047), so the sender must count it as failed and send again.
		smtp.lateReplyNext(m => m.headers["x-request-id"] === requestId, 3500);

		const res = await charge(sys.url, token, crypto.randomUUID(), requestId);
		expect(res.status).toBe(201);
		const sent = await receiptWhen(sys.url, token, requestId, r => r.status === "sent", "the receipt marked sent");
		expect(sent.attempts).toBe(2);
		await waitFor(() => byRequest(smtp.accepted, requestId).length === 2, "the late copy to be taken too", 10000);
		const copies = byRequest(smtp.accepted, requestId);
		expect(copies.map(m => m.to)).toEqual([[user.email], [user.email]]);
		expect(copies[1].headers["message-id"]).toBe(copies[0].headers["message-id"]);

		const deliveries = await query(sys.env.NOTIFICATIONS_DATABASE_URL, "SELECT status, attempts FROM deliveries WHERE request_id = $1", [requestId]);
		expect(deliveries).toEqual([{ status: "sent", attempts: 2 }]);
		const payments = await query(sys.env.PAYMENTS_DATABASE_URL, "SELECT status FROM payments WHERE user_id = $1", [user.id]);
		expect(payments).toEqual([{ status: "succeeded" }]);
	}, 60000);
});

// ---- 2–5. A cluster of two OS processes over a NATS server of its own ----


describe("faults: a cluster (payments node, notifications node) over its own NATS", () => {
	const namespace = `tf${crypto.randomBytes(4).toString("hex")}`;
	const tmpDirs: string[] = [];
	const started: NodeProcess[] = [];
	let nats: NatsServer;
	let dbs: TestDatabases;
	let smtp: Smtp;
	let url = "";
	let envP: Record<string, string>;
	let envN: Record<string, string>;
	let nodeP: NodeProcess | undefined;
	let nodeN: NodeProcess | undefined;
	let dataDirN = "";

	const tmpDir = (prefix: string) => {
		const d = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
		tmpDirs.push(d);
		return d;
	};
	const alive = (n: NodeProcess | undefined): n is NodeProcess => !!n && n.proc.exitCode === null && n.proc.signalCode === null;
	const diag = () =>
		[
			`--- node P (${alive(nodeP) ? "running" : "exited"}) ---`,
			...(nodeP?.lines.slice(-12) ?? []),
			`--- node N (${alive(nodeN) ? "running" : "exited"}) ---`,
			...(nodeN?.lines.slice(-12) ?? []),
			"--- nats-server ---",
			...(nats?.lines.slice(-6) ?? [])
		].join("\n");
	const start = (env: Record<string, string>) => {
		const n = startNode(env);
		started.push(n);
		return n;
	};
	const startP = (extra: Record<string, string> = {}) => (nodeP = start({ ...envP, ...extra }));
	const startN = () => (nodeN = start(envN));
	/** Ready: the gateway on P answers, and auth, users, payments and notifications (on N) all answer it. */
	const waitReady = () =>
		waitFor(async () => (await fetch(`${url}/health/ready`)).status === 200, "the cluster to be ready", 60000, diag);
	/** Both nodes running and ready (a test that left one down does not break the next). */
	const clusterUp = async () => {
		if (!alive(nodeN)) startN();
		if (!alive(nodeP)) startP();
		await waitReady();
	};
	const login = async (email: string, password: string) => {
		const r = await http(url, "POST", "/api/v1/auth/login", { body: { email, password } });
		if (r.status !== 200) throw new Error(`login failed: ${r.status} ${r.text}`);
		return r.body.access_token as string;
	};
	const paymentsDb = () => dbs.env.PAYMENTS_DATABASE_URL;
	const notificationsDb = () => dbs.env.NOTIFICATIONS_DATABASE_URL;
	const deliveriesOf = (requestId: string) =>
		query<{ id: string; channel: string; status: string; attempts: number }>(notificationsDb(), "SELECT id, channel, status, attempts FROM deliveries WHERE request_id = $1 ORDER BY channel", [
			requestId
		]);
	/** Waits for one receipt email of a request and its delivery marked sent; returns the delivery. */
	const receiptSent = async (requestId: string, what: string) => {
		await waitFor(() => byRequest(smtp.accepted, requestId).length > 0, what, 60000, diag);
		const [d] = await waitFor(
			async () => {
				const rows = (await deliveriesOf(requestId)).filter(r => r.channel === "email");
				return rows.length && rows.every(r => r.status === "sent") ? rows : undefined;
			},
			`${what}: its delivery marked sent`,
			30000,
			diag
		);
		return d;
	};

	beforeAll(async () => {
		const natsPort = await freePort();
		nats = natsServer(natsPort, tmpDir("msvc-nats-"));
		await nats.start();
		// Streams exist before anything publishes, whichever node comes up first.
		await ensureStreams(nats.url, namespace);
		dbs = await createDatabases(["auth", "users", "payments", "notifications"]);
		smtp = await startSmtp();
		const port = await freePort();
		url = `http://127.0.0.1:${port}`;
		const common = {
			NODE_ENV: "test",
			LOG_LEVEL: "warn",
			BCRYPT_COST: "4",
			NAMESPACE: namespace,
			TRANSPORTER: nats.url,
			FAILPOINTS: ""
		};
		dataDirN = tmpDir("msvc-faults-n-");
		envP = {
			...common,
			SERVICES: "api,auth,users,payments",
			// Fixed node ids: a restarted node takes its old place in the others' registries at once.
			NODE_ID: `${namespace}-p`,
			PORT: String(port),
			READY_SERVICES: "auth,users,payments,notifications",
			AUTH_DATABASE_URL: dbs.env.AUTH_DATABASE_URL,
			USERS_DATABASE_URL: dbs.env.USERS_DATABASE_URL,
			PAYMENTS_DATABASE_URL: dbs.env.PAYMENTS_DATABASE_URL,
			DATA_DIR: tmpDir("msvc-faults-p-"),
			OUTBOX_POLL_MS: "100"
		};
		envN = {
			...common,
			SERVICES: "notifications",
			NODE_ID: `${namespace}-n`,
			READY_SERVICES: "notifications",
			NOTIFICATIONS_DATABASE_URL: dbs.env.NOTIFICATIONS_DATABASE_URL,
			DATA_DIR: dataDirN,
			SMTP_URL: `smtp://127.0.0.1:${smtp.port}`,
			// A send gives up after half a lease (5 s): the stalled one is killed well before that, and a slow
			// answer on a loaded machine is not taken for a lost mail (which is sent again: see the suite above).
			NOTIFY_LEASE_MS: "10000",
			NOTIFY_PUMP_MS: "100",
			NOTIFY_RETRY_BASE_MS: "100",
			NOTIFY_MAX_ATTEMPTS: "20"
		};
		startN();
		startP();
		await waitReady();
	}, 120000);

	afterAll(async () => {
		for (const n of started) if (alive(n)) n.proc.kill("SIGKILL");
		await Promise.all(started.map(n => n.exited));
		await nats?.stop();
		await smtp?.close();
		await dbs?.drop();
		for (const d of tmpDirs) fs.rmSync(d, { recursive: true, force: true });
	}, 60000);

	it("2. the notification node killed (kill -9) in the middle of sending a receipt: after its restart, exactly one receipt", async () => {
		await clusterUp();
		const { user, token } = await registerAndLogin(url);
		await waitFor(() => smtp.accepted.some(m => m.to.includes(user.email)), "the welcome email (the notification node works)", 60000, diag);
		// Every mail of the registration (welcome, verification) sent and marked sent before the kill: one
		// still between the server's 250 and its mark would be sent again after the restart, as any
		// crash in that window would (at least once, under the same Message-ID).
		await waitFor(
			async () => {
				const rows = await query<{ status: string }>(notificationsDb(), "SELECT status FROM deliveries WHERE user_id = $1", [user.id]);
				return rows.length >= 2 && rows.every(r => r.status === "sent");
			},
			"the registration's mails marked sent",
			60000,
			diag
		);

		const requestId = rid("kill-n");
		const victim = nodeN!;
		// The SMTP server reads the receipt and never answers; the node is killed while it waits.
		smtp.stallNext(
			m => m.headers["x-request-id"] === requestId,
			() => victim.proc.kill("SIGKILL")
		);
		const res = await charge(url, token, crypto.randomUUID(), requestId);
		expect(res.status).toBe(201);
		await victim.exited;
		expect(victim.proc.signalCode).toBe("SIGKILL");
		expect(byRequest(smtp.stalled, requestId)).toHaveLength(1);
		expect(byRequest(smtp.accepted, requestId)).toHaveLength(0);
		// The delivery was claimed when the node died: its lease keeps it from anyone else until it runs out.
		expect(await deliveriesOf(requestId)).toEqual([{ id: expect.any(String), channel: "email", status: "sending", attempts: 1 }]);

		startN();
		const delivery = await receiptSent(requestId, "the receipt after the notification node's restart");
		expect(delivery.attempts).toBeGreaterThanOrEqual(2);
		const [mail] = byRequest(smtp.accepted, requestId);
		expect(byRequest(smtp.accepted, requestId)).toHaveLength(1);
		expect(mail.to).toEqual([user.email]);
		// The same delivery (its Message-ID is the delivery id), sent again, not a second one.
		expect(mail.headers["message-id"]).toBe(byRequest(smtp.stalled, requestId)[0].headers["message-id"]);
		expect(mail.headers["message-id"]).toMatch(new RegExp(`^<${delivery.id}@`));
		expect(await deliveriesOf(requestId)).toHaveLength(1);
	}, 120000);

	it("3a. NATS restarted between a charge and its delivery: the receipt still arrives, once", async () => {
		await clusterUp();
		const { user, token } = await registerAndLogin(url);
		await nodeN!.stop();

		const requestId = rid("nats-between");
		const res = await charge(url, token, crypto.randomUUID(), requestId);
		expect(res.status).toBe(201);
		// The event is in the stream (the outbox row published), and nobody has delivered it.
		await waitFor(
			async () => (await query<{ published_at: Date | null }>(paymentsDb(), "SELECT published_at FROM outbox WHERE request_id = $1", [requestId]))[0]?.published_at,
			"the outbox row relayed to NATS",
			30000,
			diag
		);
		expect(await deliveriesOf(requestId)).toEqual([]);

		await nats.restart();
		startN();
		await receiptSent(requestId, "the receipt after NATS restarted");
		const mails = byRequest(smtp.accepted, requestId);
		expect(mails).toHaveLength(1);
		expect(mails[0].to).toEqual([user.email]);
		expect(await deliveriesOf(requestId)).toEqual([{ id: expect.any(String), channel: "email", status: "sent", attempts: 1 }]);
	}, 120000);

	it("3b. NATS restarted during a stream of charges: every charge that answered 201 gets exactly one receipt", async () => {
		await clusterUp();
		const { user, token } = await registerAndLogin(url);
		type Outcome = { key: string; requestId: string; status: number; paymentId?: string; error?: string };
		const outcomes: Outcome[] = [];
		let restart: Promise<void> | undefined;
		let restarted = false;
		let after = 0;
		// About twenty charges, one after another; NATS goes down after the fifth for a second, and the
		// stream goes on through the outage and a few charges past it.
		for (let i = 0; i < 80 && (i < 20 || after < 3); i++) {
			if (i === 5) restart = nats.restart(1000).then(() => void (restarted = true));
			if (restarted) after++;
			const o: Outcome = { key: crypto.randomUUID(), requestId: rid(`stream-${i}`), status: 0 };
			try {
				const r = await charge(url, token, o.key, o.requestId);
				o.status = r.status;
				o.paymentId = r.body?.id;
			} catch (err) {
				o.error = (err as Error).message;
			}
			outcomes.push(o);
			await sleep(50);
		}
		await restart;
		// What the client saw: 201, or at worst a 503 it may retry with the same Idempotency-Key.
		const seen = outcomes.map(o => o.status);
		expect(seen.filter(s => s !== 201 && s !== 503)).toEqual([]);
		for (const o of outcomes.filter(x => x.status !== 201)) {
			const again = await charge(url, token, o.key, o.requestId);
			expect(again.status).toBe(201);
			o.status = 201;
			o.paymentId = again.body.id;
		}
		expect(outcomes.length).toBeGreaterThanOrEqual(20);

		await waitFor(
			() => outcomes.every(o => byRequest(smtp.accepted, o.requestId).length > 0),
			"a receipt for every charge",
			90000,
			() => `missing: ${outcomes.filter(o => !byRequest(smtp.accepted, o.requestId).length).map(o => o.requestId).join(", ")}\n${diag()}`
		);
		await waitFor(
			async () => {
				const rows = await query<{ n: string }>(notificationsDb(), "SELECT count(*) AS n FROM deliveries WHERE user_id = $1 AND template = 'receipt' AND status = 'sent'", [user.id]);
				return Number(rows[0].n) === outcomes.length;
			},
			"every receipt delivery marked sent",
			30000,
			diag
		);
		for (const o of outcomes) expect([o.requestId, byRequest(smtp.accepted, o.requestId).length]).toEqual([o.requestId, 1]);
		// One payment per charge, each relayed once.
		const payments = await query<{ id: string; status: string }>(paymentsDb(), "SELECT id, status FROM payments WHERE user_id = $1", [user.id]);
		expect(payments.map(p => p.id).sort()).toEqual(outcomes.map(o => o.paymentId).sort());
		expect(payments.every(p => p.status === "succeeded")).toBe(true);
		const unpublished = await query(paymentsDb(), "SELECT id FROM outbox WHERE published_at IS NULL");
		expect(unpublished).toEqual([]);
	}, 180000);

	it("4. the payments node killed between the payment commit and the outbox relay: relayed after restart, delivered once, never charged twice", async () => {
		await clusterUp();
		// Node P again, now dying right after a charge's final commit.
		await nodeP!.stop();
		const doomed = startP({ FAILPOINTS: "payments.after-commit" });
		await waitReady();
		const { user, email, password, token } = await registerAndLogin(url);

		const key = crypto.randomUUID();
		const requestId = rid("kill-p");
		// What the client sees: the connection dies under the request (or a 5xx), never a 201.
		const seen = await charge(url, token, key, requestId).then(
			r => ({ status: r.status, error: "" }),
			(err: Error) => ({ status: 0, error: err.message })
		);
		expect(seen.status === 0 || seen.status >= 500).toBe(true);
		await doomed.exited;
		expect(doomed.proc.signalCode).toBe("SIGKILL");

		// Committed: the payment succeeded, with its event in the outbox, not yet relayed.
		const payments = await query<{ id: string; status: string; receipt_number: string | null }>(paymentsDb(), "SELECT id, status, receipt_number FROM payments WHERE user_id = $1", [user.id]);
		expect(payments).toHaveLength(1);
		expect(payments[0]).toMatchObject({ status: "succeeded", receipt_number: expect.any(String) });
		const paymentId = payments[0].id;
		const outbox = () => query<{ type: string; published_at: Date | null }>(paymentsDb(), "SELECT type, published_at FROM outbox WHERE request_id = $1", [requestId]);
		expect(await outbox()).toEqual([{ type: "payment.succeeded", published_at: null }]);
		expect(byRequest(smtp.accepted, requestId)).toHaveLength(0);

		startP();
		await waitReady();
		await receiptSent(requestId, "the receipt once the payments node is back");
		expect(byRequest(smtp.accepted, requestId)).toHaveLength(1);
		expect((await outbox())[0].published_at).not.toBeNull();

		// The client retries with the same key: the first answer, not a second charge.
		const again = await charge(url, await login(email, password), key, requestId);
		expect(again.status).toBe(201);
		expect(again.headers.get("idempotent-replayed")).toBe("true");
		expect(again.body).toMatchObject({ id: paymentId, status: "succeeded" });
		expect(await query(paymentsDb(), "SELECT id FROM payments WHERE user_id = $1", [user.id])).toHaveLength(1);
		const intents = await query<{ status: string }>(paymentsDb(), "SELECT status FROM sim_payment_intents WHERE metadata LIKE $1", [`%${paymentId}%`]);
		expect(intents).toEqual([{ status: "succeeded" }]);
		expect(await outbox()).toHaveLength(1);
		expect((await deliveriesOf(requestId)).map(d => [d.channel, d.status])).toEqual([["email", "sent"]]);
		expect(byRequest(smtp.accepted, requestId)).toHaveLength(1);
	}, 120000);

	it("5. the same payment.succeeded event published five times over NATS: one receipt email, one SMS", async () => {
		await clusterUp();
		const phone = "+14155550142";
		const { user, email } = await registerAndLogin(url, { phone });
		const smsLog = path.join(dataDirN, "outbox", "sms.log");
		const smsOf = (requestId: string) =>
			(fs.existsSync(smsLog) ? fs.readFileSync(smsLog, "utf8").split("\n").filter(Boolean) : [])
				.map(l => JSON.parse(l) as { to: string; body: string; request_id: string })
				.filter(l => l.request_id === requestId);

		const nc = await connect({ servers: `127.0.0.1:${nats.port}` });
		try {
			const js = nc.jetstream();
			const jsm = await nc.jetstreamManager();
			const stream = streamName(namespace, CHANNELS.paymentEvents);
			const subject = `${namespace}.${CHANNELS.paymentEvents}`;
			const send = async (envelope: object, requestId: string, msgID: string) => {
				const h = natsHeaders();
				h.set("$requestID", requestId);
				await js.publish(subject, Buffer.from(JSON.stringify(envelope)), { msgID, headers: h });
			};
			const event = (id: string, receipt: string) => ({
				id,
				type: "payment.succeeded",
				occurred_at: new Date().toISOString(),
				data: { id: crypto.randomUUID(), user_id: user.id, amount: 4200, currency: "eur", status: "succeeded", amount_refunded: 0, receipt_number: receipt }
			});

			const requestId = rid("dup");
			const eventId = crypto.randomUUID();
			const envelope = event(eventId, "R-FAULT-5");
			const before = (await jsm.streams.info(stream)).state.messages;
			// Five copies of one event under five message ids: the stream keeps all five, so the consumer must drop four.
			for (let i = 0; i < 5; i++) await send(envelope, requestId, `${eventId}:${i}`);
			expect((await jsm.streams.info(stream)).state.messages - before).toBe(5);

			await waitFor(() => byRequest(smtp.accepted, requestId).length > 0, "the receipt email", 60000, diag);
			await waitFor(() => smsOf(requestId).length > 0, "the receipt SMS", 60000, diag);
			await waitFor(
				async () => {
					const rows = await deliveriesOf(requestId);
					return rows.length === 2 && rows.every(r => r.status === "sent");
				},
				"both deliveries marked sent",
				30000,
				diag
			);
			// A later event for the same user, through the same stream: once it is in, the copies have long had their turn.
			const laterId = rid("dup-later");
			await send(event(crypto.randomUUID(), "R-FAULT-5B"), laterId, crypto.randomUUID());
			await waitFor(() => byRequest(smtp.accepted, laterId).length > 0 && smsOf(laterId).length > 0, "the later receipt", 60000, diag);

			const mails = byRequest(smtp.accepted, requestId);
			expect(mails).toHaveLength(1);
			expect(mails[0].to).toEqual([email]);
			expect(mails[0].headers.subject).toContain("R-FAULT-5");
			expect(smsOf(requestId)).toEqual([expect.objectContaining({ to: phone, body: expect.stringContaining("R-FAULT-5") })]);
			expect((await deliveriesOf(requestId)).map(d => [d.channel, d.status, d.attempts])).toEqual([
				["email", "sent", 1],
				["sms", "sent", 1]
			]);
			expect(await query(notificationsDb(), "SELECT event_id FROM inbox WHERE event_id = $1", [eventId])).toHaveLength(1);
		} finally {
			await nc.close();
		}
	}, 120000);

	it("sent no message twice in the whole run (each Message-ID, a delivery's id, arrived once)", () => {
		const ids = smtp.accepted.map(m => m.headers["message-id"]);
		expect(ids.length).toBeGreaterThan(0);
		// Each copy named by its request and subject, so a failure says which flow sent twice.
		const twice = smtp.accepted.filter(m => ids.filter(id => id === m.headers["message-id"]).length > 1);
		expect(twice.map(m => `${m.headers["message-id"]} ${m.headers["x-request-id"]} ${m.headers.subject} ${m.headers.date}`)).toEqual([]);
	});
});
