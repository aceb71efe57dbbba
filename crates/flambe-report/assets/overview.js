// The overview (#/): where the experiment stands, its pipeline as a graph
// (trials in, survivors out, running and failed counts, live), and its
// stages; or, on a site over a save_path, the list of its experiments.

import { api, h, fmt, dur, link, setText, setAttr } from "./util.js";

const BOX_W = 180, BOX_H = 92, GAP = 56;

/** The pipeline: a box per stage, arrows between, counts kept live. */
function pipeline(parent) {
  const svg = h("svg", { class: "pipeline", role: "img", "aria-label": "the pipeline's stages" });
  parent.append(h("div", { class: "scroll" }, svg));
  let boxes = [];
  return (stages) => {
    if (boxes.length !== stages.length) {
      svg.replaceChildren();
      const W = stages.length * (BOX_W + GAP) - GAP + 8;
      setAttr(svg, "viewBox", `0 0 ${W} ${BOX_H + 8}`);
      setAttr(svg, "width", W);
      setAttr(svg, "height", BOX_H + 8);
      boxes = stages.map((s, i) => {
        const x = 4 + i * (BOX_W + GAP);
        const text = (dy, cls) => h("text", { svg: true, x: x + 10, y: 4 + dy, class: cls });
        const g = h("a", { svg: true, href: link.stage(s.name), class: "stage-box", "data-stage": s.name },
          h("rect", { svg: true, x, y: 4, width: BOX_W, height: BOX_H, rx: 8 }),
          h("rect", { svg: true, x, y: 4 + BOX_H - 6, width: 0, height: 6, class: "progress" }));
        const lines = { name: text(20, "name"), counts: text(40, ""), live: text(58, ""), out: text(76, "muted") };
        g.append(...Object.values(lines));
        svg.append(g);
        if (i > 0) {
          const ax = x - GAP + 4, ay = 4 + BOX_H / 2;
          svg.append(h("path", { svg: true, d: `M${ax} ${ay} H${x - 6} m-7 -5 l7 5 l-7 5`, class: "arrow" }));
        }
        return { g, lines, bar: g.children[1], x };
      });
    }
    stages.forEach((s, i) => {
      const b = boxes[i];
      setText(b.lines.name, s.name);
      setText(b.lines.counts, `${s.total} trials in · ${s.done} done`);
      setText(b.lines.live, `${s.running} running · ${s.failed} failed` + (s.stopped ? ` · ${s.stopped} stopped` : ""));
      setText(b.lines.out, s.reduce ? `top ${s.reduce} go on` : s.best ? `best ${fmt(s.best.value)}` : s.metric ? `by ${s.metric}` : "");
      setAttr(b.bar, "width", s.total ? (BOX_W * s.done) / s.total : 0);
      b.g.classList.toggle("has-failed", s.failed > 0);
      b.g.classList.toggle("is-running", s.running > 0);
    });
  };
}

function experimentView(main, crumbs) {
  const title = h("span", {});
  const status = h("span", { "data-testid": "status" });
  const cards = {};
  const card = (key, label, testid) => {
    cards[key] = h("div", { class: "v", "data-testid": testid });
    return h("div", { class: "card" }, h("div", { class: "k" }, label), cards[key]);
  };
  const tb = h("p", {});
  const stagesBody = h("tbody");
  main.append(h("h1", {}, title, " ", status),
    h("div", { class: "cards" }, card("done", "trials done", "trial-count"), card("running", "running"), card("failed", "failed"), card("elapsed", "elapsed")),
    tb, h("h2", {}, "pipeline"));
  const drawPipeline = pipeline(main);
  main.append(h("h2", {}, "stages"), h("div", { class: "scroll" }, h("table", {},
    h("thead", {}, h("tr", {}, ["stage", "done", "running", "failed", "stopped", "metric", "best trial", "best"].map((c, i) => h("th", { scope: "col", class: i >= 1 && i <= 4 || i === 7 ? "num" : "" }, c)))),
    stagesBody)));
  const rows = new Map();
  let tbKey = null;
  return {
    async update() {
      const e = await api("/experiment");
      crumbs([[e.name]]);
      setText(title, e.name);
      setText(status, e.status);
      status.className = "status-" + e.status;
      const sum = (k) => e.stages.reduce((a, s) => a + s[k], 0);
      setText(cards.done, `${sum("done")}/${sum("total")}`);
      setText(cards.running, sum("running"));
      setText(cards.failed, sum("failed"));
      setText(cards.elapsed, dur(e.elapsed_s));
      if (tbKey !== (e.tensorboard || "")) {
        tbKey = e.tensorboard || "";
        tb.replaceChildren(e.tensorboard ? h("a", { href: e.tensorboard, target: "_blank" }, "Open TensorBoard")
          : h("span", { class: "muted" }, "TensorBoard is not running. Install it (", h("code", {}, "pip install tensorboard"), ") and flambe starts it with the next run, or run ", h("code", {}, `tensorboard --logdir ${e.dir}`), "."));
      }
      drawPipeline(e.stages);
      for (const s of e.stages) {
        let tr = rows.get(s.name);
        if (!tr) {
          tr = h("tr", { class: "stage-row" }, h("td", {}, h("a", { href: link.stage(s.name) }, s.name)), ...[1, 2, 3, 4].map(() => h("td", { class: "num" })), h("td", {}), h("td", {}), h("td", { class: "num" }));
          rows.set(s.name, tr);
          stagesBody.append(tr);
        }
        const c = tr.children;
        setText(c[1], `${s.done}/${s.total}`); setText(c[2], s.running); setText(c[3], s.failed); setText(c[4], s.stopped);
        setText(c[5], s.metric ? `${s.metric} (${s.mode})` : "–");
        if (s.best) { if (c[6].textContent !== s.best.id) c[6].replaceChildren(h("a", { href: link.trial(s.best.id) }, s.best.id)); } else setText(c[6], "–");
        setText(c[7], fmt(s.best && s.best.value));
      }
    },
  };
}

/** A site over a save_path: its experiments, each linked to its own pages. */
function experimentsView(main, crumbs) {
  crumbs([["experiments"]]);
  const body = h("tbody");
  main.append(h("h1", {}, "experiments"), h("div", { class: "scroll" }, h("table", { id: "experiments" },
    h("thead", {}, h("tr", {}, ["experiment", "state", "progress", "running", "failed", "best", "started"].map((c) => h("th", { scope: "col" }, c)))), body)));
  const rows = new Map();
  return {
    async update(list) {
      for (const x of list.experiments) {
        let tr = rows.get(x.name);
        if (!tr) {
          tr = h("tr", { class: "experiment-row", "data-name": x.name }, h("td", {}, h("a", { href: x.href + "#/" }, x.name)), ...[1, 2, 3, 4, 5, 6].map(() => h("td", {})));
          rows.set(x.name, tr);
          body.append(tr);
        }
        const c = tr.children;
        setText(c[1], x.error ? "unreadable: " + x.error : x.status);
        c[1].className = "status-" + (x.error ? "failed" : x.status);
        c[2].replaceChildren(h("progress", { max: x.total || 1, value: x.done, "aria-label": `${x.done} of ${x.total} trials done` }), ` ${x.done}/${x.total}`);
        setText(c[3], x.running); setText(c[4], x.failed);
        setText(c[5], x.best ? `${x.best.stage} ${x.best.id}: ${x.best.metric || ""} ${fmt(x.best.value)}` : "–");
        setText(c[6], x.started ? new Date(x.started * 1000).toLocaleString() : "–");
      }
    },
  };
}

export function overviewView(main, crumbs) {
  let inner = null;
  return {
    async update() {
      if (!inner) {
        const list = await api("/experiments").catch(() => null);
        inner = list && list.many ? { view: experimentsView(main, crumbs), many: true } : { view: experimentView(main, crumbs), many: false };
      }
      if (inner.many) await inner.view.update(await api("/experiments"));
      else await inner.view.update();
    },
  };
}
