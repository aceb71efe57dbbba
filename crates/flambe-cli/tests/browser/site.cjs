// Drives the report site in headless Chromium (Debian's) with playwright-core.
//   node site.cjs URL OUTDIR EXPECTED_TRIALS [GATE]
// Prints one JSON object with what it saw; screenshots and the downloaded
// output go to OUTDIR. Once it has read the first trial count it creates
// GATE, the file the experiment's trials wait for.
const { chromium } = require(process.env.PLAYWRIGHT_CORE || "playwright-core");
const path = require("path");
const fs = require("fs");

(async () => {
  const [url, outDir, expected, gate] = process.argv.slice(2);
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync"],
  });
  const result = { counts: [] };
  try {
    const page = await browser.newPage({ acceptDownloads: true, viewport: { width: 1200, height: 900 } });
    await page.goto(url);
    // The trial count rises live, without reloading, to the end.
    const final = `${expected}/${expected}`;
    const deadline = Date.now() + 120000;
    let watched = false;
    for (;;) {
      const text = await page.textContent("[data-testid=trial-count]").catch(() => null);
      if (text && result.counts[result.counts.length - 1] !== text) result.counts.push(text);
      if (text && gate && !fs.existsSync(gate)) fs.writeFileSync(gate, "");
      if (text && !watched) {
        // A running trial's chart grows in place: the same element and the
        // same chart, with more points, and no page rebuild.
        watched = true;
        await page.goto(url + "#/trial/train-000");
        await page.waitForFunction(() => document.querySelector("[data-testid=metric-chart][data-metric=score]")?._uplot?.data[0].length > 0, null, { timeout: 30000 });
        const before = await page.evaluate(() => {
          const el = document.querySelector("[data-testid=metric-chart][data-metric=score]");
          window.__chart = el; window.__uplot = el._uplot;
          return el._uplot.data[0].length;
        });
        await page.waitForFunction((n) => document.querySelector("[data-testid=metric-chart][data-metric=score]")?._uplot.data[0].length > n, before, { timeout: 30000 });
        result.growth = await page.evaluate((n) => {
          const el = document.querySelector("[data-testid=metric-chart][data-metric=score]");
          return { before: n, after: el._uplot.data[0].length, sameElement: el === window.__chart, sameChart: el._uplot === window.__uplot, connected: window.__chart.isConnected };
        }, before);
        await page.goto(url);
        continue;
      }
      if (text === final) break;
      if (Date.now() > deadline) throw new Error("the count never reached " + final + ": " + result.counts.join(", "));
      await page.waitForTimeout(100);
    }
    await page.waitForFunction(() => document.querySelector("[data-testid=status]")?.textContent === "finished", null, { timeout: 30000 });
    await page.screenshot({ path: path.join(outDir, "overview.png"), fullPage: true });

    // Stage view: sort by the metric.
    await page.click('a[href="#/stage/train"]');
    await page.waitForSelector("tr.trial-row");
    await page.click("th[data-sort=metric] button");
    await page.waitForFunction(() => document.querySelector("th[data-sort=metric]")?.textContent.includes("▼"));
    result.sorted = await page.$$eval("tr.trial-row td.metric", (tds) => tds.map((td) => Number(td.textContent)));
    result.order = await page.$$eval("tr.trial-row", (trs) => trs.map((tr) => tr.dataset.id));
    await page.screenshot({ path: path.join(outDir, "stage.png"), fullPage: true });

    // The best trial: its curve has one point per reported step.
    result.best = result.order[0];
    await page.click(`tr.trial-row[data-id="${result.best}"] a`);
    await page.waitForFunction(() => document.querySelector("[data-testid=metric-chart][data-metric=score]")?._uplot?.data[0].length > 0);
    result.points = await page.$eval("[data-testid=metric-chart][data-metric=score]", (el) => el._uplot.data[0].length);
    await page.screenshot({ path: path.join(outDir, "trial.png"), fullPage: true });

    // Download its output folder.
    const [download] = await Promise.all([page.waitForEvent("download"), page.click("#download-output")]);
    result.download = path.join(outDir, `${result.best}.tar.gz`);
    await download.saveAs(result.download);
  } finally {
    await browser.close();
  }
  console.log(JSON.stringify(result));
})().catch((e) => {
  console.error(e.stack || String(e));
  process.exit(1);
});
