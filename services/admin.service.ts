import crypto from "node:crypto";
import type { Context, ServiceSchema } from "moleculer";
import { Op, type WhereOptions } from "sequelize";
import { dbMixin, type DbMethods, type DbVars } from "../mixins/db.mixin";
import { PAGE_PARAMS, SAFE_TO_RETRY } from "../lib/access";
import { dayList } from "../lib/days";
import { conflict, unprocessable } from "../lib/errors";
import { permissionsOf, requirePermission, ROLE_NAMES, type Permission } from "../lib/permissions";
import type { AppContext, AuthUser } from "../lib/types";
import { appendEntry, toAuditView, verifyChain, type AuditInput, type AuditView } from "./admin/audit";
import { migrations } from "./admin/migrations";
import { defineModels, type AdminModels, type AuditRow } from "./admin/models";
import { collectRequestStats } from "./admin/metrics";

type Settings = Record<string, never>;

interface UserView {
	id: string;
	email: string;
	name: string;
	status: string;
	roles: string[];
	[k: string]: unknown;
}

type Methods = DbMethods & {
	allow(ctx: AppContext<any>, permission: Permission): AuthUser;
	record(ctx: AppContext<any>, action: string, targetType: string, targetId: string | null, details: Record<string, unknown>): Promise<AuditView>;
	audited<T>(ctx: AppContext<any>, action: string, targetType: string, targetId: string, details: Record<string, unknown>, act: () => Promise<T>): Promise<T>;
	append(input: AuditInput): Promise<{ entry: AuditView; created: boolean }>;
	optional<T>(p: Promise<T>, fallback: T, what: string): Promise<T>;
};
type This = DbVars<AdminModels> & Methods & { broker: import("moleculer").ServiceBroker; logger: import("moleculer").Logger };

const uuid = { type: "uuid" } as const;
const reason = { type: "string", trim: true, min: 1, max: 500 } as const;

/**
 * The admin service: the staff surface under /api/v1/admin. It owns no user or payment data (it calls
 * the owning services' actions), only the tamper-evident audit trail in admin_db.
 */
const AdminService: ServiceSchema<Settings, Methods, This> = {
	name: "admin",
	mixins: [dbMixin({ service: "admin", primary: "Audit", models: defineModels, migrations })],

	actions: {
		// ---- Published (aliased under /api/v1/admin; every one checks the permission map) ----
		/** The caller and what their role may do (the panel shows only that). */
		me: {
			...SAFE_TO_RETRY,
			params: { $$strict: true },
			async handler(this: This, ctx: AppContext) {
				const me = this.allow(ctx, "admin.access");
				const user = await ctx.call<UserView, { id: string }>("users.get", { id: me.id });
				return { user, roles: me.roles, permissions: permissionsOf(me.roles) };
			}
		},

		users: {
			...SAFE_TO_RETRY,
			params: { $$strict: true, q: { type: "string", optional: true, max: 320 }, status: { type: "enum", values: ["active", "suspended"], optional: true }, ...PAGE_PARAMS },
			async handler(this: This, ctx: AppContext<{ q?: string; status?: string; limit: number; offset: number }>) {
				this.allow(ctx, "users.read");
				return ctx.call("users.list", ctx.params);
			}
		},

		user: {
			...SAFE_TO_RETRY,
			params: { $$strict: true, id: uuid },
			async handler(this: This, ctx: AppContext<{ id: string }>) {
				this.allow(ctx, "users.read");
				return ctx.call("users.get", { id: ctx.params.id });
			}
		},

		suspend: {
			params: { $$strict: true, id: uuid, reason },
			async handler(this: This, ctx: AppContext<{ id: string; reason: string }>) {
				const me = this.allow(ctx, "users.suspend");
				if (me.id === ctx.params.id) throw conflict("you cannot suspend your own account");
				const before = await ctx.call<UserView, { id: string }>("users.get", { id: ctx.params.id });
				return this.audited(ctx, "user.suspend", "user", before.id, { reason: ctx.params.reason, status: { from: before.status, to: "suspended" } }, async () => {
					// The status first (new logins and refreshes are refused), then every session (cached tokens drop on every gateway).
					const user = await ctx.call<UserView, object>("users.update", { id: ctx.params.id, status: "suspended", reason: ctx.params.reason });
					await ctx.call("auth.revokeUserSessions", { user_id: ctx.params.id, reason: "suspended" });
					return user;
				});
			}
		},

		unsuspend: {
			params: { $$strict: true, id: uuid, reason: { ...reason, optional: true } },
			async handler(this: This, ctx: AppContext<{ id: string; reason?: string }>) {
				this.allow(ctx, "users.suspend");
				const before = await ctx.call<UserView, { id: string }>("users.get", { id: ctx.params.id });
				return this.audited(ctx, "user.unsuspend", "user", before.id, { reason: ctx.params.reason ?? null, status: { from: before.status, to: "active" } }, () =>
					ctx.call<UserView, object>("users.update", { id: ctx.params.id, status: "active", ...(ctx.params.reason ? { reason: ctx.params.reason } : {}) })
				);
			}
		},

		setRoles: {
			params: { $$strict: true, id: uuid, roles: { type: "array", items: { type: "enum", values: [...ROLE_NAMES] }, min: 1, max: 3 } },
			async handler(this: This, ctx: AppContext<{ id: string; roles: string[] }>) {
				const me = this.allow(ctx, "users.roles");
				if (me.id === ctx.params.id && !ctx.params.roles.includes("admin")) throw conflict("you cannot take the admin role from yourself");
				const before = await ctx.call<UserView, { id: string }>("users.get", { id: ctx.params.id });
				const to = [...new Set(ctx.params.roles)].sort();
				return this.audited(ctx, "user.roles", "user", before.id, { roles: { from: before.roles, to } }, async () => {
					const user = await ctx.call<UserView, object>("users.update", { id: ctx.params.id, roles: ctx.params.roles });
					// Roles ride in the access token: the user's sessions end so the next login carries the new ones.
					if ([...before.roles].sort().join(",") !== [...user.roles].sort().join(",")) {
						await ctx.call("auth.revokeUserSessions", { user_id: user.id, reason: "roles_changed" });
					}
					return user;
				});
			}
		},

		kyc: {
			...SAFE_TO_RETRY,
			params: { $$strict: true, status: { type: "enum", values: ["pending", "verified", "rejected"], default: "pending" }, user_id: { ...uuid, optional: true }, ...PAGE_PARAMS },
			async handler(this: This, ctx: AppContext<{ status: string; limit: number; offset: number }>) {
				this.allow(ctx, "kyc.read");
				return ctx.call("users.kycList", ctx.params);
			}
		},

		kycDecision: {
			params: { $$strict: true, user_id: uuid, decision: { type: "enum", values: ["approve", "reject"] }, reason: { ...reason, optional: true } },
			async handler(this: This, ctx: AppContext<{ user_id: string; decision: "approve" | "reject"; reason?: string }>) {
				this.allow(ctx, "kyc.decide");
				const kycStatus = ctx.params.decision === "approve" ? "verified" : "rejected";
				return this.audited(ctx, `kyc.${ctx.params.decision}`, "user", ctx.params.user_id, { decision: ctx.params.decision, reason: ctx.params.reason ?? null, kyc_status: kycStatus }, () =>
					ctx.call<{ user: UserView; submission: Record<string, unknown> }, object>("users.kycDecide", ctx.params)
				);
			}
		},

		payments: {
			...SAFE_TO_RETRY,
			params: {
				$$strict: true,
				user_id: { ...uuid, optional: true },
				status: { type: "enum", values: ["processing", "succeeded", "failed", "refunded", "partially_refunded"], optional: true },
				...PAGE_PARAMS
			},
			async handler(this: This, ctx: AppContext<Record<string, unknown>>) {
				this.allow(ctx, "payments.read");
				return ctx.call("payments.adminList", ctx.params);
			}
		},

		refund: {
			timeout: 35000,
			params: { $$strict: true, id: uuid, amount: { type: "number", integer: true, min: 1, max: 99999999, optional: true }, reason: { ...reason, optional: true } },
			async handler(this: This, ctx: AppContext<{ id: string; amount?: number; reason?: string }>) {
				const me = this.allow(ctx, "payments.refund");
				const before = await ctx.call<Record<string, unknown>, { id: string }>("payments.adminGet", { id: ctx.params.id });
				const remaining = Number(before.amount) - Number(before.amount_refunded);
				// A refund that cannot be made is refused before it is recorded (the payment service checks the same).
				if (!["succeeded", "partially_refunded"].includes(String(before.status)) || remaining <= 0) throw conflict(`a ${before.status} payment cannot be refunded`);
				if (ctx.params.amount !== undefined && ctx.params.amount > remaining) {
					throw unprocessable(`amount must be at most ${remaining}, what is left to refund`, [{ field: "amount", message: `must be at most ${remaining}` }]);
				}
				const amount = ctx.params.amount ?? remaining;
				const details = { amount, currency: before.currency, reason: ctx.params.reason ?? null, user_id: before.user_id, status: { from: before.status, to: amount >= remaining ? "refunded" : "partially_refunded" }, amount_refunded: { from: before.amount_refunded, to: Number(before.amount_refunded) + amount } };
				return this.audited(ctx, "payment.refund", "payment", ctx.params.id, details, () =>
					ctx.call<Record<string, unknown>, object>("payments.refund", { ...ctx.params, actor_id: me.id }, { timeout: 30000 })
				);
			}
		},

		auditLog: {
			...SAFE_TO_RETRY,
			params: {
				$$strict: true,
				actor_id: { ...uuid, optional: true },
				action: { type: "string", max: 64, optional: true },
				target_id: { type: "string", max: 128, optional: true },
				target_type: { type: "string", max: 32, optional: true },
				from: { type: "date", convert: true, optional: true },
				to: { type: "date", convert: true, optional: true },
				...PAGE_PARAMS
			},
			async handler(this: This, ctx: AppContext<{ actor_id?: string; action?: string; target_id?: string; target_type?: string; from?: Date; to?: Date; limit: number; offset: number }>) {
				this.allow(ctx, "audit.read");
				const { actor_id, action, target_id, target_type, from, to, limit, offset } = ctx.params;
				const where: WhereOptions<AuditRow> = {
					...(actor_id ? { actor_id } : {}),
					...(action ? { action } : {}),
					...(target_id ? { target_id } : {}),
					...(target_type ? { target_type } : {}),
					...(from || to ? { at: { ...(from ? { [Op.gte]: from } : {}), ...(to ? { [Op.lte]: to } : {}) } } : {})
				};
				const { rows, count } = await this.models.Audit.findAndCountAll({ where, order: [["seq", "DESC"]], limit, offset });
				return { items: rows.map(r => toAuditView(r.get({ plain: true }) as AuditRow)), total: count, limit, offset };
			}
		},

		auditVerify: {
			...SAFE_TO_RETRY,
			timeout: 60000,
			params: { $$strict: true },
			async handler(this: This, ctx: AppContext) {
				this.allow(ctx, "audit.read");
				const { valid, entries, first_broken_id } = await verifyChain(this.models);
				return valid ? { valid, entries } : { valid, entries, first_broken_id };
			}
		},

		system: {
			...SAFE_TO_RETRY,
			timeout: 10000,
			params: { $$strict: true },
			async handler(this: This, ctx: AppContext) {
				this.allow(ctx, "system.read");
				type NodeInfo = { id: string; available: boolean; local: boolean; hostname?: string; ipList?: string[]; cpu?: number | null; client?: { version?: string }; lastHeartbeatTime?: number };
				type ServiceInfo = { name: string; fullName?: string; version?: string; available?: boolean; nodes?: string[] };
				const nodes = (await ctx.call<NodeInfo[], object>("$node.list", {})).map(n => ({
					id: n.id,
					available: n.available,
					local: n.local,
					hostname: n.hostname ?? null,
					ip: n.ipList?.[0] ?? null,
					cpu: n.cpu ?? null,
					moleculer: n.client?.version ?? null,
					last_heartbeat_at: n.lastHeartbeatTime ? new Date(n.lastHeartbeatTime).toISOString() : null
				}));
				const services = (await ctx.call<ServiceInfo[], object>("$node.services", { skipInternal: true, withActions: false, onlyAvailable: false })).map(s => ({
					name: s.fullName ?? s.name,
					version: s.version ?? null,
					available: s.available !== false,
					nodes: s.nodes ?? []
				}));
				// Health: each service with a database answers for it (as the gateway's readiness check asks).
				const health: Record<string, "ok" | "down"> = {};
				await Promise.all(
					services.filter(s => s.name !== "api").map(async s => {
						try {
							const r = await ctx.call<{ db: boolean }, object>(`${s.name}.health`, {}, { timeout: 2000, retries: 0 });
							health[s.name] = r.db ? "ok" : "down";
						} catch (err) {
							// A service without a database has no `health` action: it is up if it is registered.
							health[s.name] = (err as { type?: string }).type === "SERVICE_NOT_FOUND" && s.available ? "ok" : "down";
						}
					})
				);
				const queues = await this.optional(ctx.call<{ queues: { name: string; pending: number; dead: number }[] }, object>("notifications.queueStats", {}, { timeout: 5000 }).then(r => r.queues), [], "queue stats");
				const jobs = await this.optional(ctx.call<Record<string, unknown>, object>("jobs.list", {}, { timeout: 5000 }).then(r => r.schedules ?? null), null, "jobs");
				return { nodes, services, health, queues, jobs };
			}
		},

		/** The dashboard's numbers (an extension of API.md, documented in the OpenAPI). */
		stats: {
			...SAFE_TO_RETRY,
			timeout: 10000,
			params: { $$strict: true, days: { type: "number", integer: true, min: 1, max: 90, default: 14, convert: true } },
			async handler(this: This, ctx: AppContext<{ days: number }>) {
				this.allow(ctx, "stats.read");
				const { days } = ctx.params;
				const emptyPayments = dayList(days).map(day => ({ day, succeeded: 0, failed: 0, refunded: 0, amount_succeeded: {} }));
				const [payments, signups, deliveries, requests] = await Promise.all([
					this.optional(ctx.call<{ payments: typeof emptyPayments }, object>("payments.dailyStats", { days }).then(r => r.payments), emptyPayments, "payment stats"),
					this.optional(ctx.call<{ signups: { day: string; count: number }[] }, object>("users.signupStats", { days }).then(r => r.signups), dayList(days).map(day => ({ day, count: 0 })), "signup stats"),
					this.optional(ctx.call<{ deliveries: Record<string, number> }, object>("notifications.deliveryStats", {}).then(r => r.deliveries), { queued: 0, sent: 0, failed: 0, dead: 0 }, "delivery stats"),
					collectRequestStats(this.broker, ctx as unknown as Context)
				]);
				return { payments, signups, deliveries, requests };
			}
		},

		// ---- Internal ----
		/**
		 * Appends an audit entry for a write another service made (e.g. jobs). Idempotent by `key`: a retried
		 * call returns the entry written the first time.
		 */
		audit: {
			visibility: "public",
			...SAFE_TO_RETRY,
			params: {
				$$strict: true,
				key: { type: "string", min: 1, max: 200 },
				actor_id: { ...uuid, optional: true, nullable: true },
				actor_email: { type: "string", max: 320, optional: true, nullable: true },
				action: { type: "string", min: 1, max: 64 },
				target_type: { type: "string", min: 1, max: 32 },
				target_id: { type: "string", max: 128, optional: true, nullable: true },
				request_id: { type: "string", max: 128, optional: true, nullable: true },
				ip: { type: "string", max: 64, optional: true, nullable: true },
				details: { type: "object", optional: true }
			},
			async handler(this: This, ctx: AppContext<Partial<AuditInput> & { key: string; action: string; target_type: string }>) {
				const p = ctx.params;
				let email = p.actor_email ?? null;
				if (!email && p.actor_id) email = await this.optional(ctx.call<UserView, object>("users.get", { id: p.actor_id }).then(u => u.email), null, "actor email");
				const { entry } = await this.append({
					key: p.key,
					actor_id: p.actor_id ?? null,
					actor_email: email,
					action: p.action,
					target_type: p.target_type,
					target_id: p.target_id ?? null,
					request_id: p.request_id ?? ctx.requestID ?? null,
					ip: p.ip ?? null,
					details: p.details ?? {}
				});
				return entry;
			}
		}
	},

	methods: {
		allow(this: This, ctx: AppContext<any>, permission: Permission) {
			return requirePermission(this.logger, ctx, permission);
		},

		/** Audits a write made through this service: the actor, the target, the request id and the client IP. */
		async record(this: This, ctx: AppContext<any>, action: string, targetType: string, targetId: string | null, details: Record<string, unknown>) {
			const actor = ctx.meta.user;
			const email = actor ? await this.optional(ctx.call<UserView, object>("users.get", { id: actor.id }).then(u => u.email), null, "actor email") : null;
			const { entry } = await this.append({
				key: crypto.randomUUID(),
				actor_id: actor?.id ?? null,
				actor_email: email,
				action,
				target_type: targetType,
				target_id: targetId,
				request_id: ctx.requestID ?? null,
				ip: ctx.meta.client?.ip ?? null,
				details
			});
			return entry;
		},

		/**
		 * Audit first, then act: the entry (the decision, with what it changes) is in the chain before the
		 * owning service makes the change, so no write can go unaudited even if this node dies mid-way.
		 * Should the change fail, a `<action>.failed` entry follows and the error goes back to the caller.
		 */
		async audited<T>(this: This, ctx: AppContext<any>, action: string, targetType: string, targetId: string, details: Record<string, unknown>, act: () => Promise<T>): Promise<T> {
			const entry = await this.record(ctx, action, targetType, targetId, details);
			try {
				return await act();
			} catch (err) {
				await this.record(ctx, `${action}.failed`, targetType, targetId, { entry_id: entry.id, error: (err as Error).message }).catch(e =>
					this.logger.error(`Could not audit the failure of ${action} on ${targetType} ${targetId}: ${(e as Error).message}`)
				);
				throw err;
			}
		},

		/** One append in its own transaction; a lost race for the chain head (unique seq) is tried again. */
		async append(this: This, input: AuditInput) {
			for (let attempt = 1; ; attempt++) {
				try {
					return await this.transaction(t => appendEntry(this.models, t, input));
				} catch (err) {
					if (attempt >= 5 || (err as { name?: string }).name !== "SequelizeUniqueConstraintError") throw err;
				}
			}
		},

		async optional<T>(this: This, p: Promise<T>, fallback: T, what: string) {
			try {
				return await p;
			} catch (err) {
				this.logger.warn(`Admin: ${what} unavailable: ${(err as Error).message}`);
				return fallback;
			}
		}
	}
};

export default AdminService;
