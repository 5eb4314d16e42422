import { spawn, type ChildProcess } from "node:child_process";
import crypto from "node:crypto";
import Redis from "ioredis";
import { connect, type StoredMsg } from "nats";
import { Client } from "pg";
import { CHANNELS, streamName } from "../../lib/channels";
import { startCluster, type Cluster, type ClusterNode } from "../helpers/cluster";
import { freePort } from "../helpers/node-process";
import { query } from "../helpers/pg";
import type { Mail } from "../helpers/smtp";
import { http, registerAndLogin, uniqueEmail, type HttpResult } from "../helpers/system";
import { waitFor } from "../helpers/wait";

// The cluster issue's journeys, against the whole system as separate OS processes (test/helpers/cluster.ts):
// two gateways, auth, users, payments, two notification workers, jobs and admin over the shared NATS,
// each service on its own PostgreSQL database, rate limits in Redis, emails to a real SMTP server.

const sleep = (ms: number) => new Promise(r => setTimeout(r, ms));
const hex = () => crypto.randomBytes(4).toString("hex");
const PASSWORD = "correct horse battery";

let cluster: Cluster;

beforeAll(async () => {
	cluster = await startCluster();
}, 180000);

afterAll(async () => {
	await cluster?.stop();
}, 120000);

const gatewayA = () => cluster.gateways[0];
const gatewayB = () => cluster.gateways[1];
const paymentsDb = () => cluster.dbs.env.PAYMENTS_DATABASE_URL;
const notificationsDb = () => cluster.dbs.env.NOTIFICATIONS_DATABASE_URL;

function charge(base: string, token: string, key: string, headers: Record<string, string> = {}, amount = 2500): Promise<HttpResult> {
	return http(base, "POST", "/api/v1/payments/charge", {
		token,
		body: { amount, currency: "usd", payment_method: "pm_card_visa", description: "Cluster tea" },
		headers: { "Idempotency-Key": key, ...headers }
	});
}

async function login(base: string, email: string, password: string): Promise<string> {
	const r = await http(base, "POST", "/api/v1/auth/login", { body: { email, password } });
	if (r.status !== 200) throw new Error(`login of ${email} failed: ${r.status} ${r.text}`);
	return r.body.access_token as string;
}

let adminToken = "";
async function admin(): Promise<string> {
	if (!adminToken) adminToken = await login(gatewayB(), cluster.admin.email, cluster.admin.password);
	return adminToken;
}

const mailsTo = (email: string): Mail[] => cluster.smtp.mails.filter(m => m.envelope.to.includes(email));

/** How many calls of `action` this node's metrics counted (a gateway counts its outgoing calls, a service node its handler runs). */
const calls = (node: ClusterNode, action: string) => node.metric("moleculer_request_total", { action });

/** Every message a stream holds (the streams keep what was consumed: limits retention). */
async function streamMessages(channel: string): Promise<StoredMsg[]> {
	const nc = await connect({ servers: new URL(cluster.natsUrl).host });
	try {
		const jsm = await nc.jetstreamManager();
		const name = streamName(cluster.namespace, channel);
		const { state } = await jsm.streams.info(name);
		const out: StoredMsg[] = [];
		for (let seq = state.first_seq; seq <= state.last_seq && state.messages > 0; seq++) {
			out.push(await jsm.streams.getMessage(name, { seq }));
		}
		return out;
	} finally {
		await nc.close();
	}
}

describe("the journey through both gateways", () => {
	it("registers on A, logs in on B, charges, mails the receipt; an admin's suspension kills the cached token on both gateways", async () => {
		const [a, b] = [gatewayA(), gatewayB()];
		const email = uniqueEmail("journey");
		const reg = await http(a, "POST", "/api/v1/auth/register", { body: { email, password: PASSWORD, name: "Journey User" } });
		expect(reg.status).toBe(201);
		const user = reg.body;
		const loggedIn = await http(b, "POST", "/api/v1/auth/login", { body: { email, password: PASSWORD } });
		expect(loggedIn.status).toBe(200);
		const token = loggedIn.body.access_token as string;

		// Each gateway verifies the token once (auth.verify over NATS) and then serves it from its cache.
		for (const name of ["gateway-a", "gateway-b"]) {
			const gw = cluster.node(name);
			const before = await calls(gw, "auth.verify");
			const me = await http(gw.url!, "GET", "/api/v1/users/me", { token });
			expect(me.status).toBe(200);
			expect(me.body).toMatchObject({ id: user.id, email, status: "active" });
			expect(await calls(gw, "auth.verify")).toBe(before + 1);
			expect((await http(gw.url!, "GET", "/api/v1/users/me", { token })).status).toBe(200);
			expect(await calls(gw, "auth.verify")).toBe(before + 1);
		}

		const paid = await charge(a, token, crypto.randomUUID());
		expect(paid.status).toBe(201);
		expect(paid.body).toMatchObject({ user_id: user.id, amount: 2500, currency: "usd", status: "succeeded", receipt_number: expect.stringMatching(/^R-\d{4}-\d{6}$/) });
		const receipt = await waitFor(() => mailsTo(email).find(m => m.headers.subject?.includes(paid.body.receipt_number)), "the receipt email", 60000);
		expect(receipt.headers.subject).toContain("$25.00");
		expect(receipt.text).toContain(paid.body.receipt_number);

		const suspended = await http(a, "POST", `/api/v1/admin/users/${user.id}/suspend`, { token: await admin(), body: { reason: "cluster journey" } });
		expect(suspended.status).toBe(200);
		expect(suspended.body).toMatchObject({ id: user.id, status: "suspended" });

		// Right after the answer: the token is refused on both gateways (a short wait only for the broadcast to land).
		const refused = await waitFor(
			async () => {
				const r = await Promise.all([a, b].map(g => http(g, "GET", "/api/v1/users/me", { token })));
				return r.every(x => x.status === 401) ? r : undefined;
			},
			"the token to be refused on both gateways",
			5000
		);
		for (const r of refused) {
			expect(r.headers.get("content-type")).toMatch(/^application\/problem\+json/);
			expect(r.body).toMatchObject({ status: 401, instance: "/api/v1/users/me" });
		}
		// And it stays dead: on both gateways, and no new login.
		for (const g of [a, b]) expect((await http(g, "GET", "/api/v1/users/me", { token })).status).toBe(401);
		expect((await http(b, "POST", "/api/v1/auth/login", { body: { email, password: PASSWORD } })).status).toBe(403);
	}, 120000);

	it("follows one request id from the charge through the gateway, payments and notification processes, the channel messages and the email; the admin's through the audit trail", async () => {
		const { user, email, token } = await registerAndLogin(gatewayA());
		const rid = `journey-charge.${hex()}`;
		const paid = await charge(gatewayB(), token, crypto.randomUUID(), { "X-Request-ID": rid });
		expect(paid.status).toBe(201);
		expect(paid.headers.get("x-request-id")).toBe(rid);
		const paymentId = paid.body.id as string;

		// The email: sent by a worker, carrying the request id; its Message-ID is the delivery id.
		const mail = await waitFor(() => cluster.smtp.mails.find(m => m.headers["x-request-id"] === rid), "the receipt email with the request id", 60000);
		expect(mail.envelope.to).toEqual([email]);
		expect(mail.headers.subject).toContain(paid.body.receipt_number);
		const deliveryId = /^<([0-9a-f-]{36})@/.exec(mail.headers["message-id"])?.[1];
		expect(deliveryId).toBeDefined();

		// The log lines, each from its own process: the gateway's access line, the payment's, the notification
		// node's that turned the event into the delivery, and the worker's that sent it (either notification node).
		const find = (node: RegExp, msg: RegExp) => cluster.logsWith(rid).find(l => node.test(l.node) && msg.test(l.log.msg));
		const [gatewayLine, paymentsLine, eventLine, sentLine] = await waitFor(
			() => {
				const found = [
					find(/^gateway-b$/, /^POST \/api\/v1\/payments\/charge -> 201$/),
					find(/^payments$/, new RegExp(`^Charge of payment ${paymentId} finished: 201$`)),
					find(/^notifications-\d$/, /^Event \S+ \(payment\.succeeded\) processed/),
					find(/^notifications-\d$/, new RegExp(`^Sent delivery ${deliveryId} \\(email receipt\\)$`))
				];
				return found.every(Boolean) ? found.map(f => f!) : undefined;
			},
			"the request id on the gateway's, payments', notification's and worker's log lines",
			30000
		);
		expect(gatewayLine.log).toMatchObject({ level: "info", service: "api", request_id: rid });
		expect(paymentsLine.log).toMatchObject({ level: "info", service: "payments", request_id: rid });
		expect(eventLine.log).toMatchObject({ level: "info", service: "notifications", request_id: rid });
		expect(sentLine.log).toMatchObject({ level: "info", service: "notifications", request_id: rid });
		// Separate processes: each line names the node id of the process that wrote it.
		for (const l of [gatewayLine, paymentsLine, eventLine, sentLine]) expect(l.log.node).toBe(cluster.node(l.node).logs()[0].node);
		expect(new Set([gatewayLine.log.node, paymentsLine.log.node, eventLine.log.node]).size).toBe(3);

		// The channel messages, as JetStream stores them: the payment event and the delivery task, each with $requestID.
		const events = (await streamMessages(CHANNELS.paymentEvents)).filter(m => m.header?.get("$requestID") === rid);
		expect(events.map(m => m.json<{ type: string; data: { id: string } }>())).toEqual([expect.objectContaining({ type: "payment.succeeded", data: expect.objectContaining({ id: paymentId }) })]);
		const tasks = (await streamMessages(CHANNELS.deliveries)).filter(m => m.header?.get("$requestID") === rid);
		expect(tasks.map(m => m.json())).toEqual([{ delivery_id: deliveryId }]);
		// And the rows made from them.
		const outbox = await query(paymentsDb(), "SELECT type, request_id FROM outbox WHERE payload LIKE $1", [`%${paymentId}%`]);
		expect(outbox).toEqual([{ type: "payment.succeeded", request_id: rid }]);
		const deliveries = await query(notificationsDb(), "SELECT id, template, status, request_id FROM deliveries WHERE user_id = $1 AND template = 'receipt'", [user.id]);
		expect(deliveries).toEqual([{ id: deliveryId, template: "receipt", status: "sent", request_id: rid }]);

		// A charge is no admin write and is not audited; the admin's suspension is, under its own request id.
		const adminRid = `journey-suspend.${hex()}`;
		const suspended = await http(gatewayA(), "POST", `/api/v1/admin/users/${user.id}/suspend`, { token: await admin(), body: { reason: "request id journey" }, headers: { "X-Request-ID": adminRid } });
		expect(suspended.status).toBe(200);
		const audit = await http(gatewayB(), "GET", `/api/v1/admin/audit?action=user.suspend&target_id=${user.id}`, { token: await admin() });
		expect(audit.status).toBe(200);
		expect(audit.body.items).toEqual([expect.objectContaining({ action: "user.suspend", target_type: "user", target_id: user.id, request_id: adminRid, ip: expect.any(String) })]);
		expect(cluster.logsWith(adminRid).some(l => l.node === "gateway-a")).toBe(true);
	}, 120000);
});

describe("rate limits across the two gateways (shared Redis)", () => {
	it("counts a client's requests to both gateways together: the seventh of six allowed is 429 whichever gateway gets it", async () => {
		// Two gateways of this cluster with a small limit; the client is told apart by X-Forwarded-For from a trusted proxy.
		const env = { RATE_LIMIT_MAX: "6", RATE_LIMIT_WINDOW_MS: "600000", TRUSTED_PROXIES: "127.0.0.1" };
		const limited = [await cluster.startNode({ name: "limited-a", services: ["api"], env }), await cluster.startNode({ name: "limited-b", services: ["api"], env })];
		try {
			const client = `198.51.100.${1 + crypto.randomInt(250)}`;
			const get = (i: number, ip = client) => http(limited[i % 2].url!, "GET", "/.well-known/jwks.json", { headers: { "X-Forwarded-For": ip } });
			for (let i = 0; i < 6; i++) {
				const r = await get(i);
				expect([i, r.status, r.headers.get("ratelimit-limit"), r.headers.get("ratelimit-remaining")]).toEqual([i, 200, "6", String(5 - i)]);
			}
			for (let i = 6; i < 8; i++) {
				const r = await get(i);
				expect([i, r.status]).toEqual([i, 429]);
				expect(r.headers.get("content-type")).toMatch(/^application\/problem\+json/);
				expect(Number(r.headers.get("retry-after"))).toBeGreaterThan(0);
				expect(r.headers.get("ratelimit-limit")).toBe("6");
				expect(r.headers.get("ratelimit-remaining")).toBe("0");
				expect(Number(r.headers.get("ratelimit-reset"))).toBeGreaterThan(0);
				expect(r.body).toMatchObject({ type: "about:blank", title: "Too Many Requests", status: 429, request_id: r.headers.get("x-request-id") });
			}
			// Per client: another address is still served by both.
			for (let i = 0; i < 2; i++) expect((await get(i, `198.51.100.${251 + i}`)).status).toBe(200);
		} finally {
			await Promise.all(limited.map(n => n.stop()));
		}
	}, 120000);
});

// ---- A private Redis the test may kill ----

interface RedisServer {
	url: string;
	start(): Promise<void>;
	kill(): Promise<void>;
}

function redisServer(port: number): RedisServer {
	let proc: ChildProcess | undefined;
	const url = `redis://127.0.0.1:${port}`;
	return {
		url,
		async start() {
			proc = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], { stdio: "ignore" });
			await waitFor(
				async () => {
					const c = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
					c.on("error", () => undefined);
					try {
						await c.connect();
						return (await c.ping()) === "PONG";
					} finally {
						c.disconnect();
					}
				},
				"redis-server to answer",
				20000
			);
		},
		async kill() {
			if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
			const exited = new Promise(r => proc!.once("exit", r));
			proc.kill("SIGKILL");
			await exited;
		}
	};
}

describe("Redis down under two gateways", () => {
	it("keeps serving; limits fall back to each gateway's own count while Redis is gone, and are shared again once it is back", async () => {
		const redis = redisServer(await freePort());
		await redis.start();
		const env = { REDIS_URL: redis.url, RATE_LIMIT_MAX: "4", RATE_LIMIT_WINDOW_MS: "600000", TRUSTED_PROXIES: "127.0.0.1" };
		const gws: ClusterNode[] = [];
		const store = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 0 });
		store.on("error", () => undefined);
		try {
			gws.push(await cluster.startNode({ name: "redis-a", services: ["api"], env }), await cluster.startNode({ name: "redis-b", services: ["api"], env }));
			const { token } = await registerAndLogin(gatewayA());
			let n = 0;
			const ip = () => `203.0.113.${(n++ % 250) + 1}`;
			const get = (gw: ClusterNode, client: string, path = "/.well-known/jwks.json", auth?: string) =>
				http(gw.url!, "GET", path, { token: auth, headers: { "X-Forwarded-For": client } });
			/** Sends requests of one client alternately to both gateways until one is refused; the statuses. */
			const alternate = async (client: string, max: number) => {
				const seen: number[] = [];
				for (let i = 0; i < max; i++) {
					const s = (await get(gws[i % 2], client)).status;
					seen.push(s);
					if (s === 429) break;
				}
				return seen;
			};

			// Redis up: one count for both gateways, kept in this Redis.
			const shared = ip();
			expect(await alternate(shared, 10)).toEqual([200, 200, 200, 200, 429]);
			await store.connect();
			expect(await store.get(`rl:${cluster.namespace}:${shared}`)).toBe("5");
			store.disconnect();

			await redis.kill();

			// The API keeps serving through both gateways.
			for (const gw of gws) {
				const me = await get(gw, ip(), "/api/v1/users/me", token);
				expect(me.status).toBe(200);
				expect((await get(gw, ip())).status).toBe(200);
			}
			// Limits degrade to each gateway's own in-memory count (README: rate-limiter-flexible's insurance limiter):
			// the same client gets four on each gateway, eight in all.
			const degraded = ip();
			for (const gw of gws) {
				const seen: number[] = [];
				for (let i = 0; i < 5; i++) seen.push((await get(gw, degraded)).status);
				expect(seen).toEqual([200, 200, 200, 200, 429]);
			}

			// Redis back (empty): once both gateways have reconnected, counts are shared again.
			await redis.start();
			await store.connect();
			for (const gw of gws) {
				await waitFor(
					async () => {
						const probe = ip();
						if ((await get(gw, probe)).status !== 200) return false;
						return (await store.get(`rl:${cluster.namespace}:${probe}`)) === "1";
					},
					`${gw.name} to count in Redis again`,
					30000
				);
			}
			expect(await alternate(ip(), 10)).toEqual([200, 200, 200, 200, 429]);
		} finally {
			store.disconnect();
			await Promise.all(gws.map(g => g.stop()));
			await redis.kill();
		}
	}, 150000);
});

describe("a charge that times out", () => {
	it("is not re-run by the gateway or the broker (503 to the client), and the client's retries with the same Idempotency-Key charge once", async () => {
		const { user, email, token } = await registerAndLogin(gatewayA());
		const payments = cluster.node("payments");
		const gateway = cluster.node("gateway-a");
		const handledBefore = await calls(payments, "payments.charge");
		const sentBefore = await calls(gateway, "payments.charge");
		const key = crypto.randomUUID();
		let requests = 0;
		const send = (rid: string) => {
			requests++;
			return charge(gateway.url!, token, key, { "X-Request-ID": rid }, 4200);
		};
		/** Statements of the simulated provider (a PaymentIntent being created) waiting on a lock. */
		const stuck = async () =>
			Number(
				(
					await query<{ n: string }>(
						paymentsDb(),
						"SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%INSERT INTO sim_payment_intents%'"
					)
				)[0].n
			);

		// The provider hangs: its table (the simulated Stripe keeps its PaymentIntents in the payments database) is locked.
		const lock = new Client({ connectionString: paymentsDb() });
		await lock.connect();
		let locked = false;
		try {
			await lock.query("BEGIN");
			await lock.query("LOCK TABLE sim_payment_intents IN ACCESS EXCLUSIVE MODE");
			locked = true;

			const first = await send(`journey-timeout.${hex()}`);
			// The gateway gives up after the action's timeout: 503 with Retry-After, as API.md says.
			expect(first.status).toBe(503);
			expect(first.headers.get("content-type")).toMatch(/^application\/problem\+json/);
			expect(Number(first.headers.get("retry-after"))).toBeGreaterThan(0);
			expect(first.body).toMatchObject({ status: 503, request_id: first.headers.get("x-request-id") });
			// Any retry by the gateway or the broker would have happened before this answer: there was none.
			expect(await calls(gateway, "payments.charge")).toBe(sentBefore + 1);
			expect(await calls(payments, "payments.charge")).toBe(handledBefore + 1);
			// The one handler run still waits on the provider; the payment is recorded as processing, nothing charged yet.
			expect(await stuck()).toBe(1);
			expect(await query(paymentsDb(), "SELECT status FROM payments WHERE user_id = $1", [user.id])).toEqual([{ status: "processing" }]);
			expect((await lock.query("SELECT count(*)::int AS n FROM sim_payment_intents WHERE metadata LIKE $1", [`%${user.id}%`])).rows).toEqual([{ n: 0 }]);

			// The client does what the answer says: waits Retry-After, retries with the same key, while the provider still hangs.
			await sleep(Number(first.headers.get("retry-after")) * 1000);
			// The key is still locked (IDEMPOTENCY_LOCK_MS is longer than the charge timeout): refused at once, nothing resumed.
			const second = await send(`journey-timeout-retry.${hex()}`);
			expect(second.status).toBe(409);
			expect(second.headers.get("content-type")).toMatch(/^application\/problem\+json/);
			expect(await stuck()).toBe(1);
			await lock.query("ROLLBACK");
			locked = false;
		} finally {
			if (locked) await lock.query("ROLLBACK").catch(() => undefined);
			await lock.end();
		}

		// The first handler run finishes once the provider answers: one payment, succeeded.
		const [payment] = await waitFor(
			async () => {
				const rows = await query<{ id: string; status: string }>(paymentsDb(), "SELECT id, status FROM payments WHERE user_id = $1", [user.id]);
				return rows.length === 1 && rows[0].status === "succeeded" ? rows : undefined;
			},
			"the payment to succeed",
			60000
		);
		// The client's next retry with the same key replays that answer.
		const replay = await send(`journey-timeout-replay.${hex()}`);
		expect(replay.status).toBe(201);
		expect(replay.headers.get("idempotent-replayed")).toBe("true");
		expect(replay.body).toMatchObject({ id: payment.id, status: "succeeded", amount: 4200 });

		// Charged once: one PaymentIntent at the provider, one payment, one succeeded event, one receipt.
		expect(await query(paymentsDb(), "SELECT status FROM sim_payment_intents WHERE metadata LIKE $1", [`%${payment.id}%`])).toEqual([{ status: "succeeded" }]);
		expect(await query(paymentsDb(), "SELECT id FROM payments WHERE user_id = $1", [user.id])).toEqual([{ id: payment.id }]);
		expect(await query(paymentsDb(), "SELECT type FROM outbox WHERE payload LIKE $1", [`%${payment.id}%`])).toEqual([{ type: "payment.succeeded" }]);
		await waitFor(() => mailsTo(email).some(m => /receipt/i.test(m.headers.subject ?? "")), "the receipt email", 60000);
		// The worker records the delivery as sent just after the SMTP server accepts it.
		const receipts = () => query<{ status: string }>(notificationsDb(), "SELECT status FROM deliveries WHERE user_id = $1 AND template = 'receipt'", [user.id]);
		await waitFor(async () => (await receipts()).some(r => r.status === "sent"), "the receipt recorded as sent", 30000);
		expect(await receipts()).toEqual([{ status: "sent" }]);
		// Each client request ran the handler once, no more.
		expect(await calls(payments, "payments.charge")).toBe(handledBefore + requests);
		expect(await calls(gateway, "payments.charge")).toBe(sentBefore + requests);
	}, 180000);
});
