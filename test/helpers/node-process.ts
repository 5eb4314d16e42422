import { spawn, type ChildProcess } from "node:child_process";
import crypto from "node:crypto";
import net from "node:net";
import path from "node:path";
import { runnerCommand } from "../../lib/node-flags";

export const ROOT = path.resolve(__dirname, "../..");

const handedOut = new Set<number>();

function canListen(port: number): Promise<boolean> {
	return new Promise(resolve => {
		const srv = net.createServer();
		srv.once("error", () => resolve(false));
		srv.listen(port, "0.0.0.0", () => srv.close(() => resolve(true)));
	});
}

/**
 * Jest runs test files in several worker processes at once; each draws from its own quarter of the range,
 * so two workers cannot hand out the same port (one did: a cluster's gateway met EADDRINUSE on a port
 * another worker had just taken).
 */
const SLICE = 3000;
const sliceStart = 20000 + ((Number(process.env.JEST_WORKER_ID ?? 1) - 1) % 4) * SLICE;

/**
 * A port free to listen on, never handed out before in this process or by another Jest worker, and below
 * Linux's ephemeral range (32768+): an outgoing connection of some other process cannot take it between
 * now and the bind.
 */
export async function freePort(): Promise<number> {
	for (;;) {
		const port = sliceStart + crypto.randomInt(SLICE);
		if (handedOut.has(port)) continue;
		handedOut.add(port);
		if (await canListen(port)) return port;
	}
}

/** Splits a stream into whole lines (a chunk may end in the middle of one). */
export function collectLines(stream: NodeJS.ReadableStream, into: string[]): void {
	let rest = "";
	stream.setEncoding("utf8");
	stream.on("data", (chunk: string) => {
		const parts = (rest + chunk).split("\n");
		rest = parts.pop() ?? "";
		for (const p of parts) if (p.trim()) into.push(p);
	});
	stream.on("end", () => {
		if (rest.trim()) into.push(rest);
		rest = "";
	});
}

export interface NodeProcess {
	proc: ChildProcess;
	/** Every line the node wrote, stdout and stderr. */
	lines: string[];
	exited: Promise<number | null>;
	stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/**
 * Starts one node the way `npm start` does (the built runner), with the given environment; `dist` may be
 * another build inside the checkout (bench/compare.ts), and `nodeFlags` are added to the node's own.
 */
export function startNode(env: Record<string, string>, args: string[] = [], opts: { dist?: string; nodeFlags?: string[] } = {}): NodeProcess {
	const clean = { ...process.env };
	for (const k of Object.keys(clean)) if (/_DATABASE_URL$|^SERVICES$|^TRANSPORTER$|^ADMIN_/.test(k)) delete clean[k];
	const cmd = runnerCommand(opts.dist ?? path.join(ROOT, "dist"), { ...clean, ...env }, args, ROOT);
	const proc = spawn(process.execPath, [...(opts.nodeFlags ?? []), ...cmd.args], {
		cwd: ROOT,
		env: cmd.env,
		stdio: ["ignore", "pipe", "pipe"]
	});
	const lines: string[] = [];
	collectLines(proc.stdout!, lines);
	collectLines(proc.stderr!, lines);
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
