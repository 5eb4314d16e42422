import { execFile } from "node:child_process";
import path from "node:path";
import { promisify } from "node:util";
import { RenewedMap } from "../../lib/renewed-map";

describe("RenewedMap", () => {
	it("behaves as a Map across its renewals: order, lookups, deletes, size", () => {
		const map = new RenewedMap<string, number>();
		const model = new Map<string, number>();
		for (let i = 0; i < 1000; i++) {
			map.set(`k${i}`, i);
			model.set(`k${i}`, i);
			if (i % 3 === 0) {
				map.delete(`k${i - 2}`);
				model.delete(`k${i - 2}`);
			}
			if (i % 7 === 0) {
				map.set(`k${i - 5}`, -i); // an update keeps its place, as in a Map
				model.set(`k${i - 5}`, -i);
			}
		}
		expect([...map]).toEqual([...model]);
		expect([...map.keys()]).toEqual([...model.keys()]);
		expect([...map.values()]).toEqual([...model.values()]);
		expect(map.size).toBe(model.size);
		expect(map.get("k999")).toBe(999);
		expect(map.has("k997")).toBe(false);
		expect(map.get("k997")).toBeUndefined();
		map.clear();
		expect(map.size).toBe(0);
		expect([...map]).toEqual([]);
	});

	it("lets forEach delete what it visits, as Moleculer's transit does when a node leaves", () => {
		const map = new RenewedMap<number, string>();
		for (let i = 0; i < 100; i++) map.set(i, i % 2 ? "gone" : "stays");
		const seen: number[] = [];
		map.forEach((v, k, m) => {
			seen.push(k);
			if (v === "gone") m.delete(k);
		});
		expect(seen).toHaveLength(100);
		expect([...map.keys()]).toEqual([...Array(50).keys()].map(i => i * 2));
	});
});

/**
 * The reason it exists, on the V8 this runs on: in a Map whose table is in the old generation, entries
 * deleted long ago are kept through scavenges by the tables it replaced, and promoted. If the Map half
 * stops failing, V8 no longer does this and RenewedMap can go.
 */
describe("what passes through a long-lived map", () => {
	const promoted = async (kind: string) => {
		const script = path.join(__dirname, "../helpers/churn-promotion.ts");
		const { stdout } = await promisify(execFile)(process.execPath, ["--expose-gc", "--import", "tsx", script, kind], { timeout: 20000 });
		return Number(stdout);
	};

	it("reaches the old generation through a Map (about 17 MB pass through), not through a RenewedMap", async () => {
		const [map, renewed] = await Promise.all([promoted("map"), promoted("renewed")]);
		expect(map).toBeGreaterThan(4 * 1024 * 1024);
		expect(renewed).toBeLessThan(1024 * 1024);
	});
});
