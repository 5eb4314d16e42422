import type { Sequelize, Transaction } from "sequelize";
import { upsertReturning } from "../../lib/db";

/** `R-2026-000042`: the year, then that year's sequence number. */
export function formatReceiptNumber(year: number, n: number): string {
	return `R-${year}-${String(n).padStart(6, "0")}`;
}

/**
 * Takes the next receipt number of the year in the caller's transaction: the counter row is locked
 * until that transaction ends, so numbers are unique and sequential, and a rollback gives the number
 * back (no gaps). Every charge of the year queues on that row, so it is one statement on PostgreSQL, an
 * upsert that returns the value. Taking it last instead, in one statement with the rows that carry it,
 * was measured and bought nothing at a steady 50 charges/s (BENCHMARKS.md). SQLite serializes whole
 * write transactions anyway; there it is the upsert and a SELECT (lib/db.ts's upsertReturning).
 */
const UPSERT = "INSERT INTO receipt_counters (year, last_value) VALUES (:year, 1) ON CONFLICT (year) DO UPDATE SET last_value = receipt_counters.last_value + 1";

export async function nextReceiptNumber(sequelize: Sequelize, t: Transaction, at: Date): Promise<string> {
	const year = at.getUTCFullYear();
	const row = await upsertReturning<{ last_value: number | string }>(sequelize, UPSERT, "last_value", "SELECT last_value FROM receipt_counters WHERE year = :year", {
		replacements: { year },
		transaction: t
	});
	return formatReceiptNumber(year, Number(row!.last_value));
}
