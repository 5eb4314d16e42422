import { ServiceBroker } from "moleculer";
import ApiGateway from "moleculer-web";
import { AliasIndex, type Alias, type Found } from "../../services/api/alias-index";

/** The index must give every request the alias moleculer-web's own scan gives it, with the same params. */
describe("AliasIndex", () => {
	const broker = new ServiceBroker({ logger: false });
	const gateway = broker.createService({
		name: "gw",
		mixins: [ApiGateway as never],
		settings: {
			server: false,
			routes: [
				{
					path: "/api",
					aliases: {
						// A parameter that also matches the fixed path after it.
						"GET /users/:id": "users.get",
						"GET /users/me": "users.me",
						"PATCH /users/me": "users.update",
						"GET /users/me/kyc": "users.kyc",
						"POST /users/me/kyc": "users.submit",
						"GET /files/*path": "files.get",
						"GET /health": "health.get",
						"DELETE /health": "health.drop",
						"/any": "any.thing"
					}
				},
				{ path: "/other", aliases: { "GET /health": "other.health" } }
			]
		}
	});
	beforeAll(() => broker.start());
	afterAll(() => broker.stop());

	const aliases = () => (gateway as unknown as { aliases: Alias[] }).aliases;
	// moleculer-web's own resolveAlias, the reference.
	const scan = (list: Alias[], url: string, method: string): Found | false =>
		(ApiGateway as unknown as { methods: { resolveAlias(this: { aliases: Alias[] }, url: string, method: string): Found | false } }).methods.resolveAlias.call({ aliases: list }, url, method);
	const actionOf = (f: Found | false) => (f ? (f.alias as Alias & { action: string }).action : null);
	// As the gateway's resolveAlias: the index, else moleculer-web's scan.
	const resolve = (index: AliasIndex, list: Alias[], url: string, method: string) => index.find(list, url, method) ?? scan(list, url, method);

	const requests: Array<[string, string]> = [
		["GET", "/api/users/me"],
		["GET", "/api/users/42"],
		["PATCH", "/api/users/me"],
		["GET", "/api/users/me/kyc"],
		["POST", "/api/users/me/kyc"],
		["PUT", "/api/users/me/kyc"],
		["GET", "/api/USERS/ME/KYC"],
		["GET", "/api/files/a/b.txt"],
		["GET", "/api/health"],
		["DELETE", "/api/health"],
		["POST", "/api/any"],
		["GET", "/api/any"],
		["GET", "/other/health"],
		["GET", "/api/nothing"],
		["GET", "/api/users/me%2Fkyc"]
	];

	it.each(requests)("%s %s resolves as moleculer-web's scan resolves it", (method, url) => {
		const index = new AliasIndex();
		const want = scan(aliases(), url, method);
		const got = resolve(index, aliases(), url, method);
		expect(got ? { alias: got.alias, params: got.params } : got).toEqual(want ? { alias: want.alias, params: want.params } : want);
		if (want) expect(got && got.alias).toBe(want.alias);
	});

	it("answers a fixed path that an alias before it shadows as the scan does", () => {
		// moleculer-web puts fixed paths first (optimizeOrder); a list in another order must still resolve as scanned.
		const list = [...aliases()].sort((a, b) => Number(actionOf({ alias: b, params: {} }) === "users.get") - Number(actionOf({ alias: a, params: {} }) === "users.get"));
		expect(actionOf(scan(list, "/api/users/me", "GET"))).toBe("users.get");
		const index = new AliasIndex();
		expect(index.find(list, "/api/users/me", "GET")).toBeUndefined();
		expect(actionOf(resolve(index, list, "/api/users/me", "GET"))).toBe("users.get");
		expect(resolve(index, list, "/api/users/me", "GET")).toMatchObject({ params: { id: "me" } });
		expect(actionOf(resolve(index, list, "/api/users/me/kyc", "GET"))).toBe("users.kyc");
		expect(actionOf(resolve(index, list, "/api/health", "GET"))).toBe("health.get");
	});

	it("finds a fixed path without trying any alias's pattern", () => {
		const index = new AliasIndex();
		const list = [...aliases()];
		resolve(index, list, "/api/health", "GET");
		let tried = 0;
		const counted = list.map(a => Object.assign(Object.create(a), { match: (url: string) => (tried++, a.match(url)) }));
		// The same array, so the index is not rebuilt: its entries are the originals, the scan would use the counted ones.
		list.splice(0, list.length, ...counted);
		expect(actionOf(resolve(index, list, "/api/users/me/kyc", "POST"))).toBe("users.submit");
		expect(tried).toBe(0);
		expect(actionOf(resolve(index, list, "/api/users/42", "GET"))).toBe("users.get");
		expect(tried).toBeGreaterThan(0);
	});

	it("gives each request its own params object", () => {
		const index = new AliasIndex();
		const a = resolve(index, aliases(), "/api/health", "GET");
		const b = resolve(index, aliases(), "/api/health", "GET");
		expect(a && b && a.params).not.toBe(b && b.params);
	});

	it("follows the list when moleculer-web replaces or extends it", () => {
		const index = new AliasIndex();
		const list = [...aliases()];
		expect(actionOf(resolve(index, list, "/api/health", "GET"))).toBe("health.get");
		// A new first alias for the same path, pushed in place: the index is rebuilt.
		const other = list.find(a => (a as Alias & { action: string }).action === "other.health")!;
		const moved = Object.assign(Object.create(Object.getPrototypeOf(other)), other, { fullPath: "/api/health", re: /^\/api\/health\/?$/i });
		list.unshift(moved);
		expect(actionOf(resolve(index, list, "/api/health", "GET"))).toBe("other.health");
		// A new list without it.
		expect(actionOf(resolve(index, aliases(), "/api/health", "GET"))).toBe("health.get");
	});
});
