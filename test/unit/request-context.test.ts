import { ServiceBroker, type Context } from "moleculer";
import { requestScope, RequestScopeMiddleware } from "../../lib/request-context";

describe("RequestScopeMiddleware", () => {
	const broker = new ServiceBroker({ logger: false, middlewares: [RequestScopeMiddleware] });
	const seen: Array<string | null | undefined> = [];
	broker.createService({
		name: "outer",
		actions: {
			nested: (ctx: Context) => ctx.call("inner.scope"),
			elsewhere: (ctx: Context) => ctx.call("inner.scope", {}, { requestID: "another" }),
			emits: async (ctx: Context) => {
				await ctx.emit("outer.happened");
				return requestScope.getStore()?.requestID;
			}
		}
	});
	broker.createService({
		name: "inner",
		actions: { scope: () => requestScope.getStore()?.requestID },
		events: { "outer.happened": () => void seen.push(requestScope.getStore()?.requestID) }
	});
	beforeAll(() => broker.start());
	afterAll(() => broker.stop());

	it("gives a nested local call its request's scope", async () => {
		expect(await broker.call("outer.nested", {}, { requestID: "r1" })).toBe("r1");
		expect(requestScope.getStore()).toBeUndefined();
	});

	it("gives a call with another request id a scope of its own", async () => {
		expect(await broker.call("outer.elsewhere", {}, { requestID: "r2" })).toBe("another");
	});

	it("runs an event handler in the scope of the request that emitted it", async () => {
		expect(await broker.call("outer.emits", {}, { requestID: "r3" })).toBe("r3");
		expect(seen).toEqual(["r3"]);
	});
});
