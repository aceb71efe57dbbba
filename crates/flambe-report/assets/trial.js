// The trial view (#/trial/ID): its figures, params, every metric on its own
// chart (hover values, drag to zoom, log y), PBT's params over steps, the
// downloads and the log tail, which follows while the trial runs.

import { api, h, fmt, dur, link, setText, withToken, PALETTE } from "./util.js";
import { lineChart } from "./charts.js";

export function trialView(main, id, crumbs) {
  const base = `/trials/${encodeURIComponent(id)}`;
  const status = h("span", { "data-testid": "trial-status" });
  const cards = {};
  const card = (key, label) => {
    cards[key] = h("div", { class: "v" });
    return h("div", { class: "card" }, h("div", { class: "k" }, label), cards[key]);
  };
  const metricLabel = h("div", { class: "k" }, "metric (best)");
  cards.best = h("div", { class: "v" });
  const error = h("p", { class: "status-failed", hidden: true });
  const params = h("tbody");
  const schedule = h("div");
  const charts = h("div", { class: "grid", id: "metric-charts" });
  const files = h("p", { class: "muted" });
  const out = h("pre", { class: "log", id: "log-stdout", tabindex: "0", "aria-label": "stdout" });
  const errBox = h("div");
  const download = h("p", { class: "downloads" },
    h("a", { id: "download-output", href: withToken("api/v1" + base + "/output.tar.gz"), download: true }, "output folder (.tar.gz)"),
    h("a", { href: withToken("api/v1" + base + "/files/stdout.log"), download: true }, "stdout.log"),
    h("a", { href: withToken("api/v1" + base + "/files/stderr.log"), download: true }, "stderr.log"));
  main.append(h("h1", {}, `trial ${id} `, status),
    h("div", { class: "cards" }, h("div", { class: "card" }, metricLabel, cards.best), card("step", "best step"), card("attempts", "attempts"), card("time", "time"), card("parent", "parent")),
    error, h("h2", {}, "params"), h("div", { class: "scroll" }, h("table", {}, h("caption", { class: "sr-only" }, "params"), params)),
    schedule, h("h2", {}, "metrics"), charts, h("h2", {}, "output"), download, files, h("h2", {}, "log"), out, errBox);
  const metricCharts = new Map();
  let pbtChart = null, paramsKey = "";

  function showParams(t) {
    const key = JSON.stringify(t.params);
    if (key === paramsKey) return;
    paramsKey = key;
    const entries = Object.entries(t.params);
    params.replaceChildren(...(entries.length ? entries.map(([k, v]) => h("tr", {}, h("th", { scope: "row" }, k), h("td", {}, fmt(v)))) : [h("tr", {}, h("td", { class: "muted" }, "none"))]));
  }

  function showSchedule(t) {
    const events = t.schedule || [];
    if (!events.length || schedule.dataset.n === String(events.length)) return;
    schedule.dataset.n = String(events.length);
    const rows = events.map((e) => h("tr", {}, h("td", { class: "num" }, e.attempt), h("td", { class: "num" }, e.step),
      h("td", {}, h("a", { href: link.trial(e.donor) }, e.donor)), h("td", {}, Object.entries(e.params).map(([k, v]) => `${k}=${fmt(v)}`).join(", "))));
    const box = h("div", { class: "grid" });
    schedule.replaceChildren(h("h2", {}, "PBT schedule"),
      h("div", { class: "scroll" }, h("table", { "data-testid": "schedule" }, h("thead", {}, h("tr", {}, ["from attempt", "step", "from", "params"].map((c) => h("th", { scope: "col" }, c)))), h("tbody", {}, rows))), box);
    // Params over steps: each numeric param's value from step 0 on.
    const names = Object.keys(t.params).filter((k) => typeof t.params[k] === "number" && events.some((e) => typeof e.params[k] === "number"));
    pbtChart?.destroy();
    pbtChart = null;
    if (!names.length) return;
    pbtChart = lineChart(box, { title: "params over steps (PBT)", names, colors: names.map((_, i) => PALETTE[i % PALETTE.length]), testid: "pbt-params", stepped: true });
    const xs = [0, ...events.map((e) => e.step)];
    pbtChart.setData(xs, names.map((n) => { let v = t.params[n]; return [v, ...events.map((e) => (v = typeof e.params[n] === "number" ? e.params[n] : v))]; }));
  }

  async function showLog() {
    const [stdout, stderr] = await Promise.all([api(base + "/log?stream=stdout&tail=20000", true), api(base + "/log?stream=stderr&tail=20000", true)]);
    const atBottom = out.scrollTop + out.clientHeight >= out.scrollHeight - 4;
    if (out.textContent !== stdout) { out.textContent = stdout; if (atBottom) out.scrollTop = out.scrollHeight; }
    if (stderr.trim()) {
      if (!errBox.firstChild) errBox.append(h("h2", {}, "stderr"), h("pre", { class: "log", tabindex: "0", "aria-label": "stderr" }));
      setText(errBox.lastChild, stderr);
    }
  }

  return {
    async update() {
      const [t, m] = await Promise.all([api(base), api(base + "/metrics")]);
      crumbs([["overview", "#/"], [t.stage, link.stage(t.stage)], [id]]);
      setText(status, t.status);
      status.className = "status-" + t.status;
      setText(metricLabel, `${t.metric || "metric"} (best)`);
      setText(cards.best, fmt(t.best_metric));
      setText(cards.step, fmt(t.best_step));
      setText(cards.attempts, t.attempts);
      setText(cards.time, dur(t.duration_s));
      if (t.parent && !cards.parent.firstChild?.href) cards.parent.replaceChildren(h("a", { href: link.trial(t.parent) }, t.parent));
      else if (!t.parent) setText(cards.parent, "–");
      error.hidden = !t.error;
      setText(error, t.error || "");
      showParams(t);
      showSchedule(t);
      // The stage metric first, then the others by name: one chart each.
      const names = Object.keys(m.metrics).sort((a, b) => (a === t.metric ? -1 : b === t.metric ? 1 : a < b ? -1 : 1));
      if (!names.length && !charts.firstChild) charts.append(h("p", { class: "muted" }, "No metrics yet."));
      names.forEach((n, i) => {
        if (!metricCharts.has(n)) {
          if (charts.firstChild?.tagName === "P") charts.replaceChildren();
          const c = lineChart(charts, { title: n, names: [n], colors: [PALETTE[i % PALETTE.length]], testid: "metric-chart" });
          c.el.dataset.metric = n;
          metricCharts.set(n, c);
        }
        const pts = m.metrics[n];
        metricCharts.get(n).setData(pts.map((p) => p[0]), [pts.map((p) => p[1])]);
      });
      setText(files, `${t.files.length} files in out/: ${t.files.slice(0, 20).join(", ")}`);
      await showLog();
    },
    destroy() { metricCharts.forEach((c) => c.destroy()); pbtChart?.destroy(); },
  };
}
