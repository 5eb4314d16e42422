import path from "node:path";
import type { BrokerOptions } from "moleculer";
import { brokerOptions } from "./lib/broker";
import { config, ConfigError } from "./lib/config";
import { hasNodeFlags, NODE_FLAGS } from "./lib/node-flags";

/** Configuration for `moleculer-runner`: everything comes from the environment, validated here. */
function load(): BrokerOptions {
	try {
		return brokerOptions(config());
	} catch (err) {
		if (err instanceof ConfigError) {
			process.stderr.write(err.message + "\n");
			process.exit(1);
		}
		throw err;
	}
}

/**
 * moleculer-runner resolves each `SERVICES` name against SERVICEDIR (default: the working directory),
 * where `users` would be the component folder `services/users/`: name the service files instead.
 */
function serviceFiles(list: string): string {
	const ext = path.extname(__filename);
	return list
		.split(",")
		.map(s => s.trim())
		.filter(Boolean)
		.map(s => (/^[A-Za-z0-9_-]+$/.test(s) ? path.join(__dirname, "services", `${s}.service${ext}`) : s))
		.join(",");
}

const options = load();
if (!hasNodeFlags()) {
	process.emitWarning(`started without ${NODE_FLAGS.join(" ")}: every request costs more CPU (lib/node-flags.ts); use npm start or the Dockerfile's command`);
}
if (process.env.SERVICES) process.env.SERVICES = serviceFiles(process.env.SERVICES);

export = options;
