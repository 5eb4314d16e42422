import crypto from "node:crypto";
import { Client } from "pg";

export const PG_ADMIN_URL = process.env.TEST_PG_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";

async function admin<T>(fn: (c: Client) => Promise<T>): Promise<T> {
	const client = new Client({ connectionString: PG_ADMIN_URL });
	await client.connect();
	try {
		return await fn(client);
	} finally {
		await client.end();
	}
}

function urlFor(db: string): string {
	const u = new URL(PG_ADMIN_URL);
	u.pathname = `/${db}`;
	return u.toString();
}

export interface TestDatabases {
	/** `<SERVICE>_DATABASE_URL` entries, ready to merge into an environment. */
	env: Record<string, string>;
	names: string[];
	drop(): Promise<void>;
}

/** Creates one fresh PostgreSQL database per service, under names no other run uses. */
export async function createDatabases(services: string[]): Promise<TestDatabases> {
	const run = `t_${process.pid}_${crypto.randomBytes(4).toString("hex")}`;
	const names = services.map(s => `${run}_${s}`);
	await admin(async c => {
		for (const n of names) await c.query(`CREATE DATABASE "${n}"`);
	});
	const env: Record<string, string> = {};
	services.forEach((s, i) => (env[`${s.toUpperCase()}_DATABASE_URL`] = urlFor(names[i])));
	return {
		env,
		names,
		drop: () =>
			admin(async c => {
				for (const n of names) await c.query(`DROP DATABASE IF EXISTS "${n}" WITH (FORCE)`);
			})
	};
}

/** Runs SQL directly against one test database (e.g. to inspect or tamper with rows). */
export async function query<T = Record<string, unknown>>(url: string, sql: string, params: unknown[] = []): Promise<T[]> {
	const client = new Client({ connectionString: url });
	await client.connect();
	try {
		return (await client.query(sql, params)).rows as T[];
	} finally {
		await client.end();
	}
}
