import fs from "node:fs";
import path from "node:path";
import nodemailer, { type Transporter } from "nodemailer";
import twilio from "twilio";
import type RequestClient from "twilio/lib/base/RequestClient";
import type { Config } from "../../lib/config";

export interface EmailMessage {
	/** The delivery id: also makes the Message-ID, so a resent message keeps its id. */
	id: string;
	to: string;
	subject: string;
	html: string;
	text: string;
	requestId: string | null;
}

export interface SmsMessage {
	id: string;
	to: string;
	body: string;
	requestId: string | null;
}

export interface EmailProvider {
	readonly name: string;
	send(msg: EmailMessage): Promise<void>;
	close(): void;
}

export interface SmsProvider {
	readonly name: string;
	send(msg: SmsMessage): Promise<void>;
	close(): void;
}

/** The domain of the sender address ("Shop <no-reply@shop.example>" → "shop.example"). */
export function senderDomain(from: string): string {
	const m = /@([A-Za-z0-9.-]+)>?\s*$/.exec(from.trim());
	return m ? m[1].toLowerCase() : "localhost";
}

/** The nodemailer message: the request id and a Message-ID made from the delivery id ride every email. */
function mail(from: string, msg: EmailMessage) {
	return {
		from,
		to: msg.to,
		subject: msg.subject,
		html: msg.html,
		text: msg.text,
		messageId: `<${msg.id}@${senderDomain(from)}>`,
		headers: msg.requestId ? { "X-Request-ID": msg.requestId } : {}
	};
}

/** Email over SMTP (`SMTP_URL`), through a pool of connections. */
export class SmtpEmail implements EmailProvider {
	readonly name = "smtp";
	private readonly transport: Transporter;

	constructor(url: string, private readonly from: string, timeoutMs: number) {
		this.transport = nodemailer.createTransport({
			url,
			pool: true,
			maxConnections: 5,
			// Give up on a stuck server well within the delivery's lease, so no other worker resends meanwhile.
			connectionTimeout: timeoutMs,
			greetingTimeout: timeoutMs,
			socketTimeout: timeoutMs
		});
	}

	async send(msg: EmailMessage): Promise<void> {
		await this.transport.sendMail(mail(this.from, msg));
	}

	close(): void {
		this.transport.close();
	}
}

/** Writes a file whole or not at all: a reader never sees half of it. */
function writeAtomic(file: string, data: Buffer | string): void {
	const tmp = `${file}.${process.pid}.tmp`;
	fs.writeFileSync(tmp, data);
	fs.renameSync(tmp, file);
}

/** The embedded default: each email is an `.eml` file under `DATA_DIR/outbox/` (named by the delivery id). */
export class OutboxEmail implements EmailProvider {
	readonly name = "outbox";
	private readonly transport: Transporter;

	constructor(readonly dir: string, private readonly from: string) {
		this.transport = nodemailer.createTransport({ streamTransport: true, buffer: true, newline: "unix" });
	}

	async send(msg: EmailMessage): Promise<void> {
		const info = await this.transport.sendMail(mail(this.from, msg));
		fs.mkdirSync(this.dir, { recursive: true });
		writeAtomic(path.join(this.dir, `${msg.id}.eml`), info.message as Buffer);
	}

	close(): void {
		this.transport.close();
	}
}

/**
 * Twilio's HTTP client, pointed at another base URL when one is given (`TWILIO_API_URL`): tests use it
 * to make the real SDK talk to a local server answering like Twilio's API.
 */
export class TwilioHttpClient extends twilio.RequestClient {
	constructor(private readonly baseUrl: string | undefined, timeoutMs: number) {
		super({ timeout: timeoutMs });
	}

	override request<TData>(opts: RequestClient.RequestOptions<TData>) {
		if (!this.baseUrl) return super.request(opts);
		const u = new URL(opts.uri);
		return super.request({ ...opts, uri: this.baseUrl.replace(/\/+$/, "") + u.pathname + u.search });
	}
}

/** SMS through the official Twilio SDK (Messages API). */
export class TwilioSms implements SmsProvider {
	readonly name = "twilio";
	private readonly client: twilio.Twilio;

	constructor(accountSid: string, authToken: string, private readonly from: string, apiUrl: string | undefined, timeoutMs: number) {
		this.client = twilio(accountSid, authToken, { httpClient: new TwilioHttpClient(apiUrl, timeoutMs) });
	}

	async send(msg: SmsMessage): Promise<void> {
		await this.client.messages.create({ from: this.from, to: msg.to, body: msg.body });
	}

	close(): void {}
}

/** The embedded default: one JSON line per SMS in `DATA_DIR/outbox/sms.log`. */
export class OutboxSms implements SmsProvider {
	readonly name = "outbox";

	constructor(readonly file: string) {}

	async send(msg: SmsMessage): Promise<void> {
		await fs.promises.mkdir(path.dirname(this.file), { recursive: true });
		const line = JSON.stringify({ at: new Date().toISOString(), id: msg.id, to: msg.to, body: msg.body, request_id: msg.requestId });
		await fs.promises.appendFile(this.file, line + "\n");
	}

	close(): void {}
}

/** The providers the configuration asks for: SMTP and Twilio when configured, else files under DATA_DIR/outbox. */
export function createProviders(cfg: Config): { email: EmailProvider; sms: SmsProvider } {
	// A send must end (one way or the other) well before its lease does.
	const timeoutMs = Math.max(1000, Math.floor(cfg.NOTIFY_LEASE_MS / 2));
	const outbox = path.join(cfg.DATA_DIR, "outbox");
	const email = cfg.SMTP_URL ? new SmtpEmail(cfg.SMTP_URL, cfg.EMAIL_FROM, timeoutMs) : new OutboxEmail(outbox, cfg.EMAIL_FROM);
	const sms =
		cfg.TWILIO_ACCOUNT_SID && cfg.TWILIO_AUTH_TOKEN && cfg.TWILIO_FROM
			? new TwilioSms(cfg.TWILIO_ACCOUNT_SID, cfg.TWILIO_AUTH_TOKEN, cfg.TWILIO_FROM, cfg.TWILIO_API_URL, timeoutMs)
			: new OutboxSms(path.join(outbox, "sms.log"));
	return { email, sms };
}
