import { Errors } from "moleculer";

const { MoleculerClientError } = Errors;

export interface FieldError {
	field: string;
	message: string;
}

/** Extra data a service error may carry into the problem body and headers. */
export interface ProblemData {
	errors?: FieldError[];
	retry_after?: number;
	/** Extension members copied into the problem body (e.g. payment_id). */
	extensions?: Record<string, unknown>;
}

const clientError = (status: number, type: string) => (detail: string, data?: ProblemData) =>
	new MoleculerClientError(detail, status, type, data);

export const badRequest = clientError(400, "BAD_REQUEST");
export const unauthorized = clientError(401, "UNAUTHORIZED");
export const forbidden = clientError(403, "FORBIDDEN");
export const notFound = clientError(404, "NOT_FOUND");
export const conflict = clientError(409, "CONFLICT");
export const unprocessable = (detail: string, errors?: FieldError[]) =>
	new MoleculerClientError(detail, 422, "UNPROCESSABLE", errors ? { errors } : undefined);
export const tooManyRequests = (detail: string, retryAfterSeconds: number) =>
	new MoleculerClientError(detail, 429, "TOO_MANY_REQUESTS", { retry_after: Math.max(1, Math.ceil(retryAfterSeconds)) });

/** A unique-constraint violation from Sequelize (PostgreSQL or SQLite). */
export function isUniqueViolation(err: unknown): boolean {
	return !!err && typeof err === "object" && (err as { name?: string }).name === "SequelizeUniqueConstraintError";
}
