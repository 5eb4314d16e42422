// KYC review queue: pending submissions, approve or reject with a reason.
import { useState } from "./hooks.mjs";
import { api, qs } from "./api.js";
import { ActionButton, Badge, can, ErrorBox, html, Loading, Pager, time, useAsync } from "./ui.js";

const LIMIT = 20;

function Decision({ item, s, onDone }) {
	const [reason, setReason] = useState("");
	const userId = item.user_id || item.id;
	if (!can(s, "kyc.decide")) return null;
	const decide = decision => async () => {
		const body = { decision };
		if (reason.trim()) body.reason = reason.trim();
		await api("POST", `/api/v1/admin/kyc/${userId}/decision`, body);
		onDone();
	};
	return html`<div class="row compact">
		<input name="kyc-reason" placeholder="Reason" value=${reason} onInput=${e => setReason(e.target.value)} />
		<${ActionButton} label="Approve" testid=${`approve-${userId}`} onRun=${decide("approve")} />
		<${ActionButton} label="Reject" danger testid=${`reject-${userId}`} onRun=${decide("reject")} />
	</div>`;
}

export function Kyc({ s }) {
	const [status, setStatus] = useState("pending");
	const [offset, setOffset] = useState(0);
	const list = useAsync(() => api("GET", `/api/v1/admin/kyc${qs({ status, limit: LIMIT, offset })}`), [status, offset]);
	return html`<section>
		<h1>KYC review</h1>
		<div class="filters">
			<select name="kyc-status" value=${status} onChange=${e => (setStatus(e.target.value), setOffset(0))}>
				<option value="pending">Pending</option>
				<option value="verified">Verified</option>
				<option value="rejected">Rejected</option>
			</select>
			<button onClick=${list.reload}>Refresh</button>
		</div>
		<${ErrorBox} error=${list.error} />
		${list.loading && !list.data ? html`<${Loading} what="submissions" />` : null}
		${list.data
			? html`<table class="grid" data-testid="kyc-table">
					<thead><tr><th>User</th><th>Name on document</th><th>Country</th><th>Document</th><th>Submitted</th><th>Status</th><th>Decision</th></tr></thead>
					<tbody>
						${list.data.items.map(k => {
							const userId = k.user_id || k.id;
							return html`<tr data-user=${userId}>
								<td><a href=${`#/users/${userId}`}>${k.email || (k.user && k.user.email) || userId}</a></td>
								<td>${k.full_name || k.name || ""}</td>
								<td>${k.country || ""}</td>
								<td>${k.document_type || ""} ${k.document_number ? html`<code class="small">${k.document_number}</code>` : null}</td>
								<td>${time(k.submitted_at || k.created_at)}</td>
								<td><${Badge} value=${k.kyc_status || k.status || status} /></td>
								<td>${(k.kyc_status || k.status || status) === "pending" ? html`<${Decision} item=${k} s=${s} onDone=${list.reload} />` : k.reason || ""}</td>
							</tr>`;
						})}
						${list.data.items.length === 0 ? html`<tr><td colspan="7" class="muted">Nothing to review.</td></tr>` : null}
					</tbody>
				</table>
				<${Pager} total=${list.data.total} limit=${LIMIT} offset=${offset} onPage=${setOffset} />`
			: null}
	</section>`;
}
