import crypto from "node:crypto";
import { Op, type Transaction, type WhereOptions } from "sequelize";
import type { AdminModels, AuditRow } from "./models";

/** The `prev_hash` of the first entry. */
export const GENESIS = "0".repeat(64);

export interface AuditInput {
	key: string;
	actor_id: string | null;
	actor_email: string | null;
	action: string;
	target_type: string;
	target_id: string | null;
	request_id: string | null;
	ip: string | null;
	details: Record<string, unknown>;
}

export interface AuditView {
	id: string;
	seq: number;
	at: string;
	actor_id: string | null;
	actor_email: string | null;
	action: string;
	target_type: string;
	target_id: string | null;
	request_id: string | null;
	ip: string | null;
	details: unknown;
	prev_hash: string;
	hash: string;
}

/** JSON with object keys sorted at every level: the same content always gives the same text. */
export function canonicalJson(value: unknown): string {
	if (value === null || typeof value !== "object") return JSON.stringify(value ?? null);
	if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
	const obj = value as Record<string, unknown>;
	const keys = Object.keys(obj).filter(k => obj[k] !== undefined).sort();
	return `{${keys.map(k => `${JSON.stringify(k)}:${canonicalJson(obj[k])}`).join(",")}}`;
}

/** The content an entry's hash covers: everything but its own id, key and hash. */
function content(row: Omit<AuditRow, "id" | "entry_key" | "hash" | "details"> & { details: unknown }) {
	return {
		seq: Number(row.seq),
		at: new Date(row.at).toISOString(),
		actor_id: row.actor_id ?? null,
		actor_email: row.actor_email ?? null,
		action: row.action,
		target_type: row.target_type,
		target_id: row.target_id ?? null,
		request_id: row.request_id ?? null,
		ip: row.ip ?? null,
		details: row.details
	};
}

/** SHA-256 over the canonical JSON of the entry's content followed by the previous entry's hash. */
export function entryHash(row: Omit<AuditRow, "id" | "entry_key" | "hash" | "details"> & { details: unknown }): string {
	return crypto.createHash("sha256").update(canonicalJson(content(row))).update(row.prev_hash).digest("hex");
}

function parseDetails(text: string): unknown {
	try {
		return JSON.parse(text);
	} catch {
		return text;
	}
}

export function toAuditView(r: AuditRow): AuditView {
	return { id: r.id, ...content({ ...r, details: parseDetails(r.details) }), prev_hash: r.prev_hash, hash: r.hash };
}

/**
 * Appends an entry inside `t`. Appends are serialized so the chain never forks: on PostgreSQL a
 * transaction-scoped advisory lock; on SQLite the transaction is IMMEDIATE (one writer at a time).
 * A key seen before returns the entry already written (a retried call adds nothing).
 */
export async function appendEntry(models: AdminModels, t: Transaction, input: AuditInput): Promise<{ entry: AuditView; created: boolean }> {
	const sequelize = models.Audit.sequelize!;
	if (sequelize.getDialect() === "postgres") {
		await sequelize.query("SELECT pg_advisory_xact_lock(hashtext('admin:audit-chain'))", { transaction: t });
	}
	const known = await models.Audit.findOne({ where: { entry_key: input.key }, transaction: t });
	if (known) return { entry: toAuditView(known.get({ plain: true }) as AuditRow), created: false };
	const head = await models.Audit.findOne({ order: [["seq", "DESC"]], transaction: t });
	const prev = head ? (head.get({ plain: true }) as AuditRow) : null;
	const row = {
		id: crypto.randomUUID(),
		seq: prev ? Number(prev.seq) + 1 : 1,
		entry_key: input.key,
		at: new Date(),
		actor_id: input.actor_id,
		actor_email: input.actor_email,
		action: input.action,
		target_type: input.target_type,
		target_id: input.target_id,
		request_id: input.request_id,
		ip: input.ip,
		prev_hash: prev ? prev.hash : GENESIS
	};
	// The details are hashed as they will read back from the database.
	const detailsText = JSON.stringify(input.details ?? {});
	const hash = entryHash({ ...row, details: JSON.parse(detailsText) });
	const created = await models.Audit.create({ ...row, details: detailsText, hash }, { transaction: t });
	return { entry: toAuditView(created.get({ plain: true }) as AuditRow), created: true };
}

/** Recomputes the whole chain in order; the first entry whose link or hash does not hold is named. */
export async function verifyChain(models: AdminModels, batch = 1000): Promise<{ valid: boolean; entries: number; first_broken_id?: string; first_broken_seq?: number }> {
	let prevHash = GENESIS;
	let lastSeq = 0;
	let entries = 0;
	for (;;) {
		const rows = await models.Audit.findAll({ where: { seq: { [Op.gt]: lastSeq } } as WhereOptions, order: [["seq", "ASC"]], limit: batch });
		if (!rows.length) break;
		for (const m of rows) {
			const r = m.get({ plain: true }) as AuditRow;
			entries++;
			const expected = entryHash({ ...r, details: parseDetails(r.details) });
			if (r.prev_hash !== prevHash || r.hash !== expected || Number(r.seq) !== lastSeq + 1) {
				return { valid: false, entries, first_broken_id: r.id, first_broken_seq: Number(r.seq) };
			}
			prevHash = r.hash;
			lastSeq = Number(r.seq);
		}
	}
	return { valid: true, entries };
}
