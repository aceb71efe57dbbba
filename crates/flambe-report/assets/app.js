// The flambe report site: hash routes, each a view that builds its page
// once and then updates it in place every second.
//   #/                 overview (or, over a save_path, the experiments)
//   #/stage/NAME       curves, parallel coordinates, scatter, trial table
//   #/trial/ID         metrics, params, PBT schedule, downloads, log
//   #/compare/A,B,…    2–5 trials side by side

import { h, route } from "./util.js";
import { overviewView } from "./overview.js";
import { stageView } from "./stage.js";
import { trialView } from "./trial.js";
import { compareView } from "./compare.js";

const main = document.getElementById("view");
const crumbsEl = document.getElementById("crumbs");
const live = document.getElementById("live");
const problem = document.getElementById("problem");
// Under x/NAME/ of a site over several experiments: a way back to the list.
const nested = /\/x\/[^/]+\/$/.test(location.pathname);

function crumbs(parts) {
  const items = [];
  if (nested) items.push(h("a", { href: "../../" }, "experiments"));
  parts.forEach(([label, href], i) => items.push(href && i < parts.length - 1 ? h("a", { href }, label) : h("span", {}, label)));
  const key = JSON.stringify(parts);
  if (crumbsEl.dataset.key === key) return;
  crumbsEl.dataset.key = key;
  crumbsEl.replaceChildren(...items.flatMap((el, i) => (i ? [" / ", el] : [el])));
}

let current = null, timer = null;

function viewFor(r) {
  main.replaceChildren();
  if (r.kind === "stage") return stageView(main, r.arg, crumbs);
  if (r.kind === "trial") return trialView(main, r.arg, crumbs);
  if (r.kind === "compare") return compareView(main, r.arg, crumbs);
  return overviewView(main, crumbs);
}

async function tick() {
  clearTimeout(timer);
  const r = route();
  const key = r.kind + "/" + r.arg;
  if (!current || current.key !== key) {
    current?.view.destroy?.();
    current = { key, view: viewFor(r) };
  }
  const shown = current;
  try {
    const started = performance.now();
    await shown.view.update();
    if (shown !== current) return;
    // How long an update took (fetch, parse, redraw), for benchmarks.
    main.dataset.updateMs = (performance.now() - started).toFixed(1);
    problem.hidden = true;
    live.textContent = "live · updated " + new Date().toLocaleTimeString();
  } catch (e) {
    if (shown !== current) return;
    problem.hidden = false;
    problem.textContent = e.message;
    live.textContent = "retrying…";
  }
  timer = setTimeout(tick, 1000);
}

window.addEventListener("hashchange", tick);
tick();
