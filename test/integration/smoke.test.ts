import { http, registerAndLogin, startSystem, type TestSystem } from "../helpers/system";

describe("register, login, me through the gateway on PostgreSQL", () => {
	let sys: TestSystem;
	beforeAll(async () => {
		sys = await startSystem();
	});
	afterAll(async () => {
		await sys?.stop();
	});

	it("walks the README's curl walk-through", async () => {
		const { user, token } = await registerAndLogin(sys.url);
		const me = await http(sys.url, "GET", "/api/v1/users/me", { token });
		expect(me.status).toBe(200);
		expect(me.body).toEqual(user);
		expect(me.headers.get("x-request-id")).toBeTruthy();
	});

	it("is ready when auth and users and their databases answer", async () => {
		const ready = await http(sys.url, "GET", "/health/ready");
		expect(ready.status).toBe(200);
		expect(ready.body.checks).toEqual({ auth: "ok", users: "ok" });
	});
});
