/** How many minor units a currency's major unit has (2 for usd, 0 for jpy, 3 for bhd); 2 when unknown. */
export function minorDigits(currency: string): number {
	try {
		return currencyFormat("en-US", currency.toUpperCase()).digits;
	} catch {
		return 2;
	}
}

/** Intl.NumberFormat is slow to build (about 1 ms of a receipt's CPU here), so each is made once. */
const formats = new Map<string, { fmt: Intl.NumberFormat; digits: number }>();
/** Any three letters make a currency code Intl accepts: the map is emptied before it grows past this. */
const MAX_FORMATS = 500;

/** A currency's formatter and its minor digits; throws for a code Intl does not accept. */
function currencyFormat(locale: string, code: string): { fmt: Intl.NumberFormat; digits: number } {
	const key = `${locale}|${code}`;
	let f = formats.get(key);
	if (!f) {
		const fmt = new Intl.NumberFormat(locale, { style: "currency", currency: code });
		f = { fmt, digits: fmt.resolvedOptions().maximumFractionDigits ?? 2 };
		if (formats.size >= MAX_FORMATS) formats.clear();
		formats.set(key, f);
	}
	return f;
}

/**
 * An amount in minor units, formatted for people: 1999 usd → "$19.99", 500 jpy → "¥500".
 * A code Intl does not accept falls back to "1999 XYZ".
 */
export function formatMoney(amount: number, currency: string, locale = "en-US"): string {
	const code = String(currency ?? "").toUpperCase();
	if (!Number.isFinite(amount)) return `${amount} ${code}`.trim();
	try {
		const { fmt, digits } = currencyFormat(locale, code);
		return fmt.format(amount / 10 ** digits);
	} catch {
		return `${amount} ${code}`.trim();
	}
}
