// The report site's stage view in headless Chromium, for bench-site.sh:
//   node site_page.cjs URL STAGE N SECONDS
// Prints rows of `what  value unit`: the stage view's render time (from
// navigation until all N curves and the table's first page of rows are
// drawn; best of 3), then,
// with the page left open for SECONDS, the page's CPU (its main thread's
// busy time over the wall time, from the DevTools protocol), the time of
// one update (fetch, parse, redraw in place; median and slowest) and the
// JS heap.
const { chromium } = require(process.env.PLAYWRIGHT_CORE);

(async () => {
  const [url, stage, n, seconds] = process.argv.slice(2);
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync"],
  });
  const row = (what, value, unit) => console.log(what.padEnd(52) + String(value).padStart(10) + " " + unit);
  const drawn = (want) => {
    const c = document.querySelector("[data-testid=stage-curves]");
    return c && Number(c.dataset.series) >= want && document.querySelectorAll("tr.trial-row").length >= Math.min(want, 100);
  };
  let best = Infinity, page;
  for (let i = 0; i < 3; i++) {
    await page?.close();
    page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const t = Date.now();
    await page.goto(url + "#/stage/" + stage);
    await page.waitForFunction(drawn, Number(n), { timeout: 120000, polling: 20 });
    best = Math.min(best, Date.now() - t);
  }
  row(`stage view of ${n} trials rendered (best of 3)`, best, "ms");
  const cdp = await page.context().newCDPSession(page);
  await cdp.send("Performance.enable");
  const busy = async () => Object.fromEntries((await cdp.send("Performance.getMetrics")).metrics.map((m) => [m.name, m.value]));
  const before = await busy();
  const t0 = Date.now();
  const updates = [];
  while (Date.now() - t0 < Number(seconds) * 1000) {
    await page.waitForTimeout(1000);
    const ms = await page.$eval("#view", (el) => Number(el.dataset.updateMs));
    if (!Number.isNaN(ms)) updates.push(ms);
  }
  const after = await busy();
  const wall = (Date.now() - t0) / 1000;
  updates.sort((a, b) => a - b);
  row(`page CPU while updating every second (${Math.round(wall)} s)`, ((100 * (after.TaskDuration - before.TaskDuration)) / wall).toFixed(1), "%");
  row("one update, median", (updates[updates.length >> 1] ?? NaN).toFixed(1), "ms");
  row("one update, slowest", (updates[updates.length - 1] ?? NaN).toFixed(1), "ms");
  row("JS heap", (after.JSHeapUsedSize / 1048576).toFixed(1), "MB");
  await browser.close();
})().catch((e) => {
  console.error(e.stack || String(e));
  process.exit(1);
});
