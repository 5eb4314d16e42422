// Every augmentation of Moleculer's types lives in this one file.
import "moleculer";

declare module "moleculer" {
	interface ServiceSchema {
		/** moleculer-db: the model its adapter works with. */
		model?: unknown;
		/** moleculer-db: the adapter instance. */
		adapter?: unknown;
	}
}
