// Shared pieces of the panel: htm bound to Preact, what each role may do, and small components.
import { h } from "./preact.mjs";
import { useCallback, useEffect, useState } from "./hooks.mjs";
import htm from "./htm.mjs";

export const html = htm.bind(h);

/** What each panel role may do; mirrors the API's permission map (the API checks it again). */
const ALLOWED = {
	support: new Set(["users.read", "payments.read", "kyc.read", "kyc.decide", "system.read", "stats.read"]),
	admin: new Set([
		"users.read", "payments.read", "kyc.read", "kyc.decide", "system.read", "stats.read",
		"users.suspend", "users.roles", "payments.refund", "audit.read", "jobs.run", "deadletters.redrive"
	])
};

export function can(session, permission) {
	return !!session && !!ALLOWED[session.role] && ALLOWED[session.role].has(permission);
}

/** Runs an async loader when its deps change; returns { data, error, loading, reload }. */
export function useAsync(fn, deps) {
	const [state, setState] = useState({ data: null, error: null, loading: true });
	const [tick, setTick] = useState(0);
	useEffect(() => {
		let live = true;
		setState(s => ({ ...s, loading: true, error: null }));
		fn().then(
			data => live && setState({ data, error: null, loading: false }),
			error => live && setState({ data: null, error, loading: false })
		);
		return () => (live = false);
	}, [...deps, tick]);
	const reload = useCallback(() => setTick(t => t + 1), []);
	return { ...state, reload };
}

export function ErrorBox({ error }) {
	if (!error) return null;
	const p = error.problem || {};
	return html`<div class="error" role="alert">
		<strong>${p.title || "Error"}${error.status ? ` (${error.status})` : ""}:</strong> ${p.detail || error.message}
		${Array.isArray(p.errors) && p.errors.length
			? html`<ul>${p.errors.map(e => html`<li>${e.field ? `${e.field}: ` : ""}${e.message}</li>`)}</ul>`
			: null}
		${error.requestId ? html`<div class="muted">request id: <code>${error.requestId}</code></div>` : null}
	</div>`;
}

export function Loading({ what }) {
	return html`<p class="loading" aria-busy="true">Loading${what ? ` ${what}` : ""}…</p>`;
}

export function Pager({ total, limit, offset, onPage }) {
	if (total === undefined || total === null) return null;
	const page = Math.floor(offset / limit) + 1;
	const pages = Math.max(1, Math.ceil(total / limit));
	return html`<div class="pager">
		<button disabled=${offset <= 0} onClick=${() => onPage(Math.max(0, offset - limit))}>‹ Previous</button>
		<span>Page ${page} of ${pages} · ${total} total</span>
		<button disabled=${offset + limit >= total} onClick=${() => onPage(offset + limit)}>Next ›</button>
	</div>`;
}

export function money(amount, currency) {
	if (amount === null || amount === undefined) return "";
	const cur = (currency || "usd").toUpperCase();
	try {
		const digits = new Intl.NumberFormat("en", { style: "currency", currency: cur }).resolvedOptions().maximumFractionDigits;
		return new Intl.NumberFormat("en", { style: "currency", currency: cur }).format(amount / 10 ** digits);
	} catch {
		return `${amount} ${cur}`;
	}
}

export function time(iso) {
	if (!iso) return "";
	const d = new Date(iso);
	return isNaN(d.getTime()) ? String(iso) : d.toLocaleString();
}

export function Badge({ value }) {
	return html`<span class=${`badge badge-${String(value).replace(/[^a-z_]/gi, "")}`}>${String(value)}</span>`;
}

/** A button that runs an async action, shows it is busy, and reports the error next to it. */
export function ActionButton({ label, onRun, disabled, danger, title, testid }) {
	const [busy, setBusy] = useState(false);
	const [error, setError] = useState(null);
	const run = async () => {
		setBusy(true);
		setError(null);
		try {
			await onRun();
		} catch (err) {
			setError(err);
		} finally {
			setBusy(false);
		}
	};
	return html`<span class="action">
		<button class=${danger ? "danger" : ""} disabled=${disabled || busy} title=${title || ""} data-testid=${testid || ""} onClick=${run}>
			${busy ? "Working…" : label}
		</button>
		<${ErrorBox} error=${error} />
	</span>`;
}
