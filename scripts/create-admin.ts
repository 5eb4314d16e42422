/**
 * Makes sure an admin account exists: `ADMIN_EMAIL=… ADMIN_PASSWORD=… npm run create-admin`.
 * With TRANSPORTER set it joins the cluster and asks its auth service; otherwise it runs auth and
 * users itself on the embedded default (the same DATA_DIR as `npm start`).
 */
import { ServiceBroker } from "moleculer";
import { brokerOptions } from "../lib/broker";
import { config, ConfigError } from "../lib/config";
import AuthService from "../services/auth.service";
import UsersService from "../services/users.service";

async function main(): Promise<void> {
	const cfg = config();
	const email = process.argv[2] ?? cfg.ADMIN_EMAIL;
	const password = process.env.ADMIN_PASSWORD;
	if (!email || !password) {
		process.stderr.write("usage: ADMIN_EMAIL=<email> ADMIN_PASSWORD=<password> npm run create-admin\n");
		process.exit(2);
	}
	const broker = new ServiceBroker({ ...brokerOptions({ ...cfg, LOG_LEVEL: "warn" }), nodeID: `create-admin-${process.pid}` });
	if (!cfg.TRANSPORTER) {
		broker.createService(AuthService);
		broker.createService(UsersService);
	}
	await broker.start();
	try {
		await broker.waitForServices(["auth", "users"], 30000);
		const user = await broker.call<{ id: string; email: string; roles: string[] }, object>("auth.ensureAdmin", { email, password });
		process.stdout.write(`admin ${user.email} (${user.id}) has roles ${user.roles.join(", ")}\n`);
	} finally {
		await broker.stop();
	}
}

main().catch(err => {
	process.stderr.write((err instanceof ConfigError ? err.message : `create-admin failed: ${err.message}`) + "\n");
	process.exit(1);
});
