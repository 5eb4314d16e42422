import { spawn, type ChildProcess } from "node:child_process";
import path from "node:path";

/** A real OpenID Provider in a child process (test/helpers/oidc-provider.mjs). */
export interface OidcProvider {
	issuer: string;
	/** The account the provider logs in next. */
	nextLogin(account: { sub: string; email?: string; email_verified?: boolean; name?: string }): Promise<void>;
	stop(): Promise<void>;
}

export function startOidcProvider(client: { clientId: string; clientSecret: string; redirectUri: string }): Promise<OidcProvider> {
	const proc: ChildProcess = spawn(process.execPath, [path.join(__dirname, "oidc-provider.mjs")], {
		env: { ...process.env, CLIENT_ID: client.clientId, CLIENT_SECRET: client.clientSecret, REDIRECT_URI: client.redirectUri },
		stdio: ["ignore", "pipe", "pipe"]
	});
	let output = "";
	return new Promise((resolve, reject) => {
		const onData = (chunk: Buffer) => {
			output += chunk.toString();
			const m = /listening (\d+)/.exec(output);
			if (!m) return;
			proc.stdout!.off("data", onData);
			const issuer = `http://127.0.0.1:${m[1]}`;
			resolve({
				issuer,
				async nextLogin(account) {
					const res = await fetch(`${issuer}/test/next-login`, { method: "POST", body: JSON.stringify(account) });
					if (res.status !== 204) throw new Error(`next-login failed: ${res.status}`);
				},
				stop: () =>
					new Promise<void>(r => {
						if (proc.exitCode !== null) return r();
						proc.once("exit", () => r());
						proc.kill("SIGTERM");
					})
			});
		};
		proc.stdout!.on("data", onData);
		proc.stderr!.on("data", (c: Buffer) => (output += c.toString()));
		proc.once("exit", code => reject(new Error(`the OpenID provider exited (${code}): ${output}`)));
	});
}

/** A browser's part of a login: cookies per origin, redirects followed by hand. */
export class Browser {
	private readonly jars = new Map<string, Map<string, string>>();

	async get(url: string): Promise<Response> {
		const u = new URL(url);
		const jar = this.jars.get(u.host) ?? new Map<string, string>();
		this.jars.set(u.host, jar);
		const cookie = [...jar].map(([k, v]) => `${k}=${v}`).join("; ");
		const res = await fetch(url, { redirect: "manual", headers: cookie ? { cookie } : {} });
		for (const c of res.headers.getSetCookie()) {
			const [pair] = c.split(";");
			const i = pair.indexOf("=");
			const name = pair.slice(0, i).trim();
			const value = pair.slice(i + 1).trim();
			if (value === "" || /max-age=0/i.test(c) || /expires=Thu, 01 Jan 1970/i.test(c)) jar.delete(name);
			else jar.set(name, value);
		}
		return res;
	}

	/** Follows redirects from `url` until one leads to a URL starting with `stopAt`; returns that URL (not fetched). */
	async followUntil(url: string, stopAt: string, max = 20): Promise<string> {
		let current = url;
		for (let i = 0; i < max; i++) {
			if (current.startsWith(stopAt)) return current;
			const res = await this.get(current);
			const location = res.headers.get("location");
			if (res.status < 300 || res.status >= 400 || !location) {
				throw new Error(`stopped at ${current}: ${res.status} ${(await res.text()).slice(0, 300)}`);
			}
			await res.arrayBuffer();
			current = new URL(location, current).toString();
		}
		throw new Error("too many redirects");
	}
}
