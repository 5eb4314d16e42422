import crypto from "node:crypto";
import { TracerExporters, type BrokerOptions } from "moleculer";
import type { Config } from "./config";

/**
 * Zipkin v2 (also what Jaeger and the OpenTelemetry collector accept on their Zipkin receivers).
 * Moleculer's trace id is the request id; Zipkin takes only hex, so a request id that is not a
 * UUID or hex is hashed to one. The request id itself travels as the span's `requestID` tag.
 */
class ZipkinExporter extends (TracerExporters as unknown as { Zipkin: new (opts: object) => object }).Zipkin {
	convertID(id: string | null): string | null {
		if (!id) return null;
		const hex = id.replace(/-/g, "").toLowerCase();
		if (/^([0-9a-f]{16}|[0-9a-f]{32})$/.test(hex)) return hex;
		return crypto.createHash("sha256").update(id).digest("hex").slice(0, 32);
	}
}

/** Tracing is off unless TRACING_EXPORTER is set. Params, meta and responses never go into spans: they hold passwords and tokens. */
export function tracingOptions(cfg: Config): BrokerOptions["tracing"] {
	if (cfg.TRACING_EXPORTER === "none") return { enabled: false };
	const exporter =
		cfg.TRACING_EXPORTER === "zipkin"
			? new ZipkinExporter({
					baseURL: cfg.TRACING_ZIPKIN_URL,
					interval: cfg.TRACING_FLUSH_MS / 1000,
					defaultTags: { namespace: cfg.NAMESPACE || "default" }
				})
			: { type: "Console", options: { logger: console.log } };
	return {
		enabled: true,
		sampling: { rate: cfg.TRACING_SAMPLE_RATE },
		events: true,
		tags: { action: { params: false }, event: { params: false } },
		exporter: [exporter as never]
	};
}
