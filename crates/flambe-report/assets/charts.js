// Charts on uPlot (vendored, global `uPlot`): each chart is made once and
// fed with setData, so a zoom survives updates and a 10,000-step curve is
// one canvas path, not 10,000 DOM nodes. The chart's element carries
// `_uplot` and `data-x-min`/`data-x-max` (its shown x-range) for tests and
// scripts.

import { h, fmt, tick } from "./util.js";

const SIZE_DEFAULT = { width: 600, height: 240 };

function widthOf(el) {
  return Math.max(240, Math.floor(el.clientWidth || SIZE_DEFAULT.width));
}

/** Keep a chart as wide as its element. */
export function fitWidth(el, get) {
  const ro = new ResizeObserver(() => {
    const u = get();
    if (u && Math.abs(u.width - widthOf(el)) > 2) u.setSize({ width: widthOf(el), height: u.height });
  });
  ro.observe(el);
  return ro;
}

/** Record the shown x-range on the element, and whether the user zoomed. */
function rangeHooks(el, state) {
  return {
    setScale: [(u, key) => {
      if (key !== "x") return;
      el.dataset.xMin = String(u.scales.x.min);
      el.dataset.xMax = String(u.scales.x.max);
    }],
    setSelect: [(u) => { if (u.select.width > 4) state.zoomed = true; }],
  };
}

/**
 * Lines over steps: `names` series with `colors`, fed `setData(xs, ys[])`
 * (`stepped`: each value holds until the next).
 * Drag to zoom the x-range, double-click to reset, hover for the step and
 * every value (the legend), and a log-y switch.
 */
export function lineChart(parent, { title, names, colors, xLabel = "step", height = 220, logSwitch = true, testid, stepped = false }) {
  const el = h("div", { class: "chart", "data-testid": testid });
  const head = h("div", { class: "chart-head" }, h("span", { class: "chart-title" }, title || ""));
  const state = { zoomed: false, log: false, data: [[], ...names.map(() => [])] };
  let u = null;
  if (logSwitch) {
    const box = h("input", { type: "checkbox", class: "log-y", "aria-label": `log scale for ${title || "y"}` });
    box.addEventListener("change", () => { state.log = box.checked; make(); });
    head.append(h("label", { class: "switch" }, box, " log y"));
  }
  const plot = h("div", { class: "plot" });
  el.append(head, plot);
  parent.append(el);
  const shown = () => state.log ? [state.data[0], ...state.data.slice(1).map((ys) => ys.map((v) => (v > 0 ? v : null)))] : state.data;
  function make() {
    u?.destroy();
    u = new uPlot({
      width: widthOf(plot), height,
      scales: { x: { time: false }, y: { distr: state.log ? 3 : 1 } },
      axes: [{ label: xLabel, size: 40 }, { size: 56, values: (_, ticks) => ticks.map(tick) }],
      series: [{ label: xLabel, value: (_, v) => fmt(v) }, ...names.map((n, i) => ({
        label: n, stroke: colors[i], width: 1.5, spanGaps: true, value: (_, v) => fmt(v), points: { size: 4 },
        // A value that holds until the next change (PBT's params) is a step, not a slope.
        paths: stepped ? uPlot.paths.stepped({ align: 1 }) : undefined,
      }))],
      hooks: rangeHooks(el, state),
    }, shown(), plot);
    u.over.addEventListener("dblclick", () => { state.zoomed = false; });
    el._uplot = u;
  }
  make();
  const ro = fitWidth(plot, () => u);
  return {
    el,
    setData(xs, ys) {
      state.data = [xs, ...ys];
      u.setData(shown(), !state.zoomed);
      if (state.zoomed) u.redraw(false, true);
    },
    destroy() { ro.disconnect(); u?.destroy(); },
  };
}

/** Curves of many series (x, ys aligned), as uPlot.join makes them. */
export function align(curves) {
  if (!curves.length) return [[]];
  return uPlot.join(curves.map((c) => [c.xs, c.ys]));
}

/**
 * The metric against one param, a point per trial. `kind`: "log" (a log
 * x-axis, for `!lu`), "category" (strings, booleans) or "linear".
 */
export function scatterChart(parent, { param, metric, kind, height = 200 }) {
  const el = h("div", { class: "chart scatter", "data-param": param });
  el.append(h("div", { class: "chart-head" }, h("span", { class: "chart-title" }, `${metric} by ${param}`)));
  const plot = h("div", { class: "plot" });
  el.append(plot);
  parent.append(el);
  const state = { zoomed: false, cats: [] };
  const u = new uPlot({
    width: widthOf(plot), height,
    scales: { x: { time: false, distr: kind === "log" ? 3 : 1 } },
    axes: [
      { label: param, size: 40, values: (_, ticks) => ticks.map((t) => kind === "category" ? (state.cats[t] ?? "") : tick(t)),
        splits: kind === "category" ? () => state.cats.map((_, i) => i) : undefined },
      { size: 56, values: (_, ticks) => ticks.map(tick) },
    ],
    series: [{ label: param, value: (_, v) => (v === null || v === undefined ? "–" : kind === "category" ? (state.cats[v] ?? "–") : fmt(v)) },
      { label: metric, stroke: "#c2410c", fill: "#c2410c", paths: () => null, points: { show: true, size: 7, stroke: "#c2410c", fill: "#c2410caa" }, value: (_, v) => fmt(v) }],
    hooks: rangeHooks(el, state),
  }, [[], []], plot);
  el._uplot = u;
  const ro = fitWidth(plot, () => u);
  return {
    el,
    /** points: [[paramValue, metric]]. */
    setPoints(points) {
      let pts = points.filter((p) => p[1] !== null && p[0] !== null && p[0] !== undefined);
      if (kind === "category") {
        const cats = [...new Set(pts.map((p) => String(p[0])))].sort();
        state.cats = cats;
        pts = pts.map((p) => [cats.indexOf(String(p[0])), p[1]]);
      } else if (kind === "log") pts = pts.filter((p) => p[0] > 0);
      pts.sort((a, b) => a[0] - b[0]);
      u.setData([pts.map((p) => p[0]), pts.map((p) => p[1])], !state.zoomed);
    },
    destroy() { ro.disconnect(); u.destroy(); },
  };
}
