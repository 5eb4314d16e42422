import { STATUS_CODES } from "node:http";
import type { FieldError, ProblemData } from "../../lib/errors";

/** RFC 9457 problem details, as every error leaves the gateway. */
export interface Problem {
	type: string;
	title: string;
	status: number;
	detail: string;
	instance: string;
	request_id: string;
	errors?: FieldError[];
	[extension: string]: unknown;
}

interface ErrorLike {
	name?: string;
	message?: string;
	code?: number | string;
	status?: number;
	type?: string;
	data?: unknown;
}

interface ValidatorItem {
	type?: string;
	field?: string;
	message?: string;
	actual?: unknown;
}

const UNAVAILABLE = new Set([
	"SERVICE_NOT_FOUND",
	"SERVICE_NOT_AVAILABLE",
	"SERVICE_UNAVAILABLE",
	"REQUEST_TIMEOUT",
	"QUEUE_FULL",
	"BAD_GATEWAY",
	"REQUEST_REJECTED",
	"REQUEST_SKIPPED"
]);

const BODY_PARSER: Record<string, [number, string]> = {
	"entity.parse.failed": [400, "body is not valid JSON"],
	"entity.too.large": [413, "body is larger than the limit"],
	"encoding.unsupported": [415, "unsupported content encoding"],
	"charset.unsupported": [415, "unsupported charset"],
	"request.aborted": [400, "request was aborted"],
	"request.size.invalid": [400, "request size did not match Content-Length"]
};

export const RETRY_AFTER_UNAVAILABLE_S = 5;

function fieldErrors(items: unknown): FieldError[] {
	if (!Array.isArray(items)) return [];
	return (items as ValidatorItem[]).flatMap(item => {
		if (item.type === "objectStrict") {
			// One entry per forbidden key, each named as the client sent it.
			const keys = String(item.actual ?? "").split(",").map(k => k.trim()).filter(Boolean);
			return keys.map(field => ({ field, message: `${field} is not an allowed field` }));
		}
		const field = item.field ?? "";
		const message = (item.message ?? "is invalid").replace(/^The '([^']*)' field/, "$1").replace(/\.$/, "");
		return [{ field, message }];
	});
}

/** Turns any error into a status, a problem body and the headers that go with it. No stack, SQL or secret passes. */
export function toProblem(
	err: unknown,
	instance: string,
	requestId: string
): { status: number; body: Problem; headers: Record<string, string>; internal: boolean } {
	const e = (err ?? {}) as ErrorLike;
	const headers: Record<string, string> = {};
	let status = 500;
	let detail = "an unexpected error occurred";
	let errors: FieldError[] | undefined;
	let extensions: Record<string, unknown> = {};
	let internal = false;

	const code = typeof e.code === "number" ? e.code : typeof e.status === "number" ? e.status : 500;
	const type = e.type ?? "";

	if (BODY_PARSER[type]) {
		[status, detail] = BODY_PARSER[type];
	} else if (UNAVAILABLE.has(type) || e.name === "RequestTimeoutError" || e.name === "ServiceNotFoundError" || e.name === "ServiceNotAvailableError") {
		status = 503;
		detail = "a service needed for this request is unavailable; try again shortly";
		headers["Retry-After"] = String(RETRY_AFTER_UNAVAILABLE_S);
	} else if (e.name === "ValidationError" || type === "VALIDATION_ERROR") {
		status = 422;
		errors = fieldErrors(e.data);
		detail = errors.length ? errors.map(x => (x.message.startsWith(x.field) ? x.message : `${x.field}: ${x.message}`)).join("; ") : "validation failed";
	} else if (e.name === "RateLimitExceeded" || code === 429) {
		status = 429;
		const data = (e.data ?? {}) as ProblemData;
		detail = e.name === "RateLimitExceeded" ? "rate limit exceeded" : e.message ?? "too many requests";
		headers["Retry-After"] = String(data.retry_after ?? 60);
	} else if (e.name === "NotFoundError" && type === "NOT_FOUND" && !e.message?.length) {
		status = 404;
		detail = "no such route";
	} else if (code >= 400 && code < 500) {
		status = code;
		detail = e.message || STATUS_CODES[code] || "request failed";
		const data = (e.data ?? {}) as ProblemData;
		if (Array.isArray(data.errors)) errors = data.errors;
		if (data.extensions) extensions = data.extensions;
		if (e.name === "NotFoundError" && detail === "Not found") detail = "no such route";
	} else if (code === 503) {
		status = 503;
		detail = "a service needed for this request is unavailable; try again shortly";
		headers["Retry-After"] = String(RETRY_AFTER_UNAVAILABLE_S);
	} else {
		internal = true;
	}

	const body: Problem = {
		type: "about:blank",
		title: STATUS_CODES[status] ?? "Error",
		status,
		detail,
		instance,
		request_id: requestId,
		...(errors && errors.length ? { errors } : {}),
		...extensions
	};
	return { status, body, headers, internal };
}
