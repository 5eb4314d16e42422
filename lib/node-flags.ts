/**
 * Node flags every node runs with (package.json scripts, Dockerfile, scripts/cluster.ts, tests).
 * `--experimental-async-context-frame` (the default from Node 24) makes AsyncLocalStorage, which puts
 * each request's id on its log lines (lib/request-context.ts), cost nothing per promise: on Node 22
 * without it, every promise runs an async hook, measured here at 80 µs of CPU per gateway request.
 */
export const NODE_FLAGS = ["--experimental-async-context-frame"];

/** Whether this process runs with the flags (given on the command line or in NODE_OPTIONS), or on a Node that needs none. */
export function hasNodeFlags(execArgv = process.execArgv, nodeOptions = process.env.NODE_OPTIONS ?? "", major = Number(process.versions.node.split(".")[0])): boolean {
	if (major >= 24) return true;
	const given = [...execArgv, ...nodeOptions.split(/\s+/)];
	return NODE_FLAGS.every(f => given.includes(f));
}
