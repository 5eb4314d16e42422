import Handlebars from "handlebars";
import type { Channel } from "./models";
import { formatMoney } from "./money";

/** What an email template renders to. */
export interface EmailContent {
	subject: string;
	html: string;
	text: string;
}

export type TemplateData = Record<string, unknown>;

/** A template: the parts it has for each channel. A part that throws makes the delivery fail (and retry). */
export interface Template {
	email?: (data: TemplateData) => EmailContent;
	sms?: (data: TemplateData) => string;
}

/** Handlebars sources of a template; `{{…}}` in `html` is HTML-escaped, the other parts are plain text. */
export interface TemplateSources {
	email?: { subject: string; html: string; text: string };
	sms?: string;
}

export const APP_NAME = "Moleculer Microservices";

// An environment of our own, so helpers registered here never leak into other users of Handlebars.
const hbs = Handlebars.create();
hbs.registerHelper("money", (amount: unknown, currency: unknown) => formatMoney(Number(amount), String(currency ?? "")));

const LAYOUT = hbs.compile(
	'<!doctype html>\n<html><head><meta charset="utf-8"><title>{{subject}}</title></head>\n' +
		'<body style="font-family: sans-serif; line-height: 1.5">\n{{{body}}}\n<p style="color: #666">— {{app}}</p>\n</body></html>\n',
	{ strict: false }
);

/** One line: subjects and SMS never carry line breaks a name or a reason could smuggle in. */
const oneLine = (s: string) => s.replace(/[\r\n]+/g, " ").trim();

/** Compiles Handlebars sources into a template. */
export function defineTemplate(src: TemplateSources): Template {
	const t: Template = {};
	if (src.email) {
		const subject = hbs.compile(src.email.subject, { noEscape: true });
		const html = hbs.compile(src.email.html);
		const text = hbs.compile(src.email.text, { noEscape: true });
		t.email = data => {
			const ctx = { app: APP_NAME, ...data };
			const s = oneLine(subject(ctx));
			return { subject: s, html: LAYOUT({ ...ctx, subject: s, body: html(ctx) }), text: `${text(ctx).trim()}\n\n— ${APP_NAME}\n` };
		};
	}
	if (src.sms) {
		const sms = hbs.compile(src.sms, { noEscape: true });
		t.sms = data => oneLine(sms({ app: APP_NAME, ...data }));
	}
	return t;
}

const registry = new Map<string, Template>();

/** Adds (or replaces) a template by name; later issues add theirs the same way. */
export function registerTemplate(name: string, template: Template): void {
	registry.set(name, template);
}

export function unregisterTemplate(name: string): void {
	registry.delete(name);
}

export function hasTemplate(name: string, channel: Channel): boolean {
	return !!registry.get(name)?.[channel];
}

function part<C extends Channel>(name: string, channel: C): NonNullable<Template[C]> {
	const p = registry.get(name)?.[channel];
	if (!p) throw new Error(`no ${channel} template named "${name}"`);
	return p as NonNullable<Template[C]>;
}

export function renderEmail(name: string, data: TemplateData): EmailContent {
	return part(name, "email")(data);
}

export function renderSms(name: string, data: TemplateData): string {
	return part(name, "sms")(data);
}

// ---- The templates ----

registerTemplate(
	"welcome",
	defineTemplate({
		email: {
			subject: "Welcome to {{app}}, {{name}}",
			html: "<p>Hi {{name}},</p>\n<p>Welcome to {{app}}. Your account <strong>{{email}}</strong> is ready.</p>",
			text: "Hi {{name}},\n\nWelcome to {{app}}. Your account {{email}} is ready."
		}
	})
);

registerTemplate(
	"receipt",
	defineTemplate({
		email: {
			subject: "Your receipt{{#if receipt_number}} {{receipt_number}}{{/if}}: {{money amount currency}}",
			html:
				"<p>Hi {{name}},</p>\n<p>We received your payment of <strong>{{money amount currency}}</strong>{{#if description}} for {{description}}{{/if}}.</p>\n" +
				"<table>\n{{#if receipt_number}}<tr><td>Receipt</td><td>{{receipt_number}}</td></tr>\n{{/if}}" +
				"<tr><td>Amount</td><td>{{money amount currency}}</td></tr>\n<tr><td>Payment</td><td>{{payment_id}}</td></tr>\n</table>",
			text:
				"Hi {{name}},\n\nWe received your payment of {{money amount currency}}{{#if description}} for {{description}}{{/if}}.\n\n" +
				"{{#if receipt_number}}Receipt: {{receipt_number}}\n{{/if}}Amount: {{money amount currency}}\nPayment: {{payment_id}}"
		},
		sms: "{{app}}: payment of {{money amount currency}} received{{#if receipt_number}}, receipt {{receipt_number}}{{/if}}."
	})
);

registerTemplate(
	"payment_failed",
	defineTemplate({
		email: {
			subject: "Your payment of {{money amount currency}} did not go through",
			html:
				"<p>Hi {{name}},</p>\n<p>Your payment of <strong>{{money amount currency}}</strong>{{#if description}} for {{description}}{{/if}} did not go through" +
				"{{#if failure_reason}} ({{failure_reason}}){{/if}}. Nothing was charged.</p>",
			text:
				"Hi {{name}},\n\nYour payment of {{money amount currency}}{{#if description}} for {{description}}{{/if}} did not go through" +
				"{{#if failure_reason}} ({{failure_reason}}){{/if}}. Nothing was charged."
		}
	})
);

registerTemplate(
	"refund",
	defineTemplate({
		email: {
			subject: "Refund on your payment of {{money amount currency}}",
			html:
				"<p>Hi {{name}},</p>\n<p>We refunded {{#if refund_amount}}<strong>{{money refund_amount currency}}</strong> of {{/if}}your payment of " +
				"<strong>{{money amount currency}}</strong>{{#if receipt_number}} (receipt {{receipt_number}}){{/if}}.</p>\n" +
				"<p>Refunded in total: {{money amount_refunded currency}}.</p>",
			text:
				"Hi {{name}},\n\nWe refunded {{#if refund_amount}}{{money refund_amount currency}} of {{/if}}your payment of {{money amount currency}}" +
				"{{#if receipt_number}} (receipt {{receipt_number}}){{/if}}.\nRefunded in total: {{money amount_refunded currency}}."
		},
		sms: "{{app}}: {{#if refund_amount}}{{money refund_amount currency}} refunded{{else}}refund{{/if}} on your payment of {{money amount currency}}; {{money amount_refunded currency}} refunded in total."
	})
);

// Sent by later issues (KYC review, suspension, password reset, email verification).
registerTemplate(
	"kyc_decision",
	defineTemplate({
		email: {
			subject: "{{#if approved}}Your identity is verified{{else}}We could not verify your identity{{/if}}",
			html:
				"<p>Hi {{name}},</p>\n{{#if approved}}<p>Your identity check is complete: your account is verified.</p>" +
				"{{else}}<p>We could not verify your identity{{#if reason}}: {{reason}}{{/if}}. You may submit your details again.</p>{{/if}}",
			text:
				"Hi {{name}},\n\n{{#if approved}}Your identity check is complete: your account is verified." +
				"{{else}}We could not verify your identity{{#if reason}}: {{reason}}{{/if}}. You may submit your details again.{{/if}}"
		}
	})
);

registerTemplate(
	"account_suspended",
	defineTemplate({
		email: {
			subject: "Your account is suspended",
			html: "<p>Hi {{name}},</p>\n<p>Your account has been suspended{{#if reason}}: {{reason}}{{/if}}. Contact support if you think this is a mistake.</p>",
			text: "Hi {{name}},\n\nYour account has been suspended{{#if reason}}: {{reason}}{{/if}}. Contact support if you think this is a mistake."
		}
	})
);

registerTemplate(
	"password_reset",
	defineTemplate({
		email: {
			subject: "Reset your password",
			html: '<p>Hi {{name}},</p>\n<p>To choose a new password, open <a href="{{link}}">{{link}}</a>. If you did not ask for this, ignore this email.</p>',
			text: "Hi {{name}},\n\nTo choose a new password, open {{link}}\nIf you did not ask for this, ignore this email."
		}
	})
);

registerTemplate(
	"email_verification",
	defineTemplate({
		email: {
			subject: "Confirm your email address",
			html: '<p>Hi {{name}},</p>\n<p>Please confirm your email address: <a href="{{link}}">{{link}}</a></p>',
			text: "Hi {{name}},\n\nPlease confirm your email address: {{link}}"
		}
	})
);
