import http from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { batchResponses } from "../../lib/http-batching";

/** lib/http-batching.ts: a response goes out at the end of the turn that made it, whole, in order, on a real server. */

let server: http.Server;
let base: string;
/** For each request: bytes still waiting in its socket right after res.end(), and after the turn ended. */
const seen: Array<{ url: string; afterEnd: number; afterTurn: number }> = [];

beforeAll(async () => {
	server = http.createServer((req, res) => {
		const url = req.url ?? "";
		if (url.startsWith("/stream")) {
			res.setHeader("Content-Type", "text/plain");
			let i = 0;
			const tick = setInterval(() => {
				if (i < 5) res.write(`chunk${i++};`);
				else {
					clearInterval(tick);
					res.end("end");
				}
			}, 5);
			return;
		}
		if (url === "/close") res.setHeader("Connection", "close");
		const delay = Number(new URL(url, "http://x").searchParams.get("ms") ?? 0);
		setTimeout(() => {
			res.setHeader("Content-Type", "application/json");
			res.end(JSON.stringify({ url }));
			const socket = res.socket as Socket;
			const entry = { url, afterEnd: socket.writableLength, afterTurn: -1 };
			seen.push(entry);
			setImmediate(() => setImmediate(() => (entry.afterTurn = socket.writableLength)));
		}, delay);
	});
	batchResponses(server);
	await new Promise<void>(resolve => server.listen(0, "127.0.0.1", resolve));
	base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise(resolve => server.close(resolve)));

const get = (path: string, agent?: http.Agent) =>
	new Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }>((resolve, reject) => {
		http.get(base + path, { agent }, res => {
			let body = "";
			res.setEncoding("utf8");
			res.on("data", c => (body += c));
			res.on("end", () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
		}).on("error", reject);
	});

it("writes a response at the end of its turn, not at res.end()", async () => {
	seen.length = 0;
	const r = await get("/one");
	expect(JSON.parse(r.body)).toEqual({ url: "/one" });
	await new Promise(resolve => setTimeout(resolve, 20));
	expect(seen[0].afterEnd).toBeGreaterThan(0);
	expect(seen[0].afterTurn).toBe(0);
});

it("answers many concurrent requests, and several in turn on one keep-alive connection, each with its own body", async () => {
	const many = await Promise.all(Array.from({ length: 100 }, (_, i) => get(`/c${i}?ms=${i % 3}`)));
	many.forEach((r, i) => expect(JSON.parse(r.body)).toEqual({ url: `/c${i}?ms=${i % 3}` }));

	const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
	const serial = await Promise.all(Array.from({ length: 20 }, (_, i) => get(`/k${i}`, agent)));
	serial.forEach((r, i) => expect(JSON.parse(r.body)).toEqual({ url: `/k${i}` }));
	agent.destroy();
});

it("delivers a streamed response whole, and closes a connection that asked for it after its answer", async () => {
	const streamed = await get("/stream");
	expect(streamed.body).toBe("chunk0;chunk1;chunk2;chunk3;chunk4;end");

	const closed = await get("/close");
	expect(closed.headers.connection).toBe("close");
	expect(JSON.parse(closed.body)).toEqual({ url: "/close" });
});
