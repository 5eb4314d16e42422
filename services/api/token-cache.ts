import type { AuthUser } from "../../lib/types";

interface Entry {
	user: AuthUser;
	checkedAt: number;
}

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
		const e = this.entries.get(token);
		if (!e) return undefined;
		if (e.user.exp * 1000 <= now || now - e.checkedAt >= this.recheckMs || this.revoked.has(e.user.sid)) {
			this.delete(token, e.user.sid);
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
		this.entries.set(token, { user, checkedAt: now });
		let tokens = this.bySession.get(user.sid);
		if (!tokens) this.bySession.set(user.sid, (tokens = new Set()));
		tokens.add(token);
	}

	/** Forget every token of these sessions. `until` is when their tokens would have expired anyway. */
	revokeSessions(sids: string[], until = Date.now() + 15 * 60 * 1000): void {
		for (const sid of sids) {
			this.revoked.set(sid, until);
			for (const token of this.bySession.get(sid) ?? []) this.entries.delete(token);
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

	private delete(token: string, sid: string): void {
		this.entries.delete(token);
		const tokens = this.bySession.get(sid);
		tokens?.delete(token);
		if (tokens && !tokens.size) this.bySession.delete(sid);
	}

	private prune(now = Date.now()): void {
		for (const [sid, until] of this.revoked) if (until <= now) this.revoked.delete(sid);
	}
}
