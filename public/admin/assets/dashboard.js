// Dashboard: Chart.js charts of payments, signups, deliveries, and live request rate and latency.
import { useEffect, useRef, useState } from "./hooks.mjs";
import { api } from "./api.js";
import { ErrorBox, html, Loading, money } from "./ui.js";

const POLL_MS = 5000;
const COLORS = { succeeded: "#2e7d32", failed: "#c62828", refunded: "#ef6c00", queued: "#1565c0", sent: "#2e7d32", dead: "#6a1b9a", p50: "#1565c0", p99: "#c62828" };

/** One Chart.js chart; the config is rebuilt from props and the chart updated in place. */
function Chart({ config, testid }) {
	const canvas = useRef(null);
	const chart = useRef(null);
	useEffect(() => {
		if (!window.Chart) return;
		if (!chart.current) chart.current = new window.Chart(canvas.current, config);
		else {
			chart.current.data = config.data;
			chart.current.update("none");
		}
	});
	useEffect(() => () => chart.current && chart.current.destroy(), []);
	return html`<div class="chart"><canvas ref=${canvas} data-testid=${testid} role="img"></canvas></div>`;
}

const options = extra => ({ responsive: true, maintainAspectRatio: false, animation: false, plugins: { legend: { position: "bottom" } }, ...extra });

function paymentsChart(stats) {
	const days = stats.payments.map(p => p.day.slice(5));
	const line = (key, label) => ({ label, data: stats.payments.map(p => p[key] || 0), borderColor: COLORS[key], backgroundColor: COLORS[key], tension: 0.25 });
	return {
		type: "line",
		data: { labels: days, datasets: [line("succeeded", "Succeeded"), line("failed", "Failed"), line("refunded", "Refunded")] },
		options: options({ scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } })
	};
}

function signupsChart(stats) {
	return {
		type: "bar",
		data: { labels: stats.signups.map(s => s.day.slice(5)), datasets: [{ label: "Sign-ups", data: stats.signups.map(s => s.count), backgroundColor: "#1565c0" }] },
		options: options({ scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } })
	};
}

function deliveriesChart(stats) {
	const keys = ["queued", "sent", "failed", "dead"];
	return {
		type: "doughnut",
		data: { labels: keys, datasets: [{ data: keys.map(k => stats.deliveries[k] || 0), backgroundColor: keys.map(k => COLORS[k]) }] },
		options: options()
	};
}

function rateChart(stats) {
	return {
		type: "bar",
		data: { labels: stats.requests.map(r => r.service), datasets: [{ label: "requests/s", data: stats.requests.map(r => r.requests_per_s), backgroundColor: "#00838f" }] },
		options: options({ indexAxis: "y", scales: { x: { beginAtZero: true } } })
	};
}

function latencyChart(stats) {
	return {
		type: "bar",
		data: {
			labels: stats.requests.map(r => r.service),
			datasets: [
				{ label: "p50 ms", data: stats.requests.map(r => r.p50_ms), backgroundColor: COLORS.p50 },
				{ label: "p99 ms", data: stats.requests.map(r => r.p99_ms), backgroundColor: COLORS.p99 }
			]
		},
		options: options({ scales: { y: { beginAtZero: true } } })
	};
}

function totals(stats) {
	const sum = key => stats.payments.reduce((n, p) => n + (p[key] || 0), 0);
	const amounts = {};
	for (const p of stats.payments) for (const [cur, v] of Object.entries(p.amount_succeeded || {})) amounts[cur] = (amounts[cur] || 0) + v;
	return { succeeded: sum("succeeded"), failed: sum("failed"), refunded: sum("refunded"), signups: stats.signups.reduce((n, s) => n + s.count, 0), amounts };
}

export function Dashboard() {
	const [days, setDays] = useState(14);
	const [stats, setStats] = useState(null);
	const [error, setError] = useState(null);
	const [updated, setUpdated] = useState(null);
	useEffect(() => {
		let live = true;
		let timer;
		const poll = async () => {
			try {
				const s = await api("GET", `/api/v1/admin/stats?days=${days}`);
				if (!live) return;
				setStats(s);
				setError(null);
				setUpdated(new Date());
			} catch (err) {
				if (live) setError(err);
			}
			if (live) timer = setTimeout(poll, POLL_MS);
		};
		poll();
		return () => {
			live = false;
			clearTimeout(timer);
		};
	}, [days]);
	const t = stats && totals(stats);
	return html`<section>
		<h1>Dashboard
			<select name="days" value=${days} onChange=${e => setDays(Number(e.target.value))}>
				<option value="7">7 days</option><option value="14">14 days</option><option value="30">30 days</option>
			</select>
			${updated ? html`<span class="muted small">live · updated ${updated.toLocaleTimeString()}</span>` : null}
		</h1>
		<${ErrorBox} error=${error} />
		${!stats && !error ? html`<${Loading} what="statistics" />` : null}
		${stats
			? html`<div>
					<div class="kpis" data-testid="kpis">
						<div class="kpi"><b>${t.succeeded}</b><span>payments succeeded</span></div>
						<div class="kpi bad"><b>${t.failed}</b><span>payments failed</span></div>
						<div class="kpi"><b>${t.refunded}</b><span>refunded</span></div>
						<div class="kpi"><b>${Object.entries(t.amounts).map(([c, v]) => money(v, c)).join(" · ") || "—"}</b><span>taken</span></div>
						<div class="kpi"><b>${t.signups}</b><span>sign-ups</span></div>
						<div class="kpi"><b>${stats.deliveries.dead || 0}</b><span>dead deliveries</span></div>
					</div>
					<div class="charts">
						<div class="card wide"><h2>Payments and failures per day</h2><${Chart} testid="chart-payments" config=${paymentsChart(stats)} /></div>
						<div class="card"><h2>Sign-ups per day</h2><${Chart} testid="chart-signups" config=${signupsChart(stats)} /></div>
						<div class="card"><h2>Notification deliveries</h2><${Chart} testid="chart-deliveries" config=${deliveriesChart(stats)} /></div>
						<div class="card"><h2>Requests per second (live)</h2><${Chart} testid="chart-rate" config=${rateChart(stats)} /></div>
						<div class="card"><h2>Latency per service (live)</h2><${Chart} testid="chart-latency" config=${latencyChart(stats)} /></div>
					</div>
					<table class="grid">
						<thead><tr><th>Service</th><th>req/s</th><th>p50 ms</th><th>p99 ms</th><th>errors</th></tr></thead>
						<tbody>${stats.requests.map(r => html`<tr><td>${r.service}</td><td>${r.requests_per_s}</td><td>${r.p50_ms}</td><td>${r.p99_ms}</td><td class=${r.errors ? "bad" : ""}>${r.errors}</td></tr>`)}</tbody>
					</table>
				</div>`
			: null}
	</section>`;
}
