import crypto from "node:crypto";
import { http, registerAndLogin, startSystem, type TestSystem } from "../helpers/system";

type Login = Awaited<ReturnType<typeof registerAndLogin>>;

const KYC = {
	full_name: "Ada Lovelace",
	date_of_birth: "1990-12-10",
	country: "gb",
	document_type: "passport",
	document_number: "AB 123456"
};

/** A date of birth that makes the person `years` old less one day. */
function dobYoungerThan(years: number): string {
	const d = new Date();
	d.setUTCFullYear(d.getUTCFullYear() - years);
	d.setUTCDate(d.getUTCDate() + 1);
	return d.toISOString().slice(0, 10);
}

function expectProblem(res: { status: number; headers: Headers; body: any }, status: number) {
	expect(res.status).toBe(status);
	expect(res.headers.get("content-type")).toMatch(/^application\/problem\+json/);
	expect(res.body).toMatchObject({ type: "about:blank", status, instance: expect.any(String), request_id: expect.any(String) });
	expect(JSON.stringify(res.body)).not.toMatch(/stack|SELECT|\$2b\$/);
}

describe("users through the gateway", () => {
	let sys: TestSystem;
	let alice: Login;
	let bob: Login;

	beforeAll(async () => {
		sys = await startSystem();
		alice = await registerAndLogin(sys.url);
		bob = await registerAndLogin(sys.url);
	});
	afterAll(async () => {
		await sys?.stop();
	});

	describe("GET /users/me", () => {
		it("returns the caller, without any password field", async () => {
			const res = await http(sys.url, "GET", "/api/v1/users/me", { token: alice.token });
			expect(res.status).toBe(200);
			expect(res.body).toEqual({
				id: alice.user.id,
				email: alice.email,
				name: "Test User",
				phone: null,
				status: "active",
				roles: ["user"],
				email_verified: false,
				kyc_status: "none",
				created_at: expect.any(String),
				updated_at: expect.any(String)
			});
			expect(res.text).not.toMatch(/password|\$2b\$/);
		});

		it("needs a token", async () => {
			expectProblem(await http(sys.url, "GET", "/api/v1/users/me"), 401);
		});
	});

	describe("PATCH /users/me", () => {
		it("changes name and phone", async () => {
			const res = await http(sys.url, "PATCH", "/api/v1/users/me", { token: alice.token, body: { name: "Alice Liddell", phone: "+14155550123" } });
			expect(res.status).toBe(200);
			expect(res.body).toMatchObject({ id: alice.user.id, name: "Alice Liddell", phone: "+14155550123", email: alice.email });
			const me = await http(sys.url, "GET", "/api/v1/users/me", { token: alice.token });
			expect(me.body).toMatchObject({ name: "Alice Liddell", phone: "+14155550123" });
		});

		it("refuses a phone that is not E.164 with 422", async () => {
			for (const phone of ["4155550123", "+0123456789", "+1 415 555 0123", "+1234", 14155550123]) {
				const res = await http(sys.url, "PATCH", "/api/v1/users/me", { token: alice.token, body: { phone } });
				expectProblem(res, 422);
				expect(res.body.errors).toEqual(expect.arrayContaining([expect.objectContaining({ field: "phone" })]));
			}
			const me = await http(sys.url, "GET", "/api/v1/users/me", { token: alice.token });
			expect(me.body.phone).toBe("+14155550123");
		});

		it("refuses an empty name with 422", async () => {
			expectProblem(await http(sys.url, "PATCH", "/api/v1/users/me", { token: alice.token, body: { name: "" } }), 422);
		});

		it.each([
			["email", "someone.else@example.com"],
			["roles", ["admin"]],
			["status", "suspended"],
			["kyc_status", "verified"],
			["id", "00000000-0000-4000-8000-000000000000"],
			["email_verified", true]
		])("refuses %s with 422 and changes nothing", async (field, value) => {
			const before = await http(sys.url, "GET", "/api/v1/users/me", { token: bob.token });
			const res = await http(sys.url, "PATCH", "/api/v1/users/me", { token: bob.token, body: { name: "Changed Name", [field]: value } });
			expectProblem(res, 422);
			expect(res.body.errors).toEqual(expect.arrayContaining([expect.objectContaining({ field: expect.stringContaining(field) })]));
			const after = await http(sys.url, "GET", "/api/v1/users/me", { token: bob.token });
			expect(after.body).toEqual(before.body);
		});
	});

	describe("GET /users/{id}", () => {
		it("returns the caller's own user", async () => {
			const res = await http(sys.url, "GET", `/api/v1/users/${alice.user.id}`, { token: alice.token });
			expect(res.status).toBe(200);
			expect(res.body.id).toBe(alice.user.id);
		});

		it("refuses another user's id with 403", async () => {
			const res = await http(sys.url, "GET", `/api/v1/users/${bob.user.id}`, { token: alice.token });
			expectProblem(res, 403);
			expect(res.text).not.toContain(bob.email);
		});

		it("answers 403, not 404, for a missing id to a plain user", async () => {
			expectProblem(await http(sys.url, "GET", `/api/v1/users/${crypto.randomUUID()}`, { token: alice.token }), 403);
		});

		it("refuses an id that is not a uuid with 422", async () => {
			const res = await http(sys.url, "GET", "/api/v1/users/not-a-uuid", { token: alice.token });
			expectProblem(res, 422);
			expect(res.body.errors).toEqual([expect.objectContaining({ field: "id" })]);
		});

		it.each([["support"], ["admin"]])("lets %s read other users, and 404s a missing id", async role => {
			const staff = await registerAndLogin(sys.url);
			await sys.broker.call("users.update", { id: staff.user.id, roles: ["user", role] });
			const login = await http(sys.url, "POST", "/api/v1/auth/login", { body: { email: staff.email, password: staff.password } });
			expect(login.status).toBe(200);
			const token = login.body.access_token as string;

			const other = await http(sys.url, "GET", `/api/v1/users/${bob.user.id}`, { token });
			expect(other.status).toBe(200);
			expect(other.body).toMatchObject({ id: bob.user.id, email: bob.email });
			expectProblem(await http(sys.url, "GET", `/api/v1/users/${crypto.randomUUID()}`, { token }), 404);
		});
	});

	describe("KYC", () => {
		let carol: Login;
		beforeAll(async () => {
			carol = await registerAndLogin(sys.url);
		});

		it("reports none before any submission", async () => {
			const res = await http(sys.url, "GET", "/api/v1/users/me/kyc", { token: carol.token });
			expect(res.status).toBe(200);
			expect(res.body).toEqual({ kyc_status: "none", submitted_at: null, decided_at: null, reason: null });
		});

		it.each([
			["a missing field", (() => {
				const { document_number: _, ...rest } = KYC;
				return rest;
			})(), "document_number"],
			["an unknown field", { ...KYC, nationality: "GB" }, "nationality"],
			["a malformed date", { ...KYC, date_of_birth: "10/12/1990" }, "date_of_birth"],
			["an impossible date", { ...KYC, date_of_birth: "1990-02-30" }, "date_of_birth"],
			["a minor", { ...KYC, date_of_birth: dobYoungerThan(18) }, "date_of_birth"],
			["a bad country", { ...KYC, country: "GBR" }, "country"],
			["a bad document type", { ...KYC, document_type: "library_card" }, "document_type"]
		])("refuses %s with 422", async (_what, body, field) => {
			const res = await http(sys.url, "POST", "/api/v1/users/me/kyc", { token: carol.token, body });
			expectProblem(res, 422);
			expect(res.body.errors).toEqual(expect.arrayContaining([expect.objectContaining({ field: expect.stringContaining(field) })]));
			const status = await http(sys.url, "GET", "/api/v1/users/me/kyc", { token: carol.token });
			expect(status.body.kyc_status).toBe("none");
		});

		it("accepts a valid submission with 202 pending, and reports it", async () => {
			const res = await http(sys.url, "POST", "/api/v1/users/me/kyc", { token: carol.token, body: KYC });
			expect(res.status).toBe(202);
			expect(res.body).toEqual({ kyc_status: "pending" });

			const status = await http(sys.url, "GET", "/api/v1/users/me/kyc", { token: carol.token });
			expect(status.status).toBe(200);
			expect(status.body).toEqual({ kyc_status: "pending", submitted_at: expect.any(String), decided_at: null, reason: null });
			expect(new Date(status.body.submitted_at).toISOString()).toBe(status.body.submitted_at);

			const me = await http(sys.url, "GET", "/api/v1/users/me", { token: carol.token });
			expect(me.body.kyc_status).toBe("pending");
		});

		it("refuses a second submission while pending with 409", async () => {
			expectProblem(await http(sys.url, "POST", "/api/v1/users/me/kyc", { token: carol.token, body: KYC }), 409);
		});
	});

	describe("internal actions", () => {
		it.each([
			["POST", "/api/v1/users"],
			["GET", "/api/v1/users"],
			["POST", "/api/v1/users/create"],
			["GET", "/api/v1/users.list"],
			["POST", "/api/v1/users.create"],
			["POST", "/api/v1/users/update"],
			["POST", "/api/v1/users.update"],
			["DELETE", `/api/v1/users/me`],
			["POST", "/api/v1/auth/verify"],
			["GET", "/api/v1/users.health"],
			["POST", "/api/v1/users/remove"]
		])("%s %s is 404", async (method, path) => {
			const res = await http(sys.url, method, path, {
				token: alice.token,
				body: method === "GET" ? undefined : { id: alice.user.id, email: "x@example.com", name: "X", roles: ["admin"] }
			});
			expectProblem(res, 404);
		});

		it("leaves the caller's roles untouched after those attempts", async () => {
			const me = await http(sys.url, "GET", "/api/v1/users/me", { token: alice.token });
			expect(me.body.roles).toEqual(["user"]);
		});
	});
});
