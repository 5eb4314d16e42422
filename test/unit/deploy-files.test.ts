import fs from "node:fs";
import path from "node:path";
import { parse, parseAllDocuments } from "yaml";
import { CONFIG_VARIABLES, DB_SERVICES } from "../../lib/config";

const root = path.resolve(__dirname, "../..");
const read = (f: string) => fs.readFileSync(path.join(root, f), "utf8");
const serviceExists = (name: string) => fs.existsSync(path.join(root, "services", `${name}.service.ts`));

describe("deployment files describe the system the code builds", () => {
	it(".env.example names every configuration variable", () => {
		const example = read(".env.example");
		for (const name of CONFIG_VARIABLES) expect(example).toMatch(new RegExp(`^#? ?${name}=`, "m"));
	});

	it("the README's configuration table names every configuration variable", () => {
		const readme = read("README.md");
		expect(CONFIG_VARIABLES.filter(name => !readme.includes(`\`${name}\``))).toEqual([]);
	});

	it("docker-compose.yml: every node runs services that exist, over NATS, with its own database", () => {
		const compose = parse(read("docker-compose.yml"), { merge: true });
		const nodes = Object.entries<any>(compose.services).filter(([, s]) => s.environment?.SERVICES);
		expect(nodes.length).toBeGreaterThanOrEqual(3);
		for (const [, svc] of nodes) {
			const env = svc.environment;
			expect(env.TRANSPORTER).toBe("nats://nats:4222");
			for (const name of String(env.SERVICES).split(",")) {
				expect(serviceExists(name)).toBe(true);
				if ((DB_SERVICES as readonly string[]).includes(name)) {
					expect(env[`${name.toUpperCase()}_DATABASE_URL`]).toMatch(new RegExp(`/${name}_db$`));
				}
			}
			expect(svc.env_file).toBe(".env");
		}
		const init = read("deploy/postgres/init-databases.sql");
		for (const name of DB_SERVICES) expect(init).toContain(`CREATE DATABASE ${name}_db;`);
		expect(compose.services.gateway.ports).toContain("8000:8000");
	});

	it("k8s: every Deployment runs existing services, non-root, with resources and probes on the node's health port", () => {
		const files = fs.readdirSync(path.join(root, "k8s")).filter(f => f.endsWith(".yaml"));
		const docs = files.flatMap(f => parseAllDocuments(read(`k8s/${f}`)).map(d => d.toJSON()));
		const kustomization = docs.find(d => d.kind === "Kustomization");
		expect(kustomization.resources.sort()).toEqual(files.filter(f => f !== "kustomization.yaml").sort());
		const deployments = docs.filter(d => d.kind === "Deployment");
		expect(deployments.map(d => d.metadata.name).sort()).toEqual(["admin", "auth", "gateway", "jobs", "notifications", "payments", "users"]);
		for (const d of deployments) {
			const spec = d.spec.template.spec;
			expect(spec.securityContext.runAsNonRoot).toBe(true);
			const c = spec.containers[0];
			const services = c.env.find((e: { name: string }) => e.name === "SERVICES").value;
			for (const name of services.split(",")) expect(serviceExists(name)).toBe(true);
			expect(c.resources.requests).toBeDefined();
			expect(c.resources.limits.memory).toBeDefined();
		}
		for (const d of deployments) {
			const c = d.spec.template.spec.containers[0];
			const health = c.ports.find((p: { name: string }) => p.name === "health");
			expect(health.containerPort).toBe(9000);
			expect(c.startupProbe.httpGet).toEqual({ path: "/live", port: "health" });
			expect(c.livenessProbe.httpGet).toEqual({ path: "/live", port: "health" });
			expect(c.readinessProbe.httpGet).toEqual({ path: "/ready", port: "health" });
		}
		const config = docs.find(d => d.kind === "ConfigMap");
		expect(config.data.HEALTH_PORT).toBe("9000");
	});

	it("Dockerfile: pinned Node 22, production install, non-root", () => {
		const docker = read("Dockerfile");
		expect(docker).toMatch(/FROM node:22\.\d+\.\d+-/);
		expect(docker).toContain("npm prune --omit=dev");
		expect(docker).toMatch(/^USER node$/m);
		expect(docker).toMatch(/^HEALTHCHECK .*\/live/m);
	});
});
