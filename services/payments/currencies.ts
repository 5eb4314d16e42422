/**
 * The currencies a charge may use: lowercase ISO 4217 codes, each with its minor-unit exponent
 * (amounts are integers in the minor unit: 1999 usd is $19.99, 500 jpy is ¥500).
 */
export const CURRENCY_EXPONENTS: Record<string, number> = {
	usd: 2,
	eur: 2,
	gbp: 2,
	chf: 2,
	cad: 2,
	aud: 2,
	nzd: 2,
	sek: 2,
	nok: 2,
	dkk: 2,
	pln: 2,
	czk: 2,
	huf: 2,
	ron: 2,
	bgn: 2,
	sgd: 2,
	hkd: 2,
	inr: 2,
	mxn: 2,
	brl: 2,
	zar: 2,
	jpy: 0,
	krw: 0
};

export const CURRENCIES = Object.keys(CURRENCY_EXPONENTS).sort();
