// HTTP client for the admin panel: tokens in sessionStorage, one refresh on 401, problem+json errors.

const KEY = "admin.tokens";

/** An API error carrying the problem+json fields the panel shows. */
export class ApiError extends Error {
	constructor(status, problem, requestId) {
		super((problem && (problem.detail || problem.title)) || `HTTP ${status}`);
		this.status = status;
		this.problem = problem || {};
		this.requestId = (problem && problem.request_id) || requestId || "";
	}
}

let tokens = load();
const listeners = new Set();

function load() {
	try {
		return JSON.parse(sessionStorage.getItem(KEY) || "null");
	} catch {
		return null;
	}
}

function save(next) {
	tokens = next;
	if (next) sessionStorage.setItem(KEY, JSON.stringify(next));
	else sessionStorage.removeItem(KEY);
	listeners.forEach(fn => fn(session()));
}

/** Claims of a JWT, unverified: the gateway checks the token; the panel only reads the roles. */
export function claims(token) {
	try {
		const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
		return JSON.parse(atob(part + "===".slice((part.length + 3) % 4)));
	} catch {
		return {};
	}
}

/** The signed-in session: user id, email, roles and the panel role (admin, support or none). */
export function session() {
	if (!tokens) return null;
	const c = claims(tokens.access_token);
	const roles = Array.isArray(c.roles) ? c.roles : [];
	const role = roles.includes("admin") ? "admin" : roles.includes("support") ? "support" : "none";
	return { userId: c.sub || tokens.user_id, email: tokens.email, roles, role };
}

export function onSession(fn) {
	listeners.add(fn);
	return () => listeners.delete(fn);
}

async function raw(method, path, body, token) {
	const headers = { accept: "application/json, application/problem+json" };
	if (body !== undefined) headers["content-type"] = "application/json";
	if (token) headers.authorization = `Bearer ${token}`;
	const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
	const text = await res.text();
	let data;
	try {
		data = text ? JSON.parse(text) : null;
	} catch {
		data = null;
	}
	return { res, data };
}

let refreshing = null;
async function refresh() {
	if (!tokens || !tokens.refresh_token) return false;
	refreshing ??= (async () => {
		const { res, data } = await raw("POST", "/api/v1/auth/refresh", { refresh_token: tokens.refresh_token });
		if (res.ok && data) {
			save({ ...data, email: tokens.email });
			return true;
		}
		save(null);
		return false;
	})().finally(() => (refreshing = null));
	return refreshing;
}

/** Calls the API as the signed-in user; a 401 refreshes once and retries. */
export async function api(method, path, body) {
	let { res, data } = await raw(method, path, body, tokens && tokens.access_token);
	if (res.status === 401 && tokens && (await refresh())) ({ res, data } = await raw(method, path, body, tokens.access_token));
	if (!res.ok) throw new ApiError(res.status, data, res.headers.get("x-request-id"));
	return data;
}

export async function login(email, password) {
	const { res, data } = await raw("POST", "/api/v1/auth/login", { email, password });
	if (!res.ok) throw new ApiError(res.status, data, res.headers.get("x-request-id"));
	save({ ...data, email });
	return session();
}

export async function logout() {
	const t = tokens;
	save(null);
	if (t) await raw("POST", "/api/v1/auth/logout", { refresh_token: t.refresh_token }, t.access_token).catch(() => undefined);
}

/** Query string from an object, leaving out empty values. */
export function qs(params) {
	const q = new URLSearchParams();
	for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, String(v));
	const s = q.toString();
	return s ? `?${s}` : "";
}
