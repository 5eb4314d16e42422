/**
 * `npm run cluster`: the system as a local cluster against the local NATS and PostgreSQL — one process
 * per service, two gateway nodes on two ports and two notification worker nodes, all from the built
 * runner. It creates the databases it needs (`<service>_db`), prints where everything listens, and
 * stops every node on Ctrl-C (SIGTERM, so each drains its work).
 *
 * Environment: CLUSTER_PG_URL (default postgres://postgres@127.0.0.1:5432/postgres),
 * TRANSPORTER (default nats://127.0.0.1:4222), REDIS_URL (default redis://127.0.0.1:6379),
 * CLUSTER_PORTS (default 8000,8001), plus anything a node reads (passed through).
 */
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { Client } from "pg";
import { DB_SERVICES } from "../lib/config";
import { runnerCommand } from "../lib/node-flags";

// Runs from dist/scripts (npm run cluster builds first).
const ROOT = path.resolve(__dirname, "../..");
const DIST = path.join(ROOT, "dist");
const PG = process.env.CLUSTER_PG_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
const TRANSPORTER = process.env.TRANSPORTER ?? "nats://127.0.0.1:4222";
const REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const PORTS = (process.env.CLUSTER_PORTS ?? "8000,8001").split(",").map(Number);

function services(): string[] {
	return fs
		.readdirSync(path.join(DIST, "services"))
		.filter(f => /\.service\.js$/.test(f))
		.map(f => f.replace(/\.service\.js$/, ""))
		.sort();
}

function dbUrl(name: string): string {
	const u = new URL(PG);
	u.pathname = `/${name}`;
	return u.toString();
}

async function ensureDatabases(names: string[]): Promise<void> {
	const client = new Client({ connectionString: PG });
	await client.connect();
	try {
		const existing = new Set((await client.query<{ datname: string }>("SELECT datname FROM pg_database")).rows.map(r => r.datname));
		for (const n of names) if (!existing.has(n)) await client.query(`CREATE DATABASE "${n}"`);
	} finally {
		await client.end();
	}
}

interface Node {
	name: string;
	proc: ChildProcess;
}

function start(name: string, env: Record<string, string>): Node {
	const cmd = runnerCommand(DIST, { ...process.env, TRANSPORTER, REDIS_URL, NODE_ID: `${name}-${process.pid}`, ...env });
	const proc = spawn(process.execPath, cmd.args, {
		cwd: ROOT,
		env: cmd.env,
		stdio: ["ignore", "pipe", "pipe"]
	});
	const prefix = `[${name}] `;
	const relay = (stream: NodeJS.ReadableStream, out: NodeJS.WriteStream) => {
		let rest = "";
		stream.on("data", (chunk: Buffer) => {
			const lines = (rest + chunk.toString()).split("\n");
			rest = lines.pop() ?? "";
			for (const line of lines) if (line.trim()) out.write(prefix + line + "\n");
		});
	};
	relay(proc.stdout!, process.stdout);
	relay(proc.stderr!, process.stderr);
	proc.on("exit", (code, signal) => process.stdout.write(`${prefix}exited (${signal ?? code})\n`));
	return { name, proc };
}

async function main(): Promise<void> {
	const all = services();
	const owners = all.filter(s => (DB_SERVICES as readonly string[]).includes(s));
	await ensureDatabases(owners.map(s => `${s}_db`));
	const dbEnv = Object.fromEntries(owners.map(s => [`${s.toUpperCase()}_DATABASE_URL`, dbUrl(`${s}_db`)]));

	const nodes: Node[] = [];
	for (const svc of all.filter(s => s !== "api")) {
		const replicas = svc === "notifications" ? 2 : 1;
		for (let i = 1; i <= replicas; i++) nodes.push(start(replicas > 1 ? `${svc}-${i}` : svc, { ...dbEnv, SERVICES: svc }));
	}
	PORTS.forEach((port, i) => nodes.push(start(`gateway-${i + 1}`, { SERVICES: "api", PORT: String(port) })));

	process.stdout.write(
		[
			"",
			`cluster over ${TRANSPORTER}, databases on ${new URL(PG).host}, rate limits in ${REDIS_URL}`,
			...PORTS.map((p, i) => `  gateway-${i + 1}: http://127.0.0.1:${p}  (docs: http://127.0.0.1:${p}/api/docs)`),
			...nodes.filter(n => !n.name.startsWith("gateway")).map(n => `  ${n.name}: SERVICES=${n.name.replace(/-\d+$/, "")}`),
			"Ctrl-C stops every node.",
			""
		].join("\n")
	);

	let stopping = false;
	const stop = async () => {
		if (stopping) return;
		stopping = true;
		process.stdout.write("stopping the cluster…\n");
		await Promise.all(
			nodes.map(n => new Promise<void>(resolve => {
				if (n.proc.exitCode !== null || n.proc.signalCode !== null) return resolve();
				n.proc.once("exit", () => resolve());
				n.proc.kill("SIGTERM");
			}))
		);
		process.exit(0);
	};
	process.on("SIGINT", stop);
	process.on("SIGTERM", stop);
}

main().catch(err => {
	process.stderr.write(`cluster failed to start: ${err.message}\n`);
	process.exit(1);
});
