import fs from "node:fs";
import path from "node:path";
import type { ServerResponse } from "node:http";

// swagger-ui-dist ships the renderer as static files; served from node_modules, nothing comes from a CDN.
const assetDir = path.dirname(require.resolve("swagger-ui-dist/package.json"));

const ASSETS: Record<string, string> = {
	"swagger-ui.css": "text/css; charset=utf-8",
	"swagger-ui-bundle.js": "application/javascript; charset=utf-8"
};

const INIT_JS = `window.addEventListener("load", function () {
  // validatorUrl: null keeps the page from calling the online validator: nothing leaves this host.
  window.ui = SwaggerUIBundle({ url: "/api/openapi.json", dom_id: "#docs", deepLinking: true, validatorUrl: null });
});
`;

const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>API documentation</title>
<link rel="stylesheet" href="/api/docs/swagger-ui.css">
</head>
<body>
<div id="docs"></div>
<script src="/api/docs/swagger-ui-bundle.js"></script>
<script src="/api/docs/init.js"></script>
</body>
</html>
`;

const cache = new Map<string, Buffer>();

function send(res: ServerResponse, type: string, body: string | Buffer, maxAge: number): void {
	res.statusCode = 200;
	res.setHeader("Content-Type", type);
	res.setHeader("Cache-Control", `public, max-age=${maxAge}`);
	res.setHeader("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'");
	res.end(body);
}

export function sendDocsPage(res: ServerResponse): void {
	send(res, "text/html; charset=utf-8", PAGE, 0);
}

/** Serves one of the renderer's files; false when the name is not one of them. */
export function sendDocsAsset(res: ServerResponse, file: string): boolean {
	if (file === "init.js") {
		send(res, "application/javascript; charset=utf-8", INIT_JS, 300);
		return true;
	}
	const type = ASSETS[file];
	if (!type) return false;
	let body = cache.get(file);
	if (!body) cache.set(file, (body = fs.readFileSync(path.join(assetDir, file))));
	send(res, type, body, 86400);
	return true;
}
