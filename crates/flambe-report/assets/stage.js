// The stage view (#/stage/NAME?sel=a,b): every trial's curve overlaid,
// parallel coordinates with brushes that filter the table, the metric
// against each param, and the trial table. The selection (for compare)
// lives in the URL, so the page can be shared as it is.

import { api, h, link, route, setHashQuery, setText } from "./util.js";
import { stageCurves } from "./curves.js";
import { parallelCoordinates } from "./parcoords.js";
import { scatterChart } from "./charts.js";
import { trialTable } from "./table.js";

export function stageView(main, name, crumbs) {
  crumbs([["overview", "#/"], [name]]);
  const heading = h("h1", {}, "stage ", name);
  const compare = h("a", { class: "button", id: "compare", "aria-disabled": "true" }, "compare");
  const selection = h("span", { class: "muted", "aria-live": "polite" });
  const top = h("div", { class: "grid" });
  const scatters = h("div", { class: "grid small" });
  const scattersHead = h("h2", { hidden: true }, "the metric by param");
  main.append(heading, top, scattersHead, scatters,
    h("h2", {}, "trials"), h("p", { class: "select-bar" }, compare, " ", selection));
  const tableBox = h("div");
  main.append(tableBox);
  const curves = stageCurves(top, name);
  let pc = null, table = null, plots = null;
  let selected = (route().query.get("sel") || "").split(",").filter(Boolean).slice(0, 5);

  function showSelection() {
    setHashQuery("sel", selected.join(","));
    const ok = selected.length >= 2 && selected.length <= 5;
    compare.setAttribute("aria-disabled", ok ? "false" : "true");
    if (ok) compare.setAttribute("href", link.compare(selected)); else compare.removeAttribute("href");
    setText(selection, selected.length ? `${selected.length} selected${selected.length > 5 ? " (at most 5 compare)" : ""}: ${selected.join(", ")}` : "pick 2–5 trials to compare");
    curves.select(selected);
  }

  return {
    async update() {
      // The stage and its new points are fetched together.
      const [s, points] = await Promise.all([api("/stages/" + encodeURIComponent(name)), curves.fetch()]);
      if (!table) {
        const metric = s.metric || "metric";
        if (s.params.length) {
          pc = parallelCoordinates(top, {
            params: s.params, logParams: s.log_params || [], metric,
            onBrush: (pass) => { table.filter(pass); curves.filter(pass); },
          });
          plots = s.params.map((p) => ({ p, chart: null }));
        }
        table = trialTable(tableBox, {
          params: s.params, metricName: s.metric, mode: s.mode,
          onSelect: (ids) => { selected = ids; showSelection(); },
        });
        table.select(selected);
        showSelection();
      }
      table.update(s.trials, s.survivors);
      pc?.update(s.trials);
      if (plots && s.metric) {
        scattersHead.hidden = false;
        for (const item of plots) {
          const vals = s.trials.map((t) => t.params[item.p]).filter((v) => v !== null && v !== undefined);
          const kind = (s.log_params || []).includes(item.p) ? "log" : vals.every((v) => typeof v === "number") ? "linear" : "category";
          item.chart ??= scatterChart(scatters, { param: item.p, metric: s.metric, kind });
          item.chart.setPoints(s.trials.map((t) => [t.params[item.p], t.best_metric]));
        }
      }
      curves.update(points, s.trials, s.survivors);
      setText(heading, `stage ${name} · ${s.trials.length} trials`);
    },
    destroy() { curves.destroy(); pc?.destroy(); plots?.forEach((x) => x.chart?.destroy()); },
  };
}
