// A real OpenID Provider (the certified `oidc-provider` package) for the OAuth tests, run as a child
// process because the package is ESM-only. Env: CLIENT_ID, CLIENT_SECRET, REDIRECT_URI.
// It logs in, without a form, whichever account the test last set with `POST /test/next-login`
// ({ sub, email, email_verified, name }), and grants the consent the client asks for.
// Prints `listening <port>` once it serves.
import { Buffer } from "node:buffer";
import crypto from "node:crypto";
import http from "node:http";
import process from "node:process";
import Provider from "oidc-provider";

const accounts = new Map();
let next = { sub: "default-subject", email: "default@example.com", email_verified: true, name: "Default" };

const server = http.createServer();
server.listen(0, "127.0.0.1", () => {
	const { port } = server.address();
	const issuer = `http://127.0.0.1:${port}`;
	const key = crypto.generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey.export({ format: "jwk" });
	const provider = new Provider(issuer, {
		clients: [
			{
				client_id: process.env.CLIENT_ID,
				client_secret: process.env.CLIENT_SECRET,
				redirect_uris: [process.env.REDIRECT_URI],
				grant_types: ["authorization_code"],
				response_types: ["code"]
			}
		],
		jwks: { keys: [{ ...key, kid: "test-op-key", use: "sig", alg: "RS256" }] },
		cookies: { keys: [crypto.randomBytes(32).toString("hex")] },
		claims: { openid: ["sub"], email: ["email", "email_verified"], profile: ["name"] },
		// The ID token carries the claims of the granted scopes (what the relying party reads).
		conformIdTokenClaims: false,
		features: { devInteractions: { enabled: false } },
		interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
		pkce: { required: () => true },
		async findAccount(_ctx, id) {
			const a = accounts.get(id);
			if (!a) return undefined;
			return { accountId: id, claims: () => ({ sub: id, email: a.email, email_verified: a.email_verified, name: a.name }) };
		}
	});
	const handle = provider.callback();

	server.on("request", async (req, res) => {
		try {
			if (req.method === "POST" && req.url === "/test/next-login") {
				const chunks = [];
				for await (const c of req) chunks.push(c);
				next = JSON.parse(Buffer.concat(chunks).toString("utf8"));
				res.statusCode = 204;
				return res.end();
			}
			if (req.url?.startsWith("/interaction/")) {
				const details = await provider.interactionDetails(req, res);
				if (details.prompt.name === "login") {
					accounts.set(next.sub, next);
					return await provider.interactionFinished(req, res, { login: { accountId: next.sub } }, { mergeWithLastSubmission: false });
				}
				const grant = details.grantId
					? await provider.Grant.find(details.grantId)
					: new provider.Grant({ accountId: details.session.accountId, clientId: details.params.client_id });
				const missing = details.prompt.details;
				if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(" "));
				if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
				for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) grant.addResourceScope(indicator, scopes.join(" "));
				const grantId = await grant.save();
				return await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
			}
			handle(req, res);
		} catch (err) {
			res.statusCode = 500;
			res.end(String(err?.message ?? err));
		}
	});
	process.stdout.write(`listening ${port}\n`);
});

process.on("SIGTERM", () => process.exit(0));
