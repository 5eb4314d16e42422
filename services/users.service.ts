import type { ServiceBroker, ServiceSchema } from "moleculer";
import { Op, QueryTypes, fn, col, where, type WhereOptions } from "sequelize";
import { dbMixin, type DbMethods, type DbVars } from "../mixins/db.mixin";
import { outboxMixin, type OutboxMethods } from "../mixins/outbox.mixin";
import { CHANNELS } from "../lib/channels";
import { PAGE_PARAMS, requireOwnerOrStaff, requireUser, SAFE_TO_RETRY } from "../lib/access";
import { conflict, isUniqueViolation, notFound, unprocessable } from "../lib/errors";
import type { AppContext } from "../lib/types";
import { defineModels, ROLES, type KycRow, type UserModels, type UserRow } from "./users/models";
import { migrations } from "./users/migrations";
import { toKycStatus, toKycSubmission, toUser, type UserView } from "./users/view";
import { dayList, dayStart } from "../lib/days";
import { kycProblems, type KycInput } from "./users/kyc";

type Settings = Record<string, never>;
type Methods = DbMethods & OutboxMethods & {
	findUser(id: string): Promise<UserView | null>;
	cachedUser(id: string): Promise<UserView | null>;
	evictUser(id: string): Promise<void>;
};
type This = DbVars<UserModels> & Methods & { evictions: number; broker: ServiceBroker };

const uuid = { type: "uuid" } as const;
const phone = { type: "string", pattern: /^\+[1-9][0-9]{6,14}$/, messages: { stringPattern: "phone must be in E.164 format, e.g. +14155550123" } } as const;
const name = { type: "string", trim: true, min: 1, max: 100 } as const;
const roles = { type: "array", items: { type: "enum", values: [...ROLES] }, min: 1 } as const;

const UsersService: ServiceSchema<Settings, Methods, This> = {
	name: "users",
	mixins: [dbMixin({ service: "users", primary: "User", models: defineModels, migrations }), outboxMixin()],

	actions: {
		// ---- Public (aliased by the gateway) ----
		me: {
			...SAFE_TO_RETRY,
			params: { $$strict: true },
			async handler(this: This, ctx: AppContext) {
				const user = await this.cachedUser(requireUser(ctx).id);
				if (!user) throw notFound("user not found");
				return user;
			}
		},

		updateMe: {
			params: { $$strict: true, name: { ...name, optional: true }, phone: { ...phone, optional: true, nullable: true } },
			async handler(this: This, ctx: AppContext<{ name?: string; phone?: string | null }>) {
				const me = requireUser(ctx);
				const row = await this.models.User.findByPk(me.id);
				if (!row) throw notFound("user not found");
				const changes: Partial<UserRow> = {};
				if (ctx.params.name !== undefined) changes.name = ctx.params.name;
				if (ctx.params.phone !== undefined) changes.phone = ctx.params.phone;
				await row.update(changes);
				await this.evictUser(me.id);
				return toUser(row);
			}
		},

		getById: {
			...SAFE_TO_RETRY,
			params: { $$strict: true, id: uuid },
			async handler(this: This, ctx: AppContext<{ id: string }>) {
				// Ownership is decided before any read, so a stranger learns nothing about whether the id exists.
				requireOwnerOrStaff(requireUser(ctx), ctx.params.id);
				const user = await this.cachedUser(ctx.params.id);
				if (!user) throw notFound("user not found");
				return user;
			}
		},

		submitKyc: {
			params: {
				$$strict: true,
				full_name: { type: "string", trim: true, min: 1, max: 200 },
				date_of_birth: { type: "string", pattern: /^\d{4}-\d{2}-\d{2}$/, messages: { stringPattern: "date_of_birth must be a date as YYYY-MM-DD" } },
				country: { type: "string", pattern: /^[A-Za-z]{2}$/, messages: { stringPattern: "country must be an ISO 3166-1 alpha-2 code" } },
				document_type: { type: "enum", values: ["passport", "national_id", "driving_license"] },
				document_number: { type: "string", trim: true, pattern: /^[A-Za-z0-9 -]{4,64}$/, messages: { stringPattern: "document_number must be 4 to 64 letters, digits, spaces or dashes" } }
			},
			async handler(this: This, ctx: AppContext<KycInput>) {
				const me = requireUser(ctx);
				const problems = kycProblems(ctx.params);
				if (problems.length) throw unprocessable(problems[0].message, problems);
				await this.transaction(async transaction => {
					const [changed] = await this.models.User.update(
						{ kyc_status: "pending" },
						{ where: { id: me.id, kyc_status: { [Op.in]: ["none", "rejected"] } }, transaction }
					);
					if (changed !== 1) {
						const exists = await this.models.User.findByPk(me.id, { transaction });
						if (!exists) throw notFound("user not found");
						throw conflict(`KYC is already ${exists.get("kyc_status")}`);
					}
					await this.models.Kyc.create(
						{ user_id: me.id, ...ctx.params, country: ctx.params.country.toUpperCase(), status: "pending", submitted_at: new Date() },
						{ transaction }
					);
				});
				await this.evictUser(me.id);
				ctx.meta.$statusCode = 202;
				return { kyc_status: "pending" };
			}
		},

		kycStatus: {
			...SAFE_TO_RETRY,
			params: { $$strict: true },
			async handler(this: This, ctx: AppContext) {
				const me = requireUser(ctx);
				const user = await this.models.User.findByPk(me.id);
				if (!user) throw notFound("user not found");
				const last = await this.models.Kyc.findOne({ where: { user_id: me.id }, order: [["submitted_at", "DESC"]] });
				return toKycStatus(user.get("kyc_status"), last ? last.get({ plain: true }) : null);
			}
		},

		// ---- Internal (other services only; `public` is never published through the gateway) ----
		create: {
			visibility: "public",
			params: {
				$$strict: true,
				id: { ...uuid, optional: true },
				email: { type: "email", normalize: true, max: 320 },
				name,
				phone: { ...phone, optional: true, nullable: true },
				roles: { ...roles, optional: true },
				email_verified: { type: "boolean", optional: true }
			},
			async handler(this: This, ctx: AppContext<Partial<UserRow> & { email: string; name: string }>) {
				try {
					// The profile and its `user.created` event commit together (the welcome email follows from it).
					const user = await this.transaction(async transaction => {
						const row = await this.models.User.create(
							{ ...ctx.params, email: ctx.params.email.toLowerCase(), roles: ctx.params.roles ?? ["user"] },
							{ transaction }
						);
						const view = toUser(row);
						await this.addToOutbox(transaction, {
							channel: CHANNELS.userEvents,
							type: "user.created",
							data: { user_id: view.id, email: view.email, name: view.name },
							requestId: ctx.requestID
						});
						return view;
					});
					this.kickOutbox();
					return user;
				} catch (err) {
					if (isUniqueViolation(err)) throw conflict("email is already registered");
					throw err;
				}
			}
		},

		get: {
			visibility: "public",
			...SAFE_TO_RETRY,
			params: { id: uuid },
			async handler(this: This, ctx: AppContext<{ id: string }>) {
				const user = await this.findUser(ctx.params.id);
				if (!user) throw notFound("user not found");
				return user;
			}
		},

		findByEmail: {
			visibility: "public",
			...SAFE_TO_RETRY,
			params: { email: { type: "string", max: 320 } },
			async handler(this: This, ctx: AppContext<{ email: string }>) {
				const row = await this.models.User.findOne({ where: { email: ctx.params.email.trim().toLowerCase() } });
				return row ? toUser(row) : null;
			}
		},

		update: {
			visibility: "public",
			params: {
				$$strict: true,
				id: uuid,
				name: { ...name, optional: true },
				phone: { ...phone, optional: true, nullable: true },
				status: { type: "enum", values: ["active", "suspended"], optional: true },
				roles: { ...roles, optional: true },
				email_verified: { type: "boolean", optional: true },
				/** Why the status changes; carried by `user.suspended` / `user.unsuspended`. */
				reason: { type: "string", max: 500, optional: true }
			},
			async handler(this: This, ctx: AppContext<Partial<UserRow> & { id: string; reason?: string }>) {
				const { id, reason, ...changes } = ctx.params;
				let emitted = false;
				const user = await this.transaction(async transaction => {
					const row = await this.models.User.findByPk(id, { transaction, lock: transaction.LOCK.UPDATE });
					if (!row) throw notFound("user not found");
					const before = row.get("status");
					await row.update(changes, { transaction });
					const view = toUser(row);
					// A status change and its event commit together (the user is told through the queue).
					if (changes.status && changes.status !== before) {
						await this.addToOutbox(transaction, {
							channel: CHANNELS.userEvents,
							type: changes.status === "suspended" ? "user.suspended" : "user.unsuspended",
							data: { user_id: view.id, email: view.email, name: view.name, reason: reason ?? null },
							requestId: ctx.requestID
						});
						emitted = true;
					}
					return view;
				});
				await this.evictUser(id);
				if (emitted) this.kickOutbox();
				return user;
			}
		},

		list: {
			visibility: "public",
			...SAFE_TO_RETRY,
			params: {
				q: { type: "string", optional: true, max: 320 },
				status: { type: "enum", values: ["active", "suspended"], optional: true },
				...PAGE_PARAMS
			},
			async handler(this: This, ctx: AppContext<{ q?: string; status?: string; limit: number; offset: number }>) {
				const { q, status, limit, offset } = ctx.params;
				const conditions: WhereOptions[] = [];
				if (status) conditions.push({ status });
				if (q) {
					const like = `%${q.toLowerCase().replace(/[\\%_]/g, c => "\\" + c)}%`;
					conditions.push({ [Op.or]: [{ email: { [Op.like]: like } }, where(fn("lower", col("name")), { [Op.like]: like })] });
				}
				const { rows, count } = await this.models.User.findAndCountAll({
					where: { [Op.and]: conditions },
					order: [["created_at", "DESC"], ["id", "ASC"]],
					limit,
					offset
				});
				return { items: rows.map(toUser), total: count, limit, offset };
			}
		},

		remove: {
			visibility: "public",
			params: { id: uuid },
			async handler(this: This, ctx: AppContext<{ id: string }>) {
				await this.models.Kyc.destroy({ where: { user_id: ctx.params.id } });
				const removed = (await this.models.User.destroy({ where: { id: ctx.params.id } })) > 0;
				await this.evictUser(ctx.params.id);
				return removed;
			}
		},

		/** The KYC review queue (admin service): submissions by status, oldest first, with the user's email and name. */
		kycList: {
			visibility: "public",
			...SAFE_TO_RETRY,
			params: {
				$$strict: true,
				status: { type: "enum", values: ["pending", "verified", "rejected"], default: "pending" },
				user_id: { ...uuid, optional: true },
				...PAGE_PARAMS
			},
			async handler(this: This, ctx: AppContext<{ status: string; user_id?: string; limit: number; offset: number }>) {
				const { status, user_id, limit, offset } = ctx.params;
				const { rows, count } = await this.models.Kyc.findAndCountAll({
					where: { status, ...(user_id ? { user_id } : {}) },
					order: [["submitted_at", status === "pending" ? "ASC" : "DESC"], ["id", "ASC"]],
					limit,
					offset
				});
				const kycs = rows.map(r => r.get({ plain: true }) as KycRow);
				const users = await this.models.User.findAll({ where: { id: { [Op.in]: [...new Set(kycs.map(k => k.user_id))] } } });
				const byId = new Map(users.map(u => [u.get("id") as string, toUser(u)]));
				const items = kycs.map(k => toKycSubmission(k, byId.get(k.user_id) ?? null));
				return { items, total: count, limit, offset };
			}
		},

		/** Decides the user's pending KYC submission; the decision and its `user.kyc_decided` event commit together. */
		kycDecide: {
			visibility: "public",
			params: {
				$$strict: true,
				user_id: uuid,
				decision: { type: "enum", values: ["approve", "reject"] },
				reason: { type: "string", trim: true, max: 500, optional: true }
			},
			async handler(this: This, ctx: AppContext<{ user_id: string; decision: "approve" | "reject"; reason?: string }>) {
				const { user_id, decision } = ctx.params;
				const reason = ctx.params.reason || null;
				const status = decision === "approve" ? "verified" : "rejected";
				const out = await this.transaction(async transaction => {
					const user = await this.models.User.findByPk(user_id, { transaction, lock: transaction.LOCK.UPDATE });
					if (!user) throw notFound("user not found");
					const kyc = await this.models.Kyc.findOne({ where: { user_id, status: "pending" }, order: [["submitted_at", "DESC"]], transaction });
					if (!kyc) throw conflict("the user has no pending KYC submission");
					const decidedAt = new Date();
					await kyc.update({ status, reason, decided_at: decidedAt }, { transaction });
					await user.update({ kyc_status: status }, { transaction });
					const view = toUser(user);
					await this.addToOutbox(transaction, {
						channel: CHANNELS.userEvents,
						type: "user.kyc_decided",
						data: { user_id, email: view.email, name: view.name, decision, kyc_status: status, reason },
						requestId: ctx.requestID
					});
					return { user: view, submission: toKycSubmission(kyc.get({ plain: true }) as KycRow, view) };
				});
				await this.evictUser(user_id);
				this.kickOutbox();
				return out;
			}
		},

		/** Sign-ups per UTC day over the last `days` days (the admin dashboard). */
		signupStats: {
			visibility: "public",
			...SAFE_TO_RETRY,
			params: { $$strict: true, days: { type: "number", integer: true, min: 1, max: 366, default: 14, convert: true } },
			async handler(this: This, ctx: AppContext<{ days: number }>) {
				const from = dayStart(ctx.params.days);
				const day = this.sequelize.getDialect() === "postgres" ? "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')" : "substr(created_at, 1, 10)";
				const rows = (await this.sequelize.query(`SELECT ${day} AS day, COUNT(*) AS n FROM users WHERE created_at >= :from GROUP BY 1`, {
					replacements: { from },
					type: QueryTypes.SELECT
				})) as { day: string; n: string | number }[];
				const counts = new Map(rows.map(r => [r.day, Number(r.n)]));
				return { signups: dayList(ctx.params.days).map(d => ({ day: d, count: counts.get(d) ?? 0 })) };
			}
		},

		/** For the jobs service's KYC reminder: submissions waiting for review. */
		kycPendingCount: {
			visibility: "public",
			...SAFE_TO_RETRY,
			async handler(this: This) {
				const pending = await this.models.Kyc.count({ where: { status: "pending" } });
				const oldest = await this.models.Kyc.min("submitted_at", { where: { status: "pending" } });
				return { pending, oldest_submitted_at: oldest ? new Date(oldest as Date).toISOString() : null };
			}
		}
	},

	methods: {
		async findUser(this: This, id: string) {
			const row = await this.models.User.findByPk(id);
			return row ? toUser(row) : null;
		},

		/**
		 * A profile read for display (me, getById) through the broker's cacher. Every change evicts it on every
		 * users node (after its commit); CACHE_TTL_S bounds how long a lost eviction can leave it stale.
		 * Internal reads that decide access (`users.get`, used by auth and admin) always go to the database.
		 */
		async cachedUser(this: This, id: string) {
			const cacher = this.broker.cacher;
			if (!cacher) return this.findUser(id);
			const key = `users.profile:${id}`;
			const hit = (await cacher.get(key)) as UserView | null;
			if (hit) return hit;
			// An eviction during the read may mean the row changed under it: answer it, but don't cache it.
			const seen = this.evictions;
			const user = await this.findUser(id);
			if (user && seen === this.evictions) await cacher.set(key, user);
			return user;
		},

		/** Drops a profile from this node's cache at once and from the other users nodes' by a broadcast. */
		async evictUser(this: This, id: string) {
			this.evictions++;
			await this.broker.cacher?.del(`users.profile:${id}`);
			this.broker.broadcast("users.profile.evict", { id }, { groups: ["users"] });
		}
	},

	events: {
		"users.profile.evict": {
			params: { id: uuid },
			async handler(this: This, ctx: AppContext<{ id: string }>) {
				this.evictions++;
				await this.broker.cacher?.del(`users.profile:${ctx.params.id}`);
			}
		}
	},

	created(this: This) {
		this.evictions = 0;
	}
};

export default UsersService;
