import crypto from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { deleteStreams } from "../../lib/channels";
import { http as call, registerAndLogin, startSystem, type TestSystem } from "../helpers/system";
import { waitFor } from "../helpers/wait";

/**
 * Tracing to a Zipkin endpoint (what Zipkin, Jaeger and the OpenTelemetry collector accept): a
 * gateway node and an auth+users node over real NATS send their spans to a real HTTP collector.
 */

interface ZipkinSpan {
	traceId: string;
	id: string;
	parentId?: string;
	name: string;
	localEndpoint: { serviceName: string | null };
	tags: Record<string, string>;
}

const spans: ZipkinSpan[] = [];
let collector: http.Server;
let gateway: TestSystem;
let backend: TestSystem;
const namespace = `tr${crypto.randomBytes(4).toString("hex")}`;

beforeAll(async () => {
	collector = http.createServer((req, res) => {
		let body = "";
		req.on("data", c => (body += c));
		req.on("end", () => {
			if (req.method === "POST" && req.url === "/api/v2/spans") spans.push(...(JSON.parse(body) as ZipkinSpan[]));
			res.statusCode = 202;
			res.end();
		});
	});
	await new Promise<void>(r => collector.listen(0, "127.0.0.1", r));
	const env = {
		NAMESPACE: namespace,
		TRANSPORTER: process.env.TEST_NATS_URL ?? "nats://127.0.0.1:4222",
		TRACING_EXPORTER: "zipkin",
		TRACING_ZIPKIN_URL: `http://127.0.0.1:${(collector.address() as AddressInfo).port}`,
		TRACING_FLUSH_MS: "200"
	};
	backend = await startSystem({ services: ["auth", "users"], env });
	gateway = await startSystem({ services: ["api"], env: { ...env, READY_SERVICES: "auth,users" } });
	await gateway.broker.waitForServices(["auth", "users"], 10000);
});

afterAll(async () => {
	await gateway?.stop();
	await backend?.stop();
	await deleteStreams(process.env.TEST_NATS_URL ?? "nats://127.0.0.1:4222", namespace).catch(() => undefined);
	await new Promise(r => collector.close(r));
});

it("one request's spans from both nodes share its request id as the trace id", async () => {
	const { token } = await registerAndLogin(gateway.url);
	const requestId = crypto.randomUUID();
	const res = await call(gateway.url, "GET", "/api/v1/users/me", { token, headers: { "X-Request-ID": requestId } });
	expect(res.status).toBe(200);

	const traceId = requestId.replace(/-/g, "");
	const trace = await waitFor(() => {
		// Each node sends its own spans on its own schedule: wait for the users span and its parent from the gateway.
		const mine = spans.filter(s => s.traceId === traceId);
		const me = mine.find(s => s.name === "action 'users.me'");
		return me && mine.some(s => s.id === me.parentId) ? mine : undefined;
	}, "the users.me span and its parent");
	const me = trace.find(s => s.name === "action 'users.me'")!;
	expect(me.localEndpoint.serviceName).toBe("users");
	expect(me.tags.requestID).toBe(requestId);
	expect(me.tags.namespace).toBe(namespace);
	expect(me.tags.remoteCall).toBe("true");
	// The users span is a child of a span from the gateway node.
	const parent = trace.find(s => s.id === me.parentId);
	expect(parent).toBeDefined();
	expect(parent!.tags.nodeID).toBe(gateway.broker.nodeID);
});

it("a request id that is not hex still gives a valid Zipkin trace id; no params go into spans", async () => {
	const requestId = "login-attempt-from-test";
	const res = await call(gateway.url, "POST", "/api/v1/auth/login", {
		body: { email: "nobody@example.com", password: "secret-password-1" },
		headers: { "X-Request-ID": requestId }
	});
	expect(res.status).toBe(401);
	const login = await waitFor(() => spans.find(s => s.name === "action 'auth.login'" && s.tags.requestID === requestId), "the auth.login span");
	expect(login.traceId).toMatch(/^[0-9a-f]{32}$/);
	expect(login.tags.error).toBeDefined();
	expect(JSON.stringify(spans)).not.toContain("secret-password-1");
});
