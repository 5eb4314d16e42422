import type { AddressInfo } from "node:net";
import { SMTPServer } from "smtp-server";

// A real SMTP server for tests that read the emails the system sends.

// ---- A small MIME reader for the messages the SMTP server receives ----

export interface Mail {
	raw: string;
	headers: Record<string, string>;
	text: string;
	html: string;
	envelope: { from: string; to: string[] };
}

function parseHeaders(block: string): Record<string, string> {
	const out: Record<string, string> = {};
	for (const line of block.replace(/\r?\n[ \t]+/g, " ").split(/\r?\n/)) {
		const i = line.indexOf(":");
		if (i > 0) out[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
	}
	return out;
}

function decodeBody(body: string, encoding = ""): string {
	if (/quoted-printable/i.test(encoding)) {
		const bytes = body.replace(/=\r?\n/g, "").replace(/=([0-9A-F]{2})/gi, (_m, h: string) => String.fromCharCode(parseInt(h, 16)));
		return Buffer.from(bytes, "latin1").toString("utf8");
	}
	if (/base64/i.test(encoding)) return Buffer.from(body.replace(/\s+/g, ""), "base64").toString("utf8");
	return body;
}

function splitEntity(raw: string): [string, string] {
	const m = /\r?\n\r?\n/.exec(raw);
	return m ? [raw.slice(0, m.index), raw.slice(m.index + m[0].length)] : [raw, ""];
}

export function parseMail(raw: string, envelope: Mail["envelope"]): Mail {
	const [head, body] = splitEntity(raw);
	const headers = parseHeaders(head);
	const mail: Mail = { raw, headers, text: "", html: "", envelope };
	const collect = (type: string, encoding: string | undefined, content: string) => {
		if (/^text\/plain/i.test(type)) mail.text += decodeBody(content, encoding);
		else if (/^text\/html/i.test(type)) mail.html += decodeBody(content, encoding);
	};
	const boundary = /boundary="?([^";]+)"?/i.exec(headers["content-type"] ?? "")?.[1];
	if (!boundary) {
		collect(headers["content-type"] ?? "text/plain", headers["content-transfer-encoding"], body);
		return mail;
	}
	for (const part of body.split(`--${boundary}`).slice(1)) {
		if (part.startsWith("--")) break;
		const [ph, pb] = splitEntity(part.replace(/^\r?\n/, ""));
		const h = parseHeaders(ph);
		collect(h["content-type"] ?? "text/plain", h["content-transfer-encoding"], pb.replace(/\r?\n$/, ""));
	}
	return mail;
}

// ---- A real SMTP server (with AUTH: mailer / mail-secret) ----

export interface Smtp {
	port: number;
	mails: Mail[];
	close(): Promise<void>;
}

export interface SmtpOptions {
	/** Runs after a message's data arrived and before the server accepts it (a slow or stuck server). */
	beforeAccept?: (mail: Mail) => Promise<void>;
}

export function startSmtp(port = 0, opts: SmtpOptions = {}): Promise<Smtp> {
	const mails: Mail[] = [];
	const server = new SMTPServer({
		authOptional: false,
		allowInsecureAuth: true,
		disabledCommands: ["STARTTLS"],
		logger: false,
		onAuth(auth, _session, cb) {
			if (auth.username === "mailer" && auth.password === "mail-secret") cb(null, { user: "mailer" });
			else cb(new Error("invalid credentials"));
		},
		onData(stream, session, cb) {
			const chunks: Buffer[] = [];
			stream.on("data", (c: Buffer) => chunks.push(c));
			stream.on("end", () => {
				const envelope = {
					from: session.envelope.mailFrom ? session.envelope.mailFrom.address : "",
					to: session.envelope.rcptTo.map(r => r.address)
				};
				const mail = parseMail(Buffer.concat(chunks).toString("utf8"), envelope);
				void (opts.beforeAccept ?? (async () => undefined))(mail).then(() => {
					mails.push(mail);
					cb();
				});
			});
		}
	});
	return new Promise((resolve, reject) => {
		server.once("error", reject);
		server.listen(port, "127.0.0.1", () => {
			const actual = (server.server.address() as AddressInfo).port;
			resolve({ port: actual, mails, close: () => new Promise<void>(r => server.close(() => r())) });
		});
	});
}

export const smtpUrl = (s: Smtp) => `smtp://mailer:mail-secret@127.0.0.1:${s.port}`;

/** The `token` query parameter of the first link in a mail's text. */
export function linkToken(mail: Mail): string {
	const m = /https?:\/\/\S+\?token=([A-Za-z0-9_%-]+)/.exec(mail.text);
	if (!m) throw new Error(`no link with a token in: ${mail.text}`);
	return decodeURIComponent(m[1]);
}
