import { spawn, type ChildProcess } from "node:child_process";
import net from "node:net";
import path from "node:path";

export const ROOT = path.resolve(__dirname, "../..");
const RUNNER = path.join(ROOT, "node_modules/moleculer/bin/moleculer-runner.js");

/** A port nobody listens on right now. */
export function freePort(): Promise<number> {
	return new Promise((resolve, reject) => {
		const srv = net.createServer();
		srv.once("error", reject);
		srv.listen(0, "127.0.0.1", () => {
			const { port } = srv.address() as net.AddressInfo;
			srv.close(() => resolve(port));
		});
	});
}

export interface NodeProcess {
	proc: ChildProcess;
	/** Every line the node wrote, stdout and stderr. */
	lines: string[];
	exited: Promise<number | null>;
	stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Starts one node the way `npm start` does (the built runner), with the given environment. */
export function startNode(env: Record<string, string>, args: string[] = []): NodeProcess {
	const clean = { ...process.env };
	for (const k of Object.keys(clean)) if (/_DATABASE_URL$|^SERVICES$|^TRANSPORTER$|^ADMIN_/.test(k)) delete clean[k];
	const proc = spawn(process.execPath, [RUNNER, "--config", "dist/moleculer.config.js", ...args, "dist/services"], {
		cwd: ROOT,
		env: { ...clean, ...env },
		stdio: ["ignore", "pipe", "pipe"]
	});
	const lines: string[] = [];
	const collect = (chunk: Buffer) => lines.push(...chunk.toString().split("\n").filter(Boolean));
	proc.stdout!.on("data", collect);
	proc.stderr!.on("data", collect);
	const exited = new Promise<number | null>(resolve => proc.once("exit", code => resolve(code)));
	return {
		proc,
		lines,
		exited,
		async stop(signal: NodeJS.Signals = "SIGTERM") {
			if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
			return exited;
		}
	};
}

/** Polls a URL until it answers with `status`, or fails after `timeoutMs`. */
export async function waitForStatus(url: string, status = 200, timeoutMs = 30000): Promise<void> {
	const end = Date.now() + timeoutMs;
	let last = "";
	while (Date.now() < end) {
		try {
			const res = await fetch(url);
			if (res.status === status) return;
			last = `status ${res.status}`;
		} catch (err) {
			last = (err as Error).message;
		}
		await new Promise(r => setTimeout(r, 250));
	}
	throw new Error(`${url} did not answer ${status} within ${timeoutMs} ms (last: ${last})`);
}
