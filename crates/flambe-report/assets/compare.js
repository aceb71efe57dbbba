// Compare (#/compare/A,B,…): 2–5 trials' curves overlaid per metric, and
// their params and outcomes side by side (rows that differ stand out). The
// URL is the selection, so it can be shared.

import { api, h, fmt, dur, link, setText, PALETTE } from "./util.js";
import { lineChart } from "./charts.js";

export function compareView(main, arg, crumbs) {
  const ids = arg.split(",").filter(Boolean).slice(0, 5);
  crumbs([["overview", "#/"], ["compare " + ids.join(", ")]]);
  const colors = ids.map((_, i) => PALETTE[i % PALETTE.length]);
  const tbody = h("tbody");
  const charts = h("div", { class: "grid" });
  main.append(h("h1", {}, "compare"),
    h("div", { class: "scroll" }, h("table", { id: "compare-table" },
      h("caption", { class: "sr-only" }, "params and outcomes of the compared trials"),
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, ""), ids.map((id, i) => h("th", { scope: "col" }, h("span", { class: "swatch", style: `background:${colors[i]}` }), h("a", { href: link.trial(id) }, id))))),
      tbody)),
    h("h2", {}, "metrics"), charts);
  const byMetric = new Map();
  const rowsByKey = new Map();

  function row(key, label, values) {
    let tr = rowsByKey.get(key);
    if (!tr) {
      tr = h("tr", {}, h("th", { scope: "row" }, label), values.map(() => h("td", {})));
      rowsByKey.set(key, tr);
      tbody.append(tr);
    }
    values.forEach((v, i) => setText(tr.children[i + 1], v));
    tr.classList.toggle("differs", new Set(values).size > 1);
  }

  return {
    async update() {
      if (ids.length < 2) throw new Error("compare needs 2 to 5 trials: #/compare/A,B");
      const trials = await Promise.all(ids.map((id) => api("/trials/" + encodeURIComponent(id))));
      const metrics = await Promise.all(ids.map((id) => api("/trials/" + encodeURIComponent(id) + "/metrics")));
      row("stage", "stage", trials.map((t) => t.stage));
      row("status", "status", trials.map((t) => t.status));
      row("best", `${trials[0].metric || "metric"} (best)`, trials.map((t) => fmt(t.best_metric)));
      row("best_step", "best step", trials.map((t) => fmt(t.best_step)));
      row("attempts", "attempts", trials.map((t) => String(t.attempts)));
      row("time", "time", trials.map((t) => dur(t.duration_s)));
      row("host", "host", trials.map((t) => t.host || "–"));
      const params = [...new Set(trials.flatMap((t) => Object.keys(t.params)))].sort();
      for (const p of params) row("param:" + p, p, trials.map((t) => fmt(t.params[p])));
      const names = [...new Set(metrics.flatMap((m) => Object.keys(m.metrics)))].sort();
      for (const n of names) {
        if (!byMetric.has(n)) {
          const c = lineChart(charts, { title: n, names: ids, colors, testid: "compare-chart" });
          c.el.dataset.metric = n;
          byMetric.set(n, c);
        }
        const aligned = uPlot.join(metrics.map((m) => {
          const pts = m.metrics[n] || [];
          return [pts.map((p) => p[0]), pts.map((p) => p[1])];
        }));
        byMetric.get(n).setData(aligned[0], aligned.slice(1));
      }
    },
    destroy() { byMetric.forEach((c) => c.destroy()); },
  };
}
