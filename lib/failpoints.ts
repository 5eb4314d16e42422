/**
 * Failpoints: named places where a test can make this process die on the spot (SIGKILL: no cleanup,
 * no graceful stop), to show that what was committed before survives a crash and is picked up after.
 * Active only when NODE_ENV=test and FAILPOINTS (a comma list) names the point; a no-op otherwise.
 */
export function failpoint(name: string, env: NodeJS.ProcessEnv = process.env): void {
	if (env.NODE_ENV !== "test" || !env.FAILPOINTS) return;
	if (!env.FAILPOINTS.split(",").some(p => p.trim() === name)) return;
	process.kill(process.pid, "SIGKILL");
}
