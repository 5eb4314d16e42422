// Admin panel entry: session, hash routing, navigation and the login page.
import { render } from "./preact.mjs";
import { useEffect, useState } from "./hooks.mjs";
import { login, logout, onSession, session } from "./api.js";
import { can, ErrorBox, html } from "./ui.js";
import { Dashboard } from "./dashboard.js";
import { UserDetail, Users } from "./users.js";
import { Kyc } from "./kyc.js";
import { Audit } from "./audit.js";
import { SystemPage } from "./system.js";

function useHash() {
	const [hash, setHash] = useState(location.hash || "#/dashboard");
	useEffect(() => {
		const on = () => setHash(location.hash || "#/dashboard");
		window.addEventListener("hashchange", on);
		return () => window.removeEventListener("hashchange", on);
	}, []);
	return hash;
}

function Login() {
	const [email, setEmail] = useState("");
	const [password, setPassword] = useState("");
	const [error, setError] = useState(null);
	const [busy, setBusy] = useState(false);
	const submit = async e => {
		e.preventDefault();
		setBusy(true);
		setError(null);
		try {
			await login(email.trim(), password);
		} catch (err) {
			setError(err);
		} finally {
			setBusy(false);
		}
	};
	return html`<main class="login">
		<form onSubmit=${submit} aria-label="Sign in">
			<h1>Admin panel</h1>
			<label>Email <input name="email" type="email" autocomplete="username" required value=${email} onInput=${e => setEmail(e.target.value)} /></label>
			<label>Password <input name="password" type="password" autocomplete="current-password" required value=${password} onInput=${e => setPassword(e.target.value)} /></label>
			<button type="submit" disabled=${busy}>${busy ? "Signing in…" : "Sign in"}</button>
			<${ErrorBox} error=${error} />
		</form>
	</main>`;
}

function NoAccess({ s }) {
	return html`<main class="login">
		<div class="card" data-testid="no-access">
			<h1>No access</h1>
			<p>${s.email || "This account"} is signed in, but the admin panel needs the <b>support</b> or <b>admin</b> role.</p>
			<button onClick=${() => logout()}>Sign out</button>
		</div>
	</main>`;
}

const NAV = [
	["#/dashboard", "Dashboard", "stats.read"],
	["#/users", "Users", "users.read"],
	["#/kyc", "KYC review", "kyc.read"],
	["#/audit", "Audit log", "audit.read"],
	["#/system", "System", "system.read"]
];

function Page({ hash, s }) {
	const [path] = hash.slice(1).split("?");
	const parts = path.split("/").filter(Boolean);
	switch (parts[0]) {
		case "users":
			return parts[1] ? html`<${UserDetail} id=${decodeURIComponent(parts[1])} s=${s} />` : html`<${Users} s=${s} />`;
		case "kyc":
			return html`<${Kyc} s=${s} />`;
		case "audit":
			return can(s, "audit.read") ? html`<${Audit} s=${s} />` : html`<p class="muted">The audit log is for admins.</p>`;
		case "system":
			return html`<${SystemPage} s=${s} />`;
		default:
			return html`<${Dashboard} s=${s} />`;
	}
}

function App() {
	const [s, setS] = useState(session());
	const hash = useHash();
	useEffect(() => onSession(setS), []);
	if (!s) return html`<${Login} />`;
	if (s.role === "none") return html`<${NoAccess} s=${s} />`;
	const current = "#/" + (hash.slice(2).split("/")[0] || "dashboard");
	return html`<div class="shell">
		<header>
			<span class="brand">Admin</span>
			<nav>
				${NAV.filter(([, , perm]) => can(s, perm)).map(
					([href, label]) => html`<a href=${href} class=${current.startsWith(href) ? "active" : ""}>${label}</a>`
				)}
			</nav>
			<span class="who">
				<span data-testid="who">${s.email || s.userId}</span> <span class=${`badge badge-role`} data-testid="role">${s.role}</span>
				<button class="link" onClick=${() => logout()}>Sign out</button>
			</span>
		</header>
		<main><${Page} hash=${hash} s=${s} /></main>
	</div>`;
}

const root = document.getElementById("app");
root.textContent = "";
render(html`<${App} />`, root);
