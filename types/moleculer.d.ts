// Every augmentation of Moleculer's types lives in this one file.
// moleculer's package exports only ".", so its service typings are reached by path; that module is
// `export = Service`, so its top-level declarations here merge into the Service namespace.
import "../node_modules/moleculer/src/service";

declare module "../node_modules/moleculer/src/service" {
	// eslint-disable-next-line @typescript-eslint/no-unused-vars
	interface ActionSchema<TThis> {
		/** Per-action request timeout in ms: Moleculer's Timeout middleware honours it; its typings omit it. */
		timeout?: number;
	}
}
