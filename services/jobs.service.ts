import crypto from "node:crypto";
import type { Context, ServiceSchema } from "moleculer";
import { Op, type WhereOptions } from "sequelize";
import { dbMixin, type DbMethods, type DbVars } from "../mixins/db.mixin";
import { PAGE_PARAMS, SAFE_TO_RETRY } from "../lib/access";
import { requirePermission } from "../lib/permissions";
import { config } from "../lib/config";
import { isUniqueViolation, notFound } from "../lib/errors";
import type { AppContext } from "../lib/types";
import { defineModels, type JobModels, type JobRunRow } from "./jobs/models";
import { migrations } from "./jobs/migrations";
import { checkSchedule, defaultSchedules, latestSlot, nextSlot, type JobContext, type JobDefinition } from "./jobs/schedules";

type Settings = Record<string, never>;

interface Vars {
	defs: Map<string, JobDefinition>;
	tickMs: number;
	leaseMs: number;
	owner: string;
	tickTimer?: NodeJS.Timeout;
	ticking?: Promise<void>;
	/** Per job: slots before this are not caught up (a job with no history starts from now). */
	baseline: Map<string, number>;
	/** Per job: the last slot this node tried to claim (saves an INSERT per tick). */
	claimed: Map<string, string>;
	/** Runs executing on this node. */
	active: Map<string, Promise<void>>;
	stopping: boolean;
	lastStatsAt: number;
}

type Methods = DbMethods & {
	/** The schedules this service runs (tests override it through a mixin). */
	definitions(): JobDefinition[];
	tick(): Promise<void>;
	claimSlot(job: string, slot: string, attempt: number, runAfter: Date, requestId: string): Promise<JobRunRow | null>;
	reclaimExpired(now: Date): Promise<void>;
	startQueued(def: JobDefinition, now: Date): Promise<void>;
	execute(def: JobDefinition, run: JobRunRow): Promise<void>;
	retryLater(def: JobDefinition, run: JobRunRow, now: Date): Promise<void>;
	trigger(name: string, requestId: string | null): Promise<{ run_id: string; job: string; slot: string; status: string; created: boolean }>;
	overview(): Promise<Record<string, unknown>>;
	refreshQueueMetrics(): Promise<{ name: string; pending: number; dead: number }[]>;
	audit(ctx: AppContext<any>, action: string, targetType: string, target: string, details?: Record<string, unknown>): Promise<void>;
};

type This = DbVars<JobModels> & Vars & Methods & { broker: import("moleculer").ServiceBroker; logger: import("moleculer").Logger };

const plain = (r: { get(o: { plain: true }): unknown }) => r.get({ plain: true }) as JobRunRow;
const errorText = (err: unknown) => (err instanceof Error ? err.message : String(err)).slice(0, 1000);
const iso = (d: Date | string | null | undefined) => (d ? new Date(d).toISOString() : null);

export const METRICS = {
	runs: "jobs_runs_total",
	duration: "jobs_run_duration_seconds",
	queueDepth: "queue_depth",
	deadLetters: "queue_dead_letters"
} as const;

/** The jobs service: schedules declared in code, each slot run once across replicas (a unique slot row in jobs_db). */
const JobsService: ServiceSchema<Settings, Methods, This> = {
	name: "jobs",
	mixins: [dbMixin({ service: "jobs", primary: "JobRun", models: defineModels, migrations })],

	actions: {
		// ---- Published (admin routes; roles checked here) ----
		list: {
			...SAFE_TO_RETRY,
			params: { $$strict: true },
			async handler(this: This, ctx: AppContext) {
				requirePermission(this.logger, ctx, "jobs.read");
				return this.overview();
			}
		},

		run: {
			params: { $$strict: true, name: { type: "string", min: 1, max: 64 } },
			async handler(this: This, ctx: AppContext<{ name: string }>) {
				requirePermission(this.logger, ctx, "jobs.run");
				const out = await this.trigger(ctx.params.name, ctx.requestID ?? null);
				await this.audit(ctx, "jobs.run", "job", ctx.params.name, { run_id: out.run_id, created: out.created });
				ctx.meta.$statusCode = 202;
				return out;
			}
		},

		deadLetters: {
			...SAFE_TO_RETRY,
			params: {
				$$strict: true,
				...PAGE_PARAMS
			},
			async handler(this: This, ctx: AppContext<{ limit: number; offset: number }>) {
				requirePermission(this.logger, ctx, "dead-letters.read");
				return ctx.call("notifications.deadLetters", { limit: ctx.params.limit, offset: ctx.params.offset });
			}
		},

		redrive: {
			params: { $$strict: true, id: { type: "uuid" } },
			async handler(this: This, ctx: AppContext<{ id: string }>) {
				requirePermission(this.logger, ctx, "dead-letters.redrive");
				const out = await ctx.call<Record<string, unknown>, { id: string }>("notifications.redrive", { id: ctx.params.id });
				await this.audit(ctx, "dead-letter.redrive", "dead_letter", ctx.params.id, out);
				ctx.meta.$statusCode = 202;
				return out;
			}
		},

		// ---- Internal ----
		/** Runs a job now, once however many callers ask within the same minute. */
		trigger: {
			visibility: "public",
			params: { $$strict: true, name: { type: "string", min: 1, max: 64 } },
			handler(this: This, ctx: Context<{ name: string }>) {
				return this.trigger(ctx.params.name, ctx.requestID ?? null);
			}
		},

		/** A run's history (tests and operators). */
		runs: {
			visibility: "public",
			...SAFE_TO_RETRY,
			params: { $$strict: true, name: { type: "string", min: 1, max: 64 }, limit: { type: "number", integer: true, min: 1, max: 500, default: 50, convert: true } },
			async handler(this: This, ctx: Context<{ name: string; limit: number }>) {
				const rows = await this.models.JobRun.findAll({ where: { job: ctx.params.name }, order: [["created_at", "DESC"], ["attempt", "DESC"]], limit: ctx.params.limit });
				return rows.map(r => {
					const p = plain(r);
					return { ...p, report: p.report ? JSON.parse(p.report) : null };
				});
			}
		}
	},

	methods: {
		definitions(this: This) {
			return defaultSchedules(config());
		},

		/** Every JOBS_TICK_MS: claim due slots, take back runs whose worker died, start what may start. One tick at a time. */
		tick(this: This) {
			if (this.ticking) return this.ticking;
			if (this.stopping || !this.dbMigrated) return Promise.resolve();
			const run = async () => {
				const now = new Date();
				for (const def of this.defs.values()) {
					const slot = latestSlot(def, now);
					if (!slot || slot.getTime() < (this.baseline.get(def.name) ?? 0)) continue;
					const key = slot.toISOString();
					if (this.claimed.get(def.name) === key) continue;
					await this.claimSlot(def.name, key, 1, now, crypto.randomUUID());
					this.claimed.set(def.name, key);
					this.baseline.delete(def.name);
				}
				await this.reclaimExpired(now);
				for (const def of this.defs.values()) await this.startQueued(def, now);
				if (Date.now() - this.lastStatsAt > 15000) {
					this.lastStatsAt = Date.now();
					await this.refreshQueueMetrics().catch(() => undefined);
				}
			};
			this.ticking = run()
				.catch(err => this.logger.warn(`Jobs tick failed: ${errorText(err)}`))
				.finally(() => {
					this.ticking = undefined;
				});
			return this.ticking;
		},

		/** The slot claim: the INSERT that wins makes the run; null when another node (or caller) made it first. */
		async claimSlot(this: This, job: string, slot: string, attempt: number, runAfter: Date, requestId: string) {
			try {
				const row = await this.models.JobRun.create({ job, slot, attempt, status: "queued", run_after: runAfter, request_id: requestId });
				return plain(row);
			} catch (err) {
				if (isUniqueViolation(err)) return null;
				throw err;
			}
		},

		/** Runs whose lease ran out (their worker died) are failed, and retried once more if their policy allows. */
		async reclaimExpired(this: This, now: Date) {
			const expired = await this.models.JobRun.findAll({ where: { status: "running", lease_until: { [Op.lt]: now } } });
			for (const r of expired) {
				const run = plain(r);
				const [n] = await this.models.JobRun.update(
					{ status: "failed", finished_at: now, lease_until: null, error: `the run's lease ran out (its worker ${run.owner ?? "?"} stopped)` },
					{ where: { id: run.id, status: "running", lease_until: { [Op.lt]: now } } }
				);
				if (n !== 1) continue;
				this.logger.warn(`Run ${run.job} ${run.slot} attempt ${run.attempt} lost its worker`);
				this.broker.metrics.increment(METRICS.runs, { job: run.job, status: "failed" });
				await this.models.JobLock.update({ run_id: null, lease_until: null }, { where: { job: run.job, run_id: run.id } });
				const def = this.defs.get(run.job);
				if (def) await this.retryLater(def, run, now);
			}
		},

		async retryLater(this: This, def: JobDefinition, run: JobRunRow, now: Date) {
			if (run.attempt > def.retry.retries) return;
			await this.claimSlot(def.name, run.slot, run.attempt + 1, new Date(now.getTime() + def.retry.delayMs), run.request_id ?? crypto.randomUUID());
		},

		/** Starts the oldest queued run of a job if the job's lock is free; by policy, skips a slot that finds it busy. */
		async startQueued(this: This, def: JobDefinition, now: Date) {
			if (this.stopping) return;
			const queued = await this.models.JobRun.findAll({
				where: { job: def.name, status: "queued", run_after: { [Op.lte]: now } },
				order: [["run_after", "ASC"], ["created_at", "ASC"]],
				limit: 20
			});
			for (const r of queued) {
				const run = plain(r);
				const leaseUntil = new Date(Date.now() + this.leaseMs);
				const [locked] = await this.models.JobLock.update(
					{ run_id: run.id, lease_until: leaseUntil },
					{ where: { job: def.name, [Op.or]: [{ run_id: null }, { lease_until: { [Op.lt]: now } }] } as WhereOptions }
				);
				if (locked !== 1) {
					const lock = await this.models.JobLock.findByPk(def.name);
					// Another node is starting this very run: leave it to them.
					if (lock?.run_id === run.id) return;
					if (def.overlap === "skip" && run.attempt === 1) {
						const [n] = await this.models.JobRun.update(
							{ status: "skipped", finished_at: now, error: "the previous run was still running" },
							{ where: { id: run.id, status: "queued" } }
						);
						if (n === 1) this.broker.metrics.increment(METRICS.runs, { job: def.name, status: "skipped" });
						continue;
					}
					return;
				}
				const [started] = await this.models.JobRun.update(
					{ status: "running", started_at: new Date(), owner: this.owner, lease_until: leaseUntil },
					{ where: { id: run.id, status: "queued" } }
				);
				if (started !== 1) {
					await this.models.JobLock.update({ run_id: null, lease_until: null }, { where: { job: def.name, run_id: run.id } });
					continue;
				}
				const p = this.execute(def, { ...run, status: "running", owner: this.owner, lease_until: leaseUntil, started_at: new Date() }).finally(() => this.active.delete(run.id));
				this.active.set(run.id, p);
				return;
			}
		},

		/** Runs a claimed run, renewing its lease while it runs; records the outcome (only while the claim is still ours). */
		async execute(this: This, def: JobDefinition, run: JobRunRow) {
			const started = Date.now();
			const ours = { id: run.id, status: "running", owner: this.owner };
			const heartbeat = setInterval(() => {
				const until = new Date(Date.now() + this.leaseMs);
				void Promise.all([
					this.models.JobRun.update({ lease_until: until }, { where: ours }),
					this.models.JobLock.update({ lease_until: until }, { where: { job: def.name, run_id: run.id } })
				]).catch(err => this.logger.warn(`Could not renew the lease of ${def.name}: ${errorText(err)}`));
			}, Math.max(50, Math.floor(this.leaseMs / 3)));
			heartbeat.unref();
			const requestId = run.request_id ?? crypto.randomUUID();
			const jobCtx: JobContext = {
				call: (action, params, opts) => this.broker.call(action, params ?? {}, { requestID: requestId, meta: {}, ...(opts ?? {}) }),
				logger: this.logger,
				requestId,
				run: { id: run.id, job: run.job, slot: run.slot, attempt: run.attempt }
			};
			let status: "succeeded" | "failed" = "succeeded";
			let error: string | null = null;
			let report: unknown;
			try {
				report = (await def.handler(jobCtx)) ?? null;
			} catch (err) {
				status = "failed";
				error = errorText(err);
				report = (err as { report?: unknown }).report ?? null;
			} finally {
				clearInterval(heartbeat);
			}
			const durationMs = Date.now() - started;
			const now = new Date();
			try {
				const [n] = await this.models.JobRun.update(
					{ status, finished_at: now, duration_ms: durationMs, lease_until: null, error, report: report === null ? null : JSON.stringify(report) },
					{ where: ours }
				);
				await this.models.JobLock.update({ run_id: null, lease_until: null }, { where: { job: def.name, run_id: run.id } });
				if (n !== 1) {
					this.logger.warn(`Run ${def.name} ${run.slot} finished after its lease was taken back; outcome not recorded`);
					return;
				}
				this.broker.metrics.increment(METRICS.runs, { job: def.name, status });
				this.broker.metrics.observe(METRICS.duration, durationMs / 1000, { job: def.name });
				if (status === "failed") {
					this.logger.warn(`Run ${def.name} ${run.slot} attempt ${run.attempt} failed: ${error}`);
					await this.retryLater(def, run, now);
				} else {
					this.logger.info(`Run ${def.name} ${run.slot} attempt ${run.attempt} succeeded in ${durationMs} ms`);
				}
			} catch (err) {
				// The lease runs out and another node retries it.
				this.logger.error(`Could not record the outcome of ${def.name} ${run.slot}: ${errorText(err)}`);
			}
			if (!this.stopping) void this.tick();
		},

		async trigger(this: This, name: string, requestId: string | null) {
			if (!this.defs.has(name)) throw notFound(`no job is named ${name}`);
			// Presses within the same minute are one run.
			const slot = `manual:${new Date().toISOString().slice(0, 16)}`;
			const created = await this.claimSlot(name, slot, 1, new Date(), requestId ?? crypto.randomUUID());
			const row = created ?? plain((await this.models.JobRun.findOne({ where: { job: name, slot, attempt: 1 } }))!);
			void this.tick();
			return { run_id: row.id, job: name, slot, status: row.status, created: !!created };
		},

		async overview(this: This) {
			const now = new Date();
			const schedules = [];
			for (const def of this.defs.values()) {
				const last = await this.models.JobRun.findOne({
					where: { job: def.name, status: { [Op.in]: ["running", "succeeded", "failed"] } },
					order: [["started_at", "DESC"]]
				});
				schedules.push({
					name: def.name,
					cron: def.cron,
					timezone: def.timezone,
					overlap: def.overlap,
					description: def.description,
					last_run_at: iso(last?.started_at),
					last_status: last?.status ?? null,
					next_run_at: iso(nextSlot(def, now))
				});
			}
			let queues: { name: string; pending: number; dead: number }[] = [];
			try {
				queues = await this.refreshQueueMetrics();
			} catch (err) {
				this.logger.warn(`Queue stats unavailable: ${errorText(err)}`);
			}
			return { schedules, queues };
		},

		async refreshQueueMetrics(this: This) {
			const { queues } = await this.broker.call<{ queues: { name: string; pending: number; dead: number }[] }, object>("notifications.queueStats", {}, { timeout: 5000 });
			for (const q of queues) {
				this.broker.metrics.set(METRICS.queueDepth, q.pending, { queue: q.name });
				this.broker.metrics.set(METRICS.deadLetters, q.dead, { queue: q.name });
			}
			return queues;
		},

		/**
		 * The audit hook of admin writes: an entry in the admin service's audit trail, right after the write
		 * succeeded. The key is made once, so a retried call adds no second entry.
		 */
		async audit(this: This, ctx: AppContext<any>, action: string, targetType: string, target: string, details: Record<string, unknown> = {}) {
			const entry = {
				key: `jobs:${crypto.randomUUID()}`,
				actor_id: ctx.meta.user?.id ?? null,
				action,
				target_type: targetType,
				target_id: target,
				request_id: ctx.requestID ?? null,
				ip: ctx.meta.client?.ip ?? null,
				details
			};
			try {
				await ctx.call("admin.audit", entry, { timeout: 5000 });
			} catch (err) {
				// The write is done: it is not undone for want of its audit entry, but the miss is loud.
				this.logger.error(`Audit entry not written: ${action} ${target} by ${entry.actor_id ?? "?"}: ${errorText(err)} ${JSON.stringify(entry)}`);
			}
		}
	},

	created(this: This) {
		const cfg = config();
		this.tickMs = cfg.JOBS_TICK_MS;
		this.leaseMs = cfg.JOBS_LEASE_MS;
		this.owner = this.broker.nodeID;
		this.defs = new Map();
		for (const def of this.definitions()) {
			checkSchedule(def);
			this.defs.set(def.name, def);
		}
		this.baseline = new Map();
		this.claimed = new Map();
		this.active = new Map();
		this.stopping = false;
		this.lastStatsAt = 0;
		const m = this.broker.metrics;
		m.register({ name: METRICS.runs, type: "counter", labelNames: ["job", "status"], description: "Job runs by outcome" });
		m.register({ name: METRICS.duration, type: "histogram", labelNames: ["job"], unit: "seconds", description: "Job run duration", buckets: [0.1, 0.5, 1, 5, 15, 60, 300] });
		m.register({ name: METRICS.queueDepth, type: "gauge", labelNames: ["queue"], description: "Messages waiting (queued, sending, failed awaiting retry)" });
		m.register({ name: METRICS.deadLetters, type: "gauge", labelNames: ["queue"], description: "Messages parked as dead, not redriven" });
	},

	async started(this: This) {
		// The db mixin has connected and migrated by now.
		await this.models.JobLock.bulkCreate([...this.defs.keys()].map(job => ({ job, run_id: null, lease_until: null })), { ignoreDuplicates: true });
		const now = Date.now();
		for (const def of this.defs.values()) {
			// A job with a history catches up its latest missed slot (once); a new one starts from now.
			const seen = await this.models.JobRun.count({ where: { job: def.name, slot: { [Op.notLike]: "manual:%" } } });
			if (!seen) this.baseline.set(def.name, now);
		}
		this.tickTimer = setInterval(() => void this.tick(), this.tickMs);
		this.tickTimer.unref();
		void this.tick();
	},

	async stopped(this: This) {
		this.stopping = true;
		if (this.tickTimer) clearInterval(this.tickTimer);
		await this.ticking;
		// Runs in hand finish (bounded by the broker's shutdown); one that does not is retried after its lease.
		await Promise.allSettled([...this.active.values()]);
	}
};

export default JobsService;
