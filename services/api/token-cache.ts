import type { AuthUser } from "../../lib/types";

interface Entry {
	token: string;
	user: AuthUser;
	checkedAt: number;
}

/**
 * Entries are found by the token's last characters (its signature's), and then compared whole. Each
 * request brings its token as a new string, and a Map hashes every character of a new string key: for a
 * 700-character JWT, that was most of the cost of a lookup.
 */
const KEY_CHARS = 24;
const keyOf = (token: string) => (token.length > KEY_CHARS ? token.slice(-KEY_CHARS) : token);

/**
 * Verified access tokens, kept until they expire so a request costs no call to auth. An entry is
 * re-checked after `recheckMs` (a safety net should a revocation event be lost), and dropped at
 * once when auth announces that its session was revoked.
 */
export class TokenCache {
	private readonly entries = new Map<string, Entry>();
	private readonly bySession = new Map<string, Set<string>>();
	/** Sessions revoked lately, so a verification already in flight cannot re-admit their tokens. */
	private readonly revoked = new Map<string, number>();

	constructor(private readonly recheckMs: number, private readonly maxEntries = 50000) {}

	get(token: string, now = Date.now()): AuthUser | undefined {
		const key = keyOf(token);
		const e = this.entries.get(key);
		if (!e || e.token !== token) return undefined;
		if (e.user.exp * 1000 <= now || now - e.checkedAt >= this.recheckMs || this.revoked.has(e.user.sid)) {
			this.delete(key, e.user.sid);
			return undefined;
		}
		return e.user;
	}

	set(token: string, user: AuthUser, now = Date.now()): void {
		if (this.revoked.has(user.sid) || this.recheckMs <= 0) return;
		if (this.entries.size >= this.maxEntries) {
			const oldest = this.entries.keys().next().value as string;
			this.delete(oldest, this.entries.get(oldest)!.user.sid);
		}
		const key = keyOf(token);
		this.entries.set(key, { token, user, checkedAt: now });
		let keys = this.bySession.get(user.sid);
		if (!keys) this.bySession.set(user.sid, (keys = new Set()));
		keys.add(key);
	}

	/** Forget every token of these sessions. `until` is when their tokens would have expired anyway. */
	revokeSessions(sids: string[], until = Date.now() + 15 * 60 * 1000): void {
		for (const sid of sids) {
			this.revoked.set(sid, until);
			for (const key of this.bySession.get(sid) ?? []) this.entries.delete(key);
			this.bySession.delete(sid);
		}
		this.prune();
	}

	/** Forget every cached token (signing keys were retired): each is verified again on its next use. */
	clear(): void {
		this.entries.clear();
		this.bySession.clear();
	}

	isRevoked(sid: string): boolean {
		return this.revoked.has(sid);
	}

	get size(): number {
		return this.entries.size;
	}

	private delete(key: string, sid: string): void {
		this.entries.delete(key);
		const keys = this.bySession.get(sid);
		keys?.delete(key);
		if (keys && !keys.size) this.bySession.delete(sid);
	}

	private prune(now = Date.now()): void {
		for (const [sid, until] of this.revoked) if (until <= now) this.revoked.delete(sid);
	}
}
