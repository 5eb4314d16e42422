/**
 * `npm run bench`: starts the system as one real node (the built runner) on fresh PostgreSQL
 * databases, with an SMTP server in this process, and measures with autocannon:
 *   - charge: POST /api/v1/payments/charge on the simulated provider at a steady rate;
 *   - charge → email: from sending each charge to the SMTP server receiving its receipt email
 *     (matched by the X-Request-ID the email carries).
 * Figures go to bench/results.json and a table in BENCHMARKS.md; nothing here asserts timings.
 */
import { spawn } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import autocannon from "autocannon";
import { SMTPServer } from "smtp-server";
import { createDatabases } from "../test/helpers/pg";
import { freePort, ROOT, waitForStatus } from "../test/helpers/node-process";

const RATE = Number(process.env.BENCH_RATE ?? 50);
const DURATION_S = Number(process.env.BENCH_DURATION_S ?? 20);
const WARMUP_S = Number(process.env.BENCH_WARMUP_S ?? 3);

interface Scenario {
	name: string;
	rps: number;
	p50_ms: number;
	p99_ms: number;
	errors: number;
	requests: number;
	notes?: string;
}

function percentile(sorted: number[], p: number): number {
	if (!sorted.length) return NaN;
	return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

async function json(base: string, method: string, p: string, body?: unknown, token?: string): Promise<any> {
	const res = await fetch(base + p, {
		method,
		headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
		body: body === undefined ? undefined : JSON.stringify(body)
	});
	const text = await res.text();
	if (!res.ok) throw new Error(`${method} ${p}: ${res.status} ${text}`);
	return text ? JSON.parse(text) : undefined;
}

async function main(): Promise<void> {
	// SMTP server that records when each request id's email arrived.
	const arrivals = new Map<string, number>();
	const smtp = new SMTPServer({
		authOptional: true,
		disabledCommands: ["STARTTLS"],
		onData(stream, _session, cb) {
			let raw = "";
			stream.on("data", (c: Buffer) => (raw += c.toString()));
			stream.on("end", () => {
				const rid = /^X-Request-ID:\s*(\S+)/im.exec(raw)?.[1];
				if (rid && /^Subject:.*receipt/im.test(raw)) arrivals.set(rid, performance.now());
				cb();
			});
		}
	});
	const smtpPort = await freePort();
	await new Promise<void>(r => smtp.listen(smtpPort, "127.0.0.1", r));

	const dbs = await createDatabases(["auth", "users", "payments", "notifications"]);
	const port = await freePort();
	const base = `http://127.0.0.1:${port}`;
	const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "msvc-bench-"));
	const node = spawn(process.execPath, ["node_modules/moleculer/bin/moleculer-runner.js", "--config", "dist/moleculer.config.js", "dist/services"], {
		cwd: ROOT,
		env: {
			...process.env,
			...dbs.env,
			NODE_ENV: "production",
			PORT: String(port),
			DATA_DIR: dataDir,
			LOG_LEVEL: "warn",
			BCRYPT_COST: "10",
			RATE_LIMIT_MAX: "1000000",
			SMTP_URL: `smtp://127.0.0.1:${smtpPort}`,
			NAMESPACE: `bench${crypto.randomBytes(3).toString("hex")}`
		},
		stdio: ["ignore", "ignore", "inherit"]
	});
	const results: Scenario[] = [];
	try {
		await waitForStatus(`${base}/health/ready`, 200, 60000);
		const email = `bench.${Date.now()}@example.com`;
		await json(base, "POST", "/api/v1/auth/register", { email, password: "bench password 1", name: "Bench" });
		const { access_token: token } = await json(base, "POST", "/api/v1/auth/login", { email, password: "bench password 1" });
		const sentAt = new Map<string, number>();

		const run = (duration: number, record: boolean) =>
			autocannon({
				url: `${base}/api/v1/payments/charge`,
				method: "POST",
				connections: 10,
				overallRate: RATE,
				duration,
				headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
				body: JSON.stringify({ amount: 1999, currency: "usd", payment_method: "pm_card_visa", description: "bench" }),
				requests: [
					{
						setupRequest(req: any) {
							const rid = `bench-${crypto.randomUUID()}`;
							if (record) sentAt.set(rid, performance.now());
							return { ...req, headers: { ...req.headers, "idempotency-key": crypto.randomUUID(), "x-request-id": rid } };
						}
					}
				]
			} as any);

		await run(WARMUP_S, false);
		const r = await run(DURATION_S, true);
		// Let the last receipts arrive.
		const deadline = Date.now() + 15000;
		while (Date.now() < deadline && [...sentAt.keys()].some(k => !arrivals.has(k))) await new Promise(res => setTimeout(res, 200));

		const non2xx = r.non2xx + r.errors + r.timeouts;
		results.push({
			name: `charge (simulated provider, PostgreSQL) at ${RATE}/s`,
			rps: Math.round(r.requests.average),
			p50_ms: r.latency.p50,
			p99_ms: r.latency.p99,
			errors: non2xx,
			requests: r.requests.total
		});
		const lat = [...sentAt.entries()].filter(([k]) => arrivals.has(k)).map(([k, t]) => arrivals.get(k)! - t).sort((a, b) => a - b);
		const missing = sentAt.size - lat.length;
		results.push({
			name: `charge → receipt email received by SMTP at ${RATE}/s`,
			rps: Math.round(lat.length / DURATION_S),
			p50_ms: Math.round(percentile(lat, 50)),
			p99_ms: Math.round(percentile(lat, 99)),
			errors: missing,
			requests: sentAt.size,
			notes: missing ? `${missing} receipts had not arrived 15 s after the run` : undefined
		});
	} finally {
		if (node.exitCode === null && node.signalCode === null) {
			const exited = new Promise(r => node.once("exit", r));
			node.kill("SIGTERM");
			await exited;
		}
		smtp.close(() => undefined);
		await dbs.drop();
		fs.rmSync(dataDir, { recursive: true, force: true });
	}

	const machine = { cpus: os.cpus().length, cpu_model: os.cpus()[0]?.model, memory_gib: Math.round(os.totalmem() / 2 ** 30), node: process.version, platform: `${os.type()} ${os.release()}` };
	const date = new Date().toISOString();
	fs.mkdirSync(path.join(ROOT, "bench"), { recursive: true });
	fs.writeFileSync(path.join(ROOT, "bench/results.json"), JSON.stringify({ date, machine, scenarios: results }, null, 2) + "\n");
	const rows = results.map(s => `| ${s.name} | ${s.requests} | ${s.rps} | ${s.p50_ms} | ${s.p99_ms} | ${s.errors} |${s.notes ? ` ${s.notes}` : ""}`);
	const md = [
		"# Benchmarks",
		"",
		`Measured ${date} on ${machine.cpus} cores (${machine.cpu_model}), ${machine.memory_gib} GiB, Node ${machine.node}, ${machine.platform}.`,
		`Reproduce: \`npm run bench\` (needs PostgreSQL on 127.0.0.1:5432; BENCH_RATE=${RATE}, BENCH_DURATION_S=${DURATION_S} after a ${WARMUP_S} s warm-up).`,
		"The system runs as one node (the built runner) with every service on its own PostgreSQL database; the SMTP server runs in the bench process.",
		"A scenario with errors is not a result.",
		"",
		"| scenario | requests | rps | p50 ms | p99 ms | errors |",
		"|---|---|---|---|---|---|",
		...rows,
		""
	].join("\n");
	fs.writeFileSync(path.join(ROOT, "BENCHMARKS.md"), md);
	process.stdout.write(md);
}

main().catch(err => {
	process.stderr.write(`bench failed: ${err.stack ?? err}\n`);
	process.exit(1);
});
