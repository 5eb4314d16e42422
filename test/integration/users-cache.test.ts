import crypto from "node:crypto";
import { deleteStreams } from "../../lib/channels";
import { createDatabases, type TestDatabases } from "../helpers/pg";
import { http, registerAndLogin, startSystem, type TestSystem } from "../helpers/system";
import { waitFor } from "../helpers/wait";

/**
 * The profile cache (the broker's LRU cacher, lib/cacher.ts, one per node): two users nodes over real NATS on one
 * PostgreSQL database, both warmed, then the profile changes through one of them. Neither may keep serving
 * the old profile.
 */

const NATS = process.env.TEST_NATS_URL ?? "nats://127.0.0.1:4222";
const namespace = `uc${crypto.randomBytes(4).toString("hex")}`;
let dbs: TestDatabases;
let gateway: TestSystem;
const usersNodes: TestSystem[] = [];

beforeAll(async () => {
	dbs = await createDatabases(["auth", "users"]);
	const env = { NAMESPACE: namespace, TRANSPORTER: NATS };
	for (let i = 0; i < 2; i++) usersNodes.push(await startSystem({ services: ["users"], dbs, env }));
	gateway = await startSystem({ services: ["api", "auth"], dbs, env: { ...env, READY_SERVICES: "auth,users" } });
	const seesBothUsersNodes = (b: TestSystem) => b.broker.registry.getServiceList({ onlyAvailable: true }).filter(s => s.name === "users").length === 2;
	await waitFor(() => seesBothUsersNodes(gateway) || undefined, "both users nodes");
	// An eviction reaches only the users nodes its sender knows. A node started a moment after another may
	// be known to it only at the next heartbeat (CACHE_TTL_S bounds what a node missed meanwhile).
	await waitFor(() => usersNodes.every(seesBothUsersNodes) || undefined, "each users node to see the other");
});

afterAll(async () => {
	await gateway?.stop();
	for (const n of usersNodes) await n.stop();
	await dbs?.drop();
	await deleteStreams(NATS, namespace).catch(() => undefined);
});

/** users.me as the gateway would call it, on one chosen node. */
function meOn(node: TestSystem, user: { id: string; roles: string[] }) {
	return gateway.broker.call<{ name: string; kyc_status: string; status: string }, object>("users.me", {}, { nodeID: node.broker.nodeID, meta: { user } });
}

it("a profile change is seen at once on the node that made it and soon on every other node", async () => {
	const { user, token } = await registerAndLogin(gateway.url);
	const caller = { id: user.id, roles: user.roles };
	// Both nodes hold the profile in their cache.
	for (const node of usersNodes) expect((await meOn(node, caller)).name).toBe("Test User");
	for (const node of usersNodes) expect((await meOn(node, caller)).name).toBe("Test User");

	const patched = await http(gateway.url, "PATCH", "/api/v1/users/me", { token, body: { name: "Renamed" } });
	expect(patched.status).toBe(200);
	// The gateway's next read goes through whichever node; after the eviction reaches both, no node answers the old name.
	await waitFor(async () => {
		const names = await Promise.all(usersNodes.map(n => meOn(n, caller).then(u => u.name)));
		return names.every(n => n === "Renamed") || undefined;
	}, "both nodes serving the new name", 5000);
	for (let i = 0; i < 10; i++) {
		const me = await http(gateway.url, "GET", "/api/v1/users/me", { token });
		expect(me.body.name).toBe("Renamed");
	}
});

it("changes made by other services' calls (suspension, KYC) evict the cached profile too", async () => {
	const { user, token } = await registerAndLogin(gateway.url);
	const caller = { id: user.id, roles: user.roles };
	for (const node of usersNodes) expect((await meOn(node, caller)).kyc_status).toBe("none");

	const kyc = await http(gateway.url, "POST", "/api/v1/users/me/kyc", {
		token,
		body: { full_name: "Test User", date_of_birth: "1990-01-01", country: "de", document_type: "passport", document_number: "C01X00T47" }
	});
	expect(kyc.status).toBe(202);
	await waitFor(async () => {
		const states = await Promise.all(usersNodes.map(n => meOn(n, caller).then(u => u.kyc_status)));
		return states.every(s => s === "pending") || undefined;
	}, "kyc_status pending on both nodes", 5000);

	await gateway.broker.call("users.update", { id: user.id, status: "suspended" });
	await waitFor(async () => {
		const states = await Promise.all(usersNodes.map(n => meOn(n, caller).then(u => u.status)));
		return states.every(s => s === "suspended") || undefined;
	}, "status suspended on both nodes", 5000);
});
