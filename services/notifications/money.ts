/** How many minor units a currency's major unit has (2 for usd, 0 for jpy, 3 for bhd); 2 when unknown. */
export function minorDigits(currency: string): number {
	try {
		return new Intl.NumberFormat("en-US", { style: "currency", currency: currency.toUpperCase() }).resolvedOptions().maximumFractionDigits ?? 2;
	} catch {
		return 2;
	}
}

/**
 * An amount in minor units, formatted for people: 1999 usd → "$19.99", 500 jpy → "¥500".
 * A code Intl does not accept falls back to "1999 XYZ".
 */
export function formatMoney(amount: number, currency: string, locale = "en-US"): string {
	const code = String(currency ?? "").toUpperCase();
	if (!Number.isFinite(amount)) return `${amount} ${code}`.trim();
	try {
		const fmt = new Intl.NumberFormat(locale, { style: "currency", currency: code });
		const digits = fmt.resolvedOptions().maximumFractionDigits ?? 2;
		return fmt.format(amount / 10 ** digits);
	} catch {
		return `${amount} ${code}`.trim();
	}
}
