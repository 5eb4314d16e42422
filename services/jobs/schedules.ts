import { Cron } from "croner";
import type { Logger } from "moleculer";
import type { Config } from "../../lib/config";

/** What a job's handler gets: calls to other services carry the run's request id. */
export interface JobContext {
	call<T = unknown>(action: string, params?: Record<string, unknown>, opts?: { timeout?: number }): Promise<T>;
	logger: Logger;
	requestId: string;
	run: { id: string; job: string; slot: string; attempt: number };
}

export interface JobDefinition {
	name: string;
	/** 5 fields, or 6 with seconds first (croner). */
	cron: string;
	/** IANA time zone the cron expression is read in. */
	timezone: string;
	/** A slot due while the previous run still runs: skipped, or run after it. */
	overlap: "skip" | "queue";
	/** A failed run (it threw, or its worker died) is tried again this many times, after `delayMs`. */
	retry: { retries: number; delayMs: number };
	description: string;
	/** Returns the run's report (stored as JSON). */
	handler(ctx: JobContext): Promise<Record<string, unknown> | void>;
}

const cronCache = new Map<string, Cron>();
function cronOf(def: Pick<JobDefinition, "cron" | "timezone">): Cron {
	const key = `${def.cron}|${def.timezone}`;
	let c = cronCache.get(key);
	if (!c) {
		c = new Cron(def.cron, { timezone: def.timezone, paused: true });
		cronCache.set(key, c);
	}
	return c;
}

/** The latest scheduled time at or before `now` (null when there is none). */
export function latestSlot(def: Pick<JobDefinition, "cron" | "timezone">, now: Date): Date | null {
	// previousRuns excludes the reference instant itself: look from just after it.
	return cronOf(def).previousRuns(1, new Date(now.getTime() + 1))[0] ?? null;
}

export function nextSlot(def: Pick<JobDefinition, "cron" | "timezone">, now: Date): Date | null {
	return cronOf(def).nextRun(now);
}

/** Throws when a cron expression or time zone is not valid. */
export function checkSchedule(def: JobDefinition): void {
	cronOf(def).nextRun();
}

const sleep = (ms: number) => new Promise(r => setTimeout(r, ms));

/** Each step through the owning service's action; one failing step does not stop the others, but fails the run. */
async function steps(ctx: JobContext, list: [string, string, Record<string, unknown>?][]): Promise<Record<string, unknown>> {
	const report: Record<string, unknown> = {};
	const failed: string[] = [];
	for (const [key, action, params] of list) {
		try {
			report[key] = await ctx.call(action, params ?? {}, { timeout: 60000 });
		} catch (err) {
			failed.push(`${action}: ${(err as Error).message}`);
			report[key] = { error: (err as Error).message };
		}
	}
	if (failed.length) throw Object.assign(new Error(failed.join("; ")), { report });
	return report;
}

/** The schedules, declared in code. */
export function defaultSchedules(cfg: Config): JobDefinition[] {
	const list: JobDefinition[] = [
		{
			name: "payments-reconcile",
			cron: "*/5 * * * *",
			timezone: "UTC",
			overlap: "skip",
			retry: { retries: 1, delayMs: 30000 },
			description: "Compares processing and recent payments with the provider, fixes drift, fetches events whose webhook never came",
			async handler(ctx) {
				const { ids } = await ctx.call<{ ids: string[] }>("payments.reconcileCandidates", {}, { timeout: 30000 });
				let fixed = 0;
				const mismatches: Record<string, unknown>[] = [];
				const errors: string[] = [];
				for (const id of ids) {
					try {
						const r = await ctx.call<{ fixed: boolean; mismatch?: Record<string, unknown> }>("payments.reconcile", { id }, { timeout: 30000 });
						if (r.fixed) fixed++;
						if (r.mismatch) mismatches.push(r.mismatch);
					} catch (err) {
						errors.push(`${id}: ${(err as Error).message}`);
					}
				}
				const events = await ctx.call<Record<string, number>>("payments.syncEvents", {}, { timeout: 60000 });
				const report = { checked: ids.length, fixed, mismatches, events, errors };
				if (errors.length) throw Object.assign(new Error(`${errors.length} payments could not be reconciled`), { report });
				return report;
			}
		},
		{
			name: "cleanup",
			cron: "17 3 * * *",
			timezone: "UTC",
			overlap: "skip",
			retry: { retries: 1, delayMs: 300000 },
			description: "Expired sessions and refresh tokens, old idempotency keys and webhook ids, old handled event ids",
			handler: ctx =>
				steps(ctx, [
					["auth", "auth.cleanup"],
					["payments", "payments.cleanup"],
					["notifications", "notifications.cleanup"]
				])
		},
		{
			name: "notifications-requeue",
			cron: "*/2 * * * *",
			timezone: "UTC",
			overlap: "skip",
			retry: { retries: 0, delayMs: 0 },
			description: "Deliveries stuck in queued (their message lost) are queued again",
			handler: ctx => steps(ctx, [["notifications", "notifications.requeueStuck"]])
		},
		{
			name: "kyc-pending-reminder",
			cron: "0 9 * * 1-5",
			timezone: "Europe/London",
			overlap: "skip",
			retry: { retries: 1, delayMs: 600000 },
			description: "Tells support how many KYC submissions wait for review (working days, 09:00)",
			async handler(ctx) {
				const r = await ctx.call<{ pending: number; oldest_submitted_at: string | null }>("users.kycPendingCount", {});
				if (r.pending > 0) ctx.logger.info(`KYC reminder for support: ${r.pending} submissions pending review, oldest from ${r.oldest_submitted_at}`);
				return r;
			}
		}
	];
	if (cfg.JOBS_TEST_SCHEDULE) {
		const sleepMs = cfg.JOBS_TEST_SLEEP_MS;
		list.push({
			name: "test-tick",
			cron: cfg.JOBS_TEST_SCHEDULE,
			timezone: "UTC",
			overlap: "queue",
			retry: { retries: 1, delayMs: 0 },
			description: "Test only (JOBS_TEST_SCHEDULE): sleeps JOBS_TEST_SLEEP_MS",
			async handler(ctx) {
				ctx.logger.info(`test-tick ${ctx.run.slot} attempt ${ctx.run.attempt} started`);
				await sleep(sleepMs);
				return { slept_ms: sleepMs };
			}
		});
	}
	return list;
}
