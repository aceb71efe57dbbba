// The flambe report site: a hash-routed page that polls the JSON API.
// Views: #/ (overview), #/stage/NAME (trial table and chart),
// #/trial/ID (params, metric curves, log tail, downloads).
"use strict";

const token = new URLSearchParams(location.search).get("token");
const withToken = (url) => token ? url + (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token) : url;
const api = async (path, asText) => {
  const r = await fetch(withToken("/api/v1" + path));
  if (!r.ok) throw new Error((await r.json().catch(() => ({}))).error || r.statusText);
  return asText ? r.text() : r.json();
};
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
const fmt = (v) => v === null || v === undefined ? "–" : (typeof v === "number" ? (Number.isInteger(v) ? String(v) : v.toPrecision(4)) : String(v));
const dur = (s) => s === null || s === undefined ? "–" : s < 60 ? s.toFixed(1) + "s" : s < 3600 ? (s / 60).toFixed(1) + "m" : (s / 3600).toFixed(1) + "h";
const view = document.getElementById("view");
const crumbs = document.getElementById("crumbs");
const ui = { sortKey: "metric", sortDir: -1, filter: "", sortSet: false };
const COLORS = ["#c2410c", "#1d4ed8", "#15803d", "#7c3aed", "#be185d", "#0e7490"];

function chart(series, opts) {
  // series: [{name, points: [[x, y], ...]}]; one circle per point.
  const W = opts.width || 640, H = opts.height || 220, P = 36;
  const all = series.flatMap((s) => s.points);
  if (!all.length) return `<p class="muted">No ${esc(opts.what || "points")} yet.</p>`;
  const xs = all.map((p) => p[0]), ys = all.map((p) => p[1]);
  let [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  if (x0 === x1) { x0 -= 1; x1 += 1; }
  if (y0 === y1) { y0 -= 1; y1 += 1; }
  const X = (x) => P + (x - x0) / (x1 - x0) * (W - 2 * P), Y = (y) => H - P + (y - y0) / (y1 - y0) * (2 * P - H);
  let svg = `<svg class="chart ${esc(opts.cls || "")}" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}">`;
  svg += `<line class="axis" x1="${P}" y1="${H - P}" x2="${W - P}" y2="${H - P}"/><line class="axis" x1="${P}" y1="${P}" x2="${P}" y2="${H - P}"/>`;
  svg += `<text x="${P}" y="${H - 10}">${fmt(x0)}</text><text x="${W - P}" y="${H - 10}" text-anchor="end">${fmt(x1)}</text>`;
  svg += `<text x="4" y="${P}">${fmt(y1)}</text><text x="4" y="${H - P}">${fmt(y0)}</text>`;
  series.forEach((s, i) => {
    const c = COLORS[i % COLORS.length];
    if (opts.lines !== false) svg += `<polyline stroke="${c}" points="${s.points.map((p) => X(p[0]) + "," + Y(p[1])).join(" ")}"/>`;
    for (const p of s.points) svg += `<circle data-series="${esc(s.name)}" cx="${X(p[0])}" cy="${Y(p[1])}" r="3" fill="${c}"><title>${esc(s.name)} ${fmt(p[0])}: ${fmt(p[1])}</title></circle>`;
    svg += `<text x="${W - P}" y="${P + 14 * i}" text-anchor="end" fill="${c}">${esc(s.name)}</text>`;
  });
  return svg + "</svg>";
}

async function overview() {
  const e = await api("/experiment");
  crumbs.innerHTML = esc(e.name);
  const done = e.stages.reduce((a, s) => a + s.done, 0), total = e.stages.reduce((a, s) => a + s.total, 0);
  const running = e.stages.reduce((a, s) => a + s.running, 0), failed = e.stages.reduce((a, s) => a + s.failed, 0);
  const tb = e.tensorboard
    ? `<a href="${esc(e.tensorboard)}" target="_blank">Open TensorBoard</a>`
    : `<span class="muted">TensorBoard is not running. Install it (<code>pip install tensorboard</code>) and flambe starts it with the next run, or run <code>tensorboard --logdir ${esc(e.dir)}</code>.</span>`;
  view.innerHTML = `<h1>${esc(e.name)} <span class="status-${esc(e.status)}" data-testid="status">${esc(e.status)}</span></h1>
    <div class="cards">
      <div class="card"><div class="k">trials done</div><div class="v" data-testid="trial-count">${done}/${total}</div></div>
      <div class="card"><div class="k">running</div><div class="v">${running}</div></div>
      <div class="card"><div class="k">failed</div><div class="v">${failed}</div></div>
      <div class="card"><div class="k">elapsed</div><div class="v">${dur(e.elapsed_s)}</div></div>
    </div>
    <p>${tb}</p>
    <table><thead><tr><th>stage</th><th class="num">done</th><th class="num">running</th><th class="num">failed</th><th class="num">stopped</th><th>metric</th><th>best trial</th><th class="num">best</th></tr></thead><tbody>
    ${e.stages.map((s) => `<tr class="stage-row"><td><a href="#/stage/${encodeURIComponent(s.name)}">${esc(s.name)}</a></td>
      <td class="num">${s.done}/${s.total}</td><td class="num">${s.running}</td><td class="num">${s.failed}</td><td class="num">${s.stopped}</td>
      <td>${esc(s.metric ? s.metric + " (" + s.mode + ")" : "–")}</td>
      <td>${s.best ? `<a href="#/trial/${encodeURIComponent(s.best.id)}">${esc(s.best.id)}</a>` : "–"}</td><td class="num">${fmt(s.best && s.best.value)}</td></tr>`).join("")}
    </tbody></table>`;
}

function sortValue(t, key) {
  if (key === "metric") return t.best_metric;
  if (key === "duration") return t.duration_s;
  if (key === "id" || key === "status" || key === "host") return t[key];
  return t.params[key];
}

async function stage(name) {
  const s = await api("/stages/" + encodeURIComponent(name));
  crumbs.innerHTML = `<a href="#/">overview</a> / ${esc(name)}`;
  const filter = ui.filter.toLowerCase();
  let rows = s.trials.filter((t) => !filter || JSON.stringify([t.id, t.status, t.params, t.host]).toLowerCase().includes(filter));
  if (ui.sortSet) {
    rows = rows.slice().sort((a, b) => {
      const x = sortValue(a, ui.sortKey), y = sortValue(b, ui.sortKey);
      if (x === y) return 0;
      if (x === null || x === undefined) return 1;
      if (y === null || y === undefined) return -1;
      return (x < y ? -1 : 1) * ui.sortDir;
    });
  }
  const arrow = (k) => ui.sortSet && ui.sortKey === k ? (ui.sortDir > 0 ? " ▲" : " ▼") : "";
  const head = [["id", "trial"], ["status", "status"], ...s.params.map((p) => [p, p]), ["metric", s.metric || "metric"], ["duration", "time"], ["host", "host"]];
  // The chart is in trial order (x: trial number), the table in rank order.
  const byId = s.trials.slice().sort((a, b) => (a.id < b.id ? -1 : 1));
  const points = byId.map((t, i) => [i, t.best_metric]).filter((p) => p[1] !== null);
  const hadFocus = document.activeElement && document.activeElement.id === "filter";
  view.innerHTML = `<h1>stage ${esc(name)}</h1>
    ${s.metric ? chart([{ name: s.metric, points }], { cls: "stage-chart", lines: false, what: "metrics" }) : ""}
    <div><input type="search" id="filter" placeholder="filter trials…" value="${esc(ui.filter)}"></div>
    <table id="trials"><thead><tr>${head.map(([k, label]) => `<th data-sort="${esc(k)}" class="${k === "metric" || k === "duration" ? "num" : ""}">${esc(label)}${arrow(k)}</th>`).join("")}</tr></thead><tbody>
    ${rows.map((t) => `<tr class="trial-row${s.survivors.includes(t.id) && s.survivors.length < s.trials.length ? " survivor" : ""}" data-id="${esc(t.id)}">
      <td><a href="#/trial/${encodeURIComponent(t.id)}">${esc(t.id)}</a></td><td class="status-${esc(t.status)}">${esc(t.status)}</td>
      ${s.params.map((p) => `<td>${esc(fmt(t.params[p]))}</td>`).join("")}
      <td class="num metric">${fmt(t.best_metric)}</td><td class="num">${dur(t.duration_s)}</td><td>${esc(t.host || "–")}</td></tr>`).join("")}
    </tbody></table>`;
  const input = document.getElementById("filter");
  input.oninput = () => { ui.filter = input.value; stage(name); };
  if (hadFocus) { input.focus(); input.setSelectionRange(input.value.length, input.value.length); }
  for (const th of view.querySelectorAll("th[data-sort]")) {
    th.onclick = () => {
      const k = th.dataset.sort;
      if (ui.sortSet && ui.sortKey === k) ui.sortDir = -ui.sortDir;
      else { ui.sortKey = k; ui.sortDir = k === "metric" && s.mode === "max" ? -1 : 1; ui.sortSet = true; }
      stage(name);
    };
  }
}

async function trial(id) {
  const [t, m] = await Promise.all([api("/trials/" + encodeURIComponent(id)), api("/trials/" + encodeURIComponent(id) + "/metrics")]);
  const [out, err] = await Promise.all([api(`/trials/${encodeURIComponent(id)}/log?stream=stdout&tail=20000`, true), api(`/trials/${encodeURIComponent(id)}/log?stream=stderr&tail=20000`, true)]);
  crumbs.innerHTML = `<a href="#/">overview</a> / <a href="#/stage/${encodeURIComponent(t.stage)}">${esc(t.stage)}</a> / ${esc(id)}`;
  const names = Object.keys(m.metrics);
  const main = t.metric && m.metrics[t.metric] ? [t.metric] : names.slice(0, 1);
  const others = names.filter((n) => !main.includes(n));
  const logEl = document.getElementById("log-stdout");
  const atBottom = !logEl || logEl.scrollTop + logEl.clientHeight >= logEl.scrollHeight - 4;
  const base = `/api/v1/trials/${encodeURIComponent(id)}`;
  view.innerHTML = `<h1>trial ${esc(id)} <span class="status-${esc(t.status)}" data-testid="trial-status">${esc(t.status)}</span></h1>
    <div class="cards">
      <div class="card"><div class="k">${esc(t.metric || "metric")} (best)</div><div class="v">${fmt(t.best_metric)}</div></div>
      <div class="card"><div class="k">best step</div><div class="v">${fmt(t.best_step)}</div></div>
      <div class="card"><div class="k">attempts</div><div class="v">${t.attempts}</div></div>
      <div class="card"><div class="k">time</div><div class="v">${dur(t.duration_s)}</div></div>
      <div class="card"><div class="k">parent</div><div class="v">${t.parent ? `<a href="#/trial/${encodeURIComponent(t.parent)}">${esc(t.parent)}</a>` : "–"}</div></div>
    </div>
    ${t.error ? `<p class="status-failed">${esc(t.error)}</p>` : ""}
    <h2>params</h2><table><tbody>${Object.entries(t.params).map(([k, v]) => `<tr><td>${esc(k)}</td><td>${esc(fmt(v))}</td></tr>`).join("") || `<tr><td class="muted">none</td></tr>`}</tbody></table>
    ${(t.schedule || []).length ? `<h2>PBT schedule</h2><table data-testid="schedule"><thead><tr><th>from attempt</th><th>step</th><th>from</th><th>params</th></tr></thead><tbody>${t.schedule.map((e) => `<tr><td class="num">${e.attempt}</td><td class="num">${e.step}</td><td><a href="#/trial/${encodeURIComponent(e.donor)}">${esc(e.donor)}</a></td><td>${esc(Object.entries(e.params).map(([k, v]) => `${k}=${fmt(v)}`).join(", "))}</td></tr>`).join("")}</tbody></table>` : ""}
    <h2>metrics</h2>
    ${chart(main.map((n) => ({ name: n, points: m.metrics[n] })), { cls: "curve", what: "metrics" })}
    ${others.length ? chart(others.map((n) => ({ name: n, points: m.metrics[n] })), { cls: "curve-others", what: "metrics" }) : ""}
    <h2>output</h2>
    <p class="downloads"><a id="download-output" href="${withToken(base + "/output.tar.gz")}" download>output folder (.tar.gz)</a>
      <a href="${withToken(base + "/files/stdout.log")}" download>stdout.log</a><a href="${withToken(base + "/files/stderr.log")}" download>stderr.log</a></p>
    <p class="muted">${t.files.length} files in out/: ${t.files.slice(0, 20).map(esc).join(", ")}</p>
    <h2>log</h2><pre class="log" id="log-stdout">${esc(out)}</pre>
    ${err.trim() ? `<h2>stderr</h2><pre class="log">${esc(err)}</pre>` : ""}`;
  const newLog = document.getElementById("log-stdout");
  if (atBottom) newLog.scrollTop = newLog.scrollHeight;
}

let timer = null;
async function render() {
  clearTimeout(timer);
  const [, kind, arg] = (location.hash.match(/^#\/(stage|trial)\/(.+)$/) || []);
  const live = document.getElementById("live");
  try {
    if (kind === "stage") await stage(decodeURIComponent(arg));
    else if (kind === "trial") await trial(decodeURIComponent(arg));
    else await overview();
    live.textContent = "live · updated " + new Date().toLocaleTimeString();
  } catch (e) {
    view.innerHTML = `<p class="status-failed">${esc(e.message)}</p>`;
    live.textContent = "retrying…";
  }
  timer = setTimeout(render, 1000);
}
window.addEventListener("hashchange", () => { ui.filter = ""; ui.sortSet = false; render(); });
render();
