// Every augmentation of Moleculer's types lives in this one file.
// moleculer's package exports only ".", so its typings are reached by path. Those modules are
// `export = Service`, so declarations here merge into its namespace. (ServiceBroker's class cannot be
// augmented that way: lib/channels.ts wraps `sendToChannel` in a typed function instead.)
import "../node_modules/moleculer/src/service";

declare module "../node_modules/moleculer/src/service" {
	// eslint-disable-next-line @typescript-eslint/no-unused-vars
	interface ActionSchema<TThis> {
		/** Per-action request timeout in ms: Moleculer's Timeout middleware honours it; its typings omit it. */
		timeout?: number;
	}

	// eslint-disable-next-line @typescript-eslint/no-unused-vars
	interface ServiceSchema<TSettings, TMethods, TVars, TThis> {
		/** @moleculer/channels: durable channel subscriptions of this service. */
		channels?: Record<string, { handler: (this: TThis, ...args: any[]) => unknown; [option: string]: unknown }>;
	}
}
