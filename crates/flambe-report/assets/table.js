// The trial table: one row element per trial, kept and updated in place
// (cells change text only when their value changed), sortable by any
// column with buttons in the headers (aria-sort says how), filtered by text
// and by a brush, with a checkbox per row to pick trials to compare.

import { h, fmt, dur, link, setText, setAttr } from "./util.js";

export function trialTable(parent, { params, metricName, mode, onSelect }) {
  const cols = [["id", "trial"], ["status", "status"], ...params.map((p) => [p, p]), ["metric", metricName || "metric"], ["duration", "time"], ["host", "host"]];
  // A page of rows at first: a table of 2,000 rows costs the browser more
  // to lay out each second than everything else on the page.
  const PAGE = 100;
  const ui = { key: null, dir: 1, text: "", pass: null, selected: new Set(), rows: [], byId: new Map(), all: false, keep: new Set() };
  const more = h("button", { type: "button", class: "more", hidden: true });
  more.addEventListener("click", () => { ui.all = !ui.all; render(); });
  const filter = h("input", { type: "search", id: "filter", placeholder: "filter trials…", "aria-label": "filter trials" });
  const count = h("span", { class: "muted", "aria-live": "polite" });
  const heads = cols.map(([k, label]) => {
    const btn = h("button", { type: "button", class: "sort" }, label);
    const th = h("th", { scope: "col", "data-sort": k, class: k === "metric" || k === "duration" ? "num" : "" }, btn);
    btn.addEventListener("click", () => {
      if (ui.key === k) ui.dir = -ui.dir;
      else { ui.key = k; ui.dir = k === "metric" && mode === "max" ? -1 : 1; }
      render();
    });
    return th;
  });
  const tbody = h("tbody");
  const table = h("table", { id: "trials" },
    h("caption", { class: "muted" }, "Trials, best first; pick 2–5 to compare."),
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, h("span", { class: "sr-only" }, "select")), heads)), tbody);
  parent.append(h("div", { class: "table-tools" }, filter, count), h("div", { class: "scroll" }, table), more);
  filter.addEventListener("input", () => { ui.text = filter.value.toLowerCase(); render(); });

  const valueOf = (t, k) => k === "metric" ? t.best_metric : k === "duration" ? t.duration_s : k === "id" || k === "status" || k === "host" ? t[k] : t.params[k];

  function rowOf(t) {
    let tr = ui.byId.get(t.id);
    if (!tr) {
      const box = h("input", { type: "checkbox", "aria-label": `select trial ${t.id}` });
      box.addEventListener("change", () => {
        if (box.checked) ui.selected.add(t.id); else ui.selected.delete(t.id);
        onSelect([...ui.selected]);
      });
      tr = h("tr", { class: "trial-row", "data-id": t.id },
        h("td", {}, box), h("td", {}, h("a", { href: link.trial(t.id) }, t.id)),
        ...cols.slice(1).map(([k]) => h("td", { class: k === "metric" ? "num metric" : k === "duration" ? "num" : "" })));
      tr._box = box;
      ui.byId.set(t.id, tr);
    }
    const cells = tr.children;
    cols.slice(1).forEach(([k], i) => {
      const v = valueOf(t, k);
      setText(cells[i + 2], k === "duration" ? dur(v) : k === "host" ? (v || "–") : fmt(v));
    });
    setAttr(cells[2], "class", "status-" + t.status);
    tr._box.checked = ui.selected.has(t.id);
    tr.classList.toggle("survivor", ui.keep.has(t.id));
    return tr;
  }

  function render() {
    const text = ui.text;
    let rows = ui.rows.filter((t) => (!ui.pass || ui.pass.has(t.id)) && (!text || JSON.stringify([t.id, t.status, t.params, t.host]).toLowerCase().includes(text)));
    if (ui.key) {
      rows = rows.slice().sort((a, b) => {
        const x = valueOf(a, ui.key), y = valueOf(b, ui.key);
        if (x === y) return 0;
        if (x === null || x === undefined) return 1;
        if (y === null || y === undefined) return -1;
        return (x < y ? -1 : 1) * ui.dir;
      });
    }
    heads.forEach((th) => {
      const k = th.dataset.sort, on = ui.key === k;
      setAttr(th, "aria-sort", on ? (ui.dir > 0 ? "ascending" : "descending") : "none");
      setText(th.firstChild, cols.find((c) => c[0] === k)[1] + (on ? (ui.dir > 0 ? " ▲" : " ▼") : ""));
    });
    const shown = ui.all ? rows : rows.slice(0, PAGE);
    const trs = shown.map(rowOf);
    // Move rows only when the order changed: a stable table keeps focus.
    const same = trs.length === tbody.children.length && trs.every((tr, i) => tbody.children[i] === tr);
    if (!same) tbody.replaceChildren(...trs);
    setText(count, `${rows.length} of ${ui.rows.length} trials` + (shown.length < rows.length ? `, first ${shown.length} shown` : ""));
    more.hidden = rows.length <= PAGE;
    setText(more, ui.all ? `show the first ${PAGE}` : `show all ${rows.length}`);
  }

  return {
    update(rows, survivors) {
      ui.rows = rows;
      ui.keep = new Set(survivors.length < rows.length ? survivors : []);
      render();
    },
    filter(pass) { ui.pass = pass; render(); },
    select(ids) { ui.selected = new Set(ids); render(); },
  };
}
