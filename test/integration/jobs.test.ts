import crypto from "node:crypto";
import type { AddressInfo } from "node:net";
import { ServiceBroker, type ServiceSchema } from "moleculer";
import { SMTPServer } from "smtp-server";
import { brokerOptions } from "../../lib/broker";
import { loadConfig, resetConfig } from "../../lib/config";
import JobsService from "../../services/jobs.service";
import { latestSlot, type JobDefinition } from "../../services/jobs/schedules";
import { createDatabases, query, type TestDatabases } from "../helpers/pg";
import { freePort } from "../helpers/node-process";
import { http, registerAndLogin, startSystem, TEST_ENV, uniqueEmail, type TestSystem } from "../helpers/system";
import { waitFor } from "../helpers/wait";

const sleep = (ms: number) => new Promise(r => setTimeout(r, ms));

interface RunRow {
	id: string;
	job: string;
	slot: string;
	attempt: number;
	status: string;
	started_at: Date | null;
	finished_at: Date | null;
	error: string | null;
	owner: string | null;
	report: string | null;
	request_id: string | null;
	duration_ms: number | null;
}

const runsOf = (url: string, job: string) => query<RunRow>(url, "SELECT * FROM job_runs WHERE job = $1 ORDER BY slot, attempt", [job]);

/** A broker running only the jobs service, with these schedules, on this jobs database. */
async function jobsBroker(dbUrl: string, defs: JobDefinition[]): Promise<ServiceBroker> {
	const saved = { ...process.env };
	Object.assign(process.env, { ...TEST_ENV, NAMESPACE: `j${crypto.randomBytes(4).toString("hex")}`, JOBS_DATABASE_URL: dbUrl, JOBS_TICK_MS: "100", JOBS_LEASE_MS: "1500" });
	delete process.env.TRANSPORTER;
	resetConfig();
	const cfg = loadConfig(process.env);
	const broker = new ServiceBroker({ ...brokerOptions(cfg), nodeID: `jobs-${crypto.randomBytes(3).toString("hex")}` });
	try {
		broker.createService({ mixins: [JobsService], methods: { definitions: () => defs } } as unknown as ServiceSchema);
		await broker.start();
	} finally {
		process.env = saved;
		resetConfig();
	}
	return broker;
}

function def(name: string, over: Partial<JobDefinition> & Pick<JobDefinition, "handler">): JobDefinition {
	return { name, cron: "* * * * * *", timezone: "UTC", overlap: "queue", retry: { retries: 1, delayMs: 0 }, description: name, ...over };
}

/** No two runs of a job were running at the same time. */
function expectNoOverlap(rows: RunRow[]) {
	const ran = rows.filter(r => r.started_at && r.finished_at).sort((a, b) => +new Date(a.started_at!) - +new Date(b.started_at!));
	for (let i = 1; i < ran.length; i++) expect(+new Date(ran[i].started_at!)).toBeGreaterThanOrEqual(+new Date(ran[i - 1].finished_at!));
}

describe("jobs: scheduling on PostgreSQL", () => {
	let dbs: TestDatabases;
	const brokers: ServiceBroker[] = [];

	beforeAll(async () => {
		dbs = await createDatabases(["jobs", "jobs2", "jobs3"]);
	});
	afterAll(async () => {
		await Promise.all(brokers.map(b => b.stop().catch(() => undefined)));
		await dbs.drop();
	});
	const url = (n: string) => dbs.env[`${n.toUpperCase()}_DATABASE_URL`];

	it("runs each slot once across two replicas on one jobs database", async () => {
		const calls: string[] = [];
		const every = def("every", {
			async handler(ctx) {
				calls.push(ctx.run.slot);
				await sleep(20);
				return { slot: ctx.run.slot };
			}
		});
		const a = await jobsBroker(url("jobs"), [every]);
		const b = await jobsBroker(url("jobs"), [every]);
		brokers.push(a, b);
		await waitFor(async () => (await runsOf(url("jobs"), "every")).filter(r => r.status === "succeeded").length >= 4, "four runs");
		await Promise.all([a.stop(), b.stop()]);
		const rows = await runsOf(url("jobs"), "every");
		const succeeded = rows.filter(r => r.status === "succeeded");
		expect(new Set(calls).size).toBe(calls.length);
		expect(calls.sort()).toEqual(succeeded.map(r => r.slot).sort());
		for (const r of succeeded) {
			expect(r).toMatchObject({ attempt: 1, error: null, request_id: expect.any(String) });
			expect(r.duration_ms).toEqual(expect.any(Number));
			expect(JSON.parse(r.report!)).toEqual({ slot: r.slot });
		}
	});

	it("skips or queues a slot that finds the previous run still running, by policy", async () => {
		const skipper = def("skipper", { overlap: "skip", handler: async () => void (await sleep(1800)) });
		const queuer = def("queuer", { overlap: "queue", handler: async () => void (await sleep(1300)) });
		const b = await jobsBroker(url("jobs2"), [skipper, queuer]);
		brokers.push(b);
		await waitFor(async () => {
			const s = await runsOf(url("jobs2"), "skipper");
			const q = await runsOf(url("jobs2"), "queuer");
			return s.some(r => r.status === "skipped") && s.some(r => r.status === "succeeded") && q.filter(r => r.status === "succeeded").length >= 3;
		}, "skipped and queued runs");
		await b.stop();
		const s = await runsOf(url("jobs2"), "skipper");
		const q = await runsOf(url("jobs2"), "queuer");
		expect(s.find(r => r.status === "skipped")!.error).toMatch(/still running/);
		expect(q.some(r => r.status === "skipped")).toBe(false);
		expect(q.some(r => r.status === "queued")).toBe(true);
		expectNoOverlap(s);
		expectNoOverlap(q);
	});

	describe("retries, lost workers, manual runs and catch-up", () => {
		const calls: Record<string, number> = {};
		const count = (name: string) => (calls[name] = (calls[name] ?? 0) + 1);
		const defs = [
			def("flaky", {
				cron: "0 0 1 1 *",
				async handler(ctx) {
					count("flaky");
					if (ctx.run.attempt === 1) throw new Error("boom on the first try");
					return { attempt: ctx.run.attempt };
				}
			}),
			def("stuck", { cron: "0 0 1 1 *", handler: async () => void count("stuck") }),
			def("lever", { cron: "0 0 1 1 *", handler: async () => void count("lever") }),
			def("daily", { cron: "0 3 * * *", handler: async () => void count("daily") })
		];
		let x: ServiceBroker;

		beforeAll(async () => {
			x = await jobsBroker(url("jobs3"), defs);
			brokers.push(x);
		});

		it("records a run that throws as failed, with its error, and retries it by policy", async () => {
			await x.call("jobs.trigger", { name: "flaky" });
			const rows = await waitFor(async () => {
				const r = await runsOf(url("jobs3"), "flaky");
				return r.length === 2 && r[1].status === "succeeded" ? r : null;
			}, "the retry");
			expect(rows[0]).toMatchObject({ attempt: 1, status: "failed", error: "boom on the first try" });
			expect(rows[1]).toMatchObject({ attempt: 2, status: "succeeded", error: null, slot: rows[0].slot, request_id: rows[0].request_id });
			expect(JSON.parse(rows[1].report!)).toEqual({ attempt: 2 });
			expect(calls.flaky).toBe(2);
		});

		it("takes back a run whose worker died (its lease ran out) and retries it once", async () => {
			const id = crypto.randomUUID();
			const past = new Date(Date.now() - 60000);
			await query(url("jobs3"),
				`INSERT INTO job_runs (id, job, slot, attempt, status, run_after, started_at, owner, lease_until, request_id, created_at, updated_at)
				 VALUES ($1, 'stuck', '2020-01-01T00:00:00.000Z', 1, 'running', $2, $2, 'dead-node', $2, 'req-stuck', $2, $2)`, [id, past]);
			await query(url("jobs3"), "UPDATE job_locks SET run_id = $1, lease_until = $2 WHERE job = 'stuck'", [id, past]);
			const rows = await waitFor(async () => {
				const r = await runsOf(url("jobs3"), "stuck");
				return r.length === 2 && r[1].status === "succeeded" ? r : null;
			}, "the reclaimed run");
			expect(rows[0]).toMatchObject({ attempt: 1, status: "failed", error: expect.stringMatching(/lease ran out.*dead-node/) });
			expect(rows[1]).toMatchObject({ attempt: 2, status: "succeeded", request_id: "req-stuck" });
			expect(calls.stuck).toBe(1);
		});

		it("runs a job once when two admins press run at once", async () => {
			const [a, b] = await Promise.all([x.call<any, { name: string }>("jobs.trigger", { name: "lever" }), x.call<any, { name: string }>("jobs.trigger", { name: "lever" })]);
			expect(a.run_id).toBe(b.run_id);
			expect([a.created, b.created].sort()).toEqual([false, true]);
			await waitFor(async () => (await runsOf(url("jobs3"), "lever"))[0]?.status === "succeeded", "the manual run");
			expect(await runsOf(url("jobs3"), "lever")).toHaveLength(1);
			expect(calls.lever).toBe(1);
			await expect(x.call("jobs.trigger", { name: "nope" })).rejects.toMatchObject({ code: 404 });
		});

		it("catches up the latest slot missed while every replica was down, once", async () => {
			// A job with no history started from now: nothing was caught up.
			expect(await runsOf(url("jobs3"), "daily")).toHaveLength(0);
			await x.stop();
			const old = latestSlot(defs[3], new Date(Date.now() - 5 * 86400000))!;
			await query(url("jobs3"),
				`INSERT INTO job_runs (id, job, slot, attempt, status, run_after, started_at, finished_at, created_at, updated_at)
				 VALUES ($1, 'daily', $2, 1, 'succeeded', $3, $3, $3, $3, $3)`, [crypto.randomUUID(), old.toISOString(), old]);
			const [y, z] = await Promise.all([jobsBroker(url("jobs3"), defs), jobsBroker(url("jobs3"), defs)]);
			brokers.push(y, z);
			const latest = latestSlot(defs[3], new Date())!.toISOString();
			await waitFor(async () => (await runsOf(url("jobs3"), "daily")).some(r => r.slot === latest && r.status === "succeeded"), "the catch-up run");
			await sleep(500); // several more ticks of both replicas
			await Promise.all([y.stop(), z.stop()]);
			const rows = await runsOf(url("jobs3"), "daily");
			expect(rows.map(r => r.slot)).toEqual([old.toISOString(), latest]);
			expect(calls.daily).toBe(1);
		});
	});
});

interface Mail {
	to: string[];
	body: string;
}

/** A real SMTP server that refuses recipients while `refuse` says so (the "cause" of a poison delivery). */
function startSmtp(refuse: (to: string) => boolean): Promise<{ port: number; mails: Mail[]; close(): Promise<void> }> {
	const mails: Mail[] = [];
	const server = new SMTPServer({
		authOptional: true,
		disabledCommands: ["STARTTLS", "AUTH"],
		logger: false,
		onRcptTo(addr, _session, cb) {
			if (refuse(addr.address)) return cb(Object.assign(new Error("mailbox unavailable"), { responseCode: 550 }));
			cb();
		},
		onData(stream, session, cb) {
			const chunks: Buffer[] = [];
			stream.on("data", (c: Buffer) => chunks.push(c));
			stream.on("end", () => {
				mails.push({ to: session.envelope.rcptTo.map(r => r.address), body: Buffer.concat(chunks).toString("utf8") });
				cb();
			});
		}
	});
	return new Promise((resolve, reject) => {
		server.once("error", reject);
		server.listen(0, "127.0.0.1", () => {
			const port = (server.server.address() as AddressInfo).port;
			resolve({ port, mails, close: () => new Promise<void>(r => server.close(() => r())) });
		});
	});
}

describe("jobs in a system: reconciliation, admin routes, dead letters, metrics", () => {
	let sys: TestSystem;
	let smtp: Awaited<ReturnType<typeof startSmtp>>;
	let metricsPort: number;
	let fixed = false;
	const poison = uniqueEmail("poison");
	let user: Awaited<ReturnType<typeof registerAndLogin>>;
	let support: string;
	let admin: string;

	async function withRole(role: string) {
		const u = await registerAndLogin(sys.url);
		await sys.broker.call("users.update", { id: u.user.id, roles: ["user", role] });
		const login = await http(sys.url, "POST", "/api/v1/auth/login", { body: { email: u.email, password: u.password } });
		return login.body.access_token as string;
	}

	beforeAll(async () => {
		smtp = await startSmtp(to => to === poison && !fixed);
		metricsPort = await freePort();
		sys = await startSystem({
			services: ["api", "auth", "users", "payments", "notifications", "jobs"],
			env: {
				SMTP_URL: `smtp://127.0.0.1:${smtp.port}`,
				NOTIFY_MAX_ATTEMPTS: "2",
				NOTIFY_RETRY_BASE_MS: "20",
				NOTIFY_PUMP_MS: "50",
				OUTBOX_POLL_MS: "50",
				JOBS_TICK_MS: "100",
				METRICS_PORT: String(metricsPort)
			}
		});
		user = await registerAndLogin(sys.url);
		support = await withRole("support");
		admin = await withRole("admin");
	});
	afterAll(async () => {
		await sys?.stop();
		await smtp?.close();
	});

	const db = (name: string) => sys.env[`${name.toUpperCase()}_DATABASE_URL`];
	const mailsTo = (to: string) => smtp.mails.filter(m => m.to.includes(to));

	it("reconciles a charge left processing (receipt sent once) and a provider-side refund whose webhook never came", async () => {
		const provider = (sys.broker.getLocalService("payments") as unknown as { provider: any }).provider;
		// 1. A charge that crashed after the provider took the money, before it recorded the outcome.
		const crashed = crypto.randomUUID();
		const intent = await provider.charge({
			amount: 1500, currency: "usd", paymentMethod: "pm_card_visa", description: "crashed",
			idempotencyKey: `payment:${crashed}`, metadata: { payment_id: crashed, user_id: user.user.id }
		});
		expect(intent.outcome).toBe("succeeded");
		const then = new Date(Date.now() - 10 * 60000);
		await query(db("payments"),
			`INSERT INTO payments (id, user_id, amount, currency, description, payment_method, status, provider, amount_refunded, created_at, updated_at)
			 VALUES ($1, $2, 1500, 'usd', 'crashed', 'pm_card_visa', 'processing', 'simulated', 0, $3, $3)`, [crashed, user.user.id, then]);
		await query(db("payments"),
			`INSERT INTO idempotency_keys (user_id, idem_key, fingerprint, status, payment_id, locked_at, expires_at, created_at, updated_at)
			 VALUES ($1, 'crash-key', 'x', 'in_progress', $2, $3, $4, $3, $3)`, [user.user.id, crashed, then, new Date(Date.now() + 86400000)]);

		// 2. A payment refunded at the provider (say, from its dashboard); the webhook was lost.
		const charge = await http(sys.url, "POST", "/api/v1/payments/charge", {
			token: user.token, headers: { "Idempotency-Key": crypto.randomUUID() }, body: { amount: 2500, currency: "usd", payment_method: "pm_card_visa" }
		});
		expect(charge.status).toBe(201);
		await provider.refund({ intentId: charge.body.provider_payment_id, amount: 2500, idempotencyKey: "dashboard-refund", metadata: {} });

		const run = await sys.broker.call<any, { name: string }>("jobs.trigger", { name: "payments-reconcile" });
		const done = await waitFor(async () => {
			const [r] = await query<RunRow>(db("jobs"), "SELECT * FROM job_runs WHERE id = $1", [run.run_id]);
			return r && r.status !== "running" && r.status !== "queued" ? r : null;
		}, "the reconciliation run");
		expect(done).toMatchObject({ status: "succeeded", error: null });
		const report = JSON.parse(done.report!);
		expect(report.checked).toBeGreaterThanOrEqual(2);
		expect(report.fixed).toBeGreaterThanOrEqual(2);
		expect(report.mismatches).toEqual(expect.arrayContaining([
			expect.objectContaining({ id: crashed, was: "processing", now: "succeeded" }),
			expect.objectContaining({ id: charge.body.id, was: "succeeded", now: "refunded", amount_refunded: 2500 })
		]));

		const [p1] = await query<any>(db("payments"), "SELECT * FROM payments WHERE id = $1", [crashed]);
		expect(p1).toMatchObject({ status: "succeeded", provider_payment_id: intent.intentId });
		expect(p1.receipt_number).toEqual(expect.any(String));
		const [key] = await query<any>(db("payments"), "SELECT * FROM idempotency_keys WHERE idem_key = 'crash-key'");
		expect(key.status).toBe("done");
		expect((await query<any>(db("payments"), "SELECT * FROM payments WHERE id = $1", [charge.body.id]))[0]).toMatchObject({ status: "refunded", amount_refunded: 2500 });

		// Asking again changes nothing, and the receipt goes out once.
		expect(await sys.broker.call("payments.reconcile", { id: crashed })).toMatchObject({ fixed: false });
		await sys.broker.call("payments.syncEvents", {});
		const receipts = () => query<any>(db("notifications"), "SELECT * FROM deliveries WHERE template = 'receipt' AND data LIKE $1", [`%${crashed}%`]);
		await waitFor(async () => (await receipts())[0]?.status === "sent", "the receipt");
		await sleep(300);
		expect(await receipts()).toHaveLength(1);
		expect(smtp.mails.filter(m => m.body.includes(p1.receipt_number))).toHaveLength(1);
	});

	it("admin routes: support reads, admin writes, others are refused", async () => {
		expect((await http(sys.url, "GET", "/api/v1/admin/jobs")).status).toBe(401);
		expect((await http(sys.url, "GET", "/api/v1/admin/jobs", { token: user.token })).status).toBe(403);
		const list = await http(sys.url, "GET", "/api/v1/admin/jobs", { token: support });
		expect(list.status).toBe(200);
		const names = list.body.schedules.map((s: { name: string }) => s.name);
		expect(names).toEqual(expect.arrayContaining(["payments-reconcile", "cleanup", "notifications-requeue", "kyc-pending-reminder"]));
		expect(list.body.schedules.find((s: { name: string }) => s.name === "payments-reconcile")).toMatchObject({
			cron: "*/5 * * * *", last_status: "succeeded", last_run_at: expect.any(String), next_run_at: expect.any(String)
		});
		expect(list.body.queues).toEqual(expect.arrayContaining([{ name: "notifications.deliveries", pending: expect.any(Number), dead: expect.any(Number) }]));

		expect((await http(sys.url, "POST", "/api/v1/admin/jobs/cleanup/run", { token: support })).status).toBe(403);
		expect((await http(sys.url, "POST", "/api/v1/admin/jobs/cleanup/run", { token: user.token })).status).toBe(403);
		expect((await http(sys.url, "POST", "/api/v1/admin/jobs/no-such-job/run", { token: admin })).status).toBe(404);
		const run = await http(sys.url, "POST", "/api/v1/admin/jobs/cleanup/run", { token: admin });
		expect(run.status).toBe(202);
		expect(run.body).toMatchObject({ job: "cleanup", run_id: expect.any(String), slot: expect.stringMatching(/^manual:/) });
		const done = await waitFor(async () => {
			const [r] = await query<RunRow>(db("jobs"), "SELECT * FROM job_runs WHERE id = $1", [run.body.run_id]);
			return r?.status === "succeeded" ? r : null;
		}, "the cleanup run");
		expect(Object.keys(JSON.parse(done.report!)).sort()).toEqual(["auth", "notifications", "payments"]);

		expect((await http(sys.url, "GET", "/api/v1/admin/dead-letters", { token: user.token })).status).toBe(403);
		const letters = await http(sys.url, "GET", "/api/v1/admin/dead-letters", { token: support });
		expect(letters.status).toBe(200);
		expect(letters.body).toMatchObject({ items: expect.any(Array), total: expect.any(Number), limit: 20, offset: 0 });
		const unknown = crypto.randomUUID();
		expect((await http(sys.url, "POST", `/api/v1/admin/dead-letters/${unknown}/redrive`, { token: support })).status).toBe(403);
		expect((await http(sys.url, "POST", `/api/v1/admin/dead-letters/${unknown}/redrive`, { token: admin })).status).toBe(404);
	});

	it("a poison delivery is parked, listed, and after the cause is fixed a redrive delivers it once", async () => {
		await registerAndLogin(sys.url, { email: poison });
		const letter = await waitFor(async () => {
			const res = await http(sys.url, "GET", "/api/v1/admin/dead-letters?limit=100", { token: support });
			return res.body.items.find((i: any) => i.payload?.to === poison && i.payload?.template === "welcome");
		}, "the dead letter");
		expect(letter).toMatchObject({ queue: "notifications.deliveries", error: expect.stringMatching(/mailbox unavailable|550/), request_id: expect.any(String), failed_at: expect.any(String) });
		expect(mailsTo(poison)).toHaveLength(0);

		fixed = true;
		const redrive = await http(sys.url, "POST", `/api/v1/admin/dead-letters/${letter.id}/redrive`, { token: admin });
		expect(redrive.status).toBe(202);
		expect((await http(sys.url, "POST", `/api/v1/admin/dead-letters/${letter.id}/redrive`, { token: admin })).status).toBe(409);
		// Only this delivery's mail counts (its Message-ID names it): the poison user's verification email
		// is a second delivery that may still be retrying when the cause is fixed.
		const redriven = () => mailsTo(poison).filter(m => m.body.includes(letter.payload.delivery_id));
		await waitFor(() => redriven().length > 0, "the redriven mail");
		await sleep(300);
		expect(redriven()).toHaveLength(1);
		// The worker records the delivery as sent just after the SMTP server accepts it.
		const d = await waitFor(async () => {
			const [row] = await query<any>(db("notifications"), "SELECT * FROM deliveries WHERE id = $1", [letter.payload.delivery_id]);
			return row?.status === "sent" ? row : undefined;
		}, "the redriven delivery recorded as sent");
		expect(d).toMatchObject({ status: "sent", attempts: 1 });
		const after = await http(sys.url, "GET", "/api/v1/admin/dead-letters?limit=100", { token: support });
		expect(after.body.items.find((i: any) => i.id === letter.id)).toBeUndefined();
	});

	it("exposes Prometheus metrics: job runs, durations, queue depth and dead letters", async () => {
		await http(sys.url, "GET", "/api/v1/admin/jobs", { token: support });
		const res = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
		expect(res.status).toBe(200);
		const text = await res.text();
		expect(text).toMatch(/jobs_runs_total\{[^}]*job="payments-reconcile"[^}]*status="succeeded"[^}]*\} \d+/);
		expect(text).toMatch(/jobs_run_duration_seconds_bucket\{[^}]*job="payments-reconcile"/);
		expect(text).toMatch(/queue_depth\{[^}]*queue="notifications.deliveries"/);
		expect(text).toMatch(/queue_dead_letters\{[^}]*queue="notifications.deliveries"/);
	});
});
