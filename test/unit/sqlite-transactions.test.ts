import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { QueryTypes, Transaction, type Sequelize } from "sequelize";
import { createSequelize } from "../../lib/db";

/** The SQLite connection a transaction ran on (Sequelize keeps it on the transaction; its typings leave it out). */
type Connection = { open: boolean };
const connectionOf = (t: Transaction) => (t as unknown as { connection: Connection }).connection;

describe("SQLite transactions (lib/db.ts)", () => {
	let dir: string;
	let db: Sequelize;
	const count = async () =>
		Number((await db.query<{ n: number }>("SELECT count(*) AS n FROM items", { type: QueryTypes.SELECT }))[0].n);

	beforeEach(async () => {
		dir = fs.mkdtempSync(path.join(os.tmpdir(), "sqlite-tx-"));
		db = createSequelize("items", { DATA_DIR: dir, NODE_ENV: "test" });
		await db.query("PRAGMA journal_mode=WAL");
		await db.query("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL)");
	});
	afterEach(async () => {
		await db.close().catch(() => undefined);
		fs.rmSync(dir, { recursive: true, force: true });
	});

	it("keeps a transaction's connection open for the next transaction instead of opening the file again", async () => {
		const seen: Connection[] = [];
		for (let i = 0; i < 3; i++) {
			await db.transaction(async t => {
				seen.push(connectionOf(t));
				await db.query("INSERT INTO items (name) VALUES (:name)", { replacements: { name: `item ${i}` }, transaction: t });
			});
		}
		expect(seen[1]).toBe(seen[0]);
		expect(seen[2]).toBe(seen[0]);
		expect(seen[0].open).toBe(true);
		expect(await count()).toBe(3);
	});

	it("hands on a connection whose transaction rolled back out of any transaction: the next one commits on it", async () => {
		const seen: Connection[] = [];
		await expect(
			db.transaction(async t => {
				seen.push(connectionOf(t));
				await db.query("INSERT INTO items (name) VALUES ('rolled back')", { transaction: t });
				throw new Error("boom");
			})
		).rejects.toThrow("boom");
		await db.transaction(async t => {
			seen.push(connectionOf(t));
			await db.query("INSERT INTO items (name) VALUES ('kept')", { transaction: t });
		});
		expect(seen[1]).toBe(seen[0]);
		const names = await db.query<{ name: string }>("SELECT name FROM items", { type: QueryTypes.SELECT });
		expect(names.map(r => r.name)).toEqual(["kept"]);
	});

	it("gives a transaction begun while another runs a connection of its own", async () => {
		const first = await db.transaction();
		const second = await db.transaction({ type: Transaction.TYPES.DEFERRED });
		expect(connectionOf(second)).not.toBe(connectionOf(first));
		await db.query("INSERT INTO items (name) VALUES ('first')", { transaction: first });
		await second.commit();
		await first.commit();
		expect(await count()).toBe(1);
	});

	it("closes the kept connection with the others on close()", async () => {
		let kept: Connection | undefined;
		await db.transaction(async t => {
			kept = connectionOf(t);
			await db.query("INSERT INTO items (name) VALUES ('x')", { transaction: t });
		});
		await db.close();
		expect(kept!.open).toBe(false);
	});
});
