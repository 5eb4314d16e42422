import { Readable } from "node:stream";
import type { IncomingMessage, ServerResponse } from "node:http";
import { Errors, ServiceBroker } from "moleculer";
import ApiGateway from "moleculer-web";
import { conflict, tooManyRequests, unauthorized, unprocessable } from "../../lib/errors";
import { RETRY_AFTER_UNAVAILABLE_S, toProblem } from "../../services/api/problem";

const INSTANCE = "/api/v1/things";
const RID = "req-123";

/** Runs the gateway's real JSON body parser over a body and returns the error it reports. */
function parseError(body: string, headers: Record<string, string>, limit = 1024): Promise<unknown> {
	const req = Object.assign(Readable.from([Buffer.from(body)]), {
		method: "POST",
		url: "/",
		headers: { "content-type": "application/json", "content-length": String(Buffer.byteLength(body)), ...headers }
	});
	const parser = ApiGateway.bodyParser.json({ limit }) as unknown as (req: IncomingMessage, res: ServerResponse, next: (err?: unknown) => void) => void;
	return new Promise(resolve => parser(req as unknown as IncomingMessage, {} as ServerResponse, err => resolve(err)));
}

describe("toProblem", () => {
	let broker: ServiceBroker;

	beforeAll(async () => {
		broker = new ServiceBroker({ logger: false, nodeID: "problem-test" });
		broker.createService({
			name: "things",
			actions: {
				create: {
					params: { $$strict: true, name: { type: "string", min: 2 }, age: { type: "number" } },
					handler: () => "ok"
				}
			}
		});
		await broker.start();
	});
	afterAll(() => broker.stop());

	const callError = async (action: string, params: object) => {
		try {
			await broker.call(action, params);
		} catch (err) {
			return err;
		}
		throw new Error("the call succeeded");
	};

	it("turns a validator error into 422 with field errors", async () => {
		const err = await callError("things.create", { name: "a" });
		expect(err).toBeInstanceOf(Errors.ValidationError);
		const { status, body, headers, internal } = toProblem(err, INSTANCE, RID);
		expect(status).toBe(422);
		expect(internal).toBe(false);
		expect(headers).toEqual({});
		expect(body).toMatchObject({ type: "about:blank", title: "Unprocessable Entity", status: 422, instance: INSTANCE, request_id: RID });
		expect(body.errors).toEqual([
			{ field: "name", message: "name length must be greater than or equal to 2 characters long" },
			{ field: "age", message: "age is required" }
		]);
		expect(body.detail).toContain("name length must be");
		expect(body.detail).toContain("age is required");
	});

	it("names every unknown field of a $$strict object", async () => {
		const err = await callError("things.create", { name: "ab", age: 3, role: "admin", status: "x" });
		const { status, body } = toProblem(err, INSTANCE, RID);
		expect(status).toBe(422);
		expect(body.errors).toEqual([
			{ field: "role", message: "role is not an allowed field" },
			{ field: "status", message: "status is not an allowed field" }
		]);
		expect(body.detail).toBe("role is not an allowed field; status is not an allowed field");
	});

	it("maps a request timeout to 503 with Retry-After", () => {
		const err = new Errors.RequestTimeoutError({ action: "users.me", nodeID: "node-b" });
		const { status, body, headers } = toProblem(err, INSTANCE, RID);
		expect(status).toBe(503);
		expect(headers["Retry-After"]).toBe(String(RETRY_AFTER_UNAVAILABLE_S));
		expect(body.title).toBe("Service Unavailable");
		expect(JSON.stringify(body)).not.toContain("node-b");
	});

	it("maps a missing service to 503 with Retry-After, not 404", async () => {
		const err = await callError("nobody.here", {});
		expect(err).toBeInstanceOf(Errors.ServiceNotFoundError);
		const { status, headers, body } = toProblem(err, INSTANCE, RID);
		expect(status).toBe(503);
		expect(headers["Retry-After"]).toBe(String(RETRY_AFTER_UNAVAILABLE_S));
		expect(body.detail).not.toContain("nobody");
	});

	it("maps an unavailable service and a full queue to 503", () => {
		for (const err of [new Errors.ServiceNotAvailableError({ action: "users.me" }), new Errors.QueueIsFullError({ action: "users.me", nodeID: "n", size: 1, limit: 1 })]) {
			const { status, headers } = toProblem(err, INSTANCE, RID);
			expect(status).toBe(503);
			expect(headers["Retry-After"]).toBeDefined();
		}
	});

	it("maps body-parser errors without echoing the parser's message", async () => {
		const bad = await parseError("{bad", {});
		expect(toProblem(bad, INSTANCE, RID)).toMatchObject({ status: 400, body: { status: 400, detail: "body is not valid JSON" } });
		expect(JSON.stringify(toProblem(bad, INSTANCE, RID).body)).not.toContain("position");

		const big = await parseError(JSON.stringify({ pad: "x".repeat(200) }), {}, 100);
		expect(toProblem(big, INSTANCE, RID)).toMatchObject({ status: 413, body: { title: "Payload Too Large" } });

		const enc = await parseError("{}", { "content-encoding": "br2" });
		expect(toProblem(enc, INSTANCE, RID).status).toBe(415);

		const charset = await parseError("{}", { "content-type": "application/json; charset=latin9" });
		expect(toProblem(charset, INSTANCE, RID).status).toBe(415);
	});

	it("hides a plain Error behind a 500 that says nothing of it", () => {
		const err = new Error("SELECT * FROM credentials WHERE password_hash = '$2b$12$abc' failed");
		const { status, body, headers, internal } = toProblem(err, INSTANCE, RID);
		expect(status).toBe(500);
		expect(internal).toBe(true);
		expect(headers).toEqual({});
		expect(body).toEqual({
			type: "about:blank",
			title: "Internal Server Error",
			status: 500,
			detail: "an unexpected error occurred",
			instance: INSTANCE,
			request_id: RID
		});
	});

	it("treats null, strings and server errors as internal", () => {
		expect(toProblem(null, INSTANCE, RID).status).toBe(500);
		expect(toProblem("boom", INSTANCE, RID).body.detail).toBe("an unexpected error occurred");
		const server = new Errors.MoleculerServerError("db password is hunter2", 500, "DB_ERROR");
		const { status, body } = toProblem(server, INSTANCE, RID);
		expect(status).toBe(500);
		expect(JSON.stringify(body)).not.toContain("hunter2");
	});

	it("passes a client error's status, message and extensions through", () => {
		const err = new Errors.MoleculerClientError("payment is already captured", 409, "CONFLICT", { extensions: { payment_id: "p-1", state: "captured" } });
		const { status, body } = toProblem(err, INSTANCE, RID);
		expect(status).toBe(409);
		expect(body).toMatchObject({ title: "Conflict", status: 409, detail: "payment is already captured", payment_id: "p-1", state: "captured", request_id: RID });
		expect(body.extensions).toBeUndefined();
	});

	it("keeps the helpers' statuses, field errors and Retry-After", () => {
		expect(toProblem(conflict("email is already registered"), INSTANCE, RID)).toMatchObject({ status: 409, body: { detail: "email is already registered" } });
		expect(toProblem(unauthorized("invalid email or password"), INSTANCE, RID).status).toBe(401);
		const unproc = toProblem(unprocessable("password is too short", [{ field: "password", message: "password is too short" }]), INSTANCE, RID);
		expect(unproc).toMatchObject({ status: 422, body: { errors: [{ field: "password", message: "password is too short" }] } });
		const limited = toProblem(tooManyRequests("too many failed logins; try again later", 42.2), INSTANCE, RID);
		expect(limited).toMatchObject({ status: 429, headers: { "Retry-After": "43" }, body: { detail: "too many failed logins; try again later" } });
	});

	it("says 'no such route' for moleculer-web's bare NotFoundError", () => {
		const { status, body } = toProblem(Object.assign(new Error(""), { name: "NotFoundError", code: 404, type: "NOT_FOUND" }), "/nope", RID);
		expect(status).toBe(404);
		expect(body.detail).toBe("no such route");
	});
});
