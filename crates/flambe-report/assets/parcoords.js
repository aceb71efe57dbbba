// Parallel coordinates on uPlot: each param is an axis, then the metric;
// each trial is a line across them (values scaled to 0..1 per axis, log for
// `!lu` params, in order for categories). Drag up or down along an axis to
// brush a range of it; a click on an axis clears its brush. Brushes combine;
// `onBrush` gets the set of trial ids inside every brush (null: no brush).
// The element carries `data-axes` (each axis's name and x in CSS pixels of
// the plot) and `data-brush` (each brush's range, in the param's units).

import { h, fmt, rankColor } from "./util.js";
import { fitWidth } from "./charts.js";

export function parallelCoordinates(parent, { params, logParams, metric, onBrush }) {
  const names = [...params, metric];
  const el = h("div", { class: "chart parcoords", "data-testid": "parcoords" });
  const caption = h("span", { class: "brushes muted" }, "drag along an axis to filter");
  const plot = h("div", { class: "plot" });
  el.append(h("div", { class: "chart-head" }, h("span", { class: "chart-title" }, "parallel coordinates"), caption), plot);
  parent.append(el);
  const state = { rows: [], lines: [], axes: [], brushes: new Map(), pass: null, downX: null, u: null };
  const ro = fitWidth(plot, () => state.u);

  // Each axis: how to scale a trial's value to 0..1, and back for labels.
  function buildAxes(rows) {
    return names.map((name, i) => {
      const isMetric = i === names.length - 1;
      const vals = rows.map((r) => (isMetric ? r.best_metric : r.params[name])).filter((v) => v !== null && v !== undefined);
      const numeric = vals.every((v) => typeof v === "number");
      if (!numeric) {
        const cats = [...new Set(vals.map(String))].sort();
        const n = Math.max(1, cats.length - 1);
        return { name, kind: "category", cats, norm: (v) => (v === null || v === undefined ? null : cats.indexOf(String(v)) / n), label: (t) => cats[Math.round(t * n)] ?? "" };
      }
      const log = logParams.includes(name) && vals.every((v) => v > 0);
      const f = log ? Math.log10 : (v) => v;
      let lo = Math.min(...vals.map(f)), hi = Math.max(...vals.map(f));
      if (!isFinite(lo)) { lo = 0; hi = 1; }
      if (lo === hi) { lo -= 0.5; hi += 0.5; }
      return { name, kind: log ? "log" : "linear", lo, hi, norm: (v) => (v === null || v === undefined ? null : (f(v) - lo) / (hi - lo)), label: (t) => { const x = lo + t * (hi - lo); return fmt(log ? 10 ** x : x); } };
    });
  }
  const valueOf = (r, i) => (i === names.length - 1 ? r.best_metric : r.params[names[i]]);

  function passes(r) {
    for (const [i, [lo, hi]] of state.brushes) {
      const t = state.axes[i].norm(valueOf(r, i));
      if (t === null || t < lo || t > hi) return false;
    }
    return true;
  }

  function emit() {
    if (!state.brushes.size) { state.pass = null; caption.textContent = "drag along an axis to filter"; el.dataset.brush = "{}"; onBrush(null); return; }
    state.pass = new Set(state.rows.filter(passes).map((r) => r.id));
    const shown = {};
    for (const [i, [lo, hi]] of state.brushes) {
      const a = state.axes[i];
      shown[a.name] = a.kind === "category" ? a.cats.filter((_, k) => { const t = k / Math.max(1, a.cats.length - 1); return t >= lo && t <= hi; })
        : [a.kind === "log" ? 10 ** (a.lo + lo * (a.hi - a.lo)) : a.lo + lo * (a.hi - a.lo), a.kind === "log" ? 10 ** (a.lo + hi * (a.hi - a.lo)) : a.lo + hi * (a.hi - a.lo)];
    }
    el.dataset.brush = JSON.stringify(shown);
    caption.textContent = Object.entries(shown).map(([k, v]) => `${k} ∈ ${Array.isArray(v) && typeof v[0] === "number" ? `[${fmt(v[0])}, ${fmt(v[1])}]` : `{${v.join(", ")}}`}`).join(" and ") + ` · ${state.pass.size} trials`;
    onBrush(state.pass);
  }

  function drawAxes(u) {
    const ctx = u.ctx, dpr = devicePixelRatio;
    const top = u.bbox.top, bottom = u.bbox.top + u.bbox.height;
    const where = [];
    ctx.save();
    ctx.font = `${11 * dpr}px system-ui, sans-serif`;
    ctx.textAlign = "center";
    state.axes.forEach((a, i) => {
      const x = u.valToPos(i, "x", true);
      where.push({ name: a.name, x: x / dpr, top: top / dpr, bottom: bottom / dpr });
      ctx.strokeStyle = "#6b7280"; ctx.lineWidth = dpr;
      ctx.beginPath(); ctx.moveTo(x, top); ctx.lineTo(x, bottom); ctx.stroke();
      const b = state.brushes.get(i);
      if (b) {
        ctx.fillStyle = "rgba(29, 78, 216, 0.25)";
        const y1 = u.valToPos(b[1], "y", true), y0 = u.valToPos(b[0], "y", true);
        ctx.fillRect(x - 7 * dpr, y1, 14 * dpr, y0 - y1);
      }
      ctx.fillStyle = "#1d2330";
      ctx.fillText(a.name + (a.kind === "log" ? " (log)" : ""), x, top - 6 * dpr);
      ctx.fillStyle = "#6b7280";
      ctx.fillText(a.label(1), x, top + 11 * dpr);
      ctx.fillText(a.label(0), x, bottom - 3 * dpr);
    });
    ctx.restore();
    el.dataset.axes = JSON.stringify(where);
  }

  // The lines are drawn straight onto uPlot's canvas, worst first so the
  // best end on top, faded ones in one path: 2,000 trials as uPlot series
  // took ~300 ms to set up; as paths here they take a few.
  function drawLines(u) {
    const ctx = u.ctx, dpr = devicePixelRatio, n = state.rows.length;
    const xs = names.map((_, i) => u.valToPos(i, "x", true));
    const path = (values) => {
      let pen = false;
      values.forEach((t, i) => {
        if (t === null || t === undefined) { pen = false; return; }
        const y = u.valToPos(t, "y", true);
        if (pen) ctx.lineTo(xs[i], y); else ctx.moveTo(xs[i], y);
        pen = true;
      });
    };
    ctx.save();
    ctx.lineWidth = dpr;
    ctx.beginPath();
    ctx.strokeStyle = "rgba(150,150,150,0.12)";
    state.lines.forEach((values, k) => { if (state.pass && !state.pass.has(state.rows[k].id)) path(values); });
    ctx.stroke();
    for (let k = n - 1; k >= 0; k--) {
      if (state.pass && !state.pass.has(state.rows[k].id)) continue;
      ctx.beginPath();
      ctx.strokeStyle = rankColor(k, n);
      path(state.lines[k]);
      ctx.stroke();
    }
    ctx.restore();
  }

  function make() {
    state.u?.destroy();
    const u = new uPlot({
      width: Math.max(240, plot.clientWidth || 600), height: 260,
      padding: [28, 40, 8, 40],
      legend: { show: false },
      cursor: { x: false, y: false, drag: { x: false, y: true, setScale: false }, points: { show: false } },
      scales: { x: { time: false, range: [0, names.length - 1] }, y: { range: [-0.02, 1.02] } },
      axes: [{ show: false }, { show: false }],
      series: [{}],
      hooks: {
        draw: [drawLines, drawAxes],
        setSelect: [(u) => {
          if (state.downX === null) return;
          const i = Math.round(u.posToVal(state.downX, "x"));
          if (u.select.height > 3 && i >= 0 && i < names.length) {
            state.brushes.set(i, [u.posToVal(u.select.top + u.select.height, "y"), u.posToVal(u.select.top, "y")]);
            emit();
          }
          u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
          u.redraw(false, false);
        }],
      },
    }, [names.map((_, i) => i)], plot);
    u.over.addEventListener("mousedown", (e) => { state.downX = e.offsetX; state.downY = e.offsetY; });
    u.over.addEventListener("mouseup", (e) => {
      // A click (no drag) on an axis clears its brush.
      if (state.downX === null || Math.abs(e.offsetY - state.downY) > 3) return;
      const i = Math.round(u.posToVal(e.offsetX, "x"));
      if (Math.abs(u.valToPos(i, "x") - e.offsetX) < 12 && state.brushes.delete(i)) { emit(); u.redraw(false, false); }
    });
    state.u = u;
    el._uplot = u;
  }

  return {
    el,
    /** Rows best first. Rebuilt only when the trials or their values change. */
    update(rows) {
      const key = JSON.stringify(rows.map((r) => [r.id, r.best_metric, r.params]));
      if (key === state.key) return;
      state.key = key;
      state.rows = rows;
      state.axes = buildAxes(rows);
      state.lines = rows.map((r) => names.map((_, i) => state.axes[i].norm(valueOf(r, i))));
      if (!state.u) make();
      if (state.brushes.size) emit();
      state.u.redraw(false, false);
    },
    destroy() { ro.disconnect(); state.u?.destroy(); },
  };
}
