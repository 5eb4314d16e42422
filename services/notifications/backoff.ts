/** The longest wait between two attempts. */
export const MAX_BACKOFF_MS = 5 * 60 * 1000;

/** How far the jitter moves a delay, either way. */
export const JITTER = 0.2;

/**
 * The wait before the next attempt after `attempts` tries: base × 2^(attempts-1), capped at 5 minutes,
 * then moved by up to ±20% so that deliveries failing together do not retry together.
 */
export function backoffMs(attempts: number, baseMs: number, random: () => number = Math.random): number {
	const exp = Math.min(MAX_BACKOFF_MS, baseMs * 2 ** Math.max(0, attempts - 1));
	const jitter = 1 + (random() * 2 - 1) * JITTER;
	return Math.max(0, Math.round(exp * jitter));
}
