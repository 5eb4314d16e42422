import { QueryTypes, Sequelize } from "sequelize";
import { migrate } from "../../lib/db";
import { migrations } from "../../services/auth/migrations";
import { clearFailures, reserveAttempt, secondsToWait, type FailureRow, type LockoutPolicy } from "../../services/auth/lockout";
import { createDatabases, type TestDatabases } from "../helpers/pg";

const policy: LockoutPolicy = { maxFailures: 3, windowMs: 15 * 60 * 1000 };
const T0 = new Date("2024-06-15T12:00:00.000Z");
const at = (ms: number) => new Date(T0.getTime() + ms);

let n = 0;
const email = () => `lockout.${process.pid}.${n++}@example.com`;

async function failureRow(sequelize: Sequelize, address: string): Promise<FailureRow | undefined> {
	const rows = await sequelize.query<FailureRow>("SELECT failures, window_started_at FROM login_failures WHERE email = :address", {
		replacements: { address },
		type: QueryTypes.SELECT
	});
	return rows[0];
}

async function failures(sequelize: Sequelize, address: string): Promise<number | undefined> {
	const row = await failureRow(sequelize, address);
	return row ? Number(row.failures) : undefined;
}

/** A failed login as the auth service counts it: one attempt reserved (and not cleared). */
async function recordFailure(sequelize: Sequelize, address: string, p: LockoutPolicy, now: Date): Promise<void> {
	await reserveAttempt(sequelize, address, p, now);
}

/** Seconds the account would have to wait at `now`, from its row, without counting an attempt. */
async function lockedFor(sequelize: Sequelize, address: string, p: LockoutPolicy, now: Date): Promise<number> {
	return secondsToWait(await failureRow(sequelize, address), p, now);
}

/** The same behaviour on both databases the auth service runs on. */
function lockoutSuite(name: string, open: () => Promise<Sequelize>, close: (s: Sequelize) => Promise<void>) {
	describe(`lockout on ${name}`, () => {
		let db: Sequelize;
		beforeAll(async () => {
			db = await open();
			await migrate(db, "auth", migrations);
		});
		afterAll(async () => {
			if (db) await close(db);
		});

		it("is not locked below the limit", async () => {
			const who = email();
			expect(await lockedFor(db, who, policy, T0)).toBe(0);
			await recordFailure(db, who, policy, T0);
			await recordFailure(db, who, policy, at(1000));
			expect(await failures(db, who)).toBe(2);
			expect(await lockedFor(db, who, policy, at(2000))).toBe(0);
		});

		it("locks at the limit until the window that began with the first failure ends", async () => {
			const who = email();
			for (let i = 0; i < policy.maxFailures; i++) await recordFailure(db, who, policy, at(i * 1000));
			expect(await failures(db, who)).toBe(3);
			expect(await lockedFor(db, who, policy, at(60_000))).toBe((policy.windowMs - 60_000) / 1000);
			expect(await lockedFor(db, who, policy, at(policy.windowMs - 500))).toBe(1);
			expect(await lockedFor(db, who, policy, at(policy.windowMs))).toBe(0);
		});

		it("starts a new window once the old one is over", async () => {
			const who = email();
			for (let i = 0; i < policy.maxFailures; i++) await recordFailure(db, who, policy, T0);
			const later = at(policy.windowMs + 1000);
			await recordFailure(db, who, policy, later);
			expect(await failures(db, who)).toBe(1);
			expect(await lockedFor(db, who, policy, later)).toBe(0);
		});

		it("counts every one of 20 concurrent failures", async () => {
			const who = email();
			await Promise.all(Array.from({ length: 20 }, () => recordFailure(db, who, policy, T0)));
			expect(await failures(db, who)).toBe(20);
			expect(await lockedFor(db, who, policy, at(1000))).toBeGreaterThan(0);
		});

		it("reserves attempts: the first maxFailures go ahead, the next waits until the window ends", async () => {
			const who = email();
			for (let i = 0; i < policy.maxFailures; i++) expect(await reserveAttempt(db, who, policy, at(i * 1000))).toBe(0);
			expect(await reserveAttempt(db, who, policy, at(10_000))).toBe((policy.windowMs - 10_000) / 1000);
			expect(await failures(db, who)).toBe(policy.maxFailures + 1);
			// Once the window that began with the first attempt is over, the count starts again.
			expect(await reserveAttempt(db, who, policy, at(policy.windowMs + 1000))).toBe(0);
			expect(await failures(db, who)).toBe(1);
		});

		it("lets at most maxFailures of 20 concurrent reservations go ahead, and counts all of them", async () => {
			const who = email();
			const waits = await Promise.all(Array.from({ length: 20 }, () => reserveAttempt(db, who, policy, T0)));
			expect(waits.filter(w => w === 0).length).toBeLessThanOrEqual(policy.maxFailures);
			expect(waits.filter(w => w > 0).length).toBeGreaterThanOrEqual(20 - policy.maxFailures);
			expect(await failures(db, who)).toBe(20);
		});

		it("keeps accounts apart and forgets one on clear", async () => {
			const a = email();
			const b = email();
			for (let i = 0; i < policy.maxFailures; i++) {
				await recordFailure(db, a, policy, T0);
				await recordFailure(db, b, policy, T0);
			}
			await clearFailures(db, a);
			expect(await failures(db, a)).toBeUndefined();
			expect(await lockedFor(db, a, policy, at(1000))).toBe(0);
			expect(await lockedFor(db, b, policy, at(1000))).toBeGreaterThan(0);
		});
	});
}

lockoutSuite(
	"SQLite (in memory)",
	async () => new Sequelize({ dialect: "sqlite", storage: ":memory:", logging: false }),
	s => s.close()
);

let pg: TestDatabases | undefined;
lockoutSuite(
	"PostgreSQL",
	async () => {
		pg = await createDatabases(["lockout"]);
		return new Sequelize(pg.env.LOCKOUT_DATABASE_URL, { dialect: "postgres", logging: false, pool: { max: 10 } });
	},
	async s => {
		await s.close();
		await pg?.drop();
	}
);
