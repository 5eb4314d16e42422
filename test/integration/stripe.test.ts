import crypto from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import Stripe from "stripe";
import { query } from "../helpers/pg";
import { http, registerAndLogin, startSystem, type HttpResult, type TestSystem } from "../helpers/system";
import { fingerprint } from "../../services/payments/idempotency";
import { StripeProvider } from "../../services/payments/providers/stripe";

// The Stripe provider, driven through the real `stripe` SDK against a local server that answers like
// Stripe's API for the calls the service makes; and Stripe webhooks signed with the SDK's own helper.

const API_KEY = "sk_test_x";
const WEBHOOK_SECRET = "whsec_test_secret";
const VALID = { amount: 2500, currency: "eur", payment_method: "pm_card_visa", description: "Stripe order" };
const newKey = () => `key-${crypto.randomUUID()}`;

interface Intent {
	id: string;
	object: "payment_intent";
	amount: number;
	currency: string;
	status: string;
	payment_method: string;
	metadata: Record<string, string>;
	last_payment_error: { code: string; decline_code?: string; message: string } | null;
	latest_charge: string;
	amount_refunded: number;
	created: number;
}

interface Seen {
	method: string;
	path: string;
	key: string | null;
	form: URLSearchParams;
}

const DECLINES: Record<string, { code: string; decline_code?: string; message: string }> = {
	pm_card_chargeDeclined: { code: "card_declined", decline_code: "generic_decline", message: "Your card was declined." },
	pm_card_chargeDeclinedInsufficientFunds: { code: "card_declined", decline_code: "insufficient_funds", message: "Your card has insufficient funds." },
	pm_card_chargeDeclinedExpiredCard: { code: "expired_card", message: "Your card has expired." }
};
const SUCCEEDS = new Set(["pm_card_visa", "pm_card_mastercard", "pm_card_amex"]);

/** A local stand-in for api.stripe.com: PaymentIntents (create+confirm, retrieve), refunds and events, with idempotency keys. */
class FakeStripe {
	server: Server;
	url = "";
	intents = new Map<string, Intent>();
	events: Record<string, unknown>[] = [];
	seen: Seen[] = [];
	/** Idempotency-Key → the first answer (and the request it answered). */
	private answers = new Map<string, { hash: string; status: number; body: unknown }>();
	/** Awaited after an intent is created, before the answer goes out (to order events around it). */
	hold?: (intent: Intent) => Promise<void>;
	/** Cut the connection instead of answering this many creations (the work is done, the answer lost). */
	dropAnswers = 0;
	/** Answer this many creations with a 500 that the SDK must not retry. */
	failures = 0;

	constructor() {
		this.server = createServer((req, res) => void this.handle(req, res));
	}

	async start(): Promise<void> {
		await new Promise<void>(resolve => this.server.listen(0, "127.0.0.1", resolve));
		this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
	}

	async stop(): Promise<void> {
		this.server.closeAllConnections();
		await new Promise(resolve => this.server.close(resolve));
	}

	keyCount(key: string): number {
		return this.seen.filter(s => s.key === key).length;
	}

	private send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) {
		res.writeHead(status, { "content-type": "application/json", "request-id": `req_${crypto.randomBytes(6).toString("hex")}`, ...headers });
		res.end(JSON.stringify(body));
	}

	private async handle(req: IncomingMessage, res: ServerResponse) {
		let raw = "";
		for await (const chunk of req) raw += chunk;
		const url = new URL(req.url ?? "/", "http://stripe.local");
		const form = new URLSearchParams(req.method === "GET" ? url.search : raw);
		const key = typeof req.headers["idempotency-key"] === "string" ? req.headers["idempotency-key"] : null;
		this.seen.push({ method: req.method ?? "", path: url.pathname, key, form });
		if (req.headers.authorization !== `Bearer ${API_KEY}`) {
			return this.send(res, 401, { error: { type: "invalid_request_error", message: "Invalid API Key provided" } });
		}

		if (req.method === "POST" && key) {
			const hash = crypto.createHash("sha256").update(`${url.pathname}?${[...form].map(([k, v]) => `${k}=${v}`).sort().join("&")}`).digest("hex");
			const previous = this.answers.get(key);
			if (previous) {
				if (previous.hash !== hash) {
					return this.send(res, 400, { error: { type: "idempotency_error", message: "Keys for idempotent requests can only be used with the same parameters they were first used with." } });
				}
				return this.send(res, previous.status, previous.body, { "idempotent-replayed": "true" });
			}
			const answer = await this.post(url.pathname, form, res);
			if (!answer) return;
			this.answers.set(key, { hash, ...answer });
			const intent = (answer.body as { id?: string; error?: { payment_intent?: Intent } }).error?.payment_intent ?? this.intents.get((answer.body as { id: string }).id);
			if (url.pathname === "/v1/payment_intents" && intent && this.hold) await this.hold(intent);
			if (url.pathname === "/v1/payment_intents" && this.dropAnswers > 0) {
				this.dropAnswers--;
				return req.socket.destroy();
			}
			return this.send(res, answer.status, answer.body);
		}
		const m = /^\/v1\/payment_intents\/([^/]+)$/.exec(url.pathname);
		if (req.method === "GET" && m) {
			const intent = this.intents.get(m[1]);
			if (!intent) return this.send(res, 404, { error: { type: "invalid_request_error", code: "resource_missing", message: `No such payment_intent: '${m[1]}'`, param: "intent" } });
			const expand = [...form.entries()].some(([k, v]) => k.startsWith("expand") && v === "latest_charge");
			return this.send(res, 200, expand ? { ...intent, latest_charge: this.charge(intent) } : intent);
		}
		if (req.method === "GET" && url.pathname === "/v1/events") {
			const types = [...form.entries()].filter(([k]) => k.startsWith("types")).map(([, v]) => v);
			const data = this.events.filter(e => !types.length || types.includes(e.type as string)).reverse();
			return this.send(res, 200, { object: "list", url: "/v1/events", has_more: false, data });
		}
		return this.send(res, 404, { error: { type: "invalid_request_error", message: `Unrecognized request URL (${req.method}: ${url.pathname})` } });
	}

	/** A POST's first answer (stored under its idempotency key); null when the connection was answered otherwise. */
	private async post(path: string, form: URLSearchParams, res: ServerResponse): Promise<{ status: number; body: unknown } | null> {
		if (path === "/v1/payment_intents") {
			if (this.failures > 0) {
				this.failures--;
				this.send(res, 500, { error: { type: "api_error", message: "Something went wrong on Stripe's end." } }, { "stripe-should-retry": "false" });
				return null;
			}
			const pm = form.get("payment_method") ?? "";
			if (!SUCCEEDS.has(pm) && !DECLINES[pm] && pm !== "pm_card_authenticationRequired") {
				return { status: 400, body: { error: { type: "invalid_request_error", code: "resource_missing", param: "payment_method", message: `No such PaymentMethod: '${pm}'` } } };
			}
			const metadata: Record<string, string> = {};
			for (const [k, v] of form) {
				const mk = /^metadata\[(.+)\]$/.exec(k);
				if (mk) metadata[mk[1]] = v;
			}
			const id = `pi_${crypto.randomBytes(12).toString("hex")}`;
			const decline = DECLINES[pm];
			const intent: Intent = {
				id,
				object: "payment_intent",
				amount: Number(form.get("amount")),
				currency: form.get("currency") ?? "",
				status: SUCCEEDS.has(pm) ? "succeeded" : pm === "pm_card_authenticationRequired" ? "requires_action" : "requires_payment_method",
				payment_method: pm,
				metadata,
				last_payment_error: decline ? { ...decline } : null,
				latest_charge: `ch_${id.slice(3)}`,
				amount_refunded: 0,
				created: Math.floor(Date.now() / 1000)
			};
			this.intents.set(id, intent);
			if (intent.status === "succeeded") this.event("payment_intent.succeeded", intent);
			if (decline) {
				this.event("payment_intent.payment_failed", intent);
				return { status: 402, body: { error: { type: "card_error", ...decline, payment_intent: intent } } };
			}
			return { status: 200, body: intent };
		}
		if (path === "/v1/refunds") {
			const intent = this.intents.get(form.get("payment_intent") ?? "");
			if (!intent || intent.status !== "succeeded") return { status: 400, body: { error: { type: "invalid_request_error", code: "charge_not_refundable", message: "not refundable" } } };
			const amount = Number(form.get("amount") ?? intent.amount - intent.amount_refunded);
			if (intent.amount_refunded + amount > intent.amount) {
				return { status: 400, body: { error: { type: "invalid_request_error", code: "amount_too_large", param: "amount", message: "Refund amount is greater than unrefunded amount on charge" } } };
			}
			intent.amount_refunded += amount;
			this.event("charge.refunded", this.charge(intent));
			return { status: 200, body: { id: `re_${crypto.randomBytes(12).toString("hex")}`, object: "refund", amount, payment_intent: intent.id, status: "succeeded", currency: intent.currency } };
		}
		this.send(res, 404, { error: { type: "invalid_request_error", message: `Unrecognized request URL (POST: ${path})` } });
		return null;
	}

	charge(intent: Intent) {
		return {
			id: intent.latest_charge,
			object: "charge",
			amount: intent.amount,
			amount_refunded: intent.amount_refunded,
			currency: intent.currency,
			payment_intent: intent.id,
			refunded: intent.amount_refunded >= intent.amount,
			metadata: intent.metadata
		};
	}

	event(type: string, object: object) {
		const e = stripeEvent(type, object);
		this.events.push(e);
		return e;
	}
}

function stripeEvent(type: string, object: object, id = `evt_${crypto.randomBytes(12).toString("hex")}`) {
	return { id, object: "event", api_version: "2025-01-01", created: Math.floor(Date.now() / 1000), livemode: false, pending_webhooks: 1, request: { id: null, idempotency_key: null }, type, data: { object } };
}

function expectProblem(res: HttpResult, status: number) {
	expect([res.status, res.text]).toEqual([status, expect.any(String)]);
	expect(res.headers.get("content-type")).toMatch(/^application\/problem\+json/);
	expect(res.body).toMatchObject({ type: "about:blank", status, request_id: expect.any(String) });
}

describe("payments on Stripe (the real SDK against a local Stripe API)", () => {
	let fake: FakeStripe;
	let sys: TestSystem;
	let db: string;
	let who: Awaited<ReturnType<typeof registerAndLogin>>;

	const charge = (body: unknown, key: string) => http(sys.url, "POST", "/api/v1/payments/charge", { token: who.token, body, headers: { "idempotency-key": key } });
	const getPayment = async (id: string) => (await http(sys.url, "GET", `/api/v1/payments/${id}`, { token: who.token })).body;
	const outboxTypes = async (paymentId: string) =>
		(await query<{ type: string }>(db, "SELECT type FROM outbox WHERE (payload::jsonb -> 'data' ->> 'id') = $1 ORDER BY seq", [paymentId])).map(r => r.type);

	/** Sends an event to the webhook, signed as Stripe signs it (the SDK's own test helper). */
	const webhook = (event: object, opts: { timestamp?: number; secret?: string; signature?: string; raw?: string } = {}) => {
		const payload = opts.raw ?? JSON.stringify(event, null, 2);
		const signature = opts.signature ?? Stripe.webhooks.generateTestHeaderString({ payload, secret: opts.secret ?? WEBHOOK_SECRET, timestamp: opts.timestamp });
		return http(sys.url, "POST", "/api/v1/webhooks/stripe", { raw: payload, headers: { "content-type": "application/json", "stripe-signature": signature } });
	};

	beforeAll(async () => {
		fake = new FakeStripe();
		await fake.start();
		sys = await startSystem({
			services: ["api", "auth", "users", "payments"],
			env: { STRIPE_API_KEY: API_KEY, STRIPE_API_URL: fake.url, STRIPE_WEBHOOK_SECRET: WEBHOOK_SECRET }
		});
		db = sys.env.PAYMENTS_DATABASE_URL;
		who = await registerAndLogin(sys.url);
	});
	afterAll(async () => {
		await sys?.stop();
		await fake?.stop();
	});

	describe("charges", () => {
		it("creates and confirms a PaymentIntent with a key derived from the payment id", async () => {
			const res = await charge(VALID, newKey());
			expect(res.status).toBe(201);
			expect(res.body).toMatchObject({ status: "succeeded", provider: "stripe", provider_payment_id: expect.stringMatching(/^pi_/), receipt_number: expect.stringMatching(/^R-/) });
			const call = fake.seen.find(s => s.key === `payment:${res.body.id}`)!;
			expect(call).toBeDefined();
			expect(call.method).toBe("POST");
			expect(call.path).toBe("/v1/payment_intents");
			expect(Object.fromEntries(call.form)).toMatchObject({
				amount: "2500",
				currency: "eur",
				payment_method: "pm_card_visa",
				confirm: "true",
				"automatic_payment_methods[enabled]": "true",
				"automatic_payment_methods[allow_redirects]": "never",
				"metadata[payment_id]": res.body.id,
				"metadata[user_id]": who.user.id,
				description: "Stripe order"
			});
			expect(fake.intents.get(res.body.provider_payment_id)?.status).toBe("succeeded");
			expect(await outboxTypes(res.body.id)).toEqual(["payment.succeeded"]);
		});

		it.each([
			["pm_card_chargeDeclined", "card_declined"],
			["pm_card_chargeDeclinedInsufficientFunds", "insufficient_funds"],
			["pm_card_chargeDeclinedExpiredCard", "expired_card"],
			["pm_card_authenticationRequired", "authentication_required"]
		])("maps %s to a 402 with failure_reason %s, the payment stored failed with its PaymentIntent", async (payment_method, reason) => {
			const res = await charge({ ...VALID, payment_method }, newKey());
			expectProblem(res, 402);
			expect(res.body.failure_reason).toBe(reason);
			const stored = await getPayment(res.body.payment_id);
			expect(stored).toMatchObject({ status: "failed", failure_reason: reason, provider_payment_id: expect.stringMatching(/^pi_/) });
			expect(fake.intents.has(stored.provider_payment_id)).toBe(true);
			expect(await outboxTypes(stored.id)).toEqual(["payment.failed"]);
		});

		it("maps an unknown payment method to 422 on payment_method and stores nothing", async () => {
			const before = await query(db, "SELECT id FROM payments");
			const res = await charge({ ...VALID, payment_method: "pm_nope" }, newKey());
			expectProblem(res, 422);
			expect(res.body.errors).toEqual([expect.objectContaining({ field: "payment_method" })]);
			expect(await query(db, "SELECT id FROM payments")).toHaveLength(before.length);
		});

		it("retries a lost answer with the same Idempotency-Key: Stripe sees the key twice, one intent exists", async () => {
			fake.dropAnswers = 1;
			const intents = fake.intents.size;
			const res = await charge(VALID, newKey());
			expect(res.status).toBe(201);
			expect(fake.keyCount(`payment:${res.body.id}`)).toBe(2);
			expect(fake.intents.size).toBe(intents + 1);
			expect(await outboxTypes(res.body.id)).toEqual(["payment.succeeded"]);
		});

		it("answers 503 when Stripe fails, keeps the payment processing, and the retry with the key resumes it", async () => {
			fake.failures = 1;
			const key = newKey();
			const failed = await charge(VALID, key);
			expectProblem(failed, 503);
			expect(failed.headers.get("retry-after")).toBeTruthy();
			const [row] = await query<{ id: string; status: string }>(db, "SELECT p.id, p.status FROM payments p JOIN idempotency_keys k ON k.payment_id = p.id WHERE k.idem_key = $1", [key]);
			expect(row.status).toBe("processing");

			const retried = await charge(VALID, key);
			expect(retried.status).toBe(201);
			expect(retried.body).toMatchObject({ id: row.id, status: "succeeded" });
			expect(fake.keyCount(`payment:${row.id}`)).toBe(2);
		});

		it("answers 409 to a second request with the key while Stripe is still working on the first", async () => {
			const key = newKey();
			let release!: () => void;
			const held = new Promise<void>(resolve => (release = resolve));
			let arrived!: () => void;
			const atStripe = new Promise<void>(resolve => (arrived = resolve));
			fake.hold = async () => {
				arrived();
				await held;
			};
			try {
				const first = charge(VALID, key);
				await atStripe;
				const second = await charge(VALID, key);
				expectProblem(second, 409);
				release();
				const done = await first;
				expect(done.status).toBe(201);
				expect([second.status, done.status].sort()).toEqual([201, 409]);
			} finally {
				fake.hold = undefined;
				release();
			}
		});

		it("resumes after a crash between Stripe's charge and our commit without charging twice", async () => {
			const key = newKey();
			const paymentId = crypto.randomUUID();
			const now = new Date();
			await query(
				db,
				`INSERT INTO payments (id, user_id, amount, currency, description, payment_method, status, provider, amount_refunded, created_at, updated_at)
				 VALUES ($1, $2, $3, $4, $5, $6, 'processing', 'stripe', 0, $7, $7)`,
				[paymentId, who.user.id, VALID.amount, VALID.currency, VALID.description, VALID.payment_method, now]
			);
			await query(
				db,
				`INSERT INTO idempotency_keys (user_id, idem_key, fingerprint, status, payment_id, locked_at, expires_at, created_at, updated_at)
				 VALUES ($1, $2, $3, 'in_progress', $4, $5, $6, $7, $7)`,
				[who.user.id, key, fingerprint(VALID), paymentId, new Date(now.getTime() - 3600_000), new Date(now.getTime() + 86400_000), now]
			);
			// The crashed node's provider call, made just as the service makes it.
			const provider = new StripeProvider({ apiKey: API_KEY, apiUrl: fake.url });
			const first = await provider.charge({
				amount: VALID.amount,
				currency: VALID.currency,
				paymentMethod: VALID.payment_method,
				description: VALID.description,
				idempotencyKey: `payment:${paymentId}`,
				metadata: { payment_id: paymentId, user_id: who.user.id }
			});
			expect(first.outcome).toBe("succeeded");
			const intents = fake.intents.size;

			const res = await charge(VALID, key);
			expect(res.status).toBe(201);
			expect(res.body).toMatchObject({ id: paymentId, status: "succeeded", provider_payment_id: (first as { intentId: string }).intentId });
			expect(fake.keyCount(`payment:${paymentId}`)).toBe(2);
			expect(fake.intents.size).toBe(intents);
			expect(await outboxTypes(paymentId)).toEqual(["payment.succeeded"]);
		});
	});

	describe("refunds and provider reads", () => {
		it("refunds through Stripe with keys derived from the payment and what was refunded before", async () => {
			const paid = (await charge(VALID, newKey())).body;
			const part = await sys.broker.call<any, object>("payments.refund", { id: paid.id, amount: 1000, reason: "partial" });
			expect(part).toMatchObject({ status: "partially_refunded", amount_refunded: 1000 });
			const rest = await sys.broker.call<any, object>("payments.refund", { id: paid.id });
			expect(rest).toMatchObject({ status: "refunded", amount_refunded: 2500 });
			const refunds = fake.seen.filter(s => s.path === "/v1/refunds");
			expect(refunds.map(s => [s.key, s.form.get("payment_intent"), s.form.get("amount")]).slice(-2)).toEqual([
				[`refund:${paid.id}:0`, paid.provider_payment_id, "1000"],
				[`refund:${paid.id}:1000`, paid.provider_payment_id, "1500"]
			]);
			expect(fake.intents.get(paid.provider_payment_id)!.amount_refunded).toBe(2500);
			expect(await outboxTypes(paid.id)).toEqual(["payment.succeeded", "payment.refunded", "payment.refunded"]);

			// Stripe's own charge.refunded events for those refunds change nothing more.
			for (const e of fake.events.filter(e => e.type === "charge.refunded" && (e.data as any).object.payment_intent === paid.provider_payment_id)) {
				expect((await webhook(e)).status).toBe(200);
			}
			expect((await getPayment(paid.id)).amount_refunded).toBe(2500);
			expect(await outboxTypes(paid.id)).toEqual(["payment.succeeded", "payment.refunded", "payment.refunded"]);
		});

		it("retrieves PaymentIntents and lists events through the provider interface", async () => {
			const paid = (await charge(VALID, newKey())).body;
			await sys.broker.call("payments.refund", { id: paid.id, amount: 500 });
			const provider = new StripeProvider({ apiKey: API_KEY, apiUrl: fake.url });
			expect(await provider.retrieveIntent(paid.provider_payment_id)).toMatchObject({
				id: paid.provider_payment_id,
				status: "succeeded",
				amount: 2500,
				currency: "eur",
				amountRefunded: 500,
				metadata: { payment_id: paid.id }
			});
			expect(await provider.retrieveIntent("pi_missing")).toBeNull();
			const { events } = await provider.listEvents({ types: ["charge.refunded"], limit: 100 });
			expect(events.length).toBeGreaterThan(0);
			expect(events.every(e => e.type === "charge.refunded")).toBe(true);
			expect(events.some(e => e.data.object.payment_intent === paid.provider_payment_id)).toBe(true);
		});
	});

	describe("webhooks", () => {
		it("accepts a correctly signed event with 200 { received: true }", async () => {
			const paid = (await charge(VALID, newKey())).body;
			const res = await webhook(stripeEvent("payment_intent.succeeded", fake.intents.get(paid.provider_payment_id)!));
			expect(res.status).toBe(200);
			expect(res.body).toEqual({ received: true });
			// Already succeeded: nothing moves, nothing new is announced.
			expect(await outboxTypes(paid.id)).toEqual(["payment.succeeded"]);
			// Events the service does not act on are acknowledged too.
			expect((await webhook(stripeEvent("customer.created", { id: "cus_1", object: "customer" }))).status).toBe(200);
		});

		it("refuses a missing or bad signature, an old or a future timestamp, with 400", async () => {
			const event = stripeEvent("payment_intent.succeeded", { id: "pi_unknown_1", object: "payment_intent", metadata: {} });
			const payload = JSON.stringify(event);
			const now = Math.floor(Date.now() / 1000);
			const cases: [string, Promise<HttpResult>, RegExp][] = [
				["missing", http(sys.url, "POST", "/api/v1/webhooks/stripe", { raw: payload, headers: { "content-type": "application/json" } }), /missing/],
				["wrong secret", webhook(event, { raw: payload, secret: "whsec_other" }), /does not match/],
				["tampered body", webhook(event, { raw: payload, signature: Stripe.webhooks.generateTestHeaderString({ payload: payload.replace("pi_unknown_1", "pi_unknown_2"), secret: WEBHOOK_SECRET }) }), /does not match/],
				["garbage", webhook(event, { raw: payload, signature: "nonsense" }), /malformed/],
				["10 minutes old", webhook(event, { raw: payload, timestamp: now - 600 }), /too old/],
				["10 minutes ahead", webhook(event, { raw: payload, timestamp: now + 600 }), /future/]
			];
			for (const [name, pending, detail] of cases) {
				const res = await pending;
				expect([name, res.status]).toEqual([name, 400]);
				expectProblem(res, 400);
				expect([name, res.body.detail]).toEqual([name, expect.stringMatching(detail)]);
			}
			expect(await query(db, "SELECT id FROM webhook_events WHERE id = $1", [event.id])).toEqual([]);
			// A timestamp inside the window is fine.
			expect((await webhook(event, { raw: payload, timestamp: now - 120 })).status).toBe(200);
		});

		it("applies the same event sent five times once", async () => {
			const paid = (await charge(VALID, newKey())).body;
			const refunded = { ...fake.charge(fake.intents.get(paid.provider_payment_id)!), amount_refunded: 2500, refunded: true };
			const event = stripeEvent("charge.refunded", refunded);
			const results = await Promise.all([1, 2, 3, 4, 5].map(() => webhook(event)));
			expect(results.map(r => r.status)).toEqual([200, 200, 200, 200, 200]);
			expect(await getPayment(paid.id)).toMatchObject({ status: "refunded", amount_refunded: 2500 });
			expect(await outboxTypes(paid.id)).toEqual(["payment.succeeded", "payment.refunded"]);
			expect(await query(db, "SELECT id FROM webhook_events WHERE id = $1", [event.id])).toHaveLength(1);
			// And once more, later.
			expect((await webhook(event)).status).toBe(200);
			expect(await outboxTypes(paid.id)).toEqual(["payment.succeeded", "payment.refunded"]);
		});

		it.each([
			["without", false],
			["with", true]
		])("handles payment_intent.succeeded arriving before the charge commits (%s our payment id in metadata)", async (_name, withMetadata) => {
			let eventId = "";
			fake.hold = async intent => {
				const object = withMetadata ? intent : { ...intent, metadata: {} };
				const event = stripeEvent("payment_intent.succeeded", object);
				eventId = event.id;
				expect((await webhook(event)).status).toBe(200);
				// Our charge has not committed: the event either waits for it, or (found by its metadata) already applied.
				const [row] = await query<{ processed_at: Date | null }>(db, "SELECT processed_at FROM webhook_events WHERE id = $1", [event.id]);
				expect(row.processed_at === null).toBe(!withMetadata);
				const [payment] = await query<{ status: string }>(db, "SELECT status FROM payments WHERE id = $1", [intent.metadata.payment_id]);
				expect(payment.status).toBe(withMetadata ? "succeeded" : "processing");
			};
			let res: HttpResult;
			try {
				res = await charge(VALID, newKey());
			} finally {
				fake.hold = undefined;
			}
			expect(res.status).toBe(201);
			expect(res.body).toMatchObject({ status: "succeeded", receipt_number: expect.stringMatching(/^R-/) });
			expect(await outboxTypes(res.body.id)).toEqual(["payment.succeeded"]);
			const [stored] = await query<{ processed_at: Date | null; payment_intent: string }>(db, "SELECT processed_at, payment_intent FROM webhook_events WHERE id = $1", [eventId]);
			expect(stored.payment_intent).toBe(res.body.provider_payment_id);
			expect(stored.processed_at).not.toBeNull();
		});

		it.each([
			["without", false],
			["with", true]
		])("handles charge.refunded arriving before the payment succeeded (%s our payment id in metadata)", async (_name, withMetadata) => {
			fake.hold = async intent => {
				const object = { ...fake.charge(intent), amount_refunded: intent.amount, refunded: true, metadata: withMetadata ? intent.metadata : {} };
				expect((await webhook(stripeEvent("charge.refunded", object))).status).toBe(200);
				const [payment] = await query<{ status: string }>(db, "SELECT status FROM payments WHERE id = $1", [intent.metadata.payment_id]);
				expect(payment.status).toBe(withMetadata ? "refunded" : "processing");
			};
			let res: HttpResult;
			try {
				res = await charge(VALID, newKey());
			} finally {
				fake.hold = undefined;
			}
			expect(res.status).toBe(201);
			const id = res.body.id;
			const final = await getPayment(id);
			expect(final).toMatchObject({ status: "refunded", amount_refunded: 2500, receipt_number: expect.stringMatching(/^R-/) });
			expect(await outboxTypes(id)).toEqual(["payment.succeeded", "payment.refunded"]);

			// Late events never move it back.
			const intent = fake.intents.get(final.provider_payment_id)!;
			expect((await webhook(stripeEvent("payment_intent.succeeded", intent))).status).toBe(200);
			expect((await webhook(stripeEvent("payment_intent.payment_failed", { ...intent, last_payment_error: { code: "card_declined" } }))).status).toBe(200);
			expect((await webhook(stripeEvent("charge.refunded", { ...fake.charge(intent), amount_refunded: 1000 }))).status).toBe(200);
			expect(await getPayment(id)).toMatchObject({ status: "refunded", amount_refunded: 2500, receipt_number: final.receipt_number });
			expect(await outboxTypes(id)).toEqual(["payment.succeeded", "payment.refunded"]);
		});

		it("moves a failed payment forward when Stripe later reports it succeeded, and a partial refund after it", async () => {
			const declined = await charge({ ...VALID, payment_method: "pm_card_chargeDeclined" }, newKey());
			expect(declined.status).toBe(402);
			const failed = await getPayment(declined.body.payment_id);
			const intent = fake.intents.get(failed.provider_payment_id)!;
			expect((await webhook(stripeEvent("payment_intent.succeeded", { ...intent, status: "succeeded", last_payment_error: null }))).status).toBe(200);
			expect(await getPayment(failed.id)).toMatchObject({ status: "succeeded", failure_reason: null, receipt_number: expect.stringMatching(/^R-/) });
			expect((await webhook(stripeEvent("charge.refunded", { ...fake.charge(intent), amount_refunded: 700 }))).status).toBe(200);
			expect(await getPayment(failed.id)).toMatchObject({ status: "partially_refunded", amount_refunded: 700 });
			expect(await outboxTypes(failed.id)).toEqual(["payment.failed", "payment.succeeded", "payment.refunded"]);
		});

		it("keeps an event for a PaymentIntent it does not know, and acknowledges it", async () => {
			const event = stripeEvent("payment_intent.succeeded", { id: `pi_elsewhere_${crypto.randomBytes(4).toString("hex")}`, object: "payment_intent", metadata: {} });
			expect((await webhook(event)).status).toBe(200);
			const [row] = await query<{ processed_at: Date | null }>(db, "SELECT processed_at FROM webhook_events WHERE id = $1", [event.id]);
			expect(row.processed_at).toBeNull();
		});
	});
});
