import path from "node:path";

/**
 * Node flags every node runs with (package.json scripts, Dockerfile, scripts/cluster.ts, tests).
 * `--experimental-async-context-frame` (the default from Node 24) makes AsyncLocalStorage, which puts
 * each request's id on its log lines (lib/request-context.ts), cost nothing per promise: on Node 22
 * without it, every promise runs an async hook, measured here at 80 µs of CPU per gateway request.
 */
export const NODE_FLAGS = ["--experimental-async-context-frame"];

/**
 * NODE_OPTIONS of a node that runs one service (or a few): a heap sized for it, as its container would
 * give it (Node sizes the heap from the memory it sees: a quarter of it, here 24 GiB, so a gateway under
 * load let garbage pile up to 230 MiB RSS). Measured on the gateway node at 50 connections: 129 MiB
 * RSS, at the same request rate. Set in k8s/config.yaml and docker-compose.yml; the embedded default
 * (every service in one process) keeps Node's own sizing.
 */
export const SERVICE_NODE_OPTIONS = "--max-old-space-size=128 --max-semi-space-size=8";

/** NODE_OPTIONS for a node started with this environment: the service-node heap when it runs a subset of services. */
export function nodeOptionsFor(env: Record<string, string | undefined>): string | undefined {
	return env.NODE_OPTIONS ?? (env.SERVICES ? SERVICE_NODE_OPTIONS : undefined);
}

/** Whether this process runs with the flags (given on the command line or in NODE_OPTIONS), or on a Node that needs none. */
export function hasNodeFlags(execArgv = process.execArgv, nodeOptions = process.env.NODE_OPTIONS ?? "", major = Number(process.versions.node.split(".")[0])): boolean {
	if (major >= 24) return true;
	const given = [...execArgv, ...nodeOptions.split(/\s+/)];
	return NODE_FLAGS.every(f => given.includes(f));
}

/**
 * How every node is started outside npm scripts (scripts/cluster.ts, tests, bench): the built runner with
 * the node flags, the config and services built in `dist`, and NODE_OPTIONS as `nodeOptionsFor` gives it.
 */
export function runnerCommand(
	dist: string,
	env: Record<string, string | undefined>,
	extraArgs: string[] = [],
	root = path.join(dist, "..")
): { args: string[]; env: Record<string, string | undefined> } {
	// In the project's node_modules, beside `dist` unless `root` says otherwise (moleculer's package exports do not include its bin).
	const runner = path.join(root, "node_modules/moleculer/bin/moleculer-runner.js");
	return {
		args: [...NODE_FLAGS, runner, "--config", path.join(dist, "moleculer.config.js"), ...extraArgs, path.join(dist, "services")],
		env: { ...env, NODE_OPTIONS: nodeOptionsFor(env) }
	};
}
