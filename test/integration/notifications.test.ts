import crypto from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { CHANNELS, deleteStreams, ensureStreams, publish } from "../../lib/channels";
import { registerEventRule, unregisterEventRule } from "../../services/notifications/events";
import type { NotificationStore } from "../../services/notifications/store";
import { registerTemplate, unregisterTemplate } from "../../services/notifications/templates";
import { freePort } from "../helpers/node-process";
import { query } from "../helpers/pg";
import { http as call, registerAndLogin, serviceSchema, startSystem, uniqueEmail, type TestSystem } from "../helpers/system";
import { parseMail, startSmtp, type Smtp } from "../helpers/smtp";
import { waitFor } from "../helpers/wait";

// The notification service against real parts: PostgreSQL (and SQLite for the embedded default), a
// real SMTP server, a local HTTP server answering like Twilio's Messages API, and the real Twilio SDK.

interface TwilioRequest {
	method: string;
	path: string;
	authorization: string;
	form: Record<string, string>;
}

interface TwilioServer {
	url: string;
	requests: TwilioRequest[];
	close(): Promise<void>;
}

function startTwilio(): Promise<TwilioServer> {
	const requests: TwilioRequest[] = [];
	const server = http.createServer((req, res) => {
		const chunks: Buffer[] = [];
		req.on("data", (c: Buffer) => chunks.push(c));
		req.on("end", () => {
			const form = Object.fromEntries(new URLSearchParams(Buffer.concat(chunks).toString("utf8")));
			const url = new URL(req.url ?? "/", "http://localhost");
			requests.push({ method: req.method ?? "", path: url.pathname, authorization: req.headers.authorization ?? "", form });
			const m = /^\/2010-04-01\/Accounts\/(AC[0-9a-f]{32})\/Messages\.json$/.exec(url.pathname);
			res.setHeader("content-type", "application/json");
			if (req.method !== "POST" || !m) {
				res.statusCode = 404;
				res.end(JSON.stringify({ code: 20404, message: "The requested resource was not found", more_info: "https://www.twilio.com/docs/errors/20404", status: 404 }));
				return;
			}
			const sid = "SM" + crypto.randomBytes(16).toString("hex");
			const now = new Date().toUTCString();
			res.statusCode = 201;
			res.end(
				JSON.stringify({
					sid,
					account_sid: m[1],
					from: form.From,
					to: form.To,
					body: form.Body,
					status: "queued",
					direction: "outbound-api",
					num_segments: "1",
					date_created: now,
					date_updated: now,
					api_version: "2010-04-01",
					uri: `/2010-04-01/Accounts/${m[1]}/Messages/${sid}.json`
				})
			);
		});
	});
	return new Promise(resolve => {
		server.listen(0, "127.0.0.1", () => {
			const { port } = server.address() as AddressInfo;
			resolve({ url: `http://127.0.0.1:${port}`, requests, close: () => new Promise<void>(r => server.close(() => r())) });
		});
	});
}

// ---- Helpers ----

async function paymentEvent(sys: TestSystem, type: string, data: Record<string, unknown>, requestId: string, id: string = crypto.randomUUID()) {
	await publish(sys.broker, CHANNELS.paymentEvents, { id, type, occurred_at: new Date().toISOString(), data }, { msgID: id, headers: { $requestID: requestId } });
	return id;
}

interface DeliveryRecord {
	id: string;
	event_id: string;
	user_id: string | null;
	channel: string;
	template: string;
	to: string;
	status: string;
	attempts: number;
	request_id: string | null;
	last_error: string | null;
}

const deliveriesOf = (sys: TestSystem, eventId: string) =>
	query<DeliveryRecord>(sys.env.NOTIFICATIONS_DATABASE_URL, "SELECT * FROM deliveries WHERE event_id = $1 ORDER BY channel", [eventId]);

/** A template that always throws, and an event type that sends it (test-only entries of the registries). */
function addPoison() {
	registerTemplate("test_poison", {
		email: () => {
			throw new Error("the poison template always throws");
		}
	});
	registerEventRule("test.poison", {
		userId: d => d.user_id as string,
		plan: (_d, user) => (user ? [{ channel: "email", template: "test_poison", to: user.email, data: {} }] : [])
	});
}

function removePoison() {
	unregisterEventRule("test.poison");
	unregisterTemplate("test_poison");
}

const TWILIO_SID = "AC" + "0123456789abcdef".repeat(2);
const TWILIO_TOKEN = "twilio-secret-token";
const TWILIO_FROM = "+15005550006";
const NOTIFY_ENV = { NOTIFY_RETRY_BASE_MS: "20", NOTIFY_PUMP_MS: "50", NOTIFY_LEASE_MS: "5000" };

describe("notifications over SMTP and Twilio", () => {
	let sys: TestSystem;
	let smtp: Smtp;
	let twilio: TwilioServer;

	const mailsTo = (to: string) => smtp.mails.filter(m => m.envelope.to.includes(to));

	beforeAll(async () => {
		smtp = await startSmtp();
		twilio = await startTwilio();
		sys = await startSystem({
			services: ["api", "auth", "users", "notifications"],
			env: {
				...NOTIFY_ENV,
				NOTIFY_MAX_ATTEMPTS: "3",
				SMTP_URL: `smtp://mailer:mail-secret@127.0.0.1:${smtp.port}`,
				EMAIL_FROM: "Test Shop <no-reply@shop.test>",
				TWILIO_ACCOUNT_SID: TWILIO_SID,
				TWILIO_AUTH_TOKEN: TWILIO_TOKEN,
				TWILIO_FROM,
				TWILIO_API_URL: twilio.url
			}
		});
	});
	afterAll(async () => {
		await sys?.stop();
		await smtp?.close();
		await twilio?.close();
	});

	it("sends a welcome email on register, carrying the register request's id", async () => {
		const email = uniqueEmail("welcome");
		const res = await call(sys.url, "POST", "/api/v1/auth/register", {
			body: { email, password: "correct horse battery", name: "Ada Lovelace" },
			headers: { "x-request-id": "ntest:welcome.1" }
		});
		expect(res.status).toBe(201);
		// Registration also sends a verification email, which may arrive first: take the welcome one.
		const mail = await waitFor(() => mailsTo(email).find(m => !/confirm your email/i.test(m.headers.subject ?? "")), "the welcome email");
		expect(mail.headers["x-request-id"]).toBe("ntest:welcome.1");
		expect(mail.headers.from).toBe("Test Shop <no-reply@shop.test>");
		expect(mail.envelope.from).toBe("no-reply@shop.test");
		expect(mail.headers.subject).toContain("Ada Lovelace");
		expect(mail.text).toContain("Hi Ada Lovelace,");
		expect(mail.html).toContain("<p>Hi Ada Lovelace,</p>");

		const [row] = await query<DeliveryRecord>(sys.env.NOTIFICATIONS_DATABASE_URL, "SELECT * FROM deliveries WHERE user_id = $1 AND template = 'welcome'", [res.body.id]);
		expect(row).toMatchObject({ channel: "email", template: "welcome", to: email, request_id: "ntest:welcome.1" });
		// The Message-ID is the delivery's own: a resend of the same delivery keeps it.
		expect(mail.headers["message-id"]).toBe(`<${row.id}@shop.test>`);
		await waitFor(async () => (await deliveriesOf(sys, row.event_id))[0].status === "sent", "the delivery marked sent");
	});

	it("sends a receipt email and an SMS on payment.succeeded, with the amount formatted", async () => {
		const phone = "+14155550123";
		const { user, email } = await registerAndLogin(sys.url, { name: "Grace Hopper", phone });
		const paymentId = crypto.randomUUID();
		const eventId = await paymentEvent(
			sys,
			"payment.succeeded",
			// As the payments service writes it: the payment itself.
			{ id: paymentId, user_id: user.id, amount: 1999, currency: "usd", description: "Blue tea", status: "succeeded", amount_refunded: 0, receipt_number: "R-000123" },
			"ntest:charge.1"
		);

		const receipt = await waitFor(() => mailsTo(email).find(m => m.text.includes("$19.99")), "the receipt email");
		expect(receipt.headers["x-request-id"]).toBe("ntest:charge.1");
		expect(receipt.headers.subject).toBe("Your receipt R-000123: $19.99");
		expect(receipt.text).toContain("We received your payment of $19.99 for Blue tea.");
		expect(receipt.html).toContain("<strong>$19.99</strong>");
		expect(receipt.text).toContain(paymentId);

		// The real Twilio SDK called the Messages API with the account's basic auth.
		const sms = await waitFor(() => twilio.requests.find(r => r.form.To === phone), "the SMS");
		expect(sms.method).toBe("POST");
		expect(sms.path).toBe(`/2010-04-01/Accounts/${TWILIO_SID}/Messages.json`);
		expect(sms.authorization).toBe("Basic " + Buffer.from(`${TWILIO_SID}:${TWILIO_TOKEN}`).toString("base64"));
		expect(sms.form).toEqual({ From: TWILIO_FROM, To: phone, Body: "Moleculer Microservices: payment of $19.99 received, receipt R-000123." });

		const rows = await waitFor(async () => {
			const r = await deliveriesOf(sys, eventId);
			return r.length === 2 && r.every(d => d.status === "sent") ? r : null;
		}, "both deliveries sent");
		expect(rows.map(r => [r.channel, r.template, r.to, r.attempts, r.request_id])).toEqual([
			["email", "receipt", email, 1, "ntest:charge.1"],
			["sms", "receipt", phone, 1, "ntest:charge.1"]
		]);
	});

	it("sends one email and one SMS for an event delivered five times", async () => {
		const phone = "+14155550199";
		const { user, email } = await registerAndLogin(sys.url, { phone });
		const eventId = crypto.randomUUID();
		const data = { payment_id: crypto.randomUUID(), user_id: user.id, amount: 500, currency: "jpy", receipt_number: "R-000777" };
		for (let i = 0; i < 5; i++) await paymentEvent(sys, "payment.succeeded", data, "ntest:dup.1", eventId);
		await waitFor(async () => {
			const r = await deliveriesOf(sys, eventId);
			return r.length === 2 && r.every(d => d.status === "sent");
		}, "the deliveries sent");
		// Twice more once it is done, then a later event for the same user: once its email is in, the
		// duplicates have long had their chance to send.
		for (let i = 0; i < 2; i++) await paymentEvent(sys, "payment.succeeded", data, "ntest:dup.1", eventId);
		await paymentEvent(sys, "payment.failed", { payment_id: crypto.randomUUID(), user_id: user.id, amount: 100, currency: "usd", failure_reason: "card_declined" }, "ntest:dup.2");
		await waitFor(() => mailsTo(email).find(m => m.headers["x-request-id"] === "ntest:dup.2"), "the later email");

		const receipts = mailsTo(email).filter(m => m.text.includes("R-000777"));
		expect(receipts).toHaveLength(1);
		expect(receipts[0].text).toContain("¥500");
		expect(twilio.requests.filter(r => r.form.To === phone)).toHaveLength(1);
		const rows = await deliveriesOf(sys, eventId);
		expect(rows.map(r => [r.channel, r.status, r.attempts])).toEqual([["email", "sent", 1], ["sms", "sent", 1]]);
		const inbox = await query<{ attempts: number; processed_at: Date | null }>(sys.env.NOTIFICATIONS_DATABASE_URL, "SELECT attempts, processed_at FROM inbox WHERE event_id = $1", [eventId]);
		expect(inbox).toHaveLength(1);
		expect(inbox[0].processed_at).not.toBeNull();
	});

	it("escapes a user-controlled name in the HTML part", async () => {
		const name = `<script>alert("pwned")</script> & <b>Co</b>`;
		const { email } = await registerAndLogin(sys.url, { name });
		const mail = await waitFor(() => mailsTo(email).find(m => !/confirm your email/i.test(m.headers.subject ?? "")), "the welcome email");
		expect(mail.html).toContain("&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt; &amp; &lt;b&gt;Co&lt;/b&gt;");
		expect(mail.html).not.toContain("<script>");
		expect(mail.html).not.toContain("<b>Co</b>");
		// Plain text is plain: nothing to escape there.
		expect(mail.text).toContain(`Hi ${name},`);
	});

	it("parks a poison delivery as dead with a dead letter, without holding up others", async () => {
		addPoison();
		try {
			const { user, email } = await registerAndLogin(sys.url);
			const poisonId = await paymentEvent(sys, "test.poison", { user_id: user.id }, "ntest:poison.1");
			const goodId = await paymentEvent(sys, "payment.succeeded", { user_id: user.id, amount: 4200, currency: "eur", receipt_number: "R-000900" }, "ntest:poison.2");

			await waitFor(() => mailsTo(email).find(m => m.text.includes("€42.00")), "the receipt sent beside the poison");
			const [dead] = await waitFor(async () => {
				const r = await deliveriesOf(sys, poisonId);
				return r[0]?.status === "dead" ? r : null;
			}, "the poison delivery to die");
			expect(dead).toMatchObject({ template: "test_poison", attempts: 3, request_id: "ntest:poison.1" });
			expect(dead.last_error).toContain("the poison template always throws");

			const letters = await query<{ queue: string; message_id: string; error: string; request_id: string; payload: string }>(
				sys.env.NOTIFICATIONS_DATABASE_URL,
				"SELECT * FROM dead_letters WHERE message_id = $1",
				[dead.id]
			);
			expect(letters).toHaveLength(1);
			expect(letters[0]).toMatchObject({ queue: "notifications.deliveries", request_id: "ntest:poison.1" });
			expect(letters[0].error).toContain("the poison template always throws");
			expect(JSON.parse(letters[0].payload)).toMatchObject({ delivery_id: dead.id, event_id: poisonId, template: "test_poison" });
			expect((await deliveriesOf(sys, goodId))[0].status).toBe("sent");
			expect(mailsTo(email).some(m => m.headers["x-request-id"] === "ntest:poison.1")).toBe(false);

			const list = await call(sys.url, "GET", "/api/v1/notifications", { token: (await call(sys.url, "POST", "/api/v1/auth/login", { body: { email, password: "correct horse battery" } })).body.access_token });
			expect(list.body.items.find((i: { id: string }) => i.id === dead.id)).toMatchObject({ status: "dead", attempts: 3, sent_at: null });
		} finally {
			removePoison();
		}
	});

	it("sends deliveries whose message was lost or whose worker died mid-send", async () => {
		const url = sys.env.NOTIFICATIONS_DATABASE_URL;
		const lostTo = uniqueEmail("lost");
		const diedTo = uniqueEmail("died");
		const [lostId, diedId] = [crypto.randomUUID(), crypto.randomUUID()];
		const insert = `INSERT INTO deliveries (id, event_id, user_id, channel, template, "to", status, attempts, request_id, data, lease_until, created_at, updated_at)
			VALUES ($1, $2, NULL, 'email', 'welcome', $3, $4, $5, $6, $7, $8, now() - interval '1 hour', now() - interval '1 hour')`;
		// Queued an hour ago, its message never delivered.
		await query(url, insert, [lostId, crypto.randomUUID(), lostTo, "queued", 0, "ntest:lost", JSON.stringify({ name: "Lost", email: lostTo }), null]);
		// Claimed by a worker that died: its lease is over.
		await query(url, insert, [diedId, crypto.randomUUID(), diedTo, "sending", 1, "ntest:died", JSON.stringify({ name: "Died", email: diedTo }), new Date(Date.now() - 60000)]);

		const lost = await waitFor(() => mailsTo(lostTo)[0], "the lost delivery");
		const died = await waitFor(() => mailsTo(diedTo)[0], "the delivery of the dead worker");
		expect(lost.headers["x-request-id"]).toBe("ntest:lost");
		expect(died.headers["message-id"]).toBe(`<${diedId}@shop.test>`);
		await waitFor(async () => {
			const rows = await query<DeliveryRecord>(url, "SELECT id, status, attempts FROM deliveries WHERE id IN ($1, $2) ORDER BY attempts", [lostId, diedId]);
			return rows.every(r => r.status === "sent") ? rows : null;
		}, "both marked sent");
		const rows = await query<DeliveryRecord>(url, "SELECT id, attempts FROM deliveries WHERE id IN ($1, $2)", [lostId, diedId]);
		expect(Object.fromEntries(rows.map(r => [r.id, r.attempts]))).toEqual({ [lostId]: 1, [diedId]: 2 });
	});

	it("lets one processor of an event write its deliveries: another whose lease ran out on it writes none", async () => {
		const store = (sys.broker.getLocalService("notifications") as unknown as { store: NotificationStore }).store;
		const env = { id: `ntest-owner-${crypto.randomUUID()}`, type: "test.owner", occurred_at: new Date().toISOString(), data: {} };
		const row = (await store.receive(env, "ntest:owner"))!;
		const planned = [{ channel: "email" as const, template: "welcome", to: uniqueEmail("owner"), data: { name: "Owner" } }];
		// Two processors hold the same row: the first to mark it processed owns it.
		const [first, second] = await Promise.all([store.completeEvent(row, null, planned), store.completeEvent(row, null, planned)]);
		const written = [...first, ...second];
		expect(written).toHaveLength(1);
		const rows = await query<{ id: string }>(sys.env.NOTIFICATIONS_DATABASE_URL, "SELECT id FROM deliveries WHERE event_id = $1", [env.id]);
		expect(rows).toEqual([{ id: written[0].id }]);
		expect(written[0].request_id).toBe("ntest:owner");
	});

	it("claims a delivery once while its lease holds, and records it sent once, by the claim that holds it", async () => {
		const store = (sys.broker.getLocalService("notifications") as unknown as { store: NotificationStore }).store;
		const id = crypto.randomUUID();
		await query(
			sys.env.NOTIFICATIONS_DATABASE_URL,
			`INSERT INTO deliveries (id, event_id, user_id, channel, template, "to", status, attempts, request_id, data, created_at, updated_at)
			 VALUES ($1, $2, NULL, 'email', 'welcome', 'claim@example.com', 'queued', 0, 'ntest:claim', '{}', now(), now())`,
			[id, crypto.randomUUID()]
		);
		const claimed = await store.claim(id);
		expect(claimed).toMatchObject({ id, status: "sending", attempts: 1, request_id: "ntest:claim", to: "claim@example.com" });
		expect(await store.claim(id)).toBeNull();
		expect(await store.markSent(claimed!)).toBe(true);
		expect(await store.markSent(claimed!)).toBe(false);
		const [row] = await query<{ status: string; attempts: number }>(sys.env.NOTIFICATIONS_DATABASE_URL, "SELECT status, attempts FROM deliveries WHERE id = $1", [id]);
		expect(row).toEqual({ status: "sent", attempts: 1 });
	});

	it("GET /notifications lists the caller's own, with statuses, as a page", async () => {
		const a = await registerAndLogin(sys.url, { phone: "+14155550111" });
		const b = await registerAndLogin(sys.url);
		await paymentEvent(sys, "payment.succeeded", { user_id: a.user.id, amount: 1999, currency: "usd" }, "ntest:list.1");
		await waitFor(async () => {
			const r = await call(sys.url, "GET", "/api/v1/notifications", { token: a.token });
			return r.body.total === 4 && r.body.items.every((i: { status: string }) => i.status === "sent");
		}, "a's four notifications sent (welcome, email verification, receipt by email and SMS)");

		const res = await call(sys.url, "GET", "/api/v1/notifications", { token: a.token });
		expect(res.status).toBe(200);
		expect(res.body).toMatchObject({ total: 4, limit: 20, offset: 0 });
		for (const item of res.body.items) {
			expect(item).toEqual({
				id: expect.any(String),
				channel: expect.stringMatching(/^(email|sms)$/),
				template: expect.any(String),
				to: expect.any(String),
				status: "sent",
				attempts: 1,
				request_id: expect.any(String),
				created_at: expect.stringMatching(/^\d{4}-\d{2}-\d{2}T.*Z$/),
				sent_at: expect.stringMatching(/^\d{4}-\d{2}-\d{2}T.*Z$/)
			});
			expect([a.email, "+14155550111"]).toContain(item.to);
		}
		expect(res.body.items.map((i: { template: string; channel: string }) => `${i.channel}:${i.template}`).sort()).toEqual(["email:email_verification", "email:receipt", "email:welcome", "sms:receipt"]);

		const mine = await call(sys.url, "GET", "/api/v1/notifications", { token: b.token });
		expect(mine.body.items.every((i: { to: string }) => i.to === b.email)).toBe(true);
		expect(mine.body.items.map((i: { id: string }) => i.id)).not.toEqual(expect.arrayContaining([res.body.items[0].id]));

		const page = await call(sys.url, "GET", "/api/v1/notifications?limit=1&offset=1", { token: a.token });
		expect(page.body).toMatchObject({ total: 4, limit: 1, offset: 1 });
		expect(page.body.items).toHaveLength(1);
		expect(page.body.items[0].id).toBe(res.body.items[1].id);

		expect((await call(sys.url, "GET", "/api/v1/notifications")).status).toBe(401);
		expect((await call(sys.url, "GET", "/api/v1/notifications?limit=0", { token: a.token })).status).toBe(422);
		expect((await call(sys.url, "GET", "/api/v1/notifications?user_id=" + b.user.id, { token: a.token })).status).toBe(422);
	});
});

describe("notifications when SMTP or the users service is down", () => {
	let sys: TestSystem;
	let smtpPort: number;
	let smtp: Smtp | undefined;

	beforeAll(async () => {
		smtpPort = await freePort();
		sys = await startSystem({
			services: ["users", "notifications"],
			env: { ...NOTIFY_ENV, NOTIFY_MAX_ATTEMPTS: "50", SMTP_URL: `smtp://mailer:mail-secret@127.0.0.1:${smtpPort}` }
		});
	});
	afterAll(async () => {
		await sys?.stop();
		await smtp?.close();
	});

	it("retries while the SMTP server is down and sends once it is up", async () => {
		const email = uniqueEmail("down");
		const user = await sys.broker.call<{ id: string }, object>("users.create", { email, name: "Patient" }, { requestID: "ntest:down.1" });
		const [failed] = await waitFor(async () => {
			const r = await query<DeliveryRecord>(sys.env.NOTIFICATIONS_DATABASE_URL, "SELECT * FROM deliveries WHERE user_id = $1", [user.id]);
			return r[0]?.status === "failed" ? r : null;
		}, "the delivery to fail");
		expect(failed.last_error).toMatch(/ECONNREFUSED|connect/i);

		smtp = await startSmtp(smtpPort);
		const mail = await waitFor(() => smtp!.mails.find(m => m.envelope.to.includes(email)), "the email once SMTP is up");
		expect(mail.headers["x-request-id"]).toBe("ntest:down.1");
		const [row] = await waitFor(async () => {
			const r = await query<DeliveryRecord>(sys.env.NOTIFICATIONS_DATABASE_URL, "SELECT * FROM deliveries WHERE user_id = $1", [user.id]);
			return r[0]?.status === "sent" ? r : null;
		}, "the delivery marked sent");
		expect(row.attempts).toBeGreaterThanOrEqual(2);
		expect(smtp.mails.filter(m => m.envelope.to.includes(email))).toHaveLength(1);
	});

	it("keeps an event while the users service is away and processes it when it is back", async () => {
		smtp ??= await startSmtp(smtpPort);
		const email = uniqueEmail("away");
		const user = await sys.broker.call<{ id: string }, object>("users.create", { email, name: "Away" });
		await waitFor(() => smtp?.mails.find(m => m.envelope.to.includes(email)), "the welcome email");

		await sys.broker.destroyService(sys.broker.getLocalService("users")!);
		const eventId = await paymentEvent(sys, "payment.succeeded", { user_id: user.id, amount: 250, currency: "usd" }, "ntest:away.1");
		const [waiting] = await waitFor(async () => {
			const r = await query<{ processed_at: Date | null; attempts: number; last_error: string | null }>(sys.env.NOTIFICATIONS_DATABASE_URL, "SELECT * FROM inbox WHERE event_id = $1", [eventId]);
			return r[0]?.last_error && r[0].attempts >= 2 ? r : null;
		}, "the event to wait for users");
		expect(waiting.processed_at).toBeNull();
		expect(waiting.last_error).toContain("users.get");

		// The users service comes back (on its own database, as before).
		const saved = process.env.USERS_DATABASE_URL;
		process.env.USERS_DATABASE_URL = sys.env.USERS_DATABASE_URL;
		try {
			sys.broker.createService(serviceSchema("users"));
			await sys.broker.waitForServices(["users"], 10000);
		} finally {
			if (saved === undefined) delete process.env.USERS_DATABASE_URL;
			else process.env.USERS_DATABASE_URL = saved;
		}
		const mail = await waitFor(() => smtp!.mails.find(m => m.envelope.to.includes(email) && m.text.includes("$2.50")), "the receipt");
		expect(mail.headers["x-request-id"]).toBe("ntest:away.1");
	});
});

describe("notifications on the embedded default", () => {
	let sys: TestSystem;

	beforeAll(async () => {
		// No database URLs, no SMTP_URL, no TWILIO_*: SQLite, .eml files and sms.log under DATA_DIR/outbox.
		sys = await startSystem({ services: ["users", "notifications"], sqlite: true, env: NOTIFY_ENV });
	});
	type Row = { get(k: string): unknown };
	type Rows = { findAll(o: object): Promise<Row[]>; findByPk(id: string): Promise<Row | null>; create(values: object): Promise<Row> };
	const models = () => (sys.broker.getLocalService("notifications") as unknown as { models: { Delivery: Rows; DeadLetter: Rows } }).models;
	afterAll(async () => {
		await sys?.stop();
	});

	it("writes each email as an .eml file and each SMS as a line of sms.log", async () => {
		const outbox = path.join(sys.dataDir, "outbox");
		const email = uniqueEmail("embedded");
		const phone = "+447700900123";
		const user = await sys.broker.call<{ id: string }, object>("users.create", { email, name: "Local", phone }, { requestID: "ntest:local.1" });
		await paymentEvent(sys, "payment.refunded", { user_id: user.id, amount: 1999, amount_refunded: 500, currency: "usd", receipt_number: "R-000321" }, "ntest:local.2");

		const emls = await waitFor(() => {
			const files = fs.existsSync(outbox) ? fs.readdirSync(outbox).filter(f => f.endsWith(".eml")) : [];
			return files.length === 2 ? files : null;
		}, "two .eml files");
		const mails = emls.map(f => parseMail(fs.readFileSync(path.join(outbox, f), "utf8"), { from: "", to: [] }));
		const welcome = mails.find(m => m.headers["x-request-id"] === "ntest:local.1");
		const refund = mails.find(m => m.headers["x-request-id"] === "ntest:local.2");
		expect(welcome?.headers.to).toBe(email);
		expect(welcome?.text).toContain("Hi Local,");
		expect(refund?.headers.subject).toBe("Refund on your payment of $19.99");
		expect(refund?.text).toContain("Refunded in total: $5.00.");
		expect(refund?.headers["message-id"]).toMatch(/^<[0-9a-f-]{36}@localhost>$/);
		expect(emls.map(f => f.replace(/\.eml$/, "")).sort()).toEqual(mails.map(m => m.headers["message-id"].replace(/^<|@localhost>$/g, "")).sort());

		const lines = await waitFor(() => {
			const file = path.join(outbox, "sms.log");
			return fs.existsSync(file) ? fs.readFileSync(file, "utf8").trim().split("\n").map(l => JSON.parse(l)) : null;
		}, "sms.log");
		expect(lines).toEqual([
			{ at: expect.any(String), id: expect.any(String), to: phone, body: "Moleculer Microservices: refund on your payment of $19.99; $5.00 refunded in total.", request_id: "ntest:local.2" }
		]);

		await waitFor(async () => (await models().Delivery.findAll({})).every(d => d.get("status") === "sent"), "every delivery marked sent");
	});

	it("retries a poison delivery with backoff until it is dead, on SQLite too", async () => {
		addPoison();
		try {
			const user = await sys.broker.call<{ id: string; email: string }, object>("users.create", { email: uniqueEmail("poison"), name: "Poisoned" });
			const eventId = await paymentEvent(sys, "test.poison", { user_id: user.id }, "ntest:local.poison");
			const dead = await waitFor(async () => {
				const [d] = await models().Delivery.findAll({ where: { event_id: eventId } });
				return d?.get("status") === "dead" ? d : null;
			}, "the poison delivery to die");
			expect(dead.get("attempts")).toBe(5); // NOTIFY_MAX_ATTEMPTS' default
			const letters = await models().DeadLetter.findAll({ where: { message_id: dead.get("id") } });
			expect(letters.map(l => [l.get("queue"), l.get("request_id")])).toEqual([["notifications.deliveries", "ntest:local.poison"]]);
		} finally {
			removePoison();
		}
	});

	it("claims a delivery once and records it sent once, on SQLite too", async () => {
		const store = (sys.broker.getLocalService("notifications") as unknown as { store: NotificationStore }).store;
		const id = crypto.randomUUID();
		await models().Delivery.create({ id, event_id: crypto.randomUUID(), user_id: null, channel: "email", template: "welcome", to: "claim@example.com", status: "queued", attempts: 0, request_id: "ntest:claim", data: "{}" });
		const claimed = await store.claim(id);
		expect(claimed).toMatchObject({ id, status: "sending", attempts: 1, request_id: "ntest:claim" });
		expect(await store.claim(id)).toBeNull();
		expect(await store.markSent(claimed!)).toBe(true);
		expect(await store.markSent(claimed!)).toBe(false);
		expect((await models().Delivery.findByPk(id))?.get("status")).toBe("sent");
	});
});

describe("notifications over NATS JetStream", () => {
	const NATS = process.env.TEST_NATS_URL ?? "nats://127.0.0.1:4222";
	const namespace = `tn${crypto.randomBytes(4).toString("hex")}`;
	let sys: TestSystem;

	beforeAll(async () => {
		await ensureStreams(NATS, namespace);
		sys = await startSystem({ services: ["users", "notifications"], env: { ...NOTIFY_ENV, TRANSPORTER: NATS, NAMESPACE: namespace } });
	});
	afterAll(async () => {
		await sys?.stop();
		await deleteStreams(NATS, namespace);
	});

	it("carries the request id through the streams and sends an event published five times once", async () => {
		const outbox = path.join(sys.dataDir, "outbox");
		const email = uniqueEmail("nats");
		const user = await sys.broker.call<{ id: string }, object>("users.create", { email, name: "Streamed" }, { requestID: "ntest:nats.1" });
		const eventId = crypto.randomUUID();
		// Five copies under different message ids, so the stream keeps them all: the inbox must drop four.
		for (let i = 0; i < 5; i++) {
			await publish(
				sys.broker,
				CHANNELS.paymentEvents,
				{ id: eventId, type: "payment.succeeded", occurred_at: new Date().toISOString(), data: { user_id: user.id, amount: 1999, currency: "usd" } },
				{ msgID: `${eventId}:${i}`, headers: { $requestID: "ntest:nats.2" } }
			);
		}
		const mails = await waitFor(() => {
			const files = fs.existsSync(outbox) ? fs.readdirSync(outbox).filter(f => f.endsWith(".eml")) : [];
			return files.length >= 2 ? files.map(f => parseMail(fs.readFileSync(path.join(outbox, f), "utf8"), { from: "", to: [] })) : null;
		}, "the emails");
		await waitFor(async () => {
			const r = await deliveriesOf(sys, eventId);
			return r.length === 1 && r[0].status === "sent";
		}, "the receipt marked sent");
		expect(mails.map(m => m.headers["x-request-id"]).sort()).toEqual(["ntest:nats.1", "ntest:nats.2"]);
		expect(mails.find(m => m.headers["x-request-id"] === "ntest:nats.2")?.text).toContain("$19.99");
		const inbox = await query(sys.env.NOTIFICATIONS_DATABASE_URL, "SELECT event_id FROM inbox WHERE event_id = $1", [eventId]);
		expect(inbox).toHaveLength(1);
		expect((sys.broker as unknown as { channelAdapter: object }).channelAdapter.constructor.name).toBe("NatsAdapter");
	});

	it("files what lands on the dead-letter channel, naming the queue it came from", async () => {
		const eventId = crypto.randomUUID();
		const envelope = { id: eventId, type: "payment.succeeded", occurred_at: new Date().toISOString(), data: { user_id: crypto.randomUUID() } };
		// What the JetStream adapter publishes after a consumer failed MAX_RETRIES times: the message, with headers naming its origin.
		await publish(sys.broker, CHANNELS.deadLetter, envelope, {
			msgID: `dlq:${eventId}`,
			headers: { "x-original-channel": `${namespace}.${CHANNELS.paymentEvents}`, "x-original-group": "notifications" }
		});
		const [letter] = await waitFor(async () => {
			const r = await query<{ queue: string; payload: string; error: string }>(sys.env.NOTIFICATIONS_DATABASE_URL, "SELECT * FROM dead_letters WHERE message_id = $1", [eventId]);
			return r.length ? r : null;
		}, "the dead letter");
		expect(letter.queue).toBe(CHANNELS.paymentEvents);
		expect(JSON.parse(letter.payload)).toEqual(envelope);
		expect(letter.error).toContain("group notifications");
	});
});
