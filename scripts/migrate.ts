/**
 * Applies a service's database migrations and exits: `SERVICES=users node dist/scripts/migrate.js`
 * (or `npm run migrate -- users payments`). The Kubernetes migration Job and init containers run it
 * before pods take traffic; services also migrate at start, under the same PostgreSQL advisory lock,
 * so running both is safe.
 */
import { config, ConfigError, DB_SERVICES } from "../lib/config";
import { createSequelize, migrate, type Migration } from "../lib/db";

async function migrateService(service: string): Promise<void> {
	const { migrations } = require(`../services/${service}/migrations`) as { migrations: Migration[] };
	const sequelize = createSequelize(service);
	try {
		await sequelize.authenticate();
		const applied = await migrate(sequelize, service, migrations);
		process.stdout.write(`${JSON.stringify({ level: "info", service, msg: applied.length ? `applied ${applied.join(", ")}` : "up to date" })}\n`);
	} finally {
		await sequelize.close();
	}
}

async function main(): Promise<void> {
	config();
	const asked = process.argv.slice(2).length ? process.argv.slice(2) : (process.env.SERVICES ?? "").split(",");
	const names = asked.map(s => s.trim()).filter(Boolean);
	const unknown = names.filter(n => !(DB_SERVICES as readonly string[]).includes(n));
	if (!names.length || unknown.length) {
		process.stderr.write(`usage: SERVICES=<${DB_SERVICES.join("|")}>[,…] node dist/scripts/migrate.js${unknown.length ? ` (no database: ${unknown.join(", ")})` : ""}\n`);
		process.exit(2);
	}
	for (const name of names) await migrateService(name);
}

main().catch(err => {
	process.stderr.write(`${err instanceof ConfigError ? err.message : `migration failed: ${(err as Error).message}`}\n`);
	process.exit(1);
});
