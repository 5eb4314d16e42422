/**
 * A Map for entries that come and go with each request (Moleculer's remote calls awaiting an answer),
 * copied into a new one every `RENEW_EVERY` additions.
 *
 * Why: V8 puts the table a Map or Set rehashes into in the generation of the table it replaces, and a
 * replaced table keeps every key and value it held until the next full GC. A busy Map rehashes every few
 * dozen additions; once its table is in the old generation (a full GC puts a live young table there), each
 * replaced table is old garbage still pointing at the requests that were in flight, and every scavenge
 * treats it as a root: nearly every request then survives two scavenges and is promoted. Measured on the
 * embedded node (users/me, 50 connections, interleaved rounds): 4-6 KB promoted per request instead of
 * 30-100 B, and CPU per request about a third higher, for good, from the first full GC under load on
 * (BENCHMARKS.md). A copy starts with a young table, which a busy map replaces before it lives through two
 * scavenges.
 */
const RENEW_EVERY = 64;

export class RenewedMap<K, V> {
	private map = new Map<K, V>();
	private added = 0;

	get size(): number {
		return this.map.size;
	}

	get(key: K): V | undefined {
		return this.map.get(key);
	}

	has(key: K): boolean {
		return this.map.has(key);
	}

	set(key: K, value: V): this {
		if (++this.added >= RENEW_EVERY) {
			this.added = 0;
			this.map = new Map(this.map);
		}
		this.map.set(key, value);
		return this;
	}

	delete(key: K): boolean {
		return this.map.delete(key);
	}

	clear(): void {
		this.map = new Map();
	}

	forEach(fn: (value: V, key: K, map: this) => void): void {
		// Over a snapshot: the callback may delete entries (Moleculer's transit does).
		for (const [k, v] of [...this.map]) fn(v, k, this);
	}

	keys(): IterableIterator<K> {
		return this.map.keys();
	}

	values(): IterableIterator<V> {
		return this.map.values();
	}

	entries(): IterableIterator<[K, V]> {
		return this.map.entries();
	}

	[Symbol.iterator](): IterableIterator<[K, V]> {
		return this.map.entries();
	}
}
