// Audit log: filters by actor, action, target and time, pages, and the hash chain check.
import { useState } from "./hooks.mjs";
import { api, qs } from "./api.js";
import { ActionButton, ErrorBox, html, Loading, Pager, useAsync } from "./ui.js";
import { AuditTable } from "./users.js";

const LIMIT = 25;
const EMPTY = { actor_id: "", action: "", target_id: "", from: "", to: "" };

function iso(local) {
	return local ? new Date(local).toISOString() : "";
}

export function Audit() {
	const [form, setForm] = useState(EMPTY);
	const [filter, setFilter] = useState({ ...EMPTY, offset: 0 });
	const [verify, setVerify] = useState(null);
	const list = useAsync(
		() => api("GET", `/api/v1/admin/audit${qs({ ...filter, from: iso(filter.from), to: iso(filter.to), limit: LIMIT, offset: filter.offset })}`),
		[filter]
	);
	const field = (name, label, type = "text") =>
		html`<label>${label} <input name=${name} type=${type} value=${form[name]} onInput=${e => setForm({ ...form, [name]: e.target.value })} /></label>`;
	return html`<section>
		<h1>Audit log</h1>
		<div class="row">
			<${ActionButton} label="Verify hash chain" testid="verify" onRun=${async () => setVerify(await api("GET", "/api/v1/admin/audit/verify"))} />
			${verify
				? html`<span class=${verify.valid ? "ok" : "bad"} data-testid="verify-result">
						${verify.valid ? `Chain intact: ${verify.entries} entries` : `Chain broken: first bad entry ${verify.first_broken_id} (of ${verify.entries})`}
					</span>`
				: null}
		</div>
		<form class="filters" aria-label="Filter audit log" onSubmit=${e => (e.preventDefault(), setFilter({ ...form, offset: 0 }))}>
			${field("actor_id", "Actor id")} ${field("action", "Action")} ${field("target_id", "Target id")}
			${field("from", "From", "datetime-local")} ${field("to", "To", "datetime-local")}
			<button type="submit">Filter</button>
			<button type="button" onClick=${() => (setForm(EMPTY), setFilter({ ...EMPTY, offset: 0 }))}>Clear</button>
		</form>
		<${ErrorBox} error=${list.error} />
		${list.loading && !list.data ? html`<${Loading} what="audit log" />` : null}
		${list.data
			? html`<${AuditTable} items=${list.data.items} />
				<${Pager} total=${list.data.total} limit=${LIMIT} offset=${filter.offset} onPage=${offset => setFilter({ ...filter, offset })} />`
			: null}
	</section>`;
}
