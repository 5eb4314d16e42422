import fs from "node:fs";
import path from "node:path";
import type { ServerResponse } from "node:http";

// The admin panel is a no-build single-page app: its own ES modules under public/admin/assets and
// vendor modules served straight from node_modules. Nothing comes from a CDN.

/** public/admin, found from the source tree (services/api) or the built one (dist/services/api). */
function findPanelDir(): string {
	for (const up of ["../..", "../../.."]) {
		const dir = path.resolve(__dirname, up, "public/admin");
		if (fs.existsSync(path.join(dir, "index.html"))) return dir;
	}
	return path.resolve(__dirname, "../../public/admin");
}

const panelDir = findPanelDir();
const modulesDir = path.dirname(path.dirname(require.resolve("preact/package.json")));

const TYPES: Record<string, string> = {
	".js": "text/javascript; charset=utf-8",
	".mjs": "text/javascript; charset=utf-8",
	".css": "text/css; charset=utf-8",
	".svg": "image/svg+xml"
};

/** Vendor files by the name the panel asks for; `rewrite` turns bare imports into relative ones. */
const VENDOR: Record<string, { file: string; rewrite?: [string, string] }> = {
	"preact.mjs": { file: "preact/dist/preact.mjs" },
	"hooks.mjs": { file: "preact/hooks/dist/hooks.mjs", rewrite: ['from"preact"', 'from"./preact.mjs"'] },
	"htm.mjs": { file: "htm/dist/htm.mjs" },
	"chart.umd.min.js": { file: "chart.js/dist/chart.umd.min.js" }
};

// Only flat names of the panel's own files: no path separators, no dot-dot.
const OWN_FILE = /^[a-z0-9-]+\.(js|css|svg)$/;

const CSP = [
	"default-src 'self'",
	"script-src 'self'",
	"style-src 'self'",
	"img-src 'self' data:",
	"connect-src 'self'",
	"object-src 'none'",
	"base-uri 'none'",
	"frame-ancestors 'none'",
	"form-action 'self'"
].join("; ");

const cache = new Map<string, Buffer>();

function send(res: ServerResponse, type: string, body: Buffer, cacheControl: string): void {
	res.statusCode = 200;
	res.setHeader("Content-Type", type);
	res.setHeader("Cache-Control", cacheControl);
	res.setHeader("Content-Security-Policy", CSP);
	res.end(body);
}

function load(key: string, read: () => Buffer): Buffer {
	// Panel files are re-read in development so edits show without a restart.
	if (process.env.NODE_ENV === "development") return read();
	let body = cache.get(key);
	if (!body) cache.set(key, (body = read()));
	return body;
}

export function sendAdminPage(res: ServerResponse): void {
	send(res, "text/html; charset=utf-8", load("index.html", () => fs.readFileSync(path.join(panelDir, "index.html"))), "no-store");
}

/** Serves one whitelisted panel or vendor file; false when the name is not one of them. */
export function sendAdminAsset(res: ServerResponse, file: string): boolean {
	const vendor = VENDOR[file];
	if (vendor) {
		const body = load(`vendor:${file}`, () => {
			const raw = fs.readFileSync(path.join(modulesDir, vendor.file));
			return vendor.rewrite ? Buffer.from(raw.toString("utf8").split(vendor.rewrite[0]).join(vendor.rewrite[1])) : raw;
		});
		send(res, TYPES[path.extname(file)], body, "public, max-age=86400");
		return true;
	}
	if (!OWN_FILE.test(file)) return false;
	const full = path.join(panelDir, "assets", file);
	if (!fs.existsSync(full)) return false;
	send(res, TYPES[path.extname(file)], load(file, () => fs.readFileSync(full)), "no-cache");
	return true;
}
