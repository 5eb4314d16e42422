import fs from "node:fs";
import path from "node:path";
import { QueryTypes, Sequelize } from "sequelize";
import * as db from "../../lib/db";
import { migrations as authMigrations } from "../../services/auth/migrations";
import { migrations as usersMigrations } from "../../services/users/migrations";
import { createDatabases, query, type TestDatabases } from "../helpers/pg";
import { startSystem, uniqueEmail, type TestSystem } from "../helpers/system";

const CASES = [
	{ service: "users", names: usersMigrations.map(m => m.name), tables: ["users", "kyc_submissions", "outbox"] },
	{ service: "auth", names: authMigrations.map(m => m.name), tables: ["credentials", "sessions", "refresh_tokens", "signing_keys", "login_failures", "outbox", "action_tokens", "oauth_states", "oauth_identities"] }
];

describe("versioned migrations", () => {
	let dbs: TestDatabases;
	const systems: TestSystem[] = [];
	const env = { ...process.env };
	// A spy that calls the real migrate(), so the test sees what each start applied and whether one failed
	// (moleculer-db would otherwise hide a failed start by reconnecting).
	const migrate = jest.spyOn(db, "migrate");

	/** Starts nodes at the same moment; startSystem swaps process.env while it starts, so put it back after. */
	async function startTogether(count: number, service: string): Promise<TestSystem[]> {
		try {
			const started = await Promise.all(Array.from({ length: count }, () => startSystem({ services: [service], dbs })));
			systems.push(...started);
			return started;
		} finally {
			process.env = { ...env };
		}
	}

	/** What each call of migrate() since `from` applied; fails if any of them threw. */
	async function appliedSince(from: number): Promise<string[][]> {
		const outcomes = await Promise.allSettled(migrate.mock.results.slice(from).map(r => r.value as Promise<string[]>));
		return outcomes.map(o => {
			if (o.status === "rejected") throw o.reason;
			return o.value;
		});
	}

	beforeAll(async () => {
		dbs = await createDatabases(["auth", "users"]);
	});
	afterAll(async () => {
		await Promise.allSettled(systems.map(s => s.stop()));
		await dbs?.drop();
		migrate.mockRestore();
		process.env = env;
	});

	describe.each(CASES)("on PostgreSQL: $service", ({ service, names, tables }) => {
		it("two nodes starting together on one database both start, and the migrations run once", async () => {
			const url = dbs.env[`${service.toUpperCase()}_DATABASE_URL`];
			const from = migrate.mock.results.length;
			const [a, b] = await startTogether(2, service);

			const applied = await appliedSince(from);
			expect(applied).toHaveLength(2);
			expect(applied.map(x => x.length).sort()).toEqual([0, names.length]);
			expect(applied.flat()).toEqual(names);

			const recorded = await query<{ name: string }>(url, "SELECT name FROM schema_migrations ORDER BY name");
			expect(recorded.map(r => r.name)).toEqual(names);
			const present = await query<{ table_name: string }>(url, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'");
			expect(present.map(r => r.table_name).sort()).toEqual([...tables, "schema_migrations"].sort());

			for (const sys of [a, b]) expect(await sys.broker.call(`${service}.health`)).toEqual({ db: true });
		});

		it("a third node finds nothing to apply and keeps the data", async () => {
			const url = dbs.env[`${service.toUpperCase()}_DATABASE_URL`];
			if (service === "users") {
				await systems[0].broker.call("users.create", { email: uniqueEmail("migr"), name: "Kept" });
			}
			const before = await query(url, `SELECT count(*)::int AS n FROM "${tables[0]}"`);
			const from = migrate.mock.results.length;
			const [c] = await startTogether(1, service);

			expect(await appliedSince(from)).toEqual([[]]);
			const recorded = await query<{ name: string }>(url, "SELECT name FROM schema_migrations ORDER BY name");
			expect(recorded.map(r => r.name)).toEqual(names);
			expect(await query(url, `SELECT count(*)::int AS n FROM "${tables[0]}"`)).toEqual(before);
			expect(await c.broker.call(`${service}.health`)).toEqual({ db: true });
		});
	});

	it("on the embedded default, the users service creates DATA_DIR/users.sqlite and migrates it", async () => {
		let sys: TestSystem | undefined;
		try {
			sys = await startSystem({ sqlite: true, services: ["users"] });
			const file = path.join(sys.dataDir, "users.sqlite");
			expect(fs.existsSync(file)).toBe(true);
			expect(await sys.broker.call("users.health")).toEqual({ db: true });
			const created = await sys.broker.call<{ id: string }, object>("users.create", { email: uniqueEmail("lite"), name: "Lite" });

			const file_db = new Sequelize({ dialect: "sqlite", storage: file, logging: false });
			try {
				const recorded = await file_db.query<{ name: string }>("SELECT name FROM schema_migrations", { type: QueryTypes.SELECT });
				expect(recorded.map(r => r.name)).toEqual(usersMigrations.map(m => m.name));
				const rows = await file_db.query<{ id: string }>("SELECT id FROM users", { type: QueryTypes.SELECT });
				expect(rows.map(r => r.id)).toEqual([created.id]);
			} finally {
				await file_db.close();
			}
		} finally {
			await sys?.stop();
			process.env = { ...env };
		}
	});
});
