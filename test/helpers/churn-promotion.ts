/**
 * Run as `node --expose-gc --import tsx churn-promotion.ts <map|renewed>`: prints how many bytes reach
 * the old generation when 20 000 objects pass through a long-lived Map (or RenewedMap), 50 at a time,
 * as requests pass through a map of those in flight. Every object is garbage once deleted.
 */
import v8 from "node:v8";
import { setTimeout as sleep } from "node:timers/promises";
import { RenewedMap } from "../../lib/renewed-map";

type Gc = (opts?: { type: "minor" | "major" }) => void;
const gc = (globalThis as unknown as { gc: Gc }).gc;
const oldSpace = () => v8.getHeapSpaceStatistics().find(s => s.space_name === "old_space")!.space_used_size;

function churn(map: { set(k: object, v: true): unknown; delete(k: object): boolean; readonly size: number }, n: number): void {
	const live: object[] = [];
	for (let i = 0; i < n; i++) {
		const request = { i, body: new Array(100).fill(i) };
		live.push(request);
		map.set(request, true);
		if (live.length > 50) map.delete(live.shift()!);
	}
	for (const request of live.splice(0)) map.delete(request);
}

async function main(): Promise<void> {
	const map = process.argv[2] === "renewed" ? new RenewedMap<object, true>() : new Map<object, true>();
	churn(map, 100);
	await sleep(5);
	// Full GCs while the map holds a table: it is in the old generation from now on, as in a server that ran one.
	gc();
	gc();
	await sleep(5);
	gc({ type: "minor" });
	const before = oldSpace();
	churn(map, 20000);
	gc({ type: "minor" });
	gc({ type: "minor" });
	process.stdout.write(String(oldSpace() - before));
}

void main();
