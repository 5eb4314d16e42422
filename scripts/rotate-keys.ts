/**
 * Rotates the JWT signing key: `npm run rotate-keys` (add `-- --retire-previous` after a key leaked).
 * A new key signs new tokens at once; the old one stays in JWKS and keeps verifying its tokens until
 * they expire (ACCESS_TOKEN_TTL_S + a minute), then it is retired. With TRANSPORTER set it joins the
 * cluster and asks a running auth service, which tells every replica; otherwise it runs auth itself on
 * the embedded default (the same DATA_DIR or AUTH_DATABASE_URL as `npm start`; a running server picks
 * the key up within a minute, or at once when it sees a token of it).
 */
import { ServiceBroker } from "moleculer";
import { brokerOptions } from "../lib/broker";
import { config, ConfigError } from "../lib/config";
import AuthService from "../services/auth.service";

async function main(): Promise<void> {
	const cfg = config();
	const retirePrevious = process.argv.includes("--retire-previous");
	const broker = new ServiceBroker({ ...brokerOptions({ ...cfg, LOG_LEVEL: "warn" }), nodeID: `rotate-keys-${process.pid}` });
	if (!cfg.TRANSPORTER) broker.createService(AuthService);
	await broker.start();
	try {
		await broker.waitForServices(["auth"], 30000);
		const r = await broker.call<{ kid: string; keys: string[] }, object>("auth.rotateKeys", retirePrevious ? { retire_previous: true } : {});
		process.stdout.write(`new signing key ${r.kid}; keys in JWKS: ${r.keys.join(", ")}\n`);
	} finally {
		await broker.stop();
	}
}

main().catch(err => {
	process.stderr.write((err instanceof ConfigError ? err.message : `rotate-keys failed: ${err.message}`) + "\n");
	process.exit(1);
});
