import fs from "node:fs";
import path from "node:path";
import ts from "typescript";
import { parseAllDocuments } from "yaml";
import { ConfigMap, Namespace, Secret, Service } from "kubernetes-models/v1";
import { Deployment, StatefulSet } from "kubernetes-models/apps/v1";
import { HorizontalPodAutoscaler } from "kubernetes-models/autoscaling/v2";
import { PodDisruptionBudget } from "kubernetes-models/policy/v1";
import { Ingress } from "kubernetes-models/networking.k8s.io/v1";
import type { Container, PodSpec, Probe } from "kubernetes-types/core/v1";
import { CONFIG_VARIABLES, DB_SERVICES, loadConfig } from "../../lib/config";
import { SERVICE_NODE_OPTIONS } from "../../lib/node-flags";

/**
 * The Kubernetes manifests (k8s/), checked offline: every object against the Kubernetes OpenAPI schemas
 * bundled in kubernetes-models (types, required fields, formats), unknown fields against the
 * kubernetes-types definitions (the TypeScript compiler's excess-property check, like kubeconform
 * -strict), then what the schemas cannot say: probes, resources, non-root read-only pods, the drain
 * arithmetic, migrations, and that every reference (HPA, PDB, Service, Ingress, env) lands on something.
 */

const root = path.resolve(__dirname, "../..");
const dir = path.join(root, "k8s");

interface Manifest {
	file: string;
	doc: any;
}

const files = fs.readdirSync(dir).filter(f => /\.ya?ml$/.test(f)).sort();
const all: Manifest[] = files.flatMap(file =>
	parseAllDocuments(fs.readFileSync(path.join(dir, file), "utf8")).map(d => {
		if (d.errors.length) throw new Error(`${file}: ${d.errors[0].message}`);
		return { file, doc: d.toJSON() };
	})
);
const kustomization = all.find(m => m.doc.kind === "Kustomization")!.doc;
const manifests = all.filter(m => m.doc.kind !== "Kustomization");
const ofKind = (kind: string) => manifests.filter(m => m.doc.kind === kind).map(m => m.doc);
const label = (m: Manifest) => `${m.file}: ${m.doc.kind}/${m.doc.metadata?.name}`;

const configMap = ofKind("ConfigMap").find(c => c.metadata.name === "app-config");
const secret = ofKind("Secret").find(s => s.metadata.name === "app-secrets");
const workloads = [...ofKind("Deployment"), ...ofKind("StatefulSet")];
const pods = workloads.map(w => ({ name: `${w.kind}/${w.metadata.name}`, spec: w.spec.template.spec as PodSpec }));
/** The Moleculer nodes: the Deployments running the image the Dockerfile builds. */
const nodes = ofKind("Deployment").filter(d => d.spec.template.spec.containers[0].image === "moleculer-microservices");
const nodeContainer = (d: any): Container => d.spec.template.spec.containers[0];
const envValue = (c: Container, name: string) => c.env?.find(e => e.name === name)?.value;
const servicesOf = (d: any) => String(envValue(nodeContainer(d), "SERVICES")).split(",");
const serviceFiles = fs
	.readdirSync(path.join(root, "services"))
	.filter(f => f.endsWith(".service.ts"))
	.map(f => f.replace(".service.ts", ""))
	.sort();
const selects = (selector: Record<string, string>, labels: Record<string, string>) =>
	Object.entries(selector).every(([k, v]) => labels?.[k] === v);

/** The kubernetes-models class (bundled OpenAPI schema) for each apiVersion/kind used here. */
const MODELS: Record<string, { new (data: any): { validate(): void } }> = {
	"v1/Namespace": Namespace,
	"v1/ConfigMap": ConfigMap,
	"v1/Secret": Secret,
	"v1/Service": Service,
	"apps/v1/Deployment": Deployment,
	"apps/v1/StatefulSet": StatefulSet,
	"autoscaling/v2/HorizontalPodAutoscaler": HorizontalPodAutoscaler,
	"policy/v1/PodDisruptionBudget": PodDisruptionBudget,
	"networking.k8s.io/v1/Ingress": Ingress
};

/** The kubernetes-types type of each, for the unknown-field check. */
const TYPES: Record<string, string> = {
	"v1/Namespace": "core/v1\").Namespace",
	"v1/ConfigMap": "core/v1\").ConfigMap",
	"v1/Secret": "core/v1\").Secret",
	"v1/Service": "core/v1\").Service",
	"apps/v1/Deployment": "apps/v1\").Deployment",
	"apps/v1/StatefulSet": "apps/v1\").StatefulSet",
	"autoscaling/v2/HorizontalPodAutoscaler": "autoscaling/v2\").HorizontalPodAutoscaler",
	"policy/v1/PodDisruptionBudget": "policy/v1\").PodDisruptionBudget",
	"networking.k8s.io/v1/Ingress": "networking/v1\").Ingress"
};
const typeKey = (doc: any) => `${doc.apiVersion}/${doc.kind}`;

/**
 * Type-checks each manifest as an object literal of its kubernetes-types type: a misspelt or misplaced
 * field (`readinesProbe`, `spec.replcas`) is an excess property, which the schemas above let through.
 */
function unknownFieldErrors(list: Manifest[]): string[] {
	const file = path.join(dir, "__manifests__.ts");
	const source = list.map((m, i) => `export const m${i}: import("kubernetes-types/${TYPES[typeKey(m.doc)]} = ${JSON.stringify(m.doc)};`).join("\n");
	const options: ts.CompilerOptions = {
		strict: true,
		noEmit: true,
		target: ts.ScriptTarget.ES2022,
		module: ts.ModuleKind.NodeNext,
		moduleResolution: ts.ModuleResolutionKind.NodeNext,
		types: [],
		lib: ["lib.es2022.d.ts"],
		skipLibCheck: true
	};
	const host = ts.createCompilerHost(options);
	const { getSourceFile, fileExists, readFile } = host;
	host.getSourceFile = (name, lang, ...rest) => (name === file ? ts.createSourceFile(name, source, lang) : getSourceFile.call(host, name, lang, ...rest));
	host.fileExists = name => name === file || fileExists.call(host, name);
	host.readFile = name => (name === file ? source : readFile.call(host, name));
	const program = ts.createProgram([file], options, host);
	return ts.getPreEmitDiagnostics(program, program.getSourceFile(file)).map(d => {
		const line = d.file && d.start !== undefined ? d.file.getLineAndCharacterOfPosition(d.start).line : -1;
		return `${line >= 0 ? label(list[line]) : "?"}: ${ts.flattenDiagnosticMessageText(d.messageText, " ")}`;
	});
}

describe("k8s manifests", () => {
	it("kustomization.yaml lists every manifest file, and everything lands in its namespace", () => {
		expect([...kustomization.resources].sort()).toEqual(files.filter(f => f !== "kustomization.yaml"));
		const namespace = ofKind("Namespace");
		expect(namespace.map(n => n.metadata.name)).toEqual([kustomization.namespace]);
		for (const m of manifests) expect([undefined, kustomization.namespace]).toContain(m.doc.metadata.namespace);
		// The namespace enforces the restricted Pod Security Standard the pods are written to.
		expect(namespace[0].metadata.labels["pod-security.kubernetes.io/enforce"]).toBe("restricted");
	});

	it("every object is valid against the Kubernetes schemas (kubernetes-models, offline)", () => {
		const errors: string[] = [];
		for (const m of manifests) {
			const Model = MODELS[typeKey(m.doc)];
			if (!Model) {
				errors.push(`${label(m)}: no schema for ${typeKey(m.doc)}`);
				continue;
			}
			try {
				new Model(m.doc).validate();
			} catch (err) {
				errors.push(`${label(m)}: ${(err as Error).message}`);
			}
		}
		expect(errors).toEqual([]);
	});

	it("the schema check bites: a wrong type and a missing required field are reported", () => {
		const deployment = structuredClone(nodes[0]);
		deployment.spec.template.spec.containers[0].ports[0].containerPort = "nine thousand";
		expect(() => new Deployment(deployment).validate()).toThrow(/containerPort must be integer/);
		const hpa = structuredClone(ofKind("HorizontalPodAutoscaler")[0]);
		delete hpa.spec.maxReplicas;
		expect(() => new HorizontalPodAutoscaler(hpa).validate()).toThrow(/maxReplicas/);
	});

	it("no object has a field Kubernetes does not know (kubernetes-types, excess-property check)", () => {
		expect(unknownFieldErrors(manifests)).toEqual([]);
		// and the check bites:
		const typo = structuredClone(manifests.find(m => m.doc.kind === "Deployment")!);
		typo.doc.spec.template.spec.containers[0].readinesProbe = typo.doc.spec.template.spec.containers[0].readinessProbe;
		expect(unknownFieldErrors([typo]).join("\n")).toMatch(/readinesProbe/);
	}, 60000);

	it("one Deployment per service, each running services that exist", () => {
		expect(nodes.flatMap(servicesOf).sort()).toEqual(serviceFiles);
		for (const d of nodes) expect(d.spec.template.spec.containers).toHaveLength(1);
	});

	it("every pod: non-root, read-only root filesystem, no privilege escalation, no capabilities, requests and limits", () => {
		for (const { name, spec } of pods) {
			const ctx = `${name}`;
			expect([ctx, spec.securityContext?.runAsNonRoot]).toEqual([ctx, true]);
			expect([ctx, spec.securityContext?.runAsUser]).not.toEqual([ctx, 0]);
			expect([ctx, spec.securityContext?.seccompProfile?.type]).toEqual([ctx, "RuntimeDefault"]);
			expect([ctx, spec.automountServiceAccountToken]).toEqual([ctx, false]);
			for (const c of [...(spec.initContainers ?? []), ...spec.containers]) {
				const at = `${name} ${c.name}`;
				expect([at, c.securityContext?.allowPrivilegeEscalation, c.securityContext?.readOnlyRootFilesystem, c.securityContext?.capabilities?.drop]).toEqual([
					at,
					false,
					true,
					["ALL"]
				]);
				expect([at, Object.keys(c.resources?.requests ?? {}).sort(), Object.keys(c.resources?.limits ?? {}).sort()]).toEqual([at, ["cpu", "memory"], ["cpu", "memory"]]);
			}
			for (const c of spec.containers) {
				const probes = [c.startupProbe, c.livenessProbe, c.readinessProbe].map(p => (p ? "probe" : "none"));
				expect([`${name} ${c.name}`, ...probes]).toEqual([`${name} ${c.name}`, "probe", "probe", "probe"]);
			}
		}
		// The nodes run as the image's `node` user (uid 1000).
		for (const d of nodes) expect(d.spec.template.spec.securityContext.runAsUser).toBe(1000);
	});

	it("nodes probe HEALTH_PORT: startup and liveness on /live, readiness on /ready", () => {
		expect(configMap.data.HEALTH_PORT).toBe("9000");
		const probe = (p: Probe | undefined) => p?.httpGet && { path: p.httpGet.path, port: p.httpGet.port };
		for (const d of nodes) {
			const c = nodeContainer(d);
			const health = c.ports!.find(p => p.name === "health");
			expect([d.metadata.name, health?.containerPort]).toEqual([d.metadata.name, Number(configMap.data.HEALTH_PORT)]);
			expect([probe(c.startupProbe), probe(c.livenessProbe), probe(c.readinessProbe)]).toEqual([
				{ path: "/live", port: "health" },
				{ path: "/live", port: "health" },
				{ path: "/ready", port: "health" }
			]);
		}
	});

	it("the grace period covers the preStop sleep and the node's stop (SHUTDOWN_DELAY_MS + SHUTDOWN_TIMEOUT_MS) with room to spare", () => {
		const { SHUTDOWN_DELAY_MS, SHUTDOWN_TIMEOUT_MS } = loadConfig(configMap.data);
		const shutdownS = (SHUTDOWN_DELAY_MS + SHUTDOWN_TIMEOUT_MS) / 1000;
		expect(SHUTDOWN_TIMEOUT_MS).toBeGreaterThan(0);
		const sleepOf = (c: Container) => {
			const cmd = c.lifecycle?.preStop?.exec?.command ?? [];
			const m = /sleep (\d+)/.exec(cmd.join(" "));
			return m ? Number(m[1]) : NaN;
		};
		for (const d of nodes) {
			const grace = d.spec.template.spec.terminationGracePeriodSeconds;
			const preStop = sleepOf(nodeContainer(d));
			expect(preStop).toBeGreaterThan(0);
			// 10 s more for the channel messages in hand and the disconnects.
			expect([d.metadata.name, grace >= preStop + shutdownS + 10]).toEqual([d.metadata.name, true]);
		}
		const nats = ofKind("StatefulSet").find(s => s.metadata.name === "nats");
		expect(nats.spec.template.spec.terminationGracePeriodSeconds).toBeGreaterThan(sleepOf(nats.spec.template.spec.containers[0]));
	});

	it("the root filesystem is read-only: /tmp is an emptyDir everywhere, and DATA_DIR where the node writes there", () => {
		const mountsOf = (d: any) => Object.fromEntries((nodeContainer(d).volumeMounts ?? []).map(m => [m.mountPath, m.name]));
		const volumes = (d: any) => Object.fromEntries((d.spec.template.spec.volumes ?? []).map((v: any) => [v.name, v]));
		for (const d of nodes) {
			const mounts = mountsOf(d);
			expect([d.metadata.name, volumes(d)[mounts["/tmp"]]?.emptyDir]).toEqual([d.metadata.name, expect.any(Object)]);
		}
		// notifications writes mail and SMS under DATA_DIR/outbox when SMTP_URL / TWILIO_* are unset.
		const notifications = nodes.find(d => servicesOf(d).includes("notifications"));
		expect(volumes(notifications)[mountsOf(notifications)[configMap.data.DATA_DIR]]?.emptyDir).toBeDefined();
	});

	it("migrations run before each node with a database: an init container of the same image runs scripts/migrate", () => {
		expect(fs.existsSync(path.join(root, "scripts/migrate.ts"))).toBe(true);
		for (const d of nodes) {
			const withDb = servicesOf(d).filter(s => (DB_SERVICES as readonly string[]).includes(s));
			const init = d.spec.template.spec.initContainers ?? [];
			if (!withDb.length) {
				expect([d.metadata.name, init]).toEqual([d.metadata.name, []]);
				continue;
			}
			expect(init).toHaveLength(1);
			expect(init[0].image).toBe(nodeContainer(d).image);
			expect(init[0].command).toEqual(["node", "dist/scripts/migrate.js"]);
			expect(envValue(init[0], "SERVICES")).toBe(envValue(nodeContainer(d), "SERVICES"));
			for (const s of withDb) expect(init[0].env.map((e: { name: string }) => e.name)).toContain(`${s.toUpperCase()}_DATABASE_URL`);
		}
	});

	it("every node's environment is real configuration that the node accepts, from app-config and app-secrets", () => {
		const allowed = new Set([...CONFIG_VARIABLES, "SERVICES", "NODE_OPTIONS", ...DB_SERVICES.map(s => `${s.toUpperCase()}_DATABASE_URL`)]);
		expect(Object.keys(configMap.data).filter(k => !allowed.has(k))).toEqual([]);
		// One service per pod: the heap the code's own cluster and benchmark give such a node.
		expect(configMap.data.NODE_OPTIONS).toBe(SERVICE_NODE_OPTIONS);
		expect(Object.keys(secret.stringData).filter(k => !allowed.has(k))).toEqual([]);
		for (const d of nodes) {
			for (const c of [nodeContainer(d), ...(d.spec.template.spec.initContainers ?? [])] as Container[]) {
				const env: Record<string, string> = {};
				for (const from of c.envFrom ?? []) {
					if (from.configMapRef) {
						expect(from.configMapRef.name).toBe("app-config");
						Object.assign(env, configMap.data);
					} else expect(from.secretRef?.optional).toBe(true); // auth-oauth: OAUTH_* when OAuth login is wanted
				}
				for (const e of c.env ?? []) {
					expect([d.metadata.name, e.name, allowed.has(e.name)]).toEqual([d.metadata.name, e.name, true]);
					const ref = e.valueFrom?.secretKeyRef;
					if (ref) {
						expect(ref.name).toBe("app-secrets");
						// A key the template does not carry must be optional, or the pod would never start.
						if (!(ref.key in secret.stringData)) expect([e.name, ref.optional]).toEqual([e.name, true]);
						else env[e.name] = secret.stringData[ref.key];
					} else env[e.name] = e.value!;
				}
				expect(() => loadConfig(env)).not.toThrow();
				expect(env.TRANSPORTER).toMatch(/^nats:\/\//);
				for (const s of servicesOf(d).filter(s => (DB_SERVICES as readonly string[]).includes(s))) {
					expect(env[`${s.toUpperCase()}_DATABASE_URL`]).toMatch(new RegExp(`^postgres://.+/${s}_db$`));
				}
				// Least privilege: a node gets the database URL of its own services only.
				const urls = Object.keys(env).filter(k => k.endsWith("_DATABASE_URL"));
				expect(urls.sort()).toEqual(servicesOf(d).filter(s => (DB_SERVICES as readonly string[]).includes(s)).map(s => `${s.toUpperCase()}_DATABASE_URL`).sort());
			}
		}
	});

	it("TRANSPORTER and REDIS_URL point at Services of these manifests", () => {
		const services = ofKind("Service");
		for (const url of [configMap.data.TRANSPORTER, configMap.data.REDIS_URL]) {
			const u = new URL(url);
			const svc = services.find(s => s.metadata.name === u.hostname);
			expect([url, svc?.spec.ports.map((p: { port: number }) => p.port)]).toEqual([url, expect.arrayContaining([Number(u.port)])]);
		}
	});

	it("the Secret is a template: placeholders only, never applied over the real one", () => {
		expect(secret.data).toBeUndefined();
		for (const [k, v] of Object.entries<string>(secret.stringData)) expect([k, v]).toEqual([k, expect.stringContaining("REPLACE-ME")]);
		expect(secret.metadata.annotations["config.kubernetes.io/local-config"]).toBe("true");
		expect(Object.keys(secret.stringData).sort()).toEqual(DB_SERVICES.map(s => `${s.toUpperCase()}_DATABASE_URL`).sort());
	});

	it("images: the nodes' image is pinned by the kustomization, every other one by a version tag", () => {
		const ours = kustomization.images.find((i: { name: string }) => i.name === "moleculer-microservices");
		expect(ours.newTag).toMatch(/^\d+\.\d+\.\d+$/);
		for (const { spec } of pods) {
			for (const c of [...(spec.initContainers ?? []), ...spec.containers]) {
				if (c.image === "moleculer-microservices") continue;
				expect(c.image).toMatch(/^[a-z0-9./-]+:\d+\.\d+\.\d+(-[a-z0-9.]+)?$/);
			}
		}
	});

	it("HPAs scale the gateway, users and payments Deployments, which leave their replica count to them", () => {
		const hpas = ofKind("HorizontalPodAutoscaler");
		expect(hpas.map(h => h.spec.scaleTargetRef.name).sort()).toEqual(["gateway", "payments", "users"]);
		for (const h of hpas) {
			expect(h.spec.scaleTargetRef.kind).toBe("Deployment");
			const target = ofKind("Deployment").find(d => d.metadata.name === h.spec.scaleTargetRef.name);
			expect(target).toBeDefined();
			expect(target.spec.replicas).toBeUndefined();
			expect(h.spec.minReplicas).toBeGreaterThanOrEqual(2);
			expect(h.spec.maxReplicas).toBeGreaterThan(h.spec.minReplicas);
			// CPU utilization is measured against requests: every container of the target requests CPU.
			for (const c of target.spec.template.spec.containers) expect(c.resources.requests.cpu).toBeDefined();
		}
	});

	it("PodDisruptionBudgets: each selects exactly one workload of several replicas, and every such workload has one", () => {
		const pdbs = ofKind("PodDisruptionBudget");
		const hpaTargets = new Set(ofKind("HorizontalPodAutoscaler").map(h => h.spec.scaleTargetRef.name));
		const replicated = workloads.filter(w => hpaTargets.has(w.metadata.name) || (w.spec.replicas ?? 1) > 1);
		for (const pdb of pdbs) {
			const matched = workloads.filter(w => selects(pdb.spec.selector.matchLabels, w.spec.template.metadata.labels));
			expect([pdb.metadata.name, matched.length]).toEqual([pdb.metadata.name, 1]);
			expect(replicated).toContain(matched[0]);
			expect(pdb.spec.maxUnavailable ?? 0).toBeGreaterThan(0); // drains can proceed
		}
		for (const w of replicated) expect([w.metadata.name, pdbs.some(p => selects(p.spec.selector.matchLabels, w.spec.template.metadata.labels))]).toEqual([w.metadata.name, true]);
	});

	it("workload selectors match their pod labels", () => {
		for (const w of workloads) expect(selects(w.spec.selector.matchLabels, w.spec.template.metadata.labels)).toBe(true);
	});

	it("Services select pods that have the ports they target; the Ingress points at a Service port", () => {
		for (const svc of ofKind("Service")) {
			const matched = workloads.filter(w => selects(svc.spec.selector, w.spec.template.metadata.labels));
			expect([svc.metadata.name, matched.length]).toEqual([svc.metadata.name, 1]);
			const ports = matched[0].spec.template.spec.containers.flatMap((c: Container) => c.ports ?? []);
			for (const p of svc.spec.ports) {
				const target = p.targetPort ?? p.port;
				expect([svc.metadata.name, target, ports.some((cp: any) => cp.name === target || cp.containerPort === target)]).toEqual([svc.metadata.name, target, true]);
			}
		}
		const ingresses = ofKind("Ingress");
		expect(ingresses).toHaveLength(1);
		for (const rule of ingresses[0].spec.rules) {
			for (const p of rule.http.paths) {
				const svc = ofKind("Service").find(s => s.metadata.name === p.backend.service.name);
				expect(svc).toBeDefined();
				const port = p.backend.service.port;
				expect(svc.spec.ports.some((sp: any) => sp.name === port.name || sp.port === port.number)).toBe(true);
			}
		}
		// The gateway Service reaches the gateway's HTTP port, PORT in the node's configuration (8000).
		const gateway = nodes.find(d => servicesOf(d).includes("api"));
		expect(nodeContainer(gateway).ports!.find(p => p.name === "http")?.containerPort).toBe(loadConfig(configMap.data).PORT);
	});

	it("NATS: a StatefulSet with JetStream on its PersistentVolumeClaims, routed over its headless Service", () => {
		const sts = ofKind("StatefulSet").find(s => s.metadata.name === "nats");
		const headless = ofKind("Service").find(s => s.metadata.name === sts.spec.serviceName);
		expect(headless.spec.clusterIP).toBe("None");
		expect(headless.spec.publishNotReadyAddresses).toBe(true);
		const conf: string = ofKind("ConfigMap").find(c => c.metadata.name === sts.spec.template.spec.volumes.find((v: any) => v.configMap).configMap.name).data["nats.conf"];
		const c = sts.spec.template.spec.containers[0];
		const mounts = Object.fromEntries(c.volumeMounts.map((m: any) => [m.name, m.mountPath]));
		// JetStream's store is on the claim template's volume.
		expect(sts.spec.volumeClaimTemplates.map((v: any) => v.metadata.name)).toEqual(["data"]);
		expect(conf).toMatch(new RegExp(`jetstream \\{[^}]*store_dir: ${mounts.data}\\n`));
		expect(c.command).toEqual(["nats-server", "--config", `${mounts.config}/nats.conf`]);
		// Every replica is a route, by its stable name under the headless Service.
		const routes = [...conf.matchAll(/nats:\/\/([a-z0-9.-]+):6222/g)].map(m => m[1]);
		expect(routes).toEqual(Array.from({ length: sts.spec.replicas }, (_, i) => `${sts.metadata.name}-${i}.${headless.metadata.name}`));
		expect(conf).toContain("server_name: $SERVER_NAME");
		expect(c.env.find((e: any) => e.name === "SERVER_NAME").valueFrom.fieldRef.fieldPath).toBe("metadata.name");
		// Probes on the monitoring port the configuration opens; the lame-duck signal finds the pid file.
		expect(c.ports.find((p: any) => p.name === "monitor").containerPort).toBe(Number(/\nhttp: 0\.0\.0\.0:(\d+)/.exec(conf)![1]));
		expect(c.livenessProbe.httpGet).toEqual({ path: "/healthz?js-enabled-only=true", port: "monitor" });
		const pid = /pid_file: (\S+)/.exec(conf)![1];
		expect(c.lifecycle.preStop.exec.command.join(" ")).toContain(`--signal ldm=${pid}`);
		expect(mounts.run).toBe(path.dirname(pid));
	});
});
