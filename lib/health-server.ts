import http from "node:http";
import type { Middleware, ServiceBroker } from "moleculer";
import { channelsConnected } from "./channels";
import { transporterUp } from "./outages";

export interface NodeReadiness {
	ready: boolean;
	checks: Record<string, "ok" | "down">;
}

/**
 * What `/ready` checks on this node: the transporter is connected (in a cluster), every local service
 * with a database answers and has its migrations applied (its `health` action), and the channel
 * adapter is connected.
 */
export async function nodeReadiness(broker: ServiceBroker): Promise<NodeReadiness> {
	const checks: Record<string, "ok" | "down"> = {};
	const transit = (broker as unknown as { transit?: { connected: boolean } }).transit;
	// transit.connected stays true while nats.js reconnects: transporterUp follows the connection itself.
	if (transit) checks.transporter = transit.connected && transporterUp(broker) ? "ok" : "down";
	checks.channels = channelsConnected(broker) ? "ok" : "down";
	const local = broker.services.filter(s => !s.name.startsWith("$") && (s.schema.actions as Record<string, unknown> | undefined)?.health);
	await Promise.all(
		local.map(async svc => {
			try {
				const r = await broker.call<{ db: boolean }, object>(`${svc.name}.health`, {}, { nodeID: broker.nodeID, timeout: 1000, retries: 0 });
				checks[svc.name] = r.db ? "ok" : "down";
			} catch {
				checks[svc.name] = "down";
			}
		})
	);
	return { ready: Object.values(checks).every(v => v === "ok"), checks };
}

/**
 * Every node's probe server on HEALTH_PORT (off when 0): `GET /live` answers while the event loop does;
 * `GET /ready` is 200 when `nodeReadiness` is, else 503 with the failing checks. It opens once the
 * broker has started; `/ready` answers 503 from the moment the node begins to stop (SIGTERM), so it is
 * taken out of rotation while it still serves for SHUTDOWN_DELAY_MS; the server closes last.
 */
export function healthServer(port: number): Middleware {
	let server: http.Server | undefined;
	return {
		name: "HealthServer",
		async started(broker: ServiceBroker) {
			if (!port) return;
			server = http.createServer((req, res) => {
				const send = (status: number, body: unknown) => {
					res.writeHead(status, { "content-type": "application/json", "cache-control": "no-store" });
					res.end(JSON.stringify(body));
				};
				if (req.method !== "GET") return send(405, { status: "method not allowed" });
				if (req.url === "/live") return send(200, { status: "ok", node: broker.nodeID });
				if (req.url === "/ready") {
					// `started` turns false the moment a stop begins, before the drain delay: out of rotation at once.
					if (!broker.started) return send(503, { status: "stopping", node: broker.nodeID, checks: {} });
					nodeReadiness(broker)
						.then(r => send(r.ready ? 200 : 503, { status: r.ready ? "ok" : "unavailable", node: broker.nodeID, checks: r.checks }))
						.catch(() => send(503, { status: "unavailable", checks: {} }));
					return;
				}
				send(404, { status: "not found" });
			});
			await new Promise<void>((resolve, reject) => {
				server!.once("error", reject);
				server!.listen(port, "0.0.0.0", () => resolve());
			});
			broker.logger.info(`Health server listening on :${port} (/live, /ready)`);
		},
		async stopped() {
			if (server) await new Promise<void>(resolve => server!.close(() => resolve()));
		}
	} as unknown as Middleware;
}
