import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { deleteStreams, ensureStreams } from "../../lib/channels";
import { query } from "../helpers/pg";
import { waitFor } from "../helpers/wait";
import { http, registerAndLogin, startSystem, type TestSystem } from "../helpers/system";

/**
 * The admin service over two gateway nodes: system 1 runs every service, system 2 only a gateway; both
 * brokers find each other over the shared NATS under one namespace.
 */
const NATS = process.env.TEST_NATS_URL ?? "nats://127.0.0.1:4222";
const namespace = `adm${crypto.randomBytes(4).toString("hex")}`;
const ENV = { TRANSPORTER: NATS, NAMESPACE: namespace, OUTBOX_POLL_MS: "100", NOTIFY_PUMP_MS: "200", TOKEN_CACHE_TTL_MS: "600000" };

let sys1: TestSystem;
let sys2: TestSystem;
type Account = { id: string; email: string; password: string; token: string };
let admin: Account;
let support: Account;
let plain: Account;

const rid = (what: string) => `${what}-${crypto.randomBytes(6).toString("hex")}`;
const call = (base: string, method: string, p: string, token: string, body?: unknown, headers: Record<string, string> = {}) => http(base, method, p, { token, body, headers });

/** A fresh account with these roles, logged in again so its token carries them. */
async function account(roles?: string[]): Promise<Account> {
	const a = await registerAndLogin(sys1.url);
	if (!roles) return { id: a.user.id, email: a.email, password: a.password, token: a.token };
	await sys1.broker.call("users.update", { id: a.user.id, roles });
	const login = await http(sys1.url, "POST", "/api/v1/auth/login", { body: { email: a.email, password: a.password } });
	return { id: a.user.id, email: a.email, password: a.password, token: login.body.access_token };
}

const notificationsDb = () => sys1.env.NOTIFICATIONS_DATABASE_URL;
const adminDb = () => sys1.env.ADMIN_DATABASE_URL;
const deliveriesTo = (to: string) =>
	query<{ template: string; status: string; request_id: string | null }>(notificationsDb(), `SELECT template, status, request_id FROM deliveries WHERE "to" = $1`, [to]);

async function charge(token: string, amount: number) {
	const r = await http(sys1.url, "POST", "/api/v1/payments/charge", {
		token,
		body: { amount, currency: "usd", payment_method: "pm_card_visa", description: "admin test" },
		headers: { "Idempotency-Key": crypto.randomUUID() }
	});
	expect(r.status).toBe(201);
	return r.body;
}

async function submitKyc(token: string) {
	const r = await http(sys1.url, "POST", "/api/v1/users/me/kyc", {
		token,
		body: { full_name: "Kim Doe", date_of_birth: "1990-01-02", country: "de", document_type: "passport", document_number: "C01X00T47" }
	});
	expect(r.status).toBe(202);
}

beforeAll(async () => {
	await ensureStreams(NATS, namespace);
	sys1 = await startSystem({ services: ["api", "auth", "users", "admin", "payments", "notifications", "jobs"], env: ENV });
	sys2 = await startSystem({ services: ["api"], env: ENV });
	await sys2.broker.waitForServices(["auth", "users", "admin", "payments", "notifications", "jobs"], 20000);
	// System 1 knows gateway 2 (so auth's broadcasts reach it) once gateway 2's node info has arrived.
	await waitFor(() => sys1.broker.registry.getServiceList({ onlyAvailable: true, skipInternal: true }).some(s => s.name === "api" && s.nodeID === sys2.broker.nodeID), "system 1 to see gateway 2");
	[admin, support, plain] = await Promise.all([account(["admin"]), account(["support"]), account()]);
}, 60000);

afterAll(async () => {
	await sys2?.stop();
	await sys1?.stop();
	await deleteStreams(NATS, namespace);
});

const ZERO = "00000000-0000-4000-8000-000000000000";
/** Every admin route: [method, path, body]. */
const ROUTES: [string, string, unknown?][] = [
	["GET", "/api/v1/admin/me"],
	["GET", "/api/v1/admin/users"],
	["GET", `/api/v1/admin/users/${ZERO}`],
	["POST", `/api/v1/admin/users/${ZERO}/suspend`, { reason: "x" }],
	["POST", `/api/v1/admin/users/${ZERO}/unsuspend`, {}],
	["PUT", `/api/v1/admin/users/${ZERO}/roles`, { roles: ["user"] }],
	["GET", "/api/v1/admin/kyc?status=pending"],
	["POST", `/api/v1/admin/kyc/${ZERO}/decision`, { decision: "approve" }],
	["GET", "/api/v1/admin/payments"],
	["POST", `/api/v1/admin/payments/${ZERO}/refund`, {}],
	["GET", "/api/v1/admin/audit"],
	["GET", "/api/v1/admin/audit/verify"],
	["GET", "/api/v1/admin/system"],
	["GET", "/api/v1/admin/stats?days=3"],
	["GET", "/api/v1/admin/jobs"],
	["POST", "/api/v1/admin/jobs/cleanup/run"],
	["GET", "/api/v1/admin/dead-letters"],
	["POST", `/api/v1/admin/dead-letters/${ZERO}/redrive`]
];
const ADMIN_ONLY = new Set(["suspend", "unsuspend", "roles", "refund", "audit", "verify", "run", "redrive"]);
const isAdminOnly = (p: string) => ADMIN_ONLY.has(p.split("?")[0].split("/").pop()!) || /\/admin\/audit/.test(p);

describe("admin: permissions", () => {
	it("refuses a plain user on every admin route with 403, and logs each denial as a security event", async () => {
		const svc = sys1.broker.getLocalService("admin") as unknown as { logger: { warn: (...a: unknown[]) => void } };
		const warn = jest.spyOn(svc.logger, "warn");
		try {
			for (const [method, p, body] of ROUTES) {
				const requestId = rid("deny");
				const r = await call(sys2.url, method, p, plain.token, body, { "X-Request-ID": requestId });
				expect([p, r.status]).toEqual([p, 403]);
				expect(r.headers.get("content-type")).toMatch(/problem\+json/);
				if (p.includes("/jobs") || p.includes("/dead-letters")) continue;
				const line = warn.mock.calls.map(c => String(c[0])).find(l => l.includes(requestId));
				expect(line).toMatch(/security: permission denied/);
				const event = JSON.parse(line!.slice(line!.indexOf("{")));
				expect(event).toMatchObject({ event: "permission_denied", actor_id: plain.id, request_id: requestId });
				expect(event.ip).toMatch(/127\.0\.0\.1/);
			}
		} finally {
			warn.mockRestore();
		}
		// No token at all is 401, not 403.
		expect((await http(sys1.url, "GET", "/api/v1/admin/users")).status).toBe(401);
	});

	it("lets support read and decide KYC, and refuses support on admin-only writes", async () => {
		for (const [method, p, body] of ROUTES) {
			const r = await call(sys1.url, method, p, support.token, body);
			if (isAdminOnly(p)) expect([p, r.status]).toEqual([p, 403]);
			else expect([p, r.status]).not.toEqual([p, 403]);
		}
		const me = await call(sys1.url, "GET", "/api/v1/admin/me", support.token);
		expect(me.status).toBe(200);
		expect(me.body.permissions).toEqual(expect.arrayContaining(["users.read", "kyc.decide", "system.read"]));
		expect(me.body.permissions).not.toContain("users.suspend");
	});

	it("answers 404 for missing targets and 422 for a missing reason or a bad body", async () => {
		for (const [method, p, body] of [
			["GET", `/api/v1/admin/users/${ZERO}`],
			["POST", `/api/v1/admin/users/${ZERO}/suspend`, { reason: "fraud" }],
			["POST", `/api/v1/admin/users/${ZERO}/unsuspend`, {}],
			["PUT", `/api/v1/admin/users/${ZERO}/roles`, { roles: ["support"] }],
			["POST", `/api/v1/admin/kyc/${ZERO}/decision`, { decision: "approve" }],
			["POST", `/api/v1/admin/payments/${ZERO}/refund`, {}]
		] as [string, string, unknown?][]) {
			const r = await call(sys1.url, method, p, admin.token, body);
			expect([p, r.status]).toEqual([p, 404]);
		}
		const target = await account();
		for (const body of [{}, { reason: "" }, { reason: 5 }]) {
			const r = await call(sys1.url, "POST", `/api/v1/admin/users/${target.id}/suspend`, admin.token, body);
			expect(r.status).toBe(422);
		}
		expect((await call(sys1.url, "PUT", `/api/v1/admin/users/${target.id}/roles`, admin.token, { roles: ["root"] })).status).toBe(422);
		expect((await call(sys1.url, "POST", `/api/v1/admin/kyc/${target.id}/decision`, admin.token, { decision: "maybe" })).status).toBe(422);
		expect((await call(sys1.url, "POST", `/api/v1/admin/users/${target.id}/suspend`, admin.token, { reason: "x", status: "active" })).status).toBe(422);
		// Still active: nothing was changed by the refused calls.
		expect((await call(sys1.url, "GET", `/api/v1/admin/users/${target.id}`, support.token)).body.status).toBe("active");
	});
});

describe("admin: users", () => {
	it("lists and searches users, filtered by status", async () => {
		const r = await call(sys1.url, "GET", `/api/v1/admin/users?q=${encodeURIComponent(plain.email)}&limit=5`, support.token);
		expect(r.status).toBe(200);
		expect(r.body).toMatchObject({ total: 1, limit: 5, offset: 0 });
		expect(r.body.items[0]).toMatchObject({ id: plain.id, email: plain.email, status: "active" });
		expect(r.body.items[0]).not.toHaveProperty("password_hash");
		const suspended = await call(sys1.url, "GET", "/api/v1/admin/users?status=suspended", support.token);
		expect(suspended.status).toBe(200);
		expect(suspended.body.items.every((u: { status: string }) => u.status === "suspended")).toBe(true);
	});

	it("suspends at once on every gateway, tells the user by email, and unsuspends without reviving old tokens", async () => {
		const victim = await account();
		// The token works on both gateways; gateway 2 has it in its cache now.
		for (const base of [sys1.url, sys2.url, sys2.url]) expect((await call(base, "GET", "/api/v1/users/me", victim.token)).status).toBe(200);

		const requestId = rid("suspend");
		const s = await call(sys1.url, "POST", `/api/v1/admin/users/${victim.id}/suspend`, admin.token, { reason: "chargeback fraud" }, { "X-Request-ID": requestId });
		expect(s.status).toBe(200);
		expect(s.body).toMatchObject({ id: victim.id, status: "suspended" });
		expect(s.headers.get("x-request-id")).toBe(requestId);

		// The very next request on the other gateway is refused.
		expect((await call(sys2.url, "GET", "/api/v1/users/me", victim.token)).status).toBe(401);
		expect((await call(sys1.url, "GET", "/api/v1/users/me", victim.token)).status).toBe(401);
		const login = await http(sys2.url, "POST", "/api/v1/auth/login", { body: { email: victim.email, password: victim.password } });
		expect(login.status).toBe(403);

		// Audited with the actor, the request id and the client IP.
		const audit = await call(sys1.url, "GET", `/api/v1/admin/audit?target_id=${victim.id}&action=user.suspend`, admin.token);
		expect(audit.status).toBe(200);
		expect(audit.body.total).toBe(1);
		expect(audit.body.items[0]).toMatchObject({
			actor_id: admin.id,
			actor_email: admin.email,
			action: "user.suspend",
			target_type: "user",
			target_id: victim.id,
			request_id: requestId,
			details: { reason: "chargeback fraud", status: { from: "active", to: "suspended" } }
		});
		expect(audit.body.items[0].ip).toMatch(/127\.0\.0\.1/);
		expect(audit.body.items[0].hash).toMatch(/^[0-9a-f]{64}$/);

		// The suspension email went out through the queue, with the same request id.
		const mail = await waitFor(async () => (await deliveriesTo(victim.email)).find(d => d.template === "account_suspended" && d.status === "sent"), "the suspension email");
		expect(mail.request_id).toBe(requestId);
		const eml = await waitFor(() => {
			const dir = path.join(sys1.dataDir, "outbox");
			const files = fs.existsSync(dir) ? fs.readdirSync(dir).filter(f => f.endsWith(".eml")) : [];
			return files.map(f => fs.readFileSync(path.join(dir, f), "utf8")).find(t => t.includes(victim.email) && /suspended/.test(t));
		}, "the suspension .eml");
		expect(eml).toMatch(/chargeback fraud/);

		const u = await call(sys1.url, "POST", `/api/v1/admin/users/${victim.id}/unsuspend`, admin.token, {});
		expect(u.status).toBe(200);
		expect(u.body.status).toBe("active");
		const again = await http(sys2.url, "POST", "/api/v1/auth/login", { body: { email: victim.email, password: victim.password } });
		expect(again.status).toBe(200);
		expect((await call(sys2.url, "GET", "/api/v1/users/me", again.body.access_token)).status).toBe(200);
		// Old tokens stay dead.
		for (const base of [sys1.url, sys2.url]) expect((await call(base, "GET", "/api/v1/users/me", victim.token)).status).toBe(401);
		const un = await call(sys1.url, "GET", `/api/v1/admin/audit?target_id=${victim.id}&action=user.unsuspend`, admin.token);
		expect(un.body.items[0]).toMatchObject({ actor_id: admin.id, details: { status: { from: "suspended", to: "active" } } });
	});

	it("changes roles (audited) and ends the user's sessions so new tokens carry them", async () => {
		const target = await account();
		const requestId = rid("roles");
		const r = await call(sys1.url, "PUT", `/api/v1/admin/users/${target.id}/roles`, admin.token, { roles: ["user", "support"] }, { "X-Request-ID": requestId });
		expect(r.status).toBe(200);
		expect(r.body.roles.sort()).toEqual(["support", "user"]);
		expect((await call(sys1.url, "GET", "/api/v1/users/me", target.token)).status).toBe(401);
		const login = await http(sys1.url, "POST", "/api/v1/auth/login", { body: { email: target.email, password: target.password } });
		expect((await call(sys1.url, "GET", "/api/v1/admin/users", login.body.access_token)).status).toBe(200);
		const audit = await call(sys1.url, "GET", `/api/v1/admin/audit?target_id=${target.id}`, admin.token);
		expect(audit.body.items[0]).toMatchObject({ action: "user.roles", request_id: requestId, details: { roles: { from: ["user"], to: ["support", "user"] } } });
	});
});

describe("admin: KYC review", () => {
	it("records a decision before it is carried out, and its failure after (no write goes unaudited)", async () => {
		const nothingPending = await account();
		const requestId = rid("kyc-none");
		const res = await call(sys1.url, "POST", `/api/v1/admin/kyc/${nothingPending.id}/decision`, support.token, { decision: "approve" }, { "X-Request-ID": requestId });
		expect(res.status).toBe(409);
		const audit = await call(sys1.url, "GET", `/api/v1/admin/audit?target_id=${nothingPending.id}`, admin.token);
		const [failed, decided] = audit.body.items;
		expect(decided).toMatchObject({ action: "kyc.approve", request_id: requestId, actor_id: support.id });
		expect(failed).toMatchObject({ action: "kyc.approve.failed", request_id: requestId, details: { entry_id: decided.id } });
	});

	it("approves and rejects pending submissions, updating kyc_status and notifying the user", async () => {
		const [a, b] = await Promise.all([account(), account()]);
		await submitKyc(a.token);
		await submitKyc(b.token);
		const queue = await call(sys1.url, "GET", "/api/v1/admin/kyc?status=pending&limit=100", support.token);
		expect(queue.status).toBe(200);
		const mine = queue.body.items.filter((k: { user_id: string }) => [a.id, b.id].includes(k.user_id));
		expect(mine).toHaveLength(2);
		expect(mine[0]).toMatchObject({ status: "pending", country: "DE", document_type: "passport", user: { email: expect.any(String) } });
		expect(mine[0].document_number).toMatch(/^\*+0T47$/);

		const requestId = rid("kyc");
		const ok = await call(sys1.url, "POST", `/api/v1/admin/kyc/${a.id}/decision`, support.token, { decision: "approve" }, { "X-Request-ID": requestId });
		expect(ok.status).toBe(200);
		expect(ok.body.user.kyc_status).toBe("verified");
		const no = await call(sys1.url, "POST", `/api/v1/admin/kyc/${b.id}/decision`, support.token, { decision: "reject", reason: "document unreadable" });
		expect(no.status).toBe(200);
		expect(no.body.user.kyc_status).toBe("rejected");

		expect((await call(sys1.url, "GET", "/api/v1/users/me/kyc", a.token)).body).toMatchObject({ kyc_status: "verified", decided_at: expect.any(String) });
		expect((await call(sys1.url, "GET", "/api/v1/users/me/kyc", b.token)).body).toMatchObject({ kyc_status: "rejected", reason: "document unreadable" });
		// Decided already: nothing pending any more.
		expect((await call(sys1.url, "POST", `/api/v1/admin/kyc/${a.id}/decision`, support.token, { decision: "reject" })).status).toBe(409);

		const sentA = await waitFor(async () => (await deliveriesTo(a.email)).find(d => d.template === "kyc_decision"), "the approval email");
		expect(sentA.request_id).toBe(requestId);
		await waitFor(async () => (await deliveriesTo(b.email)).find(d => d.template === "kyc_decision"), "the rejection email");

		const audit = await call(sys1.url, "GET", `/api/v1/admin/audit?target_id=${b.id}`, admin.token);
		expect(audit.body.items[0]).toMatchObject({ actor_id: support.id, action: "kyc.reject", details: { reason: "document unreadable", kyc_status: "rejected" } });
	});
});

describe("admin: payments", () => {
	it("lists payments and refunds in part, then in full, with the customer notified", async () => {
		const customer = await account();
		const p = await charge(customer.token, 5000);
		const list = await call(sys1.url, "GET", `/api/v1/admin/payments?user_id=${customer.id}&status=succeeded`, support.token);
		expect(list.status).toBe(200);
		expect(list.body).toMatchObject({ total: 1, items: [{ id: p.id, status: "succeeded", amount: 5000 }] });

		const requestId = rid("refund");
		const part = await call(sys1.url, "POST", `/api/v1/admin/payments/${p.id}/refund`, admin.token, { amount: 2000, reason: "damaged item" }, { "X-Request-ID": requestId });
		expect(part.status).toBe(200);
		expect(part.body).toMatchObject({ id: p.id, status: "partially_refunded", amount_refunded: 2000 });
		expect((await call(sys1.url, "POST", `/api/v1/admin/payments/${p.id}/refund`, admin.token, { amount: 9000 })).status).toBe(422);
		const rest = await call(sys1.url, "POST", `/api/v1/admin/payments/${p.id}/refund`, admin.token, {});
		expect(rest.status).toBe(200);
		expect(rest.body).toMatchObject({ status: "refunded", amount_refunded: 5000 });
		expect((await call(sys1.url, "POST", `/api/v1/admin/payments/${p.id}/refund`, admin.token, {})).status).toBe(409);
		expect((await call(sys1.url, "GET", `/api/v1/payments/${p.id}`, customer.token)).body.status).toBe("refunded");

		const audit = await call(sys1.url, "GET", `/api/v1/admin/audit?target_id=${p.id}&action=payment.refund`, admin.token);
		expect(audit.body.total).toBe(2);
		expect(audit.body.items[1]).toMatchObject({ request_id: requestId, details: { amount: 2000, reason: "damaged item", status: { from: "succeeded", to: "partially_refunded" } } });
		expect(audit.body.items[0]).toMatchObject({ details: { amount: 3000, status: { from: "partially_refunded", to: "refunded" } } });
		await waitFor(async () => (await deliveriesTo(customer.email)).filter(d => d.template === "refund").length >= 2 || null, "both refund emails");
	});
});

describe("admin: system and stats", () => {
	it("shows nodes, services, health, queues and jobs", async () => {
		const r = await call(sys1.url, "GET", "/api/v1/admin/system", support.token);
		expect(r.status).toBe(200);
		const ids = r.body.nodes.map((n: { id: string }) => n.id);
		expect(ids).toEqual(expect.arrayContaining([sys1.broker.nodeID, sys2.broker.nodeID]));
		const api = r.body.services.find((s: { name: string }) => s.name === "api");
		expect(api.nodes.sort()).toEqual([sys1.broker.nodeID, sys2.broker.nodeID].sort());
		expect(r.body.services.map((s: { name: string }) => s.name)).toEqual(expect.arrayContaining(["admin", "auth", "users", "payments", "notifications", "jobs"]));
		expect(r.body.health).toMatchObject({ admin: "ok", users: "ok", payments: "ok" });
		expect(r.body.queues).toEqual(expect.arrayContaining([expect.objectContaining({ name: expect.any(String), pending: expect.any(Number), dead: expect.any(Number) })]));
		expect(Array.isArray(r.body.jobs)).toBe(true);
		expect(r.body.jobs.map((j: { name: string }) => j.name)).toContain("cleanup");
	});

	it("gives the dashboard its numbers: every day, payments, signups, deliveries and requests per service", async () => {
		const customer = await account();
		await charge(customer.token, 1234);
		const r = await call(sys2.url, "GET", "/api/v1/admin/stats?days=3", support.token);
		expect(r.status).toBe(200);
		expect(Object.keys(r.body).sort()).toEqual(["deliveries", "payments", "requests", "signups"]);
		const today = new Date().toISOString().slice(0, 10);
		expect(r.body.payments).toHaveLength(3);
		expect(r.body.signups).toHaveLength(3);
		expect(r.body.payments.map((d: { day: string }) => d.day)).toEqual([...r.body.payments.map((d: { day: string }) => d.day)].sort());
		expect(r.body.payments[2].day).toBe(today);
		expect(r.body.payments[0]).toMatchObject({ succeeded: expect.any(Number), failed: expect.any(Number), refunded: expect.any(Number), amount_succeeded: expect.any(Object) });
		expect(r.body.payments[2].succeeded).toBeGreaterThanOrEqual(2);
		expect(r.body.payments[2].refunded).toBeGreaterThanOrEqual(1);
		expect(r.body.payments[2].amount_succeeded.usd).toBeGreaterThanOrEqual(5000 + 1234);
		expect(r.body.signups[2]).toEqual({ day: today, count: expect.any(Number) });
		expect(r.body.signups[2].count).toBeGreaterThanOrEqual(5);
		expect(r.body.deliveries).toEqual({ queued: expect.any(Number), sent: expect.any(Number), failed: expect.any(Number), dead: expect.any(Number) });
		expect(r.body.deliveries.sent).toBeGreaterThan(0);
		const users = r.body.requests.find((q: { service: string }) => q.service === "users");
		expect(users).toEqual({ service: "users", requests_per_s: expect.any(Number), p50_ms: expect.any(Number), p99_ms: expect.any(Number), errors: expect.any(Number) });
		expect(r.body.requests.map((q: { service: string }) => q.service)).toEqual(expect.arrayContaining(["api", "auth", "admin"]));
		expect((await call(sys1.url, "GET", "/api/v1/admin/stats?days=0", support.token)).status).toBe(422);
	});
});

describe("admin: the audit trail", () => {
	it("pages and filters the log, and audits the jobs rows too", async () => {
		const requestId = rid("job");
		expect((await call(sys1.url, "POST", "/api/v1/admin/jobs/kyc-pending-reminder/run", admin.token, undefined, { "X-Request-ID": requestId })).status).toBe(202);
		const job = await call(sys1.url, "GET", "/api/v1/admin/audit?action=jobs.run", admin.token);
		expect(job.body.items.find((e: { request_id: string }) => e.request_id === requestId)).toMatchObject({ actor_id: admin.id, target_type: "job", target_id: "kyc-pending-reminder" });

		const all = await call(sys1.url, "GET", "/api/v1/admin/audit?limit=2&offset=1", admin.token);
		expect(all.status).toBe(200);
		expect(all.body.items).toHaveLength(2);
		expect(all.body).toMatchObject({ limit: 2, offset: 1 });
		expect(all.body.total).toBeGreaterThanOrEqual(5);
		expect(all.body.items[0].seq).toBeGreaterThan(all.body.items[1].seq);
		const byActor = await call(sys1.url, "GET", `/api/v1/admin/audit?actor_id=${support.id}&limit=100`, admin.token);
		expect(byActor.body.items.length).toBeGreaterThan(0);
		expect(byActor.body.items.every((e: { actor_id: string }) => e.actor_id === support.id)).toBe(true);
		const future = new Date(Date.now() + 86400000).toISOString();
		expect((await call(sys1.url, "GET", `/api/v1/admin/audit?from=${encodeURIComponent(future)}`, admin.token)).body.total).toBe(0);
		const past = new Date(Date.now() - 3600000).toISOString();
		expect((await call(sys1.url, "GET", `/api/v1/admin/audit?from=${encodeURIComponent(past)}&to=${encodeURIComponent(future)}`, admin.token)).body.total).toBe(all.body.total);
	});

	it("keeps one chain under 20 concurrent writers, and a retried entry is written once", async () => {
		const before = await call(sys1.url, "GET", "/api/v1/admin/audit/verify", admin.token);
		expect(before.body.valid).toBe(true);
		const keys = Array.from({ length: 20 }, (_, i) => `concurrent-${namespace}-${i}`);
		const entries = await Promise.all(
			keys.map((key, i) =>
				// Half through the second node, so two brokers race for the chain head.
				(i % 2 ? sys2 : sys1).broker.call<{ id: string; seq: number }, object>("admin.audit", { key, actor_id: admin.id, action: "test.concurrent", target_type: "test", target_id: String(i), details: { i } })
			)
		);
		const retried = await sys1.broker.call<{ id: string }, object>("admin.audit", { key: keys[3], action: "test.concurrent", target_type: "test", target_id: "3" });
		expect(retried.id).toBe(entries[3].id);
		const after = await call(sys1.url, "GET", "/api/v1/admin/audit/verify", admin.token);
		expect(after.body).toEqual({ valid: true, entries: before.body.entries + 20 });
		const rows = await query<{ seq: string; prev_hash: string }>(adminDb(), "SELECT seq, prev_hash FROM audit_entries ORDER BY seq");
		expect(rows.map(r => Number(r.seq))).toEqual(rows.map((_, i) => i + 1));
		expect(new Set(rows.map(r => r.prev_hash)).size).toBe(rows.length);
	});

	it("detects a row edited in the database and names it", async () => {
		const [victim] = await query<{ id: string }>(adminDb(), "SELECT id FROM audit_entries WHERE action = 'user.suspend' ORDER BY seq LIMIT 1");
		await query(adminDb(), `UPDATE audit_entries SET details = '{"reason":"nothing to see"}' WHERE id = $1`, [victim.id]);
		const r = await call(sys1.url, "GET", "/api/v1/admin/audit/verify", admin.token);
		expect(r.status).toBe(200);
		expect(r.body).toMatchObject({ valid: false, first_broken_id: victim.id });
	});
});

describe("admin: embedded SQLite", () => {
	it("keeps a verifiable chain under concurrent writers and counts the dashboard's days", async () => {
		const local = await startSystem({ services: ["api", "auth", "users", "admin", "payments", "notifications"], sqlite: true });
		try {
			const entries = await Promise.all(
				Array.from({ length: 10 }, (_, i) => local.broker.call<{ seq: number }, object>("admin.audit", { key: `sqlite-${i}`, action: "test.sqlite", target_type: "test", target_id: String(i) }))
			);
			expect(entries.map(e => e.seq).sort((a, b) => a - b)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
			const a = await registerAndLogin(local.url);
			await local.broker.call("users.update", { id: a.user.id, roles: ["support"] });
			const token = (await http(local.url, "POST", "/api/v1/auth/login", { body: { email: a.email, password: a.password } })).body.access_token;
			const p = await http(local.url, "POST", "/api/v1/payments/charge", {
				token,
				body: { amount: 700, currency: "eur", payment_method: "pm_card_visa" },
				headers: { "Idempotency-Key": crypto.randomUUID() }
			});
			expect(p.status).toBe(201);
			const stats = await call(local.url, "GET", "/api/v1/admin/stats?days=2", token);
			expect(stats.status).toBe(200);
			const today = new Date().toISOString().slice(0, 10);
			expect(stats.body.signups).toEqual([expect.objectContaining({ count: 0 }), { day: today, count: 1 }]);
			expect(stats.body.payments[1]).toEqual({ day: today, succeeded: 1, failed: 0, refunded: 0, amount_succeeded: { eur: 700 } });
			const admin2 = await registerAndLogin(local.url);
			await local.broker.call("users.update", { id: admin2.user.id, roles: ["admin"] });
			const adminToken = (await http(local.url, "POST", "/api/v1/auth/login", { body: { email: admin2.email, password: admin2.password } })).body.access_token;
			expect((await call(local.url, "GET", "/api/v1/admin/audit/verify", adminToken)).body).toEqual({ valid: true, entries: 10 });
		} finally {
			await local.stop();
		}
	});
});
