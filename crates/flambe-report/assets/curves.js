// Every trial's curve of a stage's metric on one uPlot chart: coloured by
// rank (warm is best), survivors of `reduce` drawn thicker, trials the
// scheduler stopped marked with × where they stopped, trials outside a
// brush greyed. Fed by /stages/{stage}/metrics: one whole answer, then only
// the points recorded since (the cursor). Series are in trial order, so a
// live stage is fed with setData (a new chart only when trials are added);
// the best five and the selected are drawn again on top.

import { api, h, fmt, rankColor, tick } from "./util.js";
import { fitWidth } from "./charts.js";

const FADED = "rgba(150, 150, 150, 0.12)";

export function stageCurves(parent, stageName) {
  const el = h("div", { class: "chart curves", "data-testid": "stage-curves" });
  const title = h("span", { class: "chart-title" }, "learning curves");
  const tip = h("div", { class: "tip", role: "status", "aria-live": "polite", hidden: true });
  const plot = h("div", { class: "plot" });
  el.append(h("div", { class: "chart-head" }, title), plot, tip);
  parent.append(el);
  const state = {
    cursor: 0, metric: null, curves: new Map(), ids: [], all: [], rank: new Map(), survivors: new Set(),
    stopped: new Set(), pass: null, selected: new Set(), zoom: null, u: null,
  };
  const ro = fitWidth(plot, () => state.u);
  const colorOf = (id) => {
    if (state.pass && !state.pass.has(id)) return FADED;
    const r = state.rank.get(id);
    return r === undefined ? "rgba(120,120,120,0.5)" : rankColor(r, state.rank.size);
  };
  const widthOf = (id) => (state.selected.has(id) ? 3 : state.survivors.has(id) ? 2.2 : 1);

  function hover(u) {
    const idx = u.cursor.idx;
    if (idx === null || idx === undefined || u.cursor.left < 0) { tip.hidden = true; return; }
    let best = null;
    for (let si = 1; si < u.series.length; si++) {
      const v = u.data[si][idx];
      if (v === null || v === undefined) continue;
      const d = Math.abs(u.valToPos(v, "y") - u.cursor.top);
      if (!best || d < best.d) best = { d, si, v };
    }
    if (!best || best.d > 40) { tip.hidden = true; return; }
    tip.hidden = false;
    tip.textContent = `${state.ids[best.si - 1]} · step ${fmt(u.data[0][idx])} · ${state.metric} ${fmt(best.v)}`;
    tip.style.left = Math.min(u.cursor.left + 60, plot.clientWidth - 200) + "px";
    tip.style.top = u.cursor.top + 30 + "px";
  }

  /** The best five and the selected trials, again, over the others. */
  function drawOnTop(u) {
    const top = [...state.rank].filter(([, r]) => r < 5).map(([id]) => id).concat([...state.selected]);
    const ctx = u.ctx;
    ctx.save();
    ctx.beginPath();
    ctx.rect(u.bbox.left, u.bbox.top, u.bbox.width, u.bbox.height);
    ctx.clip();
    for (const id of new Set(top)) {
      const si = state.ids.indexOf(id) + 1;
      if (si < 1 || (state.pass && !state.pass.has(id))) continue;
      ctx.beginPath();
      ctx.strokeStyle = colorOf(id);
      ctx.lineWidth = widthOf(id) * devicePixelRatio;
      let pen = false;
      u.data[si].forEach((v, i) => {
        if (v === null || v === undefined) return;
        const x = u.valToPos(u.data[0][i], "x", true), y = u.valToPos(v, "y", true);
        if (pen) ctx.lineTo(x, y); else ctx.moveTo(x, y);
        pen = true;
      });
      ctx.stroke();
    }
    ctx.restore();
  }

  function drawStops(u) {
    const ctx = u.ctx;
    let marks = 0;
    ctx.save();
    ctx.lineWidth = 2 * devicePixelRatio;
    for (const id of state.stopped) {
      const si = state.ids.indexOf(id) + 1;
      if (si < 1) continue;
      const ys = u.data[si];
      let i = ys.length - 1;
      while (i >= 0 && (ys[i] === null || ys[i] === undefined)) i--;
      if (i < 0) continue;
      const x = u.valToPos(u.data[0][i], "x", true), y = u.valToPos(ys[i], "y", true), r = 4 * devicePixelRatio;
      ctx.strokeStyle = colorOf(id);
      ctx.beginPath();
      ctx.moveTo(x - r, y - r); ctx.lineTo(x + r, y + r); ctx.moveTo(x + r, y - r); ctx.lineTo(x - r, y + r);
      ctx.stroke();
      marks++;
    }
    ctx.restore();
    el.dataset.stoppedMarks = String(marks);
  }

  function make(data) {
    if (state.u) {
      const x = state.u.scales.x;
      state.zoom = state.zoomed ? [x.min, x.max] : null;
      state.u.destroy();
    }
    const u = new uPlot({
      width: Math.max(240, plot.clientWidth || 600), height: 300,
      legend: { show: false },
      cursor: { points: { show: false } },
      scales: { x: { time: false } },
      axes: [{ label: "step", size: 40 }, { size: 56, values: (_, t) => t.map(tick) }],
      series: [{}, ...state.ids.map((id) => ({ label: id, stroke: () => colorOf(id), width: widthOf(id), spanGaps: true, points: { show: false } }))],
      hooks: {
        setCursor: [hover],
        draw: [drawOnTop, drawStops],
        setScale: [(u, key) => { if (key === "x") { el.dataset.xMin = String(u.scales.x.min); el.dataset.xMax = String(u.scales.x.max); } }],
        setSelect: [(u) => { if (u.select.width > 4) state.zoomed = true; }],
      },
    }, data, plot);
    u.over.addEventListener("dblclick", () => { state.zoomed = false; });
    u.over.addEventListener("mouseleave", () => { tip.hidden = true; });
    if (state.zoom) u.setScale("x", { min: state.zoom[0], max: state.zoom[1] });
    state.u = u;
    el._uplot = u;
  }

  function redraw() {
    const ids = [...new Set([...state.curves.keys(), ...state.all])].sort();
    const none = { xs: [], ys: [] };
    const data = ids.length ? uPlot.join(ids.map((id) => [(state.curves.get(id) || none).xs, (state.curves.get(id) || none).ys])) : [[]];
    const sameSeries = state.u && ids.length === state.ids.length && ids.every((id, i) => id === state.ids[i]);
    state.ids = ids;
    if (sameSeries) {
      state.ids.forEach((id, i) => { state.u.series[i + 1].width = widthOf(id); });
      state.u.setData(data, !state.zoomed);
    } else make(data);
    el.dataset.series = String(ids.length);
  }

  return {
    el,
    /** The points recorded since the last fetch (all, the first time). */
    fetch() {
      const q = state.cursor ? `?after=${state.cursor}` : "";
      return api(`/stages/${encodeURIComponent(stageName)}/metrics${q}`);
    },
    /** New points `m` (from fetch), rows best first, the stage's survivors. */
    update(m, rows, survivors) {
      state.metric = m.metric;
      title.textContent = m.metric ? `${m.metric}: every trial's curve` : "no metric reported yet";
      let changed = false;
      if (m.full) { state.curves.clear(); changed = true; }
      for (const [id, c] of Object.entries(m.trials)) {
        let cur = state.curves.get(id);
        if (!cur || cur.attempt !== c.attempt) { cur = { attempt: c.attempt, xs: [], ys: [] }; state.curves.set(id, cur); }
        for (const [step, value] of c.points) {
          if (!cur.xs.length || step > cur.xs[cur.xs.length - 1]) { cur.xs.push(step); cur.ys.push(value); } else {
            const i = cur.xs.indexOf(step);
            if (i >= 0) cur.ys[i] = value;
          }
        }
        changed = true;
      }
      state.cursor = m.cursor;
      state.all = rows.map((r) => r.id);
      const rank = new Map(rows.filter((r) => r.best_metric !== null).map((r, i) => [r.id, i]));
      const stopped = new Set(rows.filter((r) => r.status === "stopped").map((r) => r.id));
      const looks = JSON.stringify([[...rank], [...stopped], survivors]);
      if (looks !== state.looks) { state.looks = looks; changed = true; }
      state.rank = rank; state.stopped = stopped;
      state.survivors = new Set(survivors.length < rows.length ? survivors : []);
      if (changed || !state.u) redraw();
    },
    /** Grey out trials outside `pass` (a Set of ids), or none (null). */
    filter(pass) { state.pass = pass; state.u?.redraw(false, false); },
    select(ids) {
      state.selected = new Set(ids);
      if (!state.u) return;
      state.ids.forEach((id, i) => { state.u.series[i + 1].width = widthOf(id); });
      state.u.redraw(false, false);
    },
    destroy() { ro.disconnect(); state.u?.destroy(); },
  };
}
