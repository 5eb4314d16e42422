import path from "node:path";
import { allocationsPerRequest } from "../../bench/alloc";
import { ROOT } from "../helpers/node-process";

const frame = (functionName: string, url: string, lineNumber: number) => ({ functionName, url, lineNumber });

describe("bench:alloc's reading of a heap sampling profile", () => {
	// root → a (10 + 30 bytes sampled) → b (60 bytes) and d (10 bytes, a file:// URL); an anonymous function in node_modules 100 bytes.
	const profile = {
		head: {
			id: 1,
			callFrame: frame("(root)", "", -1),
			children: [
				{ id: 2, callFrame: frame("a", path.join(ROOT, "dist/services/api.service.js"), 9), children: [{ id: 3, callFrame: frame("b", "node:_http_outgoing", 454), children: [] }, { id: 6, callFrame: frame("d", "file://" + path.join(ROOT, "dist/lib/timeout.js"), 0), children: [] }] },
				{ id: 4, callFrame: frame("", path.join(ROOT, "node_modules/moleculer/src/context.js"), 120), children: [] }
			]
		},
		samples: [
			{ size: 10, nodeId: 2 },
			{ size: 30, nodeId: 2 },
			{ size: 60, nodeId: 3 },
			{ size: 100, nodeId: 4 },
			{ size: 10, nodeId: 6 }
		]
	};

	it("divides every sampled byte by the requests, and credits each function with its own allocations only", () => {
		const r = allocationsPerRequest(profile, 10, 10);
		expect(r.bytes_per_request).toBe(21);
		expect(r.top).toEqual([
			{ fn: "(anonymous) moleculer/src/context.js:121", bytes_per_request: 10 },
			{ fn: "b node:_http_outgoing:455", bytes_per_request: 6 },
			{ fn: "a dist/services/api.service.js:10", bytes_per_request: 4 },
			{ fn: "d dist/lib/timeout.js:1", bytes_per_request: 1 }
		]);
	});

	it("keeps only the top functions", () => {
		expect(allocationsPerRequest(profile, 10, 1).top).toHaveLength(1);
	});

	it("adds up a function met on several paths", () => {
		const twice = { ...profile, head: { ...profile.head, children: [...profile.head.children, { id: 5, callFrame: frame("a", path.join(ROOT, "dist/services/api.service.js"), 9), children: [] }] }, samples: [...profile.samples, { size: 20, nodeId: 5 }] };
		expect(allocationsPerRequest(twice, 10, 10).top.find(t => t.fn.startsWith("a "))?.bytes_per_request).toBe(6);
	});
});
