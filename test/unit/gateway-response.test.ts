import http, { ServerResponse } from "node:http";
import net, { type AddressInfo } from "node:net";
import { GatewayResponse } from "../../services/api/gateway-response";

type Handler = (res: ServerResponse, seen: unknown[]) => void;

/** One request to a server using `Response`; the raw answer (without its Date line) and what the handler saw. */
async function exchange(Response: typeof ServerResponse, handler: Handler, method = "GET"): Promise<{ raw: string; seen: unknown[] }> {
	const seen: unknown[] = [];
	const server = http.createServer({ ServerResponse: Response }, (_req, res) => {
		try {
			handler(res, seen);
		} catch (err) {
			seen.push(`threw ${(err as NodeJS.ErrnoException).code}`);
			if (!res.headersSent) res.end();
		}
	});
	await new Promise<void>(resolve => server.listen(0, "127.0.0.1", resolve));
	try {
		const raw = await new Promise<string>((resolve, reject) => {
			const socket = net.connect((server.address() as AddressInfo).port, "127.0.0.1");
			let data = "";
			socket.setEncoding("latin1");
			socket.on("data", chunk => (data += chunk));
			socket.on("end", () => resolve(data));
			socket.on("error", reject);
			socket.write(`${method} / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n`);
		});
		return { raw: raw.replace(/\r\nDate: [^\r]*/, ""), seen: JSON.parse(JSON.stringify(seen)) };
	} finally {
		server.closeAllConnections();
		await new Promise(resolve => server.close(resolve));
	}
}

/** The gateway's usual headers, as the gateway and moleculer-web set them. */
function usual(res: ServerResponse): void {
	res.setHeader("X-Content-Type-Options", "nosniff");
	res.setHeader("Referrer-Policy", "no-referrer");
	res.setHeader("X-Frame-Options", "DENY");
	res.setHeader("X-Request-ID", "req-1");
	res.setHeader("RateLimit-Limit", "600");
	res.setHeader("RateLimit-Remaining", String(599));
	res.setHeader("RateLimit-Reset", "60");
}

const cases: Record<string, { handler: Handler; method?: string }> = {
	"the usual path: the headers, then end() with a JSON body": {
		handler: res => {
			usual(res);
			res.setHeader("Content-Type", "application/json; charset=utf-8");
			res.end(JSON.stringify({ ok: true }));
		}
	},
	"another header among them keeps its place": {
		handler: res => {
			res.setHeader("X-Content-Type-Options", "nosniff");
			res.setHeader("Cache-Control", "no-store");
			usual(res);
			res.end("{}");
		}
	},
	"a status code of its own": {
		handler: res => {
			usual(res);
			res.statusCode = 201;
			res.end("{}");
		}
	},
	"numbers as values": {
		handler: res => {
			res.setHeader("RateLimit-Limit", 600);
			res.setHeader("Content-Type", "text/plain");
			res.end("x");
		}
	},
	"reads of a kept header, in any spelling": {
		handler: (res, seen) => {
			usual(res);
			seen.push(res.getHeader("X-Request-ID"), res.getHeader("x-request-id"), res.hasHeader("ratelimit-limit"), res.hasHeader("Content-Type"));
			res.end("x");
		}
	},
	"reads of other headers, while the usual ones are kept": {
		handler: (res, seen) => {
			usual(res);
			seen.push(res.getHeader("ETag") ?? null, res.getHeader("Last-Modified") ?? null, res.hasHeader("Cache-Control"));
			res.end("x");
		}
	},
	"getHeaders, getHeaderNames and getRawHeaderNames": {
		handler: (res, seen) => {
			usual(res);
			seen.push(res.getHeaders(), res.getHeaderNames(), (res as unknown as { getRawHeaderNames(): string[] }).getRawHeaderNames());
			res.end("x");
		}
	},
	"a kept header removed, for a 204": {
		handler: res => {
			usual(res);
			res.setHeader("Content-Type", "application/json");
			res.statusCode = 204;
			res.removeHeader("Content-Type");
			res.end();
		}
	},
	"set again in another spelling: the last one wins": {
		handler: res => {
			res.setHeader("Content-Type", "application/json");
			res.setHeader("content-type", "text/plain");
			res.end("x");
		}
	},
	"set again in the same spelling: the last one wins": {
		handler: res => {
			res.setHeader("X-Request-ID", "a");
			res.setHeader("X-Request-ID", "b");
			res.end("x");
		}
	},
	"writeHead with headers of its own, which win": {
		handler: res => {
			usual(res);
			res.setHeader("Content-Type", "application/json");
			res.writeHead(201, { "content-type": "text/plain", "X-Extra": "1" });
			res.end("x");
		}
	},
	"writeHead with a reason and raw pairs": {
		handler: res => {
			usual(res);
			res.writeHead(200, "Fine", ["X-Request-ID", "other", "X-Extra", "1"]);
			res.end("x");
		}
	},
	"writeHead with the headers as a third argument and no reason": {
		handler: res => {
			usual(res);
			res.writeHead(201, undefined, { "X-Extra": "1" });
			res.end("x");
		}
	},
	"setHeaders with a Map": {
		handler: res => {
			usual(res);
			res.setHeaders(new Map([["Content-Type", "text/plain"], ["X-Extra", "1"]]));
			res.end("x");
		}
	},
	"writeHead with only a status code": {
		handler: res => {
			usual(res);
			res.writeHead(202);
			res.end("x");
		}
	},
	"appendHeader to a kept header": {
		handler: res => {
			res.setHeader("X-Request-ID", "a");
			res.appendHeader("X-Request-ID", "b");
			res.end("x");
		}
	},
	"an array value": {
		handler: res => {
			res.setHeader("X-Request-ID", ["a", "b"]);
			res.end("x");
		}
	},
	"a value with a line break is refused when it is set": {
		handler: (res, seen) => {
			try {
				res.setHeader("X-Request-ID", "a\r\nInjected: yes");
			} catch (err) {
				seen.push((err as NodeJS.ErrnoException).code);
			}
			res.setHeader("Content-Type", "text/plain");
			res.end("x");
		}
	},
	"an undefined value is refused when it is set": {
		handler: (res, seen) => {
			try {
				res.setHeader("RateLimit-Limit", undefined as unknown as string);
			} catch (err) {
				seen.push((err as NodeJS.ErrnoException).code);
			}
			res.end("x");
		}
	},
	"a header set after the answer went out is refused": {
		handler: (res, seen) => {
			usual(res);
			res.end("x");
			try {
				res.setHeader("X-Request-ID", "late");
			} catch (err) {
				seen.push((err as NodeJS.ErrnoException).code);
			}
		}
	},
	"a streamed body (chunked)": {
		handler: res => {
			usual(res);
			res.setHeader("Content-Type", "text/plain");
			res.write("a");
			res.end("b");
		}
	},
	"a HEAD request": {
		method: "HEAD",
		handler: res => {
			usual(res);
			res.setHeader("Content-Type", "application/json");
			res.end();
		}
	},
	"flushHeaders before the body": {
		handler: res => {
			usual(res);
			res.flushHeaders();
			res.end("x");
		}
	}
};

describe("GatewayResponse answers byte for byte as Node's ServerResponse does", () => {
	for (const [name, { handler, method }] of Object.entries(cases)) {
		it(name, async () => {
			const node = await exchange(ServerResponse, handler, method);
			const gateway = await exchange(GatewayResponse as unknown as typeof ServerResponse, handler, method);
			expect(gateway).toEqual(node);
			expect(node.raw).toMatch(/^HTTP\/1\.1 \d{3} /);
		});
	}
});

describe("GatewayResponse on the usual path", () => {
	afterEach(() => jest.restoreAllMocks());

	it("keeps the usual headers out of Node's header store until they are written, all at once", async () => {
		const setHeader = jest.spyOn(http.OutgoingMessage.prototype, "setHeader");
		const { raw } = await exchange(GatewayResponse as unknown as typeof ServerResponse, res => {
			usual(res);
			res.setHeader("Content-Type", "application/json; charset=utf-8");
			res.end("{}");
		});
		expect(setHeader).not.toHaveBeenCalled();
		expect(raw).toContain("\r\nX-Request-ID: req-1\r\n");
		expect(raw).toContain("\r\nContent-Length: 2\r\n");
	});

	it("hands them to Node's store as soon as another header is set", async () => {
		const setHeader = jest.spyOn(http.OutgoingMessage.prototype, "setHeader");
		await exchange(GatewayResponse as unknown as typeof ServerResponse, res => {
			usual(res);
			res.setHeader("Cache-Control", "no-store");
			res.end("{}");
		});
		expect(setHeader.mock.calls.map(c => c[0])).toEqual([
			"X-Content-Type-Options",
			"Referrer-Policy",
			"X-Frame-Options",
			"X-Request-ID",
			"RateLimit-Limit",
			"RateLimit-Remaining",
			"RateLimit-Reset",
			"Cache-Control"
		]);
	});
});
