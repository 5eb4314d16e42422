import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseEnv } from "node:util";
import { DCLinter } from "dclint";
import { DockerfileParser, type Instruction } from "dockerfile-ast";
import { hasNodeFlags, NODE_FLAGS, nodeOptionsFor, SERVICE_NODE_OPTIONS } from "../../lib/node-flags";
import { parse } from "yaml";
import { CONFIG_VARIABLES, DB_SERVICES, loadConfig } from "../../lib/config";

const root = path.resolve(__dirname, "../..");
const read = (f: string) => fs.readFileSync(path.join(root, f), "utf8");
const serviceFiles = fs
	.readdirSync(path.join(root, "services"))
	.filter(f => f.endsWith(".service.ts"))
	.map(f => f.replace(".service.ts", ""))
	.sort();
const DB_URLS = DB_SERVICES.map(s => `${s.toUpperCase()}_DATABASE_URL`);
const hasDb = (name: string) => (DB_SERVICES as readonly string[]).includes(name);

/** docker-compose.yml, parsed once for every describe below; its nodes are the services with SERVICES set. */
const compose = parse(read("docker-compose.yml"), { merge: true });
const servicesOf = (s: any) => String(s.environment.SERVICES).split(",");
const composeNodes = Object.entries<any>(compose.services).filter(([, s]) => s.environment?.SERVICES);
const composeGateways = composeNodes.filter(([, s]) => servicesOf(s).includes("api"));

/** Compose's interpolation (${VAR}, ${VAR:?message}, ${VAR:-default}) against the variables of .env. */
function interpolate(value: string, vars: Record<string, string>): string {
	return value.replace(/\$\{([A-Z0-9_]+)(?::?([-?])([^}]*))?\}/g, (_, name: string, op?: string, arg?: string) => {
		if (vars[name] !== undefined && vars[name] !== "") return vars[name];
		if (op === "-") return arg ?? "";
		throw new Error(`\${${name}} is not set in .env.example`);
	});
}

describe("deployment files describe the system the code builds", () => {
	it(".env.example names every configuration variable", () => {
		const example = read(".env.example");
		for (const name of CONFIG_VARIABLES) expect(example).toMatch(new RegExp(`^#? ?${name}=`, "m"));
	});

	it("the README's configuration table names every configuration variable", () => {
		const readme = read("README.md");
		expect(CONFIG_VARIABLES.filter(name => !readme.includes(`\`${name}\``))).toEqual([]);
	});
});

describe("Dockerfile", () => {
	const dockerfile = DockerfileParser.parse(read("Dockerfile"));
	/** The instructions of each stage, in order (a FROM starts one). */
	const stages: Instruction[][] = [];
	for (const i of dockerfile.getInstructions()) {
		if (i.getKeyword() === "FROM") stages.push([]);
		stages[stages.length - 1].push(i);
	}
	const runtime = stages[stages.length - 1];
	const args = (i: Instruction) => i.getArgumentsContent() ?? "";
	const inRuntime = (keyword: string) => runtime.filter(i => i.getKeyword() === keyword);

	it("is multi-stage, every stage FROM the same Node 22 slim image pinned to a patch version", () => {
		const froms = dockerfile.getFROMs();
		expect(froms.length).toBeGreaterThanOrEqual(2);
		for (const from of froms) {
			expect(from.getImageName()).toBe("node");
			expect(from.getImageTag()).toMatch(/^22\.\d+\.\d+-[a-z]+-slim$|^22\.\d+\.\d+-alpine[\d.]*$/);
		}
		expect(new Set(froms.map(f => f.getImage())).size).toBe(1);
		expect(froms.map(f => f.getBuildStage())).toEqual(expect.arrayContaining(["build", "runtime"]));
	});

	it("the runtime stage installs production dependencies with npm ci --omit=dev, and takes none from the build stage", () => {
		expect(inRuntime("RUN").some(i => /\bnpm ci\b[^;&|]*--omit=dev/.test(args(i)))).toBe(true);
		expect(inRuntime("COPY").filter(i => /node_modules/.test(args(i)))).toEqual([]);
		// The lock file is what npm ci installs from.
		expect(inRuntime("COPY").some(i => /package-lock\.json/.test(args(i)))).toBe(true);
		// The compiler is gone from the layer that needed it.
		const install = inRuntime("RUN").find(i => /npm ci/.test(args(i)))!;
		if (/apt-get install/.test(args(install))) expect(args(install)).toMatch(/apt-get purge/);
	});

	it("runs as a non-root user, with a HEALTHCHECK on /live of HEALTH_PORT", () => {
		const users = inRuntime("USER");
		expect(users.length).toBeGreaterThan(0);
		expect(args(users[users.length - 1])).toBe("node");
		const checks = inRuntime("HEALTHCHECK");
		expect(checks).toHaveLength(1);
		expect(args(checks[0])).toMatch(/HEALTH_PORT.*\/live/);
		const env = Object.fromEntries(dockerfile.getENVs().flatMap(e => e.getProperties().map(p => [p.getName(), p.getValue()])));
		expect(Number(env.HEALTH_PORT)).toBeGreaterThan(0);
		expect(inRuntime("EXPOSE").map(args).join(" ")).toContain(env.HEALTH_PORT);
	});

	it("bakes in no secret: no ENV or ARG with a secret-looking name, no .env in the build context", () => {
		const names = [...dockerfile.getENVs().flatMap(e => e.getProperties().map(p => p.getName())), ...dockerfile.getARGs().flatMap(a => a.getProperties().map(p => p.getName()))];
		expect(names.filter(n => /SECRET|PASSWORD|TOKEN|KEY|DATABASE_URL|SMTP_URL|CREDENTIAL/i.test(n))).toEqual([]);
		const ignored = read(".dockerignore").split("\n").map(l => l.trim());
		expect(ignored).toEqual(expect.arrayContaining([".env", "node_modules", "dist"]));
		expect(read(".gitignore").split("\n").map(l => l.trim())).toContain(".env");
	});

	it("copies sources that exist and starts the runner directly (node is PID 1 and gets SIGTERM)", () => {
		for (const i of dockerfile.getCOPYs()) {
			if (i.getFlags().some(f => f.getName() === "from")) continue;
			const parts = i.getArguments().map(a => a.getValue()).filter(v => !v.startsWith("--"));
			for (const src of parts.slice(0, -1)) expect([src, fs.existsSync(path.join(root, src))]).toEqual([src, true]);
		}
		const cmd = inRuntime("CMD");
		expect(cmd).toHaveLength(1);
		expect(JSON.parse(args(cmd[0]))).toEqual(["node", ...NODE_FLAGS, "node_modules/moleculer/bin/moleculer-runner.js", "--config", "dist/moleculer.config.js", "dist/services"]);
	});
});

describe("Node flags (lib/node-flags.ts)", () => {
	it("every start command runs the runner with them", () => {
		const scripts = JSON.parse(read("package.json")).scripts as Record<string, string>;
		for (const name of ["start", "repl"]) expect(scripts[name]).toContain(`node ${NODE_FLAGS.join(" ")} node_modules/moleculer/bin/moleculer-runner.js`);
		expect(scripts.dev).toContain(`tsx ${NODE_FLAGS.join(" ")} node_modules/moleculer/bin/moleculer-runner.js`);
	});

	it("are seen on the command line or in NODE_OPTIONS, and not needed from Node 24", () => {
		expect(hasNodeFlags([], "", 22)).toBe(false);
		expect(hasNodeFlags(NODE_FLAGS, "", 22)).toBe(true);
		expect(hasNodeFlags([], `--max-old-space-size=256 ${NODE_FLAGS.join(" ")}`, 22)).toBe(true);
		expect(hasNodeFlags([], "", 24)).toBe(true);
	});

	it("give a node that runs a subset of services its sized heap, and leave the embedded default and explicit NODE_OPTIONS alone", () => {
		expect(nodeOptionsFor({ SERVICES: "api" })).toBe(SERVICE_NODE_OPTIONS);
		expect(nodeOptionsFor({})).toBeUndefined();
		expect(nodeOptionsFor({ SERVICES: "api", NODE_OPTIONS: "--max-old-space-size=512" })).toBe("--max-old-space-size=512");
	});
});

describe("docker-compose.yml", () => {
	const services = compose.services as Record<string, any>;
	const vars = parseEnv(read(".env.example")) as Record<string, string>;
	const nodes = composeNodes;
	const gateways = composeGateways;
	const proxy = services.proxy;

	it("is valid against the Compose specification's schema, and lint-clean (dclint, offline)", () => {
		const off = [
			"no-build-and-image", // the nodes build the one image and name it, so every node shares it
			"no-quotes-in-volumes",
			"no-unbound-port-interfaces",
			"service-container-name-regex",
			"service-dependencies-alphabetical-order",
			"service-keys-order",
			"service-ports-alphabetical-order",
			"services-alphabetical-order",
			"top-level-properties-order"
		];
		const on = ["no-duplicate-container-names", "no-duplicate-exported-ports", "no-version-field", "require-project-name-field", "service-image-require-explicit-tag"];
		const linter = new DCLinter({
			rules: { ...Object.fromEntries([...off.map(r => [r, 0]), ...on.map(r => [r, 2])]), "require-quotes-in-ports": [2, { quoteType: "double" }] },
			quiet: true,
			debug: false,
			exclude: []
		} as ConstructorParameters<typeof DCLinter>[0]);
		const [result] = linter.lintFiles([path.join(root, "docker-compose.yml")], false);
		expect(result.messages.map((m: { rule: string; message: string }) => `${m.rule}: ${m.message}`)).toEqual([]);
	});

	it("the schema check bites: an unknown key is reported", () => {
		const bad = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "compose-")), "docker-compose.yml");
		fs.writeFileSync(bad, read("docker-compose.yml").replace("    healthcheck:\n      test: [\"CMD\", \"redis-cli\"", "    helthcheck:\n      test: [\"CMD\", \"redis-cli\""));
		try {
			const [result] = new DCLinter({ rules: {}, quiet: true, debug: false, exclude: [] } as ConstructorParameters<typeof DCLinter>[0]).lintFiles([bad], false);
			expect(result.messages.map((m: { rule: string }) => m.rule)).toContain("invalid-schema");
		} finally {
			fs.rmSync(path.dirname(bad), { recursive: true, force: true });
		}
	});

	it("every container has a healthcheck and an image or a build; third-party images are pinned", () => {
		for (const [name, s] of Object.entries(services)) {
			expect([name, Array.isArray(s.healthcheck?.test) && s.healthcheck.test.length > 1 && !s.healthcheck.disable]).toEqual([name, true]);
			expect([name, Boolean(s.image || s.build)]).toEqual([name, true]);
			if (!s.build) expect([name, s.image]).toEqual([name, expect.stringMatching(/^[a-z0-9./-]+:\d+\.\d+(\.\d+)?(-[a-z0-9.]+)?$/)]);
		}
		expect(services.postgres.image).toMatch(/^postgres:16\./);
	});

	it("every depends_on waits for a healthy container that exists", () => {
		for (const [name, s] of Object.entries(services)) {
			for (const [dep, cond] of Object.entries<any>(s.depends_on ?? {})) {
				expect([name, dep, cond?.condition]).toEqual([name, dep, "service_healthy"]);
				expect(services[dep]?.healthcheck).toBeDefined();
			}
			expect(Array.isArray(s.depends_on)).toBe(false);
		}
		// What each node needs before it starts: NATS; PostgreSQL for a database; Redis for a gateway.
		for (const [name, s] of nodes) {
			const deps = Object.keys(s.depends_on ?? {});
			expect([name, deps.includes("nats")]).toEqual([name, true]);
			if (servicesOf(s).some(hasDb)) expect([name, deps.includes("postgres")]).toEqual([name, true]);
			if (servicesOf(s).includes("api")) expect([name, deps.includes("redis")]).toEqual([name, true]);
		}
		expect(Object.keys(proxy.depends_on).sort()).toEqual(gateways.map(([n]) => n).sort());
	});

	it("one container per service from the one image, two of them gateways", () => {
		expect(nodes.flatMap(([, s]) => servicesOf(s)).sort()).toEqual([...serviceFiles, "api"].sort());
		expect(gateways).toHaveLength(2);
		const images = new Set(nodes.map(([, s]) => `${s.image} ${s.build}`));
		expect(images.size).toBe(1);
		expect(nodes[0][1].build).toBe(".");
	});

	it("every node's environment is real configuration, complete enough for the node to start in the cluster", () => {
		const allowed = new Set([...CONFIG_VARIABLES, "SERVICES", "NODE_OPTIONS", ...DB_URLS]);
		const created = [...read("deploy/postgres/init-databases.sql").matchAll(/CREATE DATABASE (\w+);/g)].map(m => m[1]);
		expect(created.sort()).toEqual(DB_SERVICES.map(s => `${s}_db`).sort());
		for (const [name, s] of nodes) {
			expect(s.env_file).toBe(".env");
			expect([name, Object.keys(s.environment).filter(k => !allowed.has(k))]).toEqual([name, []]);
			// .env.example stands in for .env; the node's own environment wins, as in compose.
			const env: Record<string, string> = { ...vars };
			for (const [k, v] of Object.entries<string>(s.environment)) env[k] = interpolate(String(v), vars);
			let loaded: ReturnType<typeof loadConfig> | undefined;
			expect(() => (loaded = loadConfig(env))).not.toThrow();
			expect(env.TRANSPORTER).toBe("nats://nats:4222");
			expect(Number(env.HEALTH_PORT)).toBeGreaterThan(0);
			const own = servicesOf(s).filter(hasDb);
			for (const svc of own) {
				const url = new URL(env[`${svc.toUpperCase()}_DATABASE_URL`]);
				expect([url.hostname, url.port, url.password]).toEqual(["postgres", "5432", vars.POSTGRES_PASSWORD]);
				expect(created).toContain(url.pathname.slice(1));
				expect(url.pathname).toBe(`/${svc}_db`);
			}
			// Least privilege: no node is handed another service's database.
			expect(Object.keys(s.environment).filter(k => k.endsWith("_DATABASE_URL")).sort()).toEqual(own.map(v => `${v.toUpperCase()}_DATABASE_URL`).sort());
			// The readiness check hits the node's health server, and the grace period covers its drain.
			expect(s.healthcheck.test.join(" ")).toMatch(/HEALTH_PORT.*\/ready/);
			const { SHUTDOWN_DELAY_MS, SHUTDOWN_TIMEOUT_MS } = loaded!;
			expect(parseInt(s.stop_grace_period, 10) * 1000).toBeGreaterThan(SHUTDOWN_DELAY_MS + SHUTDOWN_TIMEOUT_MS + 5000);
			expect(s.ports).toBeUndefined();
			// One service per container: the heap the code's own cluster and benchmark give such a node.
			expect([name, s.environment.NODE_OPTIONS]).toEqual([name, SERVICE_NODE_OPTIONS]);
		}
	});

	it(".env.example sets only real configuration and the variables compose itself reads", () => {
		const composeVars = [...read("docker-compose.yml").matchAll(/\$\{([A-Z0-9_]+)/g)].map(m => m[1]);
		expect([...new Set(composeVars)]).toEqual(["POSTGRES_PASSWORD"]);
		const allowed = new Set([...CONFIG_VARIABLES, ...DB_URLS, ...composeVars]);
		expect(Object.keys(vars).filter(k => !allowed.has(k))).toEqual([]);
		expect(() => loadConfig(vars)).not.toThrow();
	});

	it("the gateways share Redis and believe X-Forwarded-For from the proxy only, at its fixed address", () => {
		const subnet = compose.networks.default.ipam.config[0].subnet as string;
		const address = proxy.networks.default.ipv4_address as string;
		expect(address.split(".").slice(0, 3).join(".")).toBe(subnet.split(".").slice(0, 3).join("."));
		for (const [, s] of gateways) {
			expect(s.environment.TRUSTED_PROXIES).toBe(address);
			expect(s.environment.REDIS_URL).toBe("redis://redis:6379");
		}
		// Dynamic addresses come from a range that leaves the proxy's free.
		const range = compose.networks.default.ipam.config[0].ip_range as string;
		expect(Number(address.split(".")[3])).toBeLessThan(Number(range.split(".")[3].split("/")[0]));
	});

	it("PostgreSQL creates the databases, NATS keeps JetStream on a volume and reports on /healthz", () => {
		expect(services.postgres.volumes).toContain("./deploy/postgres/init-databases.sql:/docker-entrypoint-initdb.d/init-databases.sql:ro");
		const cmd: string[] = services.nats.command;
		expect(cmd).toContain("-js");
		const store = cmd[cmd.indexOf("-sd") + 1];
		expect(services.nats.volumes.map((v: string) => v.split(":")[1])).toContain(store);
		const monitor = cmd[cmd.indexOf("-m") + 1];
		expect(services.nats.healthcheck.test.join(" ")).toContain(`http://127.0.0.1:${monitor}/healthz?js-enabled-only=true`);
		expect(services.redis.healthcheck.test).toEqual(["CMD", "redis-cli", "ping"]);
	});
});

/** HAProxy's configuration: sections (global, defaults, frontend X, backend X, …) of keyword lines. */
function haproxyConfig(text: string): Map<string, string[]> {
	const sections = new Map<string, string[]>();
	let current: string[] | undefined;
	for (const raw of text.split("\n")) {
		const line = raw.replace(/(^|\s)#.*$/, "").trim();
		if (!line) continue;
		if (/^\S/.test(raw)) sections.set(line, (current = []));
		else current!.push(line.replace(/\s+/g, " "));
	}
	return sections;
}

describe("deploy/haproxy/haproxy.cfg: the proxy in front of the two gateways", () => {
	const proxy = compose.services.proxy;
	const cfg = haproxyConfig(read("deploy/haproxy/haproxy.cfg"));
	const gateways = composeGateways;
	const frontend = [...cfg.entries()].find(([k, v]) => k.startsWith("frontend ") && v.some(l => l.startsWith("default_backend")))!;
	const backendName = frontend[1].find(l => l.startsWith("default_backend"))!.split(" ")[1];
	const backend = cfg.get(`backend ${backendName}`)!;

	it("is the file the proxy container loads, bound on the published port", () => {
		expect(proxy.volumes).toContain("./deploy/haproxy/haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro");
		expect(proxy.ports).toEqual(["8000:8000"]);
		expect(frontend[1]).toContain("bind :8000");
	});

	it("balances over both gateways on their PORT, checking each one's /ready on HEALTH_PORT", () => {
		const servers = backend.filter(l => l.startsWith("server ")).map(l => l.split(" ")[2]);
		expect(servers.sort()).toEqual(gateways.map(([name, s]) => `${name}:${s.environment.PORT}`).sort());
		expect(backend).toContain("option httpchk");
		expect(backend).toContain("http-check send meth GET uri /ready");
		expect(backend).toContain("http-check expect status 200");
		const defaults = backend.find(l => l.startsWith("default-server "))!;
		for (const [, s] of gateways) expect(defaults).toContain(`check port ${s.environment.HEALTH_PORT}`);
		// A stopping gateway keeps serving (SHUTDOWN_DELAY_MS) until the checks have taken it out.
		const interMs = Number(/\binter (\d+)s\b/.exec(defaults)![1]) * 1000;
		const fall = Number(/\bfall (\d+)\b/.exec(defaults)![1]);
		for (const [, s] of gateways) expect(Number(s.environment.SHUTDOWN_DELAY_MS)).toBeGreaterThan(interMs * fall);
		// Gateways found again through Docker's DNS when they restart with a new address.
		expect(defaults).toMatch(/resolvers (\S+)/);
		expect(cfg.has(`resolvers ${/resolvers (\S+)/.exec(defaults)![1]}`)).toBe(true);
	});

	it("retries a failed connection on the other gateway, and re-sends a request a gateway received only if it is a GET", () => {
		const defaults = cfg.get("defaults")!;
		expect([...cfg.values()].flat().filter(l => l.startsWith("retry-on "))).toEqual(["retry-on conn-failure empty-response"]);
		expect(defaults).toContain("retry-on conn-failure empty-response");
		// Every retry past a connection failure is off for anything but GET/HEAD (a charge never runs twice).
		expect(backend).toContain("http-request disable-l7-retry if !METH_GET");
		expect(defaults).toContain("option redispatch 1");
		expect(defaults.find(l => l.startsWith("retries "))).toBeDefined();
	});

	it("replaces X-Forwarded-For with the client's address, which the gateways trust from the proxy", () => {
		expect(frontend[1]).toContain("http-request set-header X-Forwarded-For %[src]");
		expect(frontend[1].some(l => /option forwardfor/.test(l))).toBe(false);
	});

	it("answers the proxy's own healthcheck, failing while no gateway is up", () => {
		const health = [...cfg.entries()].find(([k, v]) => k.startsWith("frontend ") && v.some(l => l.startsWith("monitor-uri")))!;
		const uri = health[1].find(l => l.startsWith("monitor-uri"))!.split(" ")[1];
		const port = health[1].find(l => l.startsWith("bind"))!.split(":")[1];
		expect(proxy.healthcheck.test.join(" ")).toContain(`http://127.0.0.1:${port}${uri}`);
		expect(health[1]).toContain(`monitor fail if { nbsrv(${backendName}) lt 1 }`);
	});
});
