import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import { connect } from "nats";
import { collectLines } from "./node-process";
import { waitFor } from "./wait";

/** Debian's nats-server (the fault tests start their own, never the shared one). */
const NATS_BIN = process.env.TEST_NATS_SERVER ?? "/usr/sbin/nats-server";

export interface NatsServer {
	url: string;
	port: number;
	/** Everything the server wrote. */
	lines: string[];
	/** Starts it and waits until JetStream answers. */
	start(): Promise<void>;
	stop(): Promise<void>;
	/** Stops it, stays down for `downMs`, starts it again on the same port and store. */
	restart(downMs?: number): Promise<void>;
	/** Freezes the process (SIGSTOP) and resolves once every thread has stopped: connections stay open and nothing is answered, until `resume`. */
	pause(): Promise<void>;
	resume(): void;
}

/** Whether every thread of `pid` is stopped (state T in /proc/<pid>/task/<tid>/stat). */
function allStopped(pid: number): boolean {
	try {
		return fs.readdirSync(`/proc/${pid}/task`).every(tid => / T /.test(fs.readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8").split(")").pop()!.slice(0, 3)));
	} catch {
		return true;
	}
}

/** A nats-server with JetStream on its own port and store dir; restarts keep both. */
export function natsServer(port: number, storeDir: string): NatsServer {
	const lines: string[] = [];
	let proc: ChildProcess | undefined;
	let exited: Promise<void> = Promise.resolve();
	const running = () => !!proc && proc.exitCode === null && proc.signalCode === null;
	const api: NatsServer = {
		url: `nats://127.0.0.1:${port}`,
		port,
		lines,
		async start() {
			const p = spawn(NATS_BIN, ["-a", "127.0.0.1", "-p", String(port), "-js", "-sd", storeDir], { stdio: ["ignore", "pipe", "pipe"] });
			proc = p;
			exited = new Promise(resolve => p.once("exit", () => resolve()));
			collectLines(p.stdout!, lines);
			collectLines(p.stderr!, lines);
			await waitFor(
				async () => {
					if (!running()) throw new Error(`nats-server exited: ${lines.slice(-5).join(" | ")}`);
					const nc = await connect({ servers: `127.0.0.1:${port}`, reconnect: false, timeout: 1000 });
					try {
						await (await nc.jetstreamManager()).getAccountInfo();
						return true;
					} finally {
						await nc.close();
					}
				},
				"nats-server to answer JetStream requests",
				20000,
				() => lines.slice(-20).join("\n")
			);
		},
		async stop() {
			if (running()) proc!.kill("SIGTERM");
			await exited;
		},
		async pause() {
			if (!running()) return;
			const pid = proc!.pid!;
			proc!.kill("SIGSTOP");
			// kill() returns once the signal is sent, not once every thread has stopped: on a busy machine the
			// server could still answer a PING sent right after.
			await waitFor(() => allStopped(pid), "every nats-server thread to stop", 2000);
		},
		resume() {
			if (running()) proc!.kill("SIGCONT");
		},
		async restart(downMs = 0) {
			await api.stop();
			await new Promise(r => setTimeout(r, downMs));
			await api.start();
		}
	};
	return api;
}
