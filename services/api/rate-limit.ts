import Redis from "ioredis";
import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes, type RateLimiterAbstract } from "rate-limiter-flexible";

export interface RateLimit {
	limiter: RateLimiterAbstract;
	/** Settles once the store has connected or failed its first attempt (counts go to memory until then). */
	ready: Promise<void>;
	close(): Promise<void>;
}

export interface RateLimitDecision {
	allowed: boolean;
	limit: number;
	remaining: number;
	resetSeconds: number;
}

/**
 * Fixed-window limits per client. With Redis the count is shared by every gateway node; should Redis
 * fail, each node falls back to its own in-memory count (the insurance limiter) and keeps serving.
 */
export function createRateLimit(opts: { windowMs: number; max: number; redisUrl?: string; keyPrefix: string }): RateLimit {
	const duration = Math.max(1, Math.round(opts.windowMs / 1000));
	const memory = new RateLimiterMemory({ points: opts.max, duration, keyPrefix: opts.keyPrefix });
	if (!opts.redisUrl) return { limiter: memory, ready: Promise.resolve(), close: async () => undefined };
	// A short disconnectTimeout: when Redis is unreachable, closing would otherwise hold the process for 2 s.
	const redis = new Redis(opts.redisUrl, { enableOfflineQueue: false, maxRetriesPerRequest: 1, lazyConnect: false, disconnectTimeout: 200 });
	redis.on("error", () => undefined); // reconnects by itself; the insurance limiter covers the gap
	const ready = new Promise<void>(resolve => {
		redis.once("ready", () => resolve());
		redis.once("error", () => resolve());
		redis.once("end", () => resolve());
	});
	const limiter = new RateLimiterRedis({
		storeClient: redis,
		points: opts.max,
		duration,
		keyPrefix: opts.keyPrefix,
		insuranceLimiter: memory
	});
	return { limiter, ready, close: async () => void redis.disconnect() };
}

/** Counts one request of `key`; rejects only when the store fails and no insurance limiter answers. */
export function consume(limiter: RateLimiterAbstract, key: string): Promise<RateLimitDecision> {
	return limiter.consume(key, 1).then(
		res => ({ allowed: true, limit: limiter.points, remaining: res.remainingPoints, resetSeconds: Math.ceil(res.msBeforeNext / 1000) }),
		(rej: unknown) => {
			if (rej instanceof RateLimiterRes) {
				return { allowed: false, limit: limiter.points, remaining: 0, resetSeconds: Math.max(1, Math.ceil(rej.msBeforeNext / 1000)) };
			}
			throw rej;
		}
	);
}
