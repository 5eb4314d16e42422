import crypto from "node:crypto";
import { freePort } from "../helpers/node-process";
import { http, registerAndLogin, startSystem, type TestSystem } from "../helpers/system";
import { waitFor } from "../helpers/wait";

/** Prometheus metrics on METRICS_PORT: request rate, latency, errors by action, event-loop lag. */

let sys: TestSystem;
let port: number;

beforeAll(async () => {
	port = await freePort();
	sys = await startSystem({ env: { METRICS_PORT: String(port) } });
});
afterAll(() => sys?.stop());

const scrape = () => fetch(`http://127.0.0.1:${port}/metrics`).then(r => r.text());

it("counts requests and errors by action, with a latency histogram and the event-loop lag", async () => {
	const { token } = await registerAndLogin(sys.url);
	expect((await http(sys.url, "GET", "/api/v1/users/me", { token })).status).toBe(200);
	expect((await http(sys.url, "GET", `/api/v1/users/${crypto.randomUUID()}`, { token })).status).toBe(403);

	const text = await waitFor(async () => {
		const t = await scrape();
		return /process_eventloop_lag_p99\{[^}]*\} [0-9.]+/.test(t) ? t : undefined;
	}, "the event-loop lag gauge", 15000);
	expect(text).toMatch(/moleculer_request_total\{[^}]*action="users\.me"[^}]*\} [1-9]/);
	expect(text).toMatch(/moleculer_request_time_bucket\{[^}]*action="users\.me"/);
	expect(text).toMatch(/moleculer_request_error_total\{[^}]*action="users\.getById"[^}]*errorCode="403"[^}]*\} 1/);
	expect(text).toMatch(/process_eventloop_lag_max\{[^}]*\} [0-9.]+/);
	// Every series names its namespace and node.
	expect(text).toMatch(new RegExp(`moleculer_request_total\\{namespace="${sys.env.NAMESPACE}",nodeID="[^"]+"`));
});
