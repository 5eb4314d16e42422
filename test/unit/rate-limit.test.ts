import { consume, createRateLimit } from "../../services/api/rate-limit";

const decide = (limit: ReturnType<typeof createRateLimit>, key: string) => consume(limit.limiter, key);

describe("rate limit (in memory)", () => {
	it("allows `max` requests per key and window, then refuses with the seconds left", async () => {
		const limit = createRateLimit({ windowMs: 60000, max: 2, keyPrefix: "rl:unit" });
		expect(await decide(limit, "a")).toEqual({ allowed: true, limit: 2, remaining: 1, resetSeconds: 60 });
		expect(await decide(limit, "a")).toMatchObject({ allowed: true, remaining: 0 });
		const refused = await decide(limit, "a");
		expect(refused).toMatchObject({ allowed: false, limit: 2, remaining: 0 });
		expect(refused.resetSeconds).toBeGreaterThanOrEqual(1);
		expect(await decide(limit, "b")).toMatchObject({ allowed: true, remaining: 1 });
		await limit.close();
	});
});
