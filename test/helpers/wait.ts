// Polling for tests that wait on something asynchronous (an email, a row, a node).

/** Polls until `fn` gives a truthy value; the deadline is only a safety net, not an assertion on time. */
export async function waitFor<T>(fn: () => Promise<T> | T, what: string, timeoutMs = 20000, diag?: () => string): Promise<NonNullable<T>> {
	const end = Date.now() + timeoutMs;
	let last: unknown;
	for (;;) {
		try {
			const v = await fn();
			if (v) return v as NonNullable<T>;
		} catch (err) {
			last = err;
		}
		if (Date.now() > end) throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ""}${diag ? `\n${diag()}` : ""}`);
		await new Promise(r => setTimeout(r, 40));
	}
}
