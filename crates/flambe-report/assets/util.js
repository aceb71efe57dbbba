// Small helpers every view uses: the API, formatting, and building and
// updating elements in place (a view builds its elements once and then only
// changes what changed, so a zoom, a selection or focus survives updates).

const token = new URLSearchParams(location.search).get("token");

/** A URL of this site, with the token when the page was opened with one. */
export const withToken = (url) =>
  token ? url + (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token) : url;

/** GET `api/v1` + path (relative: a site of many serves each under x/NAME/). */
export async function api(path, asText) {
  const r = await fetch(withToken("api/v1" + path));
  if (!r.ok) throw new Error((await r.json().catch(() => ({}))).error || r.statusText);
  return asText ? r.text() : r.json();
}

export const fmt = (v) =>
  v === null || v === undefined ? "–" : typeof v === "number" ? (Number.isInteger(v) ? String(v) : v.toPrecision(4)) : String(v);

/** An axis tick: short, and empty for the minor ticks of a log axis. */
export const tick = (v) => (v === null || v === undefined ? "" : String(Number(v.toPrecision(4))));

export const dur = (s) =>
  s === null || s === undefined ? "–" : s < 60 ? s.toFixed(1) + "s" : s < 3600 ? (s / 60).toFixed(1) + "m" : (s / 3600).toFixed(1) + "h";

/** An element: h("a", {href: "#/", class: "x"}, "text", child…). */
export function h(tag, attrs, ...children) {
  const el = tag === "svg" || attrs?.svg ? document.createElementNS("http://www.w3.org/2000/svg", tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "svg" || v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) el.append(c instanceof Node ? c : String(c));
  return el;
}

/** Set an element's text only when it differs (no work, no reflow, when not). */
export function setText(el, text) {
  const t = String(text);
  if (el.textContent !== t) el.textContent = t;
}

export function setAttr(el, name, value) {
  const v = String(value);
  if (el.getAttribute(name) !== v) el.setAttribute(name, v);
}

/** `#/kind/arg?k=v` → {kind, arg, query}. */
export function route() {
  const [path, q] = location.hash.replace(/^#/, "").split("?");
  const [, kind, ...rest] = path.split("/");
  return { kind: kind || "", arg: rest.length ? decodeURIComponent(rest.join("/")) : "", query: new URLSearchParams(q || "") };
}

/** Change the hash's query without a new history entry or a re-render. */
export function setHashQuery(key, value) {
  const [path, q] = location.hash.split("?");
  const params = new URLSearchParams(q || "");
  if (value) params.set(key, value);
  else params.delete(key);
  const s = params.toString();
  history.replaceState(null, "", path + (s ? "?" + s.replace(/%2C/g, ",") : ""));
}

export const link = {
  stage: (name) => "#/stage/" + encodeURIComponent(name),
  trial: (id) => "#/trial/" + encodeURIComponent(id),
  compare: (ids) => "#/compare/" + ids.map(encodeURIComponent).join(","),
};

/** Colours for a few series (compare, a trial's metrics). */
export const PALETTE = ["#c2410c", "#1d4ed8", "#15803d", "#7c3aed", "#be185d", "#0e7490", "#a16207"];

/** A colour for rank r of n (0 = best): warm and dark for the best, cool and pale for the worst. */
export function rankColor(r, n) {
  const t = n > 1 ? r / (n - 1) : 0;
  const hue = 20 + t * 190, light = 38 + t * 30, alpha = 0.95 - t * 0.55;
  return `hsla(${hue.toFixed(0)}, 70%, ${light.toFixed(0)}%, ${alpha.toFixed(2)})`;
}
