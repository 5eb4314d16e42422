import { QueryTypes, type Sequelize, type Transaction } from "sequelize";

/** `R-2026-000042`: the year, then that year's sequence number. */
export function formatReceiptNumber(year: number, n: number): string {
	return `R-${year}-${String(n).padStart(6, "0")}`;
}

/**
 * Takes the next receipt number of the year in the caller's transaction: the counter row is locked
 * until that transaction ends, so numbers are unique and sequential, and a rollback gives the number
 * back (no gaps). Plain SQL that PostgreSQL and SQLite both run.
 */
export async function nextReceiptNumber(sequelize: Sequelize, t: Transaction, at: Date): Promise<string> {
	const year = at.getUTCFullYear();
	const opts = { replacements: { year }, transaction: t };
	await sequelize.query("INSERT INTO receipt_counters (year, last_value) VALUES (:year, 0) ON CONFLICT (year) DO NOTHING", opts);
	await sequelize.query("UPDATE receipt_counters SET last_value = last_value + 1 WHERE year = :year", opts);
	const [row] = await sequelize.query<{ last_value: number | string }>("SELECT last_value FROM receipt_counters WHERE year = :year", {
		...opts,
		type: QueryTypes.SELECT
	});
	return formatReceiptNumber(year, Number(row.last_value));
}
