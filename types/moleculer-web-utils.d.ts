// moleculer-web's step runner, which services/api.service.ts's routeHandler uses; its typings leave it out.
declare module "moleculer-web/src/utils" {
	import type { IncomingMessage, ServerResponse } from "node:http";
	/** Runs a route's `use` steps in order; rejects with a MoleculerError made from the first error passed to `next`. */
	export function composeThen<Req extends IncomingMessage, Res extends ServerResponse>(
		this: unknown,
		req: Req,
		res: Res,
		...steps: Array<(req: Req, res: Res, next: (err?: unknown) => void) => void>
	): Promise<void>;
}
