import crypto from "node:crypto";
import { Sequelize } from "sequelize";
import { query } from "../helpers/pg";
import { http, registerAndLogin, startSystem, type HttpResult, type TestSystem } from "../helpers/system";
import { fingerprint } from "../../services/payments/idempotency";
import { SimulatedProvider } from "../../services/payments/providers/simulated";

type Login = Awaited<ReturnType<typeof registerAndLogin>>;

const PAYMENT_FIELDS = [
	"amount",
	"amount_refunded",
	"created_at",
	"currency",
	"description",
	"failure_reason",
	"id",
	"provider",
	"provider_payment_id",
	"receipt_number",
	"status",
	"updated_at",
	"user_id"
];
const VALID = { amount: 1999, currency: "usd", payment_method: "pm_card_visa", description: "Order #1" };
const newKey = () => `key-${crypto.randomUUID()}`;

function expectProblem(res: HttpResult, status: number) {
	expect([res.status, res.text]).toEqual([status, expect.any(String)]);
	expect(res.headers.get("content-type")).toMatch(/^application\/problem\+json/);
	expect(res.body).toMatchObject({ type: "about:blank", status, instance: expect.any(String), request_id: expect.any(String) });
	expect(JSON.stringify(res.body)).not.toMatch(/stack|SELECT|INSERT/);
}

describe("payments through the gateway (simulated provider, PostgreSQL)", () => {
	let sys: TestSystem;
	let db: string;
	let alice: Login;
	let bob: Login;

	const charge = (who: Login, body: unknown, key?: string, headers: Record<string, string> = {}) =>
		http(sys.url, "POST", "/api/v1/payments/charge", { token: who.token, body, headers: key === undefined ? headers : { ...headers, "idempotency-key": key } });
	const outbox = (paymentId: string) =>
		query<{ type: string; channel: string; payload: string; request_id: string | null }>(
			db,
			"SELECT type, channel, payload, request_id FROM outbox WHERE (payload::jsonb -> 'data' ->> 'id') = $1 ORDER BY seq",
			[paymentId]
		);
	const countPayments = async (userId: string) => Number((await query<{ n: string }>(db, "SELECT count(*) AS n FROM payments WHERE user_id = $1", [userId]))[0].n);

	beforeAll(async () => {
		sys = await startSystem({ services: ["api", "auth", "users", "payments"] });
		db = sys.env.PAYMENTS_DATABASE_URL;
		alice = await registerAndLogin(sys.url, { name: "Alice Payer" });
		bob = await registerAndLogin(sys.url, { name: "Bob Payer" });
	});
	afterAll(async () => {
		await sys?.stop();
	});

	describe("POST /payments/charge", () => {
		it("charges a card: 201 with the payment, a receipt number, and its outbox event written with it", async () => {
			const res = await charge(alice, VALID, newKey(), { "x-request-id": "pay-test.1" });
			expect(res.status).toBe(201);
			expect(Object.keys(res.body).sort()).toEqual(PAYMENT_FIELDS);
			expect(res.body).toEqual({
				id: expect.stringMatching(/^[0-9a-f-]{36}$/),
				user_id: alice.user.id,
				amount: 1999,
				currency: "usd",
				description: "Order #1",
				status: "succeeded",
				provider: "simulated",
				provider_payment_id: expect.stringMatching(/^pi_sim_/),
				amount_refunded: 0,
				failure_reason: null,
				receipt_number: expect.stringMatching(/^R-\d{4}-\d{6}$/),
				created_at: expect.any(String),
				updated_at: expect.any(String)
			});
			expect(res.headers.get("location")).toBe(`/api/v1/payments/${res.body.id}`);
			expect(res.headers.get("idempotent-replayed")).toBeNull();

			const events = await outbox(res.body.id);
			expect(events.map(e => [e.type, e.channel])).toEqual([["payment.succeeded", "payments.events"]]);
			const envelope = JSON.parse(events[0].payload);
			expect(envelope).toMatchObject({ id: expect.any(String), type: "payment.succeeded", occurred_at: expect.any(String) });
			expect(envelope.data).toEqual({ ...res.body, customer_user_id: alice.user.id });
			expect(events[0].request_id).toBe("pay-test.1");
			// The relay publishes it to the channel after the commit.
			for (let i = 0; i < 400; i++) {
				const [row] = await query<{ published_at: Date | null }>(db, "SELECT published_at FROM outbox WHERE id = $1", [envelope.id]);
				if (row.published_at) break;
				await new Promise(r => setTimeout(r, 25));
			}
			expect((await query(db, "SELECT published_at FROM outbox WHERE id = $1 AND published_at IS NOT NULL", [envelope.id])).length).toBe(1);

			const got = await http(sys.url, "GET", `/api/v1/payments/${res.body.id}`, { token: alice.token });
			expect(got.status).toBe(200);
			expect(got.body).toEqual(res.body);
		});

		it("needs an Idempotency-Key of 1 to 255 characters (400), and charges nothing without one", async () => {
			const before = await countPayments(alice.user.id);
			const none = await charge(alice, VALID);
			expectProblem(none, 400);
			expect(none.body.detail).toMatch(/Idempotency-Key/);
			expectProblem(await charge(alice, VALID, "k".repeat(256)), 400);
			expect(await countPayments(alice.user.id)).toBe(before);
			expect((await charge(alice, VALID, "k".repeat(255))).status).toBe(201);
		});

		it("needs a token (401)", async () => {
			const res = await http(sys.url, "POST", "/api/v1/payments/charge", { body: VALID, headers: { "idempotency-key": newKey() } });
			expectProblem(res, 401);
		});

		it.each([
			["a zero amount", { ...VALID, amount: 0 }, "amount"],
			["a negative amount", { ...VALID, amount: -5 }, "amount"],
			["an amount over 99999999", { ...VALID, amount: 100000000 }, "amount"],
			["a float amount", { ...VALID, amount: 19.99 }, "amount"],
			["a string amount", { ...VALID, amount: "1999" }, "amount"],
			["no amount", { currency: "usd", payment_method: "pm_card_visa" }, "amount"],
			["an uppercase currency", { ...VALID, currency: "USD" }, "currency"],
			["an unknown currency", { ...VALID, currency: "xyz" }, "currency"],
			["no payment method", { amount: 100, currency: "usd" }, "payment_method"],
			["a description over 500 characters", { ...VALID, description: "x".repeat(501) }, "description"],
			["an unknown field", { ...VALID, status: "succeeded" }, "status"],
			["a user_id that is not a UUID", { ...VALID, user_id: "me" }, "user_id"]
		])("refuses %s with 422 and charges nothing", async (_name, body, field) => {
			const before = await countPayments(alice.user.id);
			const res = await charge(alice, body, newKey());
			expectProblem(res, 422);
			expect(res.body.errors).toEqual(expect.arrayContaining([expect.objectContaining({ field })]));
			expect(await countPayments(alice.user.id)).toBe(before);
		});

		it("takes user_id only when it is the caller (else 403)", async () => {
			expect((await charge(alice, { ...VALID, user_id: alice.user.id }, newKey())).status).toBe(201);
			const before = await countPayments(bob.user.id);
			expectProblem(await charge(alice, { ...VALID, user_id: bob.user.id }, newKey()), 403);
			expect(await countPayments(bob.user.id)).toBe(before);
		});

		it("refuses an unknown payment method with 422 on payment_method, stores nothing and frees the key", async () => {
			const key = newKey();
			const before = await countPayments(alice.user.id);
			const res = await charge(alice, { ...VALID, payment_method: "pm_card_bogus" }, key);
			expectProblem(res, 422);
			expect(res.body.errors).toEqual([expect.objectContaining({ field: "payment_method" })]);
			expect(await countPayments(alice.user.id)).toBe(before);
			// Nothing was charged, so the key may carry the corrected request.
			expect((await charge(alice, VALID, key)).status).toBe(201);
		});

		it("declines a card with 402, payment_id and failure_reason, and stores the payment as failed", async () => {
			const res = await charge(alice, { ...VALID, payment_method: "pm_card_chargeDeclined" }, newKey());
			expectProblem(res, 402);
			expect(res.body).toMatchObject({ title: "Payment Required", payment_id: expect.any(String), failure_reason: "card_declined" });
			const stored = await http(sys.url, "GET", `/api/v1/payments/${res.body.payment_id}`, { token: alice.token });
			expect(stored.body).toMatchObject({ status: "failed", failure_reason: "card_declined", receipt_number: null, provider_payment_id: expect.stringMatching(/^pi_sim_/) });
			expect((await outbox(res.body.payment_id)).map(e => e.type)).toEqual(["payment.failed"]);
		});

		it.each([
			["pm_card_chargeDeclinedInsufficientFunds", "insufficient_funds"],
			["pm_card_chargeDeclinedExpiredCard", "expired_card"],
			["pm_card_authenticationRequired", "authentication_required"]
		])("declines %s with failure_reason %s", async (payment_method, reason) => {
			const res = await charge(alice, { ...VALID, payment_method }, newKey());
			expectProblem(res, 402);
			expect(res.body.failure_reason).toBe(reason);
		});

		it.each(["pm_card_mastercard", "pm_card_amex"])("charges %s", async payment_method => {
			expect((await charge(alice, { ...VALID, payment_method }, newKey())).body.status).toBe("succeeded");
		});

		it("gives receipt numbers in sequence", async () => {
			const a = await charge(alice, VALID, newKey());
			const b = await charge(alice, VALID, newKey());
			const [, year, n] = /^R-(\d{4})-(\d{6})$/.exec(a.body.receipt_number)!;
			expect(b.body.receipt_number).toBe(`R-${year}-${String(Number(n) + 1).padStart(6, "0")}`);
			const dupes = await query(db, "SELECT receipt_number FROM payments WHERE receipt_number IS NOT NULL GROUP BY receipt_number HAVING count(*) > 1");
			expect(dupes).toEqual([]);
		});

		it("gives concurrent charges one number each, with no gaps", async () => {
			const results = await Promise.all(Array.from({ length: 12 }, () => charge(alice, VALID, newKey())));
			const numbers = results.map(r => Number(/^R-\d{4}-(\d{6})$/.exec(r.body.receipt_number)![1])).sort((x, y) => x - y);
			const first = numbers[0];
			expect(numbers).toEqual(numbers.map((_, i) => first + i));
		});
	});

	describe("Idempotency-Key", () => {
		it("replays the first answer with Idempotent-Replayed: true and charges nothing", async () => {
			const key = newKey();
			const first = await charge(alice, VALID, key);
			expect(first.status).toBe(201);
			const before = await countPayments(alice.user.id);
			const intents = await query(db, "SELECT id FROM sim_payment_intents");
			// Same body, keys in another order: the same fingerprint.
			const again = await charge(alice, { description: "Order #1", payment_method: "pm_card_visa", currency: "usd", amount: 1999 }, key);
			expect(again.status).toBe(201);
			expect(again.headers.get("idempotent-replayed")).toBe("true");
			expect(again.body).toEqual(first.body);
			expect(await countPayments(alice.user.id)).toBe(before);
			expect(await query(db, "SELECT id FROM sim_payment_intents")).toHaveLength(intents.length);
			expect(await outbox(first.body.id)).toHaveLength(1);
		});

		it("replays a decline as the same 402", async () => {
			const key = newKey();
			const body = { ...VALID, payment_method: "pm_card_chargeDeclined" };
			const first = await charge(alice, body, key);
			expect(first.status).toBe(402);
			const again = await charge(alice, body, key);
			expectProblem(again, 402);
			expect(again.headers.get("idempotent-replayed")).toBe("true");
			expect(again.body).toMatchObject({ payment_id: first.body.payment_id, failure_reason: "card_declined", detail: first.body.detail });
			expect(again.body.request_id).toBe(again.headers.get("x-request-id"));
		});

		it("refuses the same key with a different body (422)", async () => {
			const key = newKey();
			expect((await charge(alice, VALID, key)).status).toBe(201);
			const res = await charge(alice, { ...VALID, amount: 2000 }, key);
			expectProblem(res, 422);
			expect(res.body.detail).toMatch(/Idempotency-Key/);
		});

		it("keeps keys per user: another user's same key is a new charge", async () => {
			const key = newKey();
			const a = await charge(alice, VALID, key);
			const b = await charge(bob, VALID, key);
			expect([a.status, b.status]).toEqual([201, 201]);
			expect(b.headers.get("idempotent-replayed")).toBeNull();
			expect(b.body.id).not.toBe(a.body.id);
			expect(b.body.user_id).toBe(bob.user.id);
		});

		it("forgets a key once it expires: the same key is then a new charge", async () => {
			const key = newKey();
			const first = await charge(alice, VALID, key);
			await query(db, "UPDATE idempotency_keys SET expires_at = $1 WHERE user_id = $2 AND idem_key = $3", [new Date(Date.now() - 1000), alice.user.id, key]);
			const later = await charge(alice, VALID, key);
			expect([later.status, later.headers.get("idempotent-replayed")]).toEqual([201, null]);
			expect(later.body.id).not.toBe(first.body.id);
			const [row] = await query<{ expires_at: Date }>(db, "SELECT expires_at FROM idempotency_keys WHERE user_id = $1 AND idem_key = $2", [alice.user.id, key]);
			// IDEMPOTENCY_TTL_S defaults to 24 h.
			expect(new Date(row.expires_at).getTime()).toBeGreaterThan(Date.now() + 23 * 3600_000);
		});

		it("answers 409 while the first request with the key is still running", async () => {
			// A request in flight on some node: its key is locked and its payment processing.
			const key = newKey();
			const paymentId = crypto.randomUUID();
			await insertInFlight(db, alice.user.id, key, paymentId, VALID, new Date());
			const res = await charge(alice, VALID, key);
			expectProblem(res, 409);
			expect((await query(db, "SELECT status FROM payments WHERE id = $1", [paymentId]))[0]).toEqual({ status: "processing" });
		});

		it("gives concurrent requests with one key one charge: one 201, the others 409 or its replay", async () => {
			const key = newKey();
			const body = { ...VALID, description: `burst ${key}` };
			const results = await Promise.all([1, 2, 3, 4, 5].map(() => charge(alice, body, key)));
			const fresh = results.filter(r => r.status === 201 && r.headers.get("idempotent-replayed") === null);
			expect(fresh).toHaveLength(1);
			for (const r of results) {
				if (r === fresh[0]) continue;
				if (r.status === 201) expect([r.headers.get("idempotent-replayed"), r.body.id]).toEqual(["true", fresh[0].body.id]);
				else expectProblem(r, 409);
			}
			const rows = await query(db, "SELECT id FROM payments WHERE description = $1", [body.description]);
			expect(rows).toEqual([{ id: fresh[0].body.id }]);
		});

		it("resumes a request whose node crashed before calling the provider", async () => {
			const key = newKey();
			const paymentId = crypto.randomUUID();
			await insertInFlight(db, alice.user.id, key, paymentId, VALID, new Date(Date.now() - 3600_000));
			const res = await charge(alice, VALID, key);
			expect(res.status).toBe(201);
			expect(res.body).toMatchObject({ id: paymentId, status: "succeeded", receipt_number: expect.any(String) });
			expect(await query(db, "SELECT id FROM sim_payment_intents WHERE idempotency_key = $1", [`payment:${paymentId}`])).toHaveLength(1);
			expect((await outbox(paymentId)).map(e => e.type)).toEqual(["payment.succeeded"]);
		});

		it("resumes a request whose node crashed after the provider charged: the same PaymentIntent, no second charge", async () => {
			const key = newKey();
			const paymentId = crypto.randomUUID();
			await insertInFlight(db, alice.user.id, key, paymentId, VALID, new Date(Date.now() - 3600_000));
			// What the crashed node did before dying: the provider call, with the key derived from the payment id.
			const sequelize = new Sequelize(db, { logging: false });
			let intentId: string;
			try {
				const first = await new SimulatedProvider(() => sequelize).charge({
					amount: VALID.amount,
					currency: VALID.currency,
					paymentMethod: VALID.payment_method,
					description: VALID.description,
					idempotencyKey: `payment:${paymentId}`,
					metadata: { payment_id: paymentId, user_id: alice.user.id }
				});
				expect(first.outcome).toBe("succeeded");
				intentId = (first as { intentId: string }).intentId;
			} finally {
				await sequelize.close();
			}

			const res = await charge(alice, VALID, key);
			expect(res.status).toBe(201);
			expect(res.body).toMatchObject({ id: paymentId, status: "succeeded", provider_payment_id: intentId });
			expect(await query(db, "SELECT id FROM sim_payment_intents WHERE idempotency_key = $1", [`payment:${paymentId}`])).toEqual([{ id: intentId }]);
			// And from now on the key replays.
			const again = await charge(alice, VALID, key);
			expect([again.status, again.headers.get("idempotent-replayed"), again.body.id]).toEqual([201, "true", paymentId]);
		});
	});

	describe("GET /payments, /payments/{id}, /payments/{id}/receipt", () => {
		let carol: Login;
		let ids: string[];

		beforeAll(async () => {
			carol = await registerAndLogin(sys.url, { name: "Carol Customer" });
			ids = [];
			for (const amount of [100, 200, 300]) ids.push((await charge(carol, { ...VALID, amount }, newKey())).body.id);
			const declined = await charge(carol, { ...VALID, payment_method: "pm_card_chargeDeclined" }, newKey());
			ids.push(declined.body.payment_id);
		});

		it("lists the caller's payments, newest first, with limit and offset", async () => {
			const all = await http(sys.url, "GET", "/api/v1/payments", { token: carol.token });
			expect(all.status).toBe(200);
			expect(all.body).toMatchObject({ total: 4, limit: 20, offset: 0 });
			expect(all.body.items.map((p: { id: string }) => p.id)).toEqual([...ids].reverse());
			for (const p of all.body.items) expect(Object.keys(p).sort()).toEqual(PAYMENT_FIELDS);

			const page = await http(sys.url, "GET", "/api/v1/payments?limit=2&offset=1", { token: carol.token });
			expect(page.body).toMatchObject({ total: 4, limit: 2, offset: 1 });
			expect(page.body.items.map((p: { id: string }) => p.id)).toEqual([ids[2], ids[1]]);

			const others = await http(sys.url, "GET", "/api/v1/payments", { token: bob.token });
			expect(others.body.items.every((p: { user_id: string }) => p.user_id === bob.user.id)).toBe(true);

			for (const q of ["limit=0", "limit=101", "offset=-1", "limit=abc", "user_id=" + alice.user.id]) {
				expectProblem(await http(sys.url, "GET", `/api/v1/payments?${q}`, { token: carol.token }), 422);
			}
			expectProblem(await http(sys.url, "GET", "/api/v1/payments"), 401);
		});

		it("shows a payment to its owner and to support, 403 to others, 404 when missing", async () => {
			expect((await http(sys.url, "GET", `/api/v1/payments/${ids[0]}`, { token: carol.token })).body.id).toBe(ids[0]);
			expectProblem(await http(sys.url, "GET", `/api/v1/payments/${ids[0]}`, { token: bob.token }), 403);
			expectProblem(await http(sys.url, "GET", `/api/v1/payments/${crypto.randomUUID()}`, { token: carol.token }), 404);
			expectProblem(await http(sys.url, "GET", "/api/v1/payments/not-a-uuid", { token: carol.token }), 422);

			const support = await registerAndLogin(sys.url);
			await sys.broker.call("users.update", { id: support.user.id, roles: ["user", "support"] });
			const login = await http(sys.url, "POST", "/api/v1/auth/login", { body: { email: support.email, password: support.password } });
			const token = login.body.access_token as string;
			expect((await http(sys.url, "GET", `/api/v1/payments/${ids[0]}`, { token })).body.user_id).toBe(carol.user.id);
			expect((await http(sys.url, "GET", `/api/v1/payments/${ids[0]}/receipt`, { token })).status).toBe(200);
		});

		it("gives a receipt once the payment succeeded, and 404 otherwise", async () => {
			const payment = (await http(sys.url, "GET", `/api/v1/payments/${ids[1]}`, { token: carol.token })).body;
			const res = await http(sys.url, "GET", `/api/v1/payments/${ids[1]}/receipt`, { token: carol.token });
			expect(res.status).toBe(200);
			expect(res.body).toEqual({
				receipt_number: payment.receipt_number,
				payment_id: ids[1],
				amount: 200,
				currency: "usd",
				issued_at: expect.any(String),
				customer: { name: "Carol Customer", email: carol.email },
				description: "Order #1"
			});
			expect(Number.isNaN(Date.parse(res.body.issued_at))).toBe(false);

			const declined = await http(sys.url, "GET", `/api/v1/payments/${ids[3]}/receipt`, { token: carol.token });
			expectProblem(declined, 404);
			expect(declined.body.detail).toMatch(/no receipt.*failed/);
			expectProblem(await http(sys.url, "GET", `/api/v1/payments/${ids[1]}/receipt`, { token: bob.token }), 403);
			expectProblem(await http(sys.url, "GET", `/api/v1/payments/${crypto.randomUUID()}/receipt`, { token: carol.token }), 404);
		});
	});

	describe("payments.refund (internal)", () => {
		it("refunds in part, then the rest, each through the provider with its outbox event", async () => {
			const paid = (await charge(alice, { ...VALID, amount: 1000 }, newKey())).body;
			const part = await sys.broker.call<any, object>("payments.refund", { id: paid.id, amount: 300, reason: "damaged item", actor_id: bob.user.id });
			expect(part).toMatchObject({ id: paid.id, status: "partially_refunded", amount_refunded: 300, receipt_number: paid.receipt_number });
			const rest = await sys.broker.call<any, object>("payments.refund", { id: paid.id });
			expect(rest).toMatchObject({ status: "refunded", amount_refunded: 1000 });

			const events = await outbox(paid.id);
			expect(events.map(e => e.type)).toEqual(["payment.succeeded", "payment.refunded", "payment.refunded"]);
			expect(events.map(e => JSON.parse(e.payload).data.amount_refunded)).toEqual([0, 300, 1000]);
			const refunds = await query(db, "SELECT amount, total_refunded, reason, actor_id FROM payment_refunds WHERE payment_id = $1 ORDER BY total_refunded", [paid.id]);
			expect(refunds).toEqual([
				{ amount: 300, total_refunded: 300, reason: "damaged item", actor_id: bob.user.id },
				{ amount: 700, total_refunded: 1000, reason: null, actor_id: null }
			]);
			const provider = await query(db, "SELECT amount_refunded FROM sim_payment_intents WHERE id = $1", [paid.provider_payment_id]);
			expect(provider).toEqual([{ amount_refunded: 1000 }]);

			// Nothing left: 409. The receipt stays.
			await expect(sys.broker.call("payments.refund", { id: paid.id, amount: 1 })).rejects.toMatchObject({ code: 409 });
			expect((await http(sys.url, "GET", `/api/v1/payments/${paid.id}/receipt`, { token: alice.token })).status).toBe(200);
		});

		it("refunds in full by default; refuses too much (422), a failed payment (409), a missing one (404)", async () => {
			const paid = (await charge(alice, { ...VALID, amount: 500 }, newKey())).body;
			await expect(sys.broker.call("payments.refund", { id: paid.id, amount: 501 })).rejects.toMatchObject({ code: 422 });
			const full = await sys.broker.call<any, object>("payments.refund", { id: paid.id, reason: "cancelled" });
			expect(full).toMatchObject({ status: "refunded", amount_refunded: 500 });
			expect((await outbox(paid.id)).map(e => e.type)).toEqual(["payment.succeeded", "payment.refunded"]);

			const declined = await charge(alice, { ...VALID, payment_method: "pm_card_chargeDeclined" }, newKey());
			await expect(sys.broker.call("payments.refund", { id: declined.body.payment_id })).rejects.toMatchObject({ code: 409 });
			await expect(sys.broker.call("payments.refund", { id: crypto.randomUUID() })).rejects.toMatchObject({ code: 404 });
		});
	});

	describe("webhooks and health", () => {
		it("refuses webhooks when STRIPE_WEBHOOK_SECRET is not set (400)", async () => {
			const res = await http(sys.url, "POST", "/api/v1/webhooks/stripe", {
				raw: JSON.stringify({ id: "evt_1", type: "payment_intent.succeeded", data: { object: {} } }),
				headers: { "content-type": "application/json", "stripe-signature": "t=1,v1=abc" }
			});
			expectProblem(res, 400);
			expect(res.body.detail).toBe("webhooks are not configured");
		});

		it("answers health with its database, and the gateway is ready with payments", async () => {
			expect(await sys.broker.call("payments.health")).toEqual({ db: true });
			const ready = await http(sys.url, "GET", "/health/ready");
			expect(ready.status).toBe(200);
			expect(ready.body.checks.payments).toBe("ok");
		});
	});
});

describe("payments on the embedded default (SQLite)", () => {
	let sys: TestSystem;
	beforeAll(async () => {
		sys = await startSystem({ services: ["api", "auth", "users", "payments"], sqlite: true });
	});
	afterAll(async () => {
		await sys?.stop();
	});

	it("charges, replays, declines, refunds and gives receipts", async () => {
		const who = await registerAndLogin(sys.url);
		const key = newKey();
		const post = (body: unknown, k: string) => http(sys.url, "POST", "/api/v1/payments/charge", { token: who.token, body, headers: { "idempotency-key": k } });
		const first = await post(VALID, key);
		expect(first.body).toMatchObject({ status: "succeeded", receipt_number: expect.stringMatching(/^R-\d{4}-000001$/) });
		const again = await post(VALID, key);
		expect([again.status, again.headers.get("idempotent-replayed"), again.body.id]).toEqual([201, "true", first.body.id]);
		expect((await post({ ...VALID, amount: 1 }, key)).status).toBe(422);
		const second = await post(VALID, newKey());
		expect(second.body.receipt_number).toMatch(/^R-\d{4}-000002$/);
		const declined = await post({ ...VALID, payment_method: "pm_card_authenticationRequired" }, newKey());
		expect([declined.status, declined.body.failure_reason]).toEqual([402, "authentication_required"]);
		const burst = await Promise.all([1, 2, 3].map(() => post({ ...VALID, description: "burst" }, "sqlite-burst")));
		expect(burst.filter(r => r.status === 201 && !r.headers.get("idempotent-replayed"))).toHaveLength(1);
		const refunded = await sys.broker.call<any, object>("payments.refund", { id: first.body.id, amount: 999 });
		expect(refunded).toMatchObject({ status: "partially_refunded", amount_refunded: 999 });
		const receipt = await http(sys.url, "GET", `/api/v1/payments/${first.body.id}/receipt`, { token: who.token });
		expect(receipt.body).toMatchObject({ receipt_number: first.body.receipt_number, customer: { email: who.email } });
		const list = await http(sys.url, "GET", "/api/v1/payments?limit=2", { token: who.token });
		expect(list.body).toMatchObject({ total: 4, limit: 2, offset: 0 });
	});
});

describe.each([
	["PostgreSQL", false],
	["SQLite", true]
])("the simulated provider's idempotency keys (%s)", (_name, sqlite) => {
	let sys: TestSystem;
	let sequelize: Sequelize;
	let provider: SimulatedProvider;
	const request = (key: string, over: Partial<{ amount: number; paymentMethod: string }> = {}) => ({
		amount: 1999,
		currency: "usd",
		paymentMethod: "pm_card_visa",
		description: "sim",
		idempotencyKey: key,
		metadata: { payment_id: key },
		...over
	});
	const rows = async (key: string) => {
		const [intents] = (await sequelize.query("SELECT id FROM sim_payment_intents WHERE idempotency_key = :key", { replacements: { key } })) as [{ id: string }[], unknown];
		const [events] = (await sequelize.query("SELECT type FROM sim_events WHERE payload LIKE :like", { replacements: { like: `%"payment_id":"${key}"%` } })) as [{ type: string }[], unknown];
		return { intents: intents.map(r => r.id), events: events.map(r => r.type) };
	};

	beforeAll(async () => {
		sys = await startSystem({ services: ["payments"], sqlite });
		sequelize = (sys.broker.getLocalService("payments") as unknown as { sequelize: Sequelize }).sequelize;
		provider = new SimulatedProvider(() => sequelize);
	});
	afterAll(async () => {
		await sys?.stop();
	});

	it("creates one PaymentIntent and one event per key, and gives the same intent to a repeat", async () => {
		const key = `sim-${crypto.randomUUID()}`;
		const first = await provider.charge(request(key));
		expect(first).toEqual({ outcome: "succeeded", intentId: expect.stringMatching(/^pi_sim_/) });
		expect(await provider.charge(request(key))).toEqual(first);
		expect(await rows(key)).toEqual({ intents: [(first as { intentId: string }).intentId], events: ["payment_intent.succeeded"] });
	});

	it("refuses a key used with other parameters, as Stripe does, whatever the payment method", async () => {
		const key = `sim-${crypto.randomUUID()}`;
		await provider.charge(request(key));
		await expect(provider.charge(request(key, { amount: 1 }))).rejects.toMatchObject({ code: "idempotency_error" });
		await expect(provider.charge(request(key, { paymentMethod: "pm_nope" }))).rejects.toMatchObject({ code: "idempotency_error" });
		expect((await rows(key)).intents).toHaveLength(1);
	});

	it("creates nothing for an unknown payment method", async () => {
		const key = `sim-${crypto.randomUUID()}`;
		expect(await provider.charge(request(key, { paymentMethod: "pm_nope" }))).toMatchObject({ outcome: "invalid", field: "payment_method" });
		expect(await rows(key)).toEqual({ intents: [], events: [] });
	});

	it("gives concurrent requests with one key one PaymentIntent", async () => {
		const key = `sim-${crypto.randomUUID()}`;
		const results = await Promise.all([1, 2, 3, 4, 5].map(() => provider.charge(request(key))));
		const ids = new Set(results.map(r => (r as { intentId: string }).intentId));
		expect(ids.size).toBe(1);
		expect(await rows(key)).toEqual({ intents: [...ids], events: ["payment_intent.succeeded"] });
	});
});

/** The rows a node leaves when it stops (or dies) in the middle of a charge: a locked key and a processing payment. */
async function insertInFlight(db: string, userId: string, key: string, paymentId: string, body: Record<string, unknown>, lockedAt: Date) {
	const now = new Date();
	await query(
		db,
		`INSERT INTO payments (id, user_id, amount, currency, description, payment_method, status, provider, amount_refunded, created_at, updated_at)
		 VALUES ($1, $2, $3, $4, $5, $6, 'processing', 'simulated', 0, $7, $7)`,
		[paymentId, userId, body.amount, body.currency, body.description ?? null, body.payment_method, now]
	);
	await query(
		db,
		`INSERT INTO idempotency_keys (user_id, idem_key, fingerprint, status, payment_id, locked_at, expires_at, created_at, updated_at)
		 VALUES ($1, $2, $3, 'in_progress', $4, $5, $6, $7, $7)`,
		[userId, key, fingerprint(body), paymentId, lockedAt, new Date(now.getTime() + 86400_000), now]
	);
}
