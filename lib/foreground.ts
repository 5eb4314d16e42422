/**
 * When this process last began serving a request that is not password work, so the bcrypt pool
 * (services/auth/bcrypt-pool.ts) can leave a core to it. The gateway marks it; a process without a
 * gateway (an auth-only node) never does, and its pool uses every core.
 */
let last = -Infinity;

export function markForeground(): void {
	last = performance.now();
}

/** Whether a request was marked within the last `ms` milliseconds. */
export function foregroundWithin(ms: number): boolean {
	return performance.now() - last < ms;
}
