import { execFileSync } from "node:child_process";
import path from "node:path";

/** Tests that spawn real nodes run the built runner: build once, before any test file. */
export default function globalSetup(): void {
	const root = path.resolve(__dirname, "..");
	execFileSync(process.execPath, [path.join(root, "node_modules/typescript/bin/tsc"), "-p", "tsconfig.build.json"], { cwd: root, stdio: "inherit" });
}
