import { backoffMs, JITTER, MAX_BACKOFF_MS } from "../../services/notifications/backoff";
import { formatMoney, minorDigits } from "../../services/notifications/money";
import { senderDomain } from "../../services/notifications/providers";
import { defineTemplate, hasTemplate, registerTemplate, renderEmail, renderSms, unregisterTemplate } from "../../services/notifications/templates";

describe("money formatting", () => {
	it("formats minor units per currency", () => {
		expect(formatMoney(1999, "usd")).toBe("$19.99");
		expect(formatMoney(500, "jpy")).toBe("¥500");
		expect(formatMoney(1999, "eur")).toBe("€19.99");
		expect(formatMoney(1999, "gbp")).toBe("£19.99");
		expect(formatMoney(1234567, "usd")).toBe("$12,345.67");
		expect(formatMoney(5, "usd")).toBe("$0.05");
		expect(formatMoney(0, "usd")).toBe("$0.00");
		// Three-decimal currencies.
		expect(formatMoney(1999, "bhd").replace(/\s/g, " ")).toBe("BHD 1.999");
	});

	it("knows each currency's minor units", () => {
		expect(minorDigits("usd")).toBe(2);
		expect(minorDigits("jpy")).toBe(0);
		expect(minorDigits("krw")).toBe(0);
		expect(minorDigits("kwd")).toBe(3);
	});

	it("falls back to a plain form for codes Intl refuses", () => {
		expect(formatMoney(1999, "not-a-code")).toBe("1999 NOT-A-CODE");
		expect(formatMoney(Number.NaN, "usd")).toBe("NaN USD");
	});

	it("formats the same after many made-up codes have filled and emptied its cache of formatters", () => {
		const codes = Array.from({ length: 700 }, (_, i) => String.fromCharCode(65 + (i % 26), 65 + ((i / 26) % 26), 81 + ((i / 676) % 10)));
		for (const code of codes) expect(formatMoney(1999, code).replace(/\s/g, " ")).toBe(`${code} 19.99`);
		expect(formatMoney(1999, "usd")).toBe("$19.99");
		expect(formatMoney(500, "jpy")).toBe("¥500");
	});
});

describe("retry backoff", () => {
	const mid = () => 0.5; // no jitter

	it("doubles from the base, starting at the base after the first attempt", () => {
		expect([1, 2, 3, 4, 5].map(a => backoffMs(a, 1000, mid))).toEqual([1000, 2000, 4000, 8000, 16000]);
		expect(backoffMs(0, 1000, mid)).toBe(1000);
	});

	it("is capped at five minutes", () => {
		expect(backoffMs(20, 1000, mid)).toBe(MAX_BACKOFF_MS);
		expect(backoffMs(5000, 1000, mid)).toBe(MAX_BACKOFF_MS);
	});

	it("moves each delay by at most ±20%", () => {
		expect(backoffMs(3, 1000, () => 0)).toBe(4000 * (1 - JITTER));
		expect(backoffMs(3, 1000, () => 0.999999)).toBeCloseTo(4000 * (1 + JITTER), -1);
		expect(backoffMs(30, 1000, () => 0)).toBe(MAX_BACKOFF_MS * (1 - JITTER));
		for (let i = 0; i < 200; i++) {
			const d = backoffMs(4, 100);
			expect(d).toBeGreaterThanOrEqual(800 * (1 - JITTER));
			expect(d).toBeLessThanOrEqual(800 * (1 + JITTER));
		}
	});
});

describe("templates", () => {
	it("renders a receipt with the amount formatted, in every part", () => {
		const data = { name: "Ada", amount: 1999, currency: "usd", receipt_number: "R-000042", payment_id: "p1", description: "Tea" };
		const mail = renderEmail("receipt", data);
		expect(mail.subject).toBe("Your receipt R-000042: $19.99");
		expect(mail.html).toContain("<strong>$19.99</strong>");
		expect(mail.text).toContain("We received your payment of $19.99 for Tea.");
		expect(renderSms("receipt", data)).toBe("Moleculer Microservices: payment of $19.99 received, receipt R-000042.");
	});

	it("escapes HTML in the HTML part only, and keeps subjects and SMS on one line", () => {
		const mail = renderEmail("welcome", { name: "<script>alert('x')</script>\r\nBcc: evil@example.com", email: "a@example.com" });
		expect(mail.html).toContain("&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;");
		expect(mail.html).not.toContain("<script>");
		expect(mail.text).toContain("<script>alert('x')</script>");
		expect(mail.subject).not.toMatch(/[\r\n]/);
		expect(renderSms("receipt", { amount: 500, currency: "jpy", receipt_number: "R-1\nX" })).toBe("Moleculer Microservices: payment of ¥500 received, receipt R-1 X.");
	});

	it("words a refund with this refund's amount when known, and the total", () => {
		const partial = { name: "Ada", amount: 1999, currency: "usd", amount_refunded: 1500, refund_amount: 1000, receipt_number: "R-7" };
		expect(renderEmail("refund", partial).text).toContain("We refunded $10.00 of your payment of $19.99 (receipt R-7).\nRefunded in total: $15.00.");
		expect(renderSms("refund", partial)).toBe("Moleculer Microservices: $10.00 refunded on your payment of $19.99; $15.00 refunded in total.");
		const total = { ...partial, refund_amount: null };
		expect(renderEmail("refund", total).text).toContain("We refunded your payment of $19.99 (receipt R-7).\nRefunded in total: $15.00.");
		expect(renderSms("refund", total)).toBe("Moleculer Microservices: refund on your payment of $19.99; $15.00 refunded in total.");
	});

	it("has the templates later issues send", () => {
		for (const name of ["welcome", "receipt", "payment_failed", "refund", "kyc_decision", "account_suspended", "password_reset", "email_verification"]) {
			expect([name, hasTemplate(name, "email")]).toEqual([name, true]);
		}
		const reset = renderEmail("password_reset", { name: "Ada", link: "https://app.example/reset?token=abc" });
		expect(reset.text).toContain("https://app.example/reset?token=abc");
		expect(renderEmail("kyc_decision", { name: "Ada", approved: false, reason: "blurry photo" }).text).toContain("blurry photo");
	});

	it("throws for unknown templates and channels, and takes new ones by name", () => {
		expect(() => renderEmail("nope", {})).toThrow(/no email template named "nope"/);
		expect(() => renderSms("welcome", {})).toThrow(/no sms template/);
		registerTemplate("unit_test", defineTemplate({ sms: "Hi {{name}}" }));
		try {
			expect(renderSms("unit_test", { name: "Bo" })).toBe("Hi Bo");
		} finally {
			unregisterTemplate("unit_test");
		}
		expect(hasTemplate("unit_test", "sms")).toBe(false);
	});
});

describe("sender domain", () => {
	it("takes the domain of the From address for Message-IDs", () => {
		expect(senderDomain("Shop <no-reply@Shop.Example>")).toBe("shop.example");
		expect(senderDomain("bare@example.org")).toBe("example.org");
		expect(senderDomain("nobody")).toBe("localhost");
	});
});
