import { freePort } from "../helpers/node-process";
import { startSystem, type TestSystem } from "../helpers/system";

describe("every node's probe server on HEALTH_PORT", () => {
	let sys: TestSystem;
	let base = "";
	beforeAll(async () => {
		const port = await freePort();
		base = `http://127.0.0.1:${port}`;
		sys = await startSystem({ services: ["auth", "users"], env: { HEALTH_PORT: String(port) } });
	});
	afterAll(async () => {
		await sys?.stop();
	});

	it("answers /live, and /ready with one check per local service with a database and the channels", async () => {
		const live = await fetch(`${base}/live`);
		expect(live.status).toBe(200);
		expect(await live.json()).toEqual({ status: "ok", node: sys.broker.nodeID });
		const ready = await fetch(`${base}/ready`);
		expect({ status: ready.status, body: await ready.json() }).toEqual({ status: 200, body: { status: "ok", node: sys.broker.nodeID, checks: { channels: "ok", auth: "ok", users: "ok" } } });
	});

	it("is not ready while a local service's database is not (here: migrations not applied)", async () => {
		const users = sys.broker.getLocalService("users") as unknown as { dbMigrated: boolean };
		users.dbMigrated = false;
		try {
			const ready = await fetch(`${base}/ready`);
			expect(ready.status).toBe(503);
			expect(await ready.json()).toMatchObject({ status: "unavailable", checks: { users: "down", auth: "ok" } });
		} finally {
			users.dbMigrated = true;
		}
		expect((await fetch(`${base}/ready`)).status).toBe(200);
	});

	it("closes when the node stops", async () => {
		await sys.broker.stop();
		await expect(fetch(`${base}/live`)).rejects.toThrow();
	});
});
