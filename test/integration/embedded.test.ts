import { execFile } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { freePort, ROOT, startNode, waitForStatus, type NodeProcess } from "../helpers/node-process";
import { http, uniqueEmail } from "../helpers/system";

const run = promisify(execFile);

describe("the embedded default: every service in one node on SQLite, no server", () => {
	const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "msvc-embedded-"));
	let node: NodeProcess | undefined;
	let base = "";
	let env: Record<string, string>;

	beforeAll(async () => {
		const port = await freePort();
		base = `http://127.0.0.1:${port}`;
		env = { NODE_ENV: "test", BCRYPT_COST: "4", LOG_LEVEL: "info", PORT: String(port), DATA_DIR: dataDir, ADMIN_EMAIL: "Root@Example.com", ADMIN_PASSWORD: "admin password 1" };
	});

	afterAll(async () => {
		await node?.stop("SIGKILL");
		fs.rmSync(dataDir, { recursive: true, force: true });
	});

	it("serves register, login and me; keeps users, sessions and the signing key across a restart", async () => {
		node = startNode(env);
		await waitForStatus(`${base}/health/ready`);
		expect(fs.existsSync(path.join(dataDir, "auth.sqlite"))).toBe(true);
		expect(fs.existsSync(path.join(dataDir, "users.sqlite"))).toBe(true);

		const email = uniqueEmail();
		const reg = await http(base, "POST", "/api/v1/auth/register", { body: { email, password: "embedded pass", name: "Emb" } });
		expect(reg.status).toBe(201);
		const login = await http(base, "POST", "/api/v1/auth/login", { body: { email, password: "embedded pass" } });
		expect(login.status).toBe(200);
		expect((await http(base, "GET", "/api/v1/users/me", { token: login.body.access_token })).body.email).toBe(email);

		// Logs are JSON lines naming node and service.
		const json = node.lines.filter(l => l.startsWith("{")).map(l => JSON.parse(l));
		expect(json.length).toBeGreaterThan(5);
		expect(json.every(l => l.node && l.service && l.level && l.time)).toBe(true);

		// Graceful stop, then a new process on the same files.
		expect(await node.stop("SIGTERM")).toBe(0);
		node = startNode(env);
		await waitForStatus(`${base}/health/ready`);
		const me = await http(base, "GET", "/api/v1/users/me", { token: login.body.access_token });
		expect(me.status).toBe(200);
		const refreshed = await http(base, "POST", "/api/v1/auth/refresh", { body: { refresh_token: login.body.refresh_token } });
		expect(refreshed.status).toBe(200);

		// The request id a client sends is on the log lines its request causes (here: the reuse warning).
		const reuse = await http(base, "POST", "/api/v1/auth/refresh", {
			body: { refresh_token: login.body.refresh_token },
			headers: { "x-request-id": "embedded-reuse-1" }
		});
		expect(reuse.status).toBe(401);
		await new Promise(r => setTimeout(r, 200));
		const tagged = node.lines.filter(l => l.includes("embedded-reuse-1")).map(l => JSON.parse(l));
		expect(tagged).toEqual([expect.objectContaining({ level: "warn", service: "auth", request_id: "embedded-reuse-1" })]);
	});

	it("makes sure of the first admin from ADMIN_EMAIL/ADMIN_PASSWORD at start", async () => {
		// The bootstrap runs beside start-up (it waits for the users service), so give it a moment.
		let login = await http(base, "POST", "/api/v1/auth/login", { body: { email: "root@example.com", password: "admin password 1" } });
		// (at most 8 tries: each failed one counts toward the lockout of 10)
		for (let i = 0; i < 8 && login.status !== 200; i++) {
			await new Promise(r => setTimeout(r, 500));
			login = await http(base, "POST", "/api/v1/auth/login", { body: { email: "root@example.com", password: "admin password 1" } });
		}
		expect(login.status).toBe(200);
		const me = await http(base, "GET", "/api/v1/users/me", { token: login.body.access_token });
		expect(me.body.roles).toEqual(expect.arrayContaining(["admin"]));
	});

	it("create-admin CLI makes an admin by hand, and running it twice changes nothing", async () => {
		await node?.stop("SIGTERM");
		node = undefined;
		const cliEnv: NodeJS.ProcessEnv = { ...process.env, NODE_ENV: "test", BCRYPT_COST: "4", LOG_LEVEL: "warn", DATA_DIR: dataDir, ADMIN_EMAIL: "ops@example.com", ADMIN_PASSWORD: "ops password 1" };
		delete cliEnv.TRANSPORTER;
		const first = await run(process.execPath, ["dist/scripts/create-admin.js"], { cwd: ROOT, env: cliEnv });
		expect(first.stdout).toMatch(/^admin ops@example.com \([0-9a-f-]{36}\) has roles admin, user$/m);
		const second = await run(process.execPath, ["dist/scripts/create-admin.js"], { cwd: ROOT, env: cliEnv });
		expect(second.stdout).toBe(first.stdout);

		node = startNode({ ...env, ADMIN_EMAIL: "", ADMIN_PASSWORD: "" });
		await waitForStatus(`${base}/health/ready`);
		const login = await http(base, "POST", "/api/v1/auth/login", { body: { email: "ops@example.com", password: "ops password 1" } });
		expect(login.status).toBe(200);
	});

	it("stops at start with one line naming a bad variable", async () => {
		const bad = startNode({ ...env, PORT: "not-a-port" });
		expect(await bad.exited).toBe(1);
		expect(bad.lines).toEqual(["Invalid configuration: PORT must be an integer from 0 to 65535"]);
	});
});
