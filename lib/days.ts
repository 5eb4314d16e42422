/** The UTC days "YYYY-MM-DD" of the last `days` days, oldest first, today last. */
export function dayList(days: number, now = new Date()): string[] {
	const today = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate());
	return Array.from({ length: days }, (_, i) => new Date(today - (days - 1 - i) * 86400000).toISOString().slice(0, 10));
}

/** Midnight UTC at the start of the first of the last `days` days. */
export function dayStart(days: number, now = new Date()): Date {
	return new Date(`${dayList(days, now)[0]}T00:00:00.000Z`);
}
