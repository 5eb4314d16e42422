// Users: search with filters and pages; one user's profile, KYC, payments and audit entries.
import { useState } from "./hooks.mjs";
import { api, qs } from "./api.js";
import { ActionButton, Badge, can, ErrorBox, html, Loading, money, Pager, time, useAsync } from "./ui.js";

const LIMIT = 20;
const ROLES = ["user", "support", "admin"];

export function Users({ s }) {
	const [form, setForm] = useState({ q: "", status: "" });
	const [filter, setFilter] = useState({ q: "", status: "", offset: 0 });
	const list = useAsync(() => api("GET", `/api/v1/admin/users${qs({ q: filter.q, status: filter.status, limit: LIMIT, offset: filter.offset })}`), [filter]);
	const search = e => {
		e.preventDefault();
		setFilter({ ...form, offset: 0 });
	};
	return html`<section>
		<h1>Users</h1>
		<form class="filters" onSubmit=${search} aria-label="Search users">
			<input name="q" placeholder="Email or name" value=${form.q} onInput=${e => setForm({ ...form, q: e.target.value })} />
			<select name="status" value=${form.status} onChange=${e => setForm({ ...form, status: e.target.value })}>
				<option value="">Any status</option>
				<option value="active">Active</option>
				<option value="suspended">Suspended</option>
			</select>
			<button type="submit">Search</button>
		</form>
		<${ErrorBox} error=${list.error} />
		${list.loading && !list.data ? html`<${Loading} what="users" />` : null}
		${list.data
			? html`<table class="grid" data-testid="users-table">
					<thead><tr><th>Email</th><th>Name</th><th>Status</th><th>Roles</th><th>KYC</th><th>Created</th></tr></thead>
					<tbody>
						${list.data.items.map(
							u => html`<tr>
								<td><a href=${`#/users/${u.id}`}>${u.email}</a></td>
								<td>${u.name}</td>
								<td><${Badge} value=${u.status} /></td>
								<td>${(u.roles || []).join(", ")}</td>
								<td><${Badge} value=${u.kyc_status} /></td>
								<td>${time(u.created_at)}</td>
							</tr>`
						)}
						${list.data.items.length === 0 ? html`<tr><td colspan="6" class="muted">No users match.</td></tr>` : null}
					</tbody>
				</table>
				<${Pager} total=${list.data.total} limit=${LIMIT} offset=${filter.offset} onPage=${offset => setFilter({ ...filter, offset })} />`
			: null}
		${s.role !== "admin" ? html`<p class="muted">Your role (${s.role}) can look users up; suspending and role changes are for admins.</p>` : null}
	</section>`;
}

function SuspendControls({ user, s, onChange }) {
	const [reason, setReason] = useState("");
	if (!can(s, "users.suspend")) return html`<p class="muted" data-testid="suspend-denied">Suspending and unsuspending need the admin role.</p>`;
	const suspended = user.status === "suspended";
	const act = async () => {
		const body = reason.trim() ? { reason: reason.trim() } : {};
		await api("POST", `/api/v1/admin/users/${user.id}/${suspended ? "unsuspend" : "suspend"}`, body);
		setReason("");
		onChange();
	};
	return html`<div class="row">
		<input name="reason" placeholder=${suspended ? "Reason (optional)" : "Reason (required)"} value=${reason} onInput=${e => setReason(e.target.value)} />
		<${ActionButton} label=${suspended ? "Unsuspend" : "Suspend"} danger=${!suspended} testid=${suspended ? "unsuspend" : "suspend"} onRun=${act} />
	</div>`;
}

function RolesControls({ user, s, onChange }) {
	const [roles, setRoles] = useState(user.roles || []);
	const allowed = can(s, "users.roles");
	const toggle = r => setRoles(roles.includes(r) ? roles.filter(x => x !== r) : [...roles, r]);
	return html`<div class="row">
		${ROLES.map(
			r => html`<label class="check"><input type="checkbox" name=${`role-${r}`} checked=${roles.includes(r)} disabled=${!allowed} onChange=${() => toggle(r)} /> ${r}</label>`
		)}
		${allowed
			? html`<${ActionButton} label="Save roles" testid="save-roles" onRun=${async () => {
					await api("PUT", `/api/v1/admin/users/${user.id}/roles`, { roles });
					onChange();
				}} />`
			: html`<span class="muted">Role changes need the admin role.</span>`}
	</div>`;
}

function RefundControls({ payment, onChange }) {
	const [amount, setAmount] = useState("");
	const [reason, setReason] = useState("");
	const left = payment.amount - (payment.amount_refunded || 0);
	return html`<div class="row compact">
		<input name="refund-amount" type="number" min="1" max=${left} placeholder=${`full (${left})`} value=${amount} onInput=${e => setAmount(e.target.value)} />
		<input name="refund-reason" placeholder="Reason" value=${reason} onInput=${e => setReason(e.target.value)} />
		<${ActionButton} label="Refund" danger testid=${`refund-${payment.id}`} onRun=${async () => {
			const body = {};
			if (amount) body.amount = Number(amount);
			if (reason.trim()) body.reason = reason.trim();
			await api("POST", `/api/v1/admin/payments/${payment.id}/refund`, body);
			onChange();
		}} />
	</div>`;
}

export function Payments({ userId, s }) {
	const [offset, setOffset] = useState(0);
	const list = useAsync(() => api("GET", `/api/v1/admin/payments${qs({ user_id: userId, limit: 10, offset })}`), [userId, offset]);
	return html`<div>
		<${ErrorBox} error=${list.error} />
		${list.loading && !list.data ? html`<${Loading} what="payments" />` : null}
		${list.data
			? html`<table class="grid" data-testid="payments-table">
					<thead><tr><th>Created</th><th>Amount</th><th>Refunded</th><th>Status</th><th>Description</th><th>Receipt</th>${can(s, "payments.refund") ? html`<th>Refund</th>` : null}</tr></thead>
					<tbody>
						${list.data.items.map(
							p => html`<tr data-payment=${p.id}>
								<td>${time(p.created_at)}</td>
								<td>${money(p.amount, p.currency)}</td>
								<td>${p.amount_refunded ? money(p.amount_refunded, p.currency) : ""}</td>
								<td><${Badge} value=${p.status} />${p.failure_reason ? html` <span class="muted">${p.failure_reason}</span>` : null}</td>
								<td>${p.description}</td>
								<td>${p.receipt_number}</td>
								${can(s, "payments.refund")
									? html`<td>${(p.status === "succeeded" || p.status === "partially_refunded") ? html`<${RefundControls} payment=${p} onChange=${list.reload} />` : null}</td>`
									: null}
							</tr>`
						)}
						${list.data.items.length === 0 ? html`<tr><td colspan="7" class="muted">No payments.</td></tr>` : null}
					</tbody>
				</table>
				<${Pager} total=${list.data.total} limit=${10} offset=${offset} onPage=${setOffset} />`
			: null}
	</div>`;
}

export function AuditTable({ items }) {
	return html`<table class="grid" data-testid="audit-table">
		<thead><tr><th>Time</th><th>Actor</th><th>Action</th><th>Target</th><th>Request id</th><th>IP</th><th>Details</th></tr></thead>
		<tbody>
			${items.map(
				a => html`<tr>
					<td>${time(a.at)}</td>
					<td>${a.actor_email || a.actor_id}</td>
					<td><code>${a.action}</code></td>
					<td>${a.target_type} <code class="small">${a.target_id}</code></td>
					<td><code class="small">${a.request_id}</code></td>
					<td>${a.ip}</td>
					<td><code class="small">${a.details ? JSON.stringify(a.details) : ""}</code></td>
				</tr>`
			)}
			${items.length === 0 ? html`<tr><td colspan="7" class="muted">No entries.</td></tr>` : null}
		</tbody>
	</table>`;
}

function UserAudit({ userId }) {
	const list = useAsync(() => api("GET", `/api/v1/admin/audit${qs({ target_id: userId, limit: 20 })}`), [userId]);
	return html`<div>
		<${ErrorBox} error=${list.error} />
		${list.loading && !list.data ? html`<${Loading} what="audit entries" />` : null}
		${list.data ? html`<${AuditTable} items=${list.data.items} />` : null}
	</div>`;
}

export function UserDetail({ id, s }) {
	const [version, setVersion] = useState(0);
	const user = useAsync(() => api("GET", `/api/v1/users/${encodeURIComponent(id)}`), [id, version]);
	const changed = () => setVersion(v => v + 1);
	const u = user.data;
	return html`<section>
		<p><a href="#/users">‹ All users</a></p>
		<${ErrorBox} error=${user.error} />
		${user.loading && !u ? html`<${Loading} what="user" />` : null}
		${u
			? html`<div>
					<h1>${u.name} <${Badge} value=${u.status} /></h1>
					<div class="cards">
						<div class="card">
							<h2>Profile</h2>
							<dl>
								<dt>Email</dt><dd data-testid="user-email">${u.email}${u.email_verified ? " ✓" : " (unverified)"}</dd>
								<dt>Phone</dt><dd>${u.phone || "—"}</dd>
								<dt>Id</dt><dd><code class="small">${u.id}</code></dd>
								<dt>Status</dt><dd data-testid="user-status">${u.status}</dd>
								<dt>KYC</dt><dd data-testid="user-kyc">${u.kyc_status}</dd>
								<dt>Created</dt><dd>${time(u.created_at)}</dd>
							</dl>
						</div>
						<div class="card">
							<h2>Status</h2>
							<${SuspendControls} key=${u.status} user=${u} s=${s} onChange=${changed} />
							<h2>Roles</h2>
							<${RolesControls} key=${(u.roles || []).join()} user=${u} s=${s} onChange=${changed} />
						</div>
					</div>
					<h2>Payments</h2>
					<${Payments} userId=${u.id} s=${s} />
					<h2>Notifications</h2>
					<p class="muted">Notifications are listed to their owner only (no admin route); delivery totals are on the dashboard and dead letters on the System page.</p>
					<h2>Audit entries about this user</h2>
					${can(s, "audit.read") ? html`<${UserAudit} key=${version} userId=${u.id} />` : html`<p class="muted">The audit log is for admins.</p>`}
				</div>`
			: null}
	</section>`;
}
