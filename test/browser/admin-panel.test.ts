import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { chromium, type BrowserContext, type Page } from "playwright-core";
import { http, registerAndLogin, startSystem, type TestSystem } from "../helpers/system";

// The admin panel in a real browser: Debian's chromium driven by playwright-core, against a full system.
const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const ARTIFACTS = path.resolve(__dirname, "../../test-artifacts");

type Login = Awaited<ReturnType<typeof registerAndLogin>>;

jest.setTimeout(60000);

describe("admin panel (GET /admin) in Chromium", () => {
	let sys: TestSystem;
	let context: BrowserContext;
	let page: Page;
	let profile: string;
	let admin: Login;
	let support: Login;
	let plain: Login;
	let target: Login;
	let paymentId: string;
	const pageErrors: string[] = [];

	const grant = (who: Login, roles: string[]) => sys.broker.call("users.update", { id: who.user.id, roles });
	const shot = (name: string) => page.screenshot({ path: path.join(ARTIFACTS, `admin-${name}.png`), fullPage: true });

	async function signIn(who: Login) {
		await page.goto(`${sys.url}/admin`);
		await page.getByLabel("Email").fill(who.email);
		await page.getByLabel("Password").fill(who.password);
		await page.getByRole("button", { name: "Sign in" }).click();
	}
	async function signOut() {
		await page.getByRole("button", { name: "Sign out" }).click();
		await page.getByRole("button", { name: "Sign in" }).waitFor();
	}

	beforeAll(async () => {
		if (!fs.existsSync(CHROMIUM)) {
			throw new Error(`Chromium not found at ${CHROMIUM}: install Debian's chromium (apt-get install -y chromium) or set CHROMIUM_PATH; .ci/run installs it`);
		}
		fs.mkdirSync(ARTIFACTS, { recursive: true });
		sys = await startSystem({ services: ["api", "auth", "users", "payments", "notifications", "jobs", "admin"] });
		[admin, support, plain, target] = await Promise.all([
			registerAndLogin(sys.url, { name: "Ada Admin" }),
			registerAndLogin(sys.url, { name: "Sam Support" }),
			registerAndLogin(sys.url, { name: "Pat Plain" }),
			registerAndLogin(sys.url, { name: "Tina Target" })
		]);
		await grant(admin, ["user", "admin"]);
		await grant(support, ["user", "support"]);
		const kyc = await http(sys.url, "POST", "/api/v1/users/me/kyc", {
			token: target.token,
			body: { full_name: "Tina Target", date_of_birth: "1990-04-01", country: "DE", document_type: "passport", document_number: "X1234567" }
		});
		expect(kyc.status).toBe(202);
		const charge = await http(sys.url, "POST", "/api/v1/payments/charge", {
			token: target.token,
			headers: { "idempotency-key": crypto.randomUUID() },
			body: { amount: 2500, currency: "usd", payment_method: "pm_card_visa", description: "Panel test order" }
		});
		expect(charge.status).toBe(201);
		paymentId = charge.body.id;

		profile = fs.mkdtempSync(path.join(os.tmpdir(), "chromium-profile-"));
		context = await chromium.launchPersistentContext(profile, {
			executablePath: CHROMIUM,
			headless: true,
			viewport: { width: 1360, height: 900 },
			args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"]
		});
		context.setDefaultTimeout(15000);
		page = context.pages()[0] ?? (await context.newPage());
		page.on("pageerror", err => pageErrors.push(String(err)));
		page.on("console", msg => {
			// Failed API calls (401 before a refresh, 403 for support) are logged by the browser; script errors are not that.
			if (msg.type() === "error" && !/Failed to load resource/.test(msg.text())) pageErrors.push(msg.text());
		});
	});

	afterAll(async () => {
		await context?.close();
		if (profile) fs.rmSync(profile, { recursive: true, force: true });
		await sys?.stop();
	});

	it("serves the page and only whitelisted assets, with a CSP that allows no inline script", async () => {
		const res = await http(sys.url, "GET", "/admin");
		expect(res.status).toBe(200);
		expect(res.headers.get("content-type")).toMatch(/^text\/html/);
		expect(res.headers.get("content-security-policy")).toMatch(/script-src 'self'(;|$)/);
		expect(res.text).not.toMatch(/<script>(?!<\/script>)/);
		const js = await http(sys.url, "GET", "/admin/assets/app.js");
		expect([js.status, js.headers.get("content-type")]).toEqual([200, "text/javascript; charset=utf-8"]);
		const chart = await http(sys.url, "GET", "/admin/assets/chart.umd.min.js");
		expect(chart.status).toBe(200);
		const hooks = await http(sys.url, "GET", "/admin/assets/hooks.mjs");
		expect(hooks.text).toContain('from"./preact.mjs"');
		for (const bad of ["/admin/assets/..%2Fpackage.json", "/admin/assets/index.html", "/admin/assets/nope.js"]) {
			const r = await http(sys.url, "GET", bad);
			expect([bad, r.status]).toEqual([bad, 404]);
		}
	});

	it("a plain user signs in and sees a clear no-access page", async () => {
		await signIn(plain);
		await page.getByTestId("no-access").waitFor();
		expect(await page.getByRole("heading", { name: "No access" }).isVisible()).toBe(true);
		await page.getByRole("button", { name: "Sign out" }).click();
		await page.getByRole("button", { name: "Sign in" }).waitFor();
	});

	it("a wrong password shows the problem detail and request id", async () => {
		await page.goto(`${sys.url}/admin`);
		await page.getByLabel("Email").fill(admin.email);
		await page.getByLabel("Password").fill("wrong password!");
		await page.getByRole("button", { name: "Sign in" }).click();
		const alert = page.getByRole("alert");
		await alert.waitFor();
		expect(await alert.textContent()).toMatch(/401[\s\S]*request id/);
	});

	it("an admin signs in and sees the dashboard charts", async () => {
		await signIn(admin);
		expect(await page.getByTestId("role").textContent()).toBe("admin");
		await page.getByTestId("kpis").waitFor();
		for (const id of ["chart-payments", "chart-signups", "chart-deliveries", "chart-rate", "chart-latency"]) {
			await page.getByTestId(id).waitFor();
		}
		// Chart.js drew on the canvas (it sets its own size attributes when it renders).
		expect(await page.getByTestId("chart-payments").evaluate(c => (c as unknown as { width: number }).width > 0)).toBe(true);
		await shot("dashboard");
	});

	it("searches users, suspends one with a reason, and sees the audit entry", async () => {
		await page.goto(`${sys.url}/admin#/users`);
		await page.getByPlaceholder("Email or name").fill(target.email);
		await page.getByRole("button", { name: "Search" }).click();
		const link = page.getByRole("link", { name: target.email });
		await link.waitFor();
		await shot("users");
		await link.click();
		await page.getByTestId("user-email").waitFor();
		expect(await page.getByTestId("user-status").textContent()).toBe("active");

		// Without a reason the API answers 422 and the panel shows why.
		await page.getByTestId("suspend").click();
		await page.getByRole("alert").first().waitFor();
		expect(await page.getByRole("alert").first().textContent()).toMatch(/422/);

		await page.getByPlaceholder("Reason (required)").fill("chargeback fraud pattern");
		await page.getByTestId("suspend").click();
		await page.getByTestId("user-status").filter({ hasText: "suspended" }).waitFor();
		const entry = page.getByTestId("audit-table").locator("tr", { hasText: "user.suspend" });
		await entry.waitFor();
		expect(await entry.textContent()).toContain("chargeback fraud pattern");
		await shot("user-detail");

		// The suspension took effect: the user's token is refused.
		expect((await http(sys.url, "GET", "/api/v1/users/me", { token: target.token })).status).toBe(401);
	});

	it("refunds a payment from the user's page", async () => {
		const row = page.locator(`tr[data-payment="${paymentId}"]`);
		await row.waitFor();
		await row.getByPlaceholder("Reason").fill("customer request");
		await page.getByTestId(`refund-${paymentId}`).click();
		await row.getByText("refunded", { exact: true }).waitFor();
		const payment = await http(sys.url, "GET", `/api/v1/payments/${paymentId}`, { token: (await loginAgain(admin)).access_token });
		expect(payment.body).toMatchObject({ status: "refunded", amount_refunded: 2500 });
	});

	it("approves a KYC submission from the review queue", async () => {
		await page.goto(`${sys.url}/admin#/kyc`);
		const row = page.locator(`tr[data-user="${target.user.id}"]`);
		await row.waitFor();
		await shot("kyc");
		await row.getByPlaceholder("Reason").fill("documents match");
		await page.getByTestId(`approve-${target.user.id}`).click();
		await row.waitFor({ state: "detached" });
		const user = await sys.broker.call<{ kyc_status: string }, { id: string }>("users.get", { id: target.user.id });
		expect(user.kyc_status).toBe("verified");
	});

	it("browses and verifies the audit log", async () => {
		await page.goto(`${sys.url}/admin#/audit`);
		await page.getByTestId("audit-table").locator("tr", { hasText: "kyc.approve" }).waitFor();
		await page.getByLabel("Action").fill("user.suspend");
		await page.getByRole("button", { name: "Filter" }).click();
		await page.getByTestId("audit-table").locator("tbody tr", { hasNotText: "user.suspend" }).first().waitFor({ state: "detached" });
		await page.getByTestId("verify").click();
		const result = page.getByTestId("verify-result");
		await result.waitFor();
		expect(await result.textContent()).toMatch(/Chain intact: \d+ entries/);
		await shot("audit");
	});

	it("shows the system page: nodes, services, health, queues, jobs and dead letters", async () => {
		await page.goto(`${sys.url}/admin#/system`);
		await page.getByTestId("nodes-table").waitFor();
		await page.getByTestId("services-table").locator("td", { hasText: "payments" }).first().waitFor();
		await page.getByTestId("health").waitFor();
		await page.getByTestId("jobs-table").waitFor();
		await page.getByTestId("dead-letters-table").waitFor();
		expect(await page.getByTestId("jobs-table").getByRole("button", { name: "Run now" }).count()).toBeGreaterThan(0);
		await shot("system");
		await signOut();
	});

	it("a support user can read and decide KYC but sees no suspend, role, refund, run or redrive controls", async () => {
		await signIn(support);
		expect(await page.getByTestId("role").textContent()).toBe("support");
		expect(await page.getByRole("link", { name: "Audit log" }).count()).toBe(0);
		await page.goto(`${sys.url}/admin#/users/${target.user.id}`);
		await page.getByTestId("user-email").waitFor();
		await page.getByTestId("suspend-denied").waitFor();
		expect(await page.getByTestId("suspend").count()).toBe(0);
		expect(await page.getByTestId("unsuspend").count()).toBe(0);
		expect(await page.getByTestId("save-roles").count()).toBe(0);
		expect(await page.locator('input[name="role-admin"]').isDisabled()).toBe(true);
		await page.locator(`tr[data-payment="${paymentId}"]`).waitFor();
		expect(await page.getByRole("button", { name: "Refund" }).count()).toBe(0);
		await shot("support-user-detail");
		await page.goto(`${sys.url}/admin#/system`);
		await page.getByTestId("jobs-table").waitFor();
		expect(await page.getByRole("button", { name: "Run now" }).count()).toBe(0);
		expect(await page.getByRole("button", { name: "Redrive" }).count()).toBe(0);
		await signOut();
	});

	it("raised no script errors or CSP violations", () => {
		expect(pageErrors).toEqual([]);
	});

	async function loginAgain(who: Login) {
		const res = await http(sys.url, "POST", "/api/v1/auth/login", { body: { email: who.email, password: who.password } });
		return res.body as { access_token: string };
	}
});
