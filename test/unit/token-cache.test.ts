import type { AuthUser } from "../../lib/types";
import { TokenCache } from "../../services/api/token-cache";

const T0 = 1_700_000_000_000;
const user = (sid: string, expInS = 900, id = "u-1"): AuthUser => ({ id, sid, roles: ["user"], exp: Math.floor(T0 / 1000) + expInS });

describe("TokenCache", () => {
	it("answers a cached token until it expires", () => {
		const cache = new TokenCache(60_000);
		const u = user("s-1", 30);
		cache.set("tok", u, T0);
		expect(cache.get("tok", T0 + 1000)).toEqual(u);
		expect(cache.get("other", T0 + 1000)).toBeUndefined();
		expect(cache.get("tok", T0 + 30_000)).toBeUndefined();
		expect(cache.size).toBe(0);
	});

	it("answers only the token it holds, not another that ends with the same signature", () => {
		const cache = new TokenCache(60_000);
		const signature = "S".repeat(86);
		const u = user("s-1");
		cache.set(`header.payload-of-alice.${signature}`, u, T0);
		expect(cache.get(`header.payload-of-alice.${signature}`, T0 + 1)).toEqual(u);
		// A forged payload under a copied signature is not found, and does not evict the real token.
		expect(cache.get(`header.payload-of-mallory.${signature}`, T0 + 1)).toBeUndefined();
		expect(cache.get(`header.payload-of-alice.${signature}`, T0 + 2)).toEqual(u);
		expect(cache.size).toBe(1);
	});

	it("drops an entry once the recheck interval has passed", () => {
		const cache = new TokenCache(10_000);
		cache.set("tok", user("s-1"), T0);
		expect(cache.get("tok", T0 + 9_999)).toBeDefined();
		expect(cache.get("tok", T0 + 10_000)).toBeUndefined();
		// Verified again: cached again from then on.
		cache.set("tok", user("s-1"), T0 + 10_000);
		expect(cache.get("tok", T0 + 15_000)).toBeDefined();
	});

	it("keeps nothing when the recheck interval is 0", () => {
		const cache = new TokenCache(0);
		cache.set("tok", user("s-1"), T0);
		expect(cache.get("tok", T0)).toBeUndefined();
		expect(cache.size).toBe(0);
	});

	it("forgets every token of a revoked session and no other", () => {
		const cache = new TokenCache(60_000);
		cache.set("a1", user("s-a"), T0);
		cache.set("a2", user("s-a"), T0);
		cache.set("b1", user("s-b"), T0);
		cache.revokeSessions(["s-a"]);
		expect(cache.get("a1", T0 + 1)).toBeUndefined();
		expect(cache.get("a2", T0 + 1)).toBeUndefined();
		expect(cache.get("b1", T0 + 1)).toBeDefined();
		expect(cache.size).toBe(1);
		expect(cache.isRevoked("s-a")).toBe(true);
		expect(cache.isRevoked("s-b")).toBe(false);
	});

	it("refuses to re-admit a revoked session's token (a verification that was in flight)", () => {
		const cache = new TokenCache(60_000);
		cache.revokeSessions(["s-a"]);
		cache.set("late", user("s-a"), T0);
		expect(cache.get("late", T0 + 1)).toBeUndefined();
		expect(cache.size).toBe(0);
	});

	it("forgets a revocation once its tokens would have expired anyway", () => {
		const cache = new TokenCache(60_000);
		cache.revokeSessions(["s-old"], Date.now() - 1);
		expect(cache.isRevoked("s-old")).toBe(false);
		cache.revokeSessions(["s-new"]);
		expect(cache.isRevoked("s-new")).toBe(true);
	});

	it("evicts the oldest entry when full", () => {
		const cache = new TokenCache(60_000, 3);
		cache.set("t1", user("s-1"), T0);
		cache.set("t2", user("s-2"), T0);
		cache.set("t3", user("s-3"), T0);
		cache.set("t4", user("s-4"), T0);
		expect(cache.size).toBe(3);
		expect(cache.get("t1", T0)).toBeUndefined();
		for (const t of ["t2", "t3", "t4"]) expect(cache.get(t, T0)).toBeDefined();
		// An evicted token's session index is gone too: revoking it later is harmless.
		cache.revokeSessions(["s-1"]);
		expect(cache.size).toBe(3);
	});
});
