import type { BrokerOptions } from "moleculer";
import { brokerOptions } from "./lib/broker";
import { config, ConfigError } from "./lib/config";

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

export = load();
