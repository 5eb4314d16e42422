import type { Sequelize } from "sequelize";
import type { Config } from "../../../lib/config";
import { SimulatedProvider } from "./simulated";
import { StripeProvider } from "./stripe";
import type { PaymentProvider } from "./types";

export * from "./types";

/** Stripe when STRIPE_API_KEY is set; otherwise the built-in simulation of Stripe test mode. */
export function createProvider(cfg: Config, db: () => Sequelize): PaymentProvider {
	if (cfg.STRIPE_API_KEY) return new StripeProvider({ apiKey: cfg.STRIPE_API_KEY, apiUrl: cfg.STRIPE_API_URL });
	return new SimulatedProvider(db);
}
