// System: nodes and services, readiness, queue depths, dead letters (redrive) and jobs (run now).
import { useState } from "./hooks.mjs";
import { api, qs } from "./api.js";
import { ActionButton, Badge, can, ErrorBox, html, Loading, Pager, time, useAsync } from "./ui.js";

async function health() {
	const res = await fetch("/health/ready", { headers: { accept: "application/json" } });
	const body = await res.json().catch(() => ({}));
	return { http: res.status, ...body };
}

const label = v => (typeof v === "string" ? v : v && (v.name || v.id || v.nodeID || JSON.stringify(v)));

function Nodes({ nodes }) {
	if (!Array.isArray(nodes)) return null;
	return html`<table class="grid" data-testid="nodes-table">
		<thead><tr><th>Node</th><th>Host</th><th>IP</th><th>Available</th><th>CPU</th><th>Moleculer</th><th>Last heartbeat</th></tr></thead>
		<tbody>
			${nodes.map(
				n => html`<tr>
					<td><code>${n.id || n.nodeID || label(n)}</code>${n.local ? " (this)" : ""}</td>
					<td>${n.hostname || ""}</td>
					<td>${n.ip || ""}</td>
					<td><${Badge} value=${n.available === false ? "down" : "up"} /></td>
					<td>${n.cpu === null || n.cpu === undefined ? "" : `${n.cpu}%`}</td>
					<td>${n.moleculer || ""}</td>
					<td>${n.local ? "this node" : Date.parse(n.last_heartbeat_at) > Date.UTC(2001, 0) ? time(n.last_heartbeat_at) : ""}</td>
				</tr>`
			)}
		</tbody>
	</table>`;
}

function Services({ services, health }) {
	if (!Array.isArray(services)) return null;
	return html`<table class="grid" data-testid="services-table">
		<thead><tr><th>Service</th><th>Version</th><th>Nodes</th><th>Health</th></tr></thead>
		<tbody>
			${services.map(
				sv => html`<tr>
					<td>${label(sv)}</td>
					<td>${(sv && sv.version) || ""}</td>
					<td>${sv && Array.isArray(sv.nodes) ? sv.nodes.join(", ") : ""}</td>
					<td>${health && health[label(sv)] ? html`<${Badge} value=${health[label(sv)]} />` : sv && sv.available === false ? html`<${Badge} value="down" />` : ""}</td>
				</tr>`
			)}
		</tbody>
	</table>`;
}

function DeadLetters({ s, onChange }) {
	const [offset, setOffset] = useState(0);
	const list = useAsync(() => api("GET", `/api/v1/admin/dead-letters${qs({ limit: 10, offset })}`), [offset]);
	return html`<div>
		<${ErrorBox} error=${list.error} />
		${list.loading && !list.data ? html`<${Loading} what="dead letters" />` : null}
		${list.data
			? html`<table class="grid" data-testid="dead-letters-table">
					<thead><tr><th>Failed</th><th>Queue</th><th>Error</th><th>Request id</th><th></th></tr></thead>
					<tbody>
						${list.data.items.map(
							d => html`<tr>
								<td>${time(d.failed_at)}</td>
								<td>${d.queue}</td>
								<td>${d.error}</td>
								<td><code class="small">${d.request_id}</code></td>
								<td>${can(s, "deadletters.redrive")
									? html`<${ActionButton} label="Redrive" onRun=${async () => {
											await api("POST", `/api/v1/admin/dead-letters/${d.id}/redrive`);
											list.reload();
											onChange();
										}} />`
									: null}</td>
							</tr>`
						)}
						${list.data.items.length === 0 ? html`<tr><td colspan="5" class="muted">No dead letters.</td></tr>` : null}
					</tbody>
				</table>
				<${Pager} total=${list.data.total} limit=${10} offset=${offset} onPage=${setOffset} />`
			: null}
	</div>`;
}

export function SystemPage({ s }) {
	const sys = useAsync(() => api("GET", "/api/v1/admin/system"), []);
	const ready = useAsync(health, []);
	const jobs = useAsync(() => api("GET", "/api/v1/admin/jobs"), []);
	const reload = () => (sys.reload(), ready.reload(), jobs.reload());
	const queues = (jobs.data && jobs.data.queues) || (sys.data && sys.data.queues) || [];
	return html`<section>
		<h1>System <button onClick=${reload}>Refresh</button></h1>
		<div class="cards">
			<div class="card">
				<h2>Health</h2>
				${ready.loading && !ready.data ? html`<${Loading} />` : null}
				${ready.data
					? html`<p data-testid="health">Gateway readiness: <${Badge} value=${ready.data.status || ready.data.http} /></p>
						<ul class="chips">${Object.entries(ready.data.checks || {}).map(([k, v]) => html`<li>${k} <${Badge} value=${v} /></li>`)}</ul>`
					: null}
			</div>
			<div class="card">
				<h2>Queues</h2>
				<table class="grid">
					<thead><tr><th>Queue</th><th>Pending</th><th>Dead</th></tr></thead>
					<tbody>${queues.map(q => html`<tr><td>${q.name}</td><td>${q.pending}</td><td class=${q.dead ? "bad" : ""}>${q.dead}</td></tr>`)}</tbody>
				</table>
			</div>
		</div>
		<${ErrorBox} error=${sys.error} />
		${sys.loading && !sys.data ? html`<${Loading} what="nodes and services" />` : null}
		${sys.data
			? html`<h2>Nodes</h2><${Nodes} nodes=${sys.data.nodes} /><h2>Services</h2><${Services} services=${sys.data.services} health=${sys.data.health} />`
			: null}
		<h2>Jobs</h2>
		<${ErrorBox} error=${jobs.error} />
		${jobs.loading && !jobs.data ? html`<${Loading} what="jobs" />` : null}
		${jobs.data
			? html`<table class="grid" data-testid="jobs-table">
					<thead><tr><th>Job</th><th>Cron</th><th>Last run</th><th>Last status</th><th>Next run</th><th></th></tr></thead>
					<tbody>
						${(jobs.data.schedules || []).map(
							j => html`<tr>
								<td>${j.name}</td>
								<td><code>${j.cron}</code></td>
								<td>${time(j.last_run_at)}</td>
								<td>${j.last_status ? html`<${Badge} value=${j.last_status} />` : "—"}</td>
								<td>${time(j.next_run_at)}</td>
								<td>${can(s, "jobs.run")
									? html`<${ActionButton} label="Run now" onRun=${async () => {
											await api("POST", `/api/v1/admin/jobs/${encodeURIComponent(j.name)}/run`);
											jobs.reload();
										}} />`
									: null}</td>
							</tr>`
						)}
					</tbody>
				</table>`
			: null}
		<h2>Dead letters</h2>
		<${DeadLetters} s=${s} onChange=${jobs.reload} />
	</section>`;
}
