import crypto from "node:crypto";
import { Op, QueryTypes, type Sequelize, type Transaction, type WhereOptions } from "sequelize";
import { isUniqueViolation } from "../../lib/errors";
import { backoffMs } from "./backoff";
import type { EventEnvelope, PlannedDelivery } from "./events";
import type { DeadLetterRow, DeliveryRow, InboxRow, NotificationModels } from "./models";

/** The queue names dead letters are filed under. */
export const DELIVERY_QUEUE = "notifications.deliveries";
export const INBOX_QUEUE = "notifications.inbox";

export interface StoreSettings {
	/** How long a claim (of a delivery, or of an inbox row being processed) holds. */
	leaseMs: number;
	/** Tries of a delivery before it is dead. */
	maxAttempts: number;
	/** The first retry's delay; each later one doubles (see backoff.ts). */
	retryBaseMs: number;
}

const BATCH = 100;

/** The columns completeEvent writes a delivery with. */
const DELIVERY_COLUMNS = ["id", "event_id", "user_id", "channel", "template", "to", "status", "attempts", "request_id", "data", "created_at", "updated_at"] as const;

/** PostgreSQL's completeEvent: the deliveries (a duplicate of one already there is skipped) and the processed mark, one statement. */
const COMPLETE_EVENT = `WITH d AS (INSERT INTO deliveries (${DELIVERY_COLUMNS.map(c => `"${c}"`).join(", ")}) VALUES :rows ON CONFLICT DO NOTHING RETURNING id, request_id),
	u AS (UPDATE inbox SET processed_at = :now, next_attempt_at = NULL, last_error = NULL WHERE event_id = :event_id AND processed_at IS NULL)
	SELECT id, request_id FROM d`;

/** Error texts are kept short: they are for people reading the table, not for stack traces. */
export const errorText = (err: unknown) => (err instanceof Error ? err.message : String(err)).slice(0, 1000);

const plain = <T>(row: { get(opts: { plain: true }): unknown }) => row.get({ plain: true }) as T;

/**
 * The notification tables and their state machines. Every change of ownership is one conditional
 * UPDATE, so two workers (or two replicas' pumps) never both take the same row.
 *
 * Delivery: queued → sending (claimed, with a lease) → sent
 *                                                   → failed (retry after backoff) → queued …
 *                                                   → dead (after the last try; a dead letter is filed)
 */
export class NotificationStore {
	constructor(
		readonly sequelize: Sequelize,
		readonly models: NotificationModels,
		readonly settings: StoreSettings
	) {}

	// ---- Inbox: the events received, and whether each is processed ----

	/** Records an event; its row, or null when its id was seen before (the event is then handled, or in hand). */
	async receive(env: EventEnvelope, requestId: string | null, now = new Date()): Promise<InboxRow | null> {
		const row: InboxRow = {
			event_id: env.id,
			type: env.type,
			payload: JSON.stringify(env),
			request_id: requestId,
			received_at: now,
			processed_at: null,
			attempts: 1,
			last_error: null,
			// The receiver processes it now; the pump leaves it alone until this lease is over.
			next_attempt_at: new Date(now.getTime() + this.settings.leaseMs)
		};
		try {
			await this.sequelize.query(
				"INSERT INTO inbox (event_id, type, payload, request_id, received_at, attempts, next_attempt_at) VALUES (:event_id, :type, :payload, :request_id, :received_at, :attempts, :next_attempt_at)",
				{ replacements: { ...row } }
			);
			return row;
		} catch (err) {
			if (isUniqueViolation(err)) return null;
			throw err;
		}
	}

	async inboxRow(eventId: string): Promise<InboxRow | null> {
		const row = await this.models.Inbox.findByPk(eventId);
		return row ? plain<InboxRow>(row) : null;
	}

	/**
	 * Marks an event processed and writes its deliveries; returns the deliveries written, to publish.
	 * One processor writes them: another that processed the event first (its lease had run out) has
	 * written and published them, and this one writes none. On PostgreSQL this is one statement, and the
	 * deliveries' unique (event, channel, template) is what keeps a second processor's out; elsewhere the
	 * processor that marks the event processed, in a transaction, writes them.
	 */
	async completeEvent(row: InboxRow, userId: string | null, planned: PlannedDelivery[]): Promise<Pick<DeliveryRow, "id" | "request_id">[]> {
		const now = new Date();
		const done = { processed_at: now, next_attempt_at: null, last_error: null };
		const mine = { event_id: row.event_id, processed_at: null };
		const values = planned.map(p => ({
			id: crypto.randomUUID(),
			event_id: row.event_id,
			user_id: userId,
			channel: p.channel,
			template: p.template,
			to: p.to,
			status: "queued" as const,
			attempts: 0,
			request_id: row.request_id,
			data: JSON.stringify(p.data),
			created_at: now,
			updated_at: now
		}));
		if (!values.length) {
			await this.models.Inbox.update(done, { where: mine });
			return [];
		}
		if (this.sequelize.getDialect() === "postgres") {
			return this.sequelize.query<Pick<DeliveryRow, "id" | "request_id">>(COMPLETE_EVENT, {
				replacements: { rows: values.map(v => DELIVERY_COLUMNS.map(c => v[c])), now, event_id: row.event_id },
				type: QueryTypes.SELECT
			});
		}
		return this.sequelize.transaction(async transaction => {
			const [n] = await this.models.Inbox.update(done, { where: mine, transaction });
			if (n !== 1) return [];
			await this.models.Delivery.bulkCreate(values, { transaction });
			return values.map(d => ({ id: d.id, request_id: d.request_id }));
		});
	}

	/** Leaves an event unprocessed, to be tried again after a backoff. */
	async deferEvent(row: InboxRow, err: unknown): Promise<Date> {
		const next = new Date(Date.now() + backoffMs(row.attempts, this.settings.retryBaseMs));
		await this.models.Inbox.update({ next_attempt_at: next, last_error: errorText(err) }, { where: { event_id: row.event_id, processed_at: null } });
		return next;
	}

	/** Gives up on an event that cannot be processed: it is marked processed and filed as a dead letter. */
	async abandonEvent(row: InboxRow, err: unknown): Promise<void> {
		await this.sequelize.transaction(async transaction => {
			const [n] = await this.models.Inbox.update(
				{ processed_at: new Date(), next_attempt_at: null, last_error: errorText(err) },
				{ where: { event_id: row.event_id, processed_at: null }, transaction }
			);
			if (n === 1) {
				await this.addDeadLetter({ queue: INBOX_QUEUE, message_id: row.event_id, payload: row.payload, error: errorText(err), request_id: row.request_id }, transaction);
			}
		});
	}

	/** Claims unprocessed events that are due (a retry, or one whose processor died), each by a conditional update. */
	async claimDueEvents(now = new Date()): Promise<InboxRow[]> {
		const due = await this.models.Inbox.findAll({
			where: { processed_at: null, next_attempt_at: { [Op.lte]: now } },
			order: [["next_attempt_at", "ASC"]],
			limit: BATCH
		});
		const claimed: InboxRow[] = [];
		for (const r of due) {
			const row = plain<InboxRow>(r);
			const [n] = await this.models.Inbox.update(
				{ attempts: row.attempts + 1, next_attempt_at: new Date(now.getTime() + this.settings.leaseMs) },
				{ where: { event_id: row.event_id, processed_at: null, attempts: row.attempts, next_attempt_at: { [Op.lte]: now } } }
			);
			if (n === 1) claimed.push({ ...row, attempts: row.attempts + 1 });
		}
		return claimed;
	}

	// ---- Deliveries ----

	/** The deliveries of an event still waiting to be sent (to publish, or publish again). */
	async queuedOf(eventId: string): Promise<Pick<DeliveryRow, "id" | "request_id">[]> {
		const rows = await this.models.Delivery.findAll({ where: { event_id: eventId, status: "queued" }, attributes: ["id", "request_id"] });
		return rows.map(r => plain<Pick<DeliveryRow, "id" | "request_id">>(r));
	}

	/**
	 * Takes a delivery to send it: queued, failed and due, or sending under a lease that is over →
	 * sending, one more attempt, a fresh lease. Null when it is not to be sent now (sent, dead, not yet
	 * due, or another worker holds a live lease).
	 */
	async claim(id: string, now = new Date()): Promise<DeliveryRow | null> {
		const sql = `UPDATE deliveries SET status = 'sending', attempts = attempts + 1, lease_until = :lease, updated_at = :now
			WHERE id = :id AND (status = 'queued' OR (status = 'failed' AND (next_attempt_at IS NULL OR next_attempt_at <= :now)) OR (status = 'sending' AND lease_until < :now))`;
		const replacements = { id, now, lease: new Date(now.getTime() + this.settings.leaseMs) };
		// PostgreSQL returns the claimed row with the update; SQLite's driver, through Sequelize, drops returned rows, so it is read after.
		if (this.sequelize.getDialect() === "postgres") {
			const [row] = await this.sequelize.query<DeliveryRow>(`${sql} RETURNING *`, { replacements, type: QueryTypes.SELECT });
			return row ?? null;
		}
		const n = await this.sequelize.query(sql, { replacements, type: QueryTypes.BULKUPDATE });
		if (n !== 1) return null;
		const row = await this.models.Delivery.findByPk(id);
		return row ? plain<DeliveryRow>(row) : null;
	}

	/** The claim is ours while the row is `sending` at the attempt we claimed. */
	private ours(row: DeliveryRow): WhereOptions<DeliveryRow> {
		return { id: row.id, status: "sending", attempts: row.attempts };
	}

	/** False when the claim was lost meanwhile (the lease ran out and another worker took the row). */
	async markSent(row: DeliveryRow): Promise<boolean> {
		const n = await this.sequelize.query(
			`UPDATE deliveries SET status = 'sent', sent_at = :now, lease_until = NULL, next_attempt_at = NULL, last_error = NULL, updated_at = :now
			 WHERE id = :id AND status = 'sending' AND attempts = :attempts`,
			{ replacements: { id: row.id, attempts: row.attempts, now: new Date() }, type: QueryTypes.BULKUPDATE }
		);
		return n === 1;
	}

	/** A failed attempt: retried after a backoff, or dead (with a dead letter) after the last one. */
	async markFailed(row: DeliveryRow, err: unknown): Promise<"failed" | "dead" | "lost"> {
		if (row.attempts >= this.settings.maxAttempts) return (await this.markDead(row, err)) ? "dead" : "lost";
		const next = new Date(Date.now() + backoffMs(row.attempts, this.settings.retryBaseMs));
		const [n] = await this.models.Delivery.update(
			{ status: "failed", next_attempt_at: next, lease_until: null, last_error: errorText(err) },
			{ where: this.ours(row) }
		);
		return n === 1 ? "failed" : "lost";
	}

	private async markDead(row: DeliveryRow, err: unknown, where: WhereOptions<DeliveryRow> = this.ours(row)): Promise<boolean> {
		return this.sequelize.transaction(async transaction => {
			const [n] = await this.models.Delivery.update(
				{ status: "dead", lease_until: null, next_attempt_at: null, last_error: errorText(err) },
				{ where, transaction }
			);
			if (n !== 1) return false;
			const payload = { delivery_id: row.id, event_id: row.event_id, channel: row.channel, template: row.template, to: row.to, attempts: row.attempts };
			await this.addDeadLetter({ queue: DELIVERY_QUEUE, message_id: row.id, payload: JSON.stringify(payload), error: errorText(err), request_id: row.request_id }, transaction);
			return true;
		});
	}

	/**
	 * The pump's sweep: failed deliveries that are due, leases that ran out (their worker died) and queued
	 * deliveries whose message seems lost (older than two leases) go back to `queued`, each by a
	 * conditional update. Returns those it re-queued, to publish again. A lease that ran out on the last
	 * attempt ends the delivery as dead: a message that kills its worker must not kill workers for ever.
	 */
	async requeueDue(now = new Date()): Promise<DeliveryRow[]> {
		const stale = new Date(now.getTime() - 2 * this.settings.leaseMs);
		const when: Record<string, WhereOptions<DeliveryRow>> = {
			failed: { status: "failed", next_attempt_at: { [Op.lte]: now } },
			sending: { status: "sending", lease_until: { [Op.lt]: now } },
			queued: { status: "queued", updated_at: { [Op.lt]: stale } }
		};
		const due = await this.models.Delivery.findAll({ where: { [Op.or]: Object.values(when) }, order: [["updated_at", "ASC"]], limit: BATCH });
		const requeued: DeliveryRow[] = [];
		for (const r of due) {
			const row = plain<DeliveryRow>(r);
			const where = { id: row.id, ...when[row.status] } as WhereOptions<DeliveryRow>;
			if (row.status === "sending" && row.attempts >= this.settings.maxAttempts) {
				await this.markDead(row, new Error(`the worker's lease ran out on attempt ${row.attempts}`), where);
				continue;
			}
			const [n] = await this.models.Delivery.update({ status: "queued", lease_until: null }, { where });
			if (n === 1) requeued.push({ ...row, status: "queued" });
		}
		return requeued;
	}

	async listForUser(userId: string, limit: number, offset: number): Promise<{ rows: DeliveryRow[]; total: number }> {
		const { rows, count } = await this.models.Delivery.findAndCountAll({
			where: { user_id: userId },
			order: [["created_at", "DESC"], ["id", "ASC"]],
			limit,
			offset
		});
		return { rows: rows.map(r => plain<DeliveryRow>(r)), total: count };
	}

	// ---- Dead letters ----

	async addDeadLetter(entry: Omit<DeadLetterRow, "id" | "failed_at" | "redriven_at">, transaction?: Transaction): Promise<void> {
		await this.models.DeadLetter.create({ ...entry, failed_at: new Date() }, { transaction });
	}

	/** True when an un-redriven dead letter of this message is already filed. */
	async hasDeadLetter(queue: string, messageId: string): Promise<boolean> {
		return (await this.models.DeadLetter.count({ where: { queue, message_id: messageId, redriven_at: null } })) > 0;
	}
}
