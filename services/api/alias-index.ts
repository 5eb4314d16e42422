/** The parts of a moleculer-web alias that resolving a request needs. */
export interface Alias {
	method: string;
	fullPath: string;
	re: RegExp;
	keys: unknown[];
	match(url: string): Record<string, unknown> | false;
}

export interface Found {
	alias: Alias;
	params: Record<string, unknown>;
}

/** Characters that give a path-to-regexp path a meaning beyond its text. */
const SYNTAX = /[:*?+(){}!\\]/;

/**
 * moleculer-web resolves a request by trying each alias's regex in turn, the first that matches wins, and
 * orders its aliases deepest path first, then by name: of the gateway's 48, `GET /users/me` came after
 * some twenty other GET aliases. This finds an alias with a fixed path (no parameters) by its method and
 * exact path instead, when no alias before it could match that path, so the answer is the one the scan
 * would give; for anything else it finds nothing, and the caller scans as moleculer-web does. Rebuilt
 * whenever moleculer-web replaces or extends its list.
 */
export class AliasIndex {
	private list: Alias[] | undefined;
	private length = -1;
	/** By method, then path: no key is built per request. */
	private exact = new Map<string, Map<string, Alias>>();

	find(aliases: Alias[], url: string, method: string): Found | undefined {
		if (aliases !== this.list || aliases.length !== this.length) this.build(aliases);
		const alias = this.exact.get(method)?.get(url);
		return alias && { alias, params: {} };
	}

	private build(aliases: Alias[]): void {
		this.list = aliases;
		this.length = aliases.length;
		this.exact = new Map();
		aliases.forEach((alias, i) => {
			if (alias.method === "*" || alias.keys.length || SYNTAX.test(alias.fullPath)) return;
			let paths = this.exact.get(alias.method);
			if (!paths) this.exact.set(alias.method, (paths = new Map()));
			if (paths.has(alias.fullPath)) return;
			const shadowed = aliases.slice(0, i).some(a => (a.method === "*" || a.method === alias.method) && a.match(alias.fullPath));
			if (!shadowed) paths.set(alias.fullPath, alias);
		});
	}
}
