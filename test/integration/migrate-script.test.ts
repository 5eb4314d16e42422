import { execFile } from "node:child_process";
import path from "node:path";
import { promisify } from "node:util";
import { migrations as paymentsMigrations } from "../../services/payments/migrations";
import { migrations as usersMigrations } from "../../services/users/migrations";
import { ROOT } from "../helpers/node-process";
import { createDatabases, query, type TestDatabases } from "../helpers/pg";

/** The migration step the Kubernetes Job and init containers run: the built script, as a process. */

const run = promisify(execFile);
const SCRIPT = path.join(ROOT, "dist/scripts/migrate.js");
let dbs: TestDatabases;

beforeAll(async () => {
	dbs = await createDatabases(["users", "payments"]);
});
afterAll(async () => {
	await dbs?.drop();
});

function migrate(args: string[], env: Record<string, string> = {}) {
	return run(process.execPath, [SCRIPT, ...args], { cwd: ROOT, env: { PATH: process.env.PATH ?? "", NODE_ENV: "test", ...dbs.env, ...env } });
}

it("applies each named service's migrations once, then finds them up to date", async () => {
	const first = await migrate(["users"], { SERVICES: "" });
	expect(first.stdout).toContain(`applied ${usersMigrations.map(m => m.name).join(", ")}`);
	const second = await migrate([], { SERVICES: "users,payments" });
	expect(second.stdout).toContain("up to date");
	expect(second.stdout).toContain(`applied ${paymentsMigrations.map(m => m.name).join(", ")}`);

	const rows = await query<{ name: string }>(dbs.env.USERS_DATABASE_URL, "SELECT name FROM schema_migrations ORDER BY name");
	expect(rows.map(r => r.name)).toEqual(usersMigrations.map(m => m.name).sort());
});

it("refuses a service without a database, and says why a connection failed", async () => {
	await expect(migrate(["api"])).rejects.toMatchObject({ code: 2, stderr: expect.stringContaining("no database: api") });
	await expect(migrate(["users"], { USERS_DATABASE_URL: "postgres://postgres@127.0.0.1:1/none" })).rejects.toMatchObject({
		code: 1,
		stderr: expect.stringContaining("migration failed")
	});
});
