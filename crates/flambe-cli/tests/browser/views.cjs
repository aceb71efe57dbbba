// Drives the site's views in headless Chromium (Debian's) with
// playwright-core over a finished experiment, served as one of several
// (`flambe site save_path`). Prints one JSON object with what it saw, for
// the Rust test to check against the API; screenshots go to OUTDIR.
//   node views.cjs URL OUTDIR EXPERIMENT PBT_TRIAL
const { chromium } = require(process.env.PLAYWRIGHT_CORE || "playwright-core");
const path = require("path");

(async () => {
  const [url, outDir, name, pbtTrial] = process.argv.slice(2);
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync"],
  });
  const seen = { errors: [] };
  const shot = (page, file) => page.screenshot({ path: path.join(outDir, "views-" + file), fullPage: true });
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.on("pageerror", (e) => seen.errors.push(e.message));
    page.on("console", (m) => { if (m.type() === "error") seen.errors.push(m.text()); });

    // The list of experiments, then one of them, under its own prefix.
    await page.goto(url);
    await page.waitForFunction(() => document.querySelectorAll("tr.experiment-row").length >= 4);
    seen.experiments = await page.$$eval("tr.experiment-row", (trs) => trs.map((tr) => ({ name: tr.dataset.name, cells: [...tr.children].map((td) => td.textContent.trim()) })));
    await shot(page, "experiments.png");
    await page.click(`tr.experiment-row[data-name="${name}"] a`);
    await page.waitForFunction(() => document.querySelector("[data-testid=status]")?.textContent === "finished");
    seen.overviewPath = new URL(page.url()).pathname;
    seen.pipeline = await page.$$eval("svg.pipeline .stage-box", (gs) => gs.map((g) => [...g.querySelectorAll("text")].map((t) => t.textContent)));
    await shot(page, "overview.png");

    // Stage view: every trial's curve on one chart; hover names a point.
    await page.click('svg.pipeline .stage-box[data-stage="train"]');
    await page.waitForFunction(() => Number(document.querySelector("[data-testid=stage-curves]")?.dataset.series) > 0);
    seen.curveSeries = await page.evaluate(() => document.querySelector("[data-testid=stage-curves]")._uplot.series.slice(1).map((s) => s.label));
    const spot = await page.evaluate(() => {
      const u = document.querySelector("[data-testid=stage-curves]")._uplot;
      const r = u.over.getBoundingClientRect();
      const i = Math.floor(u.data[0].length / 2);
      return { x: r.left + u.valToPos(u.data[0][i], "x"), y: r.top + u.valToPos(u.data[1][i], "y") };
    });
    await page.mouse.move(spot.x, spot.y);
    await page.waitForFunction(() => !document.querySelector("[data-testid=stage-curves] .tip").hidden);
    seen.stageHover = await page.textContent("[data-testid=stage-curves] .tip");

    // Parallel coordinates: brush lr from 90% down to 35% of its axis.
    const axis = await page.evaluate(() => {
      const el = document.querySelector("[data-testid=parcoords]");
      const u = el._uplot;
      const names = JSON.parse(el.dataset.axes).map((a) => a.name);
      const i = names.indexOf("lr");
      const r = u.over.getBoundingClientRect();
      return { names, x: r.left + u.valToPos(i, "x"), top: r.top + u.valToPos(0.9, "y"), bottom: r.top + u.valToPos(0.35, "y") };
    });
    seen.axes = axis.names;
    await page.mouse.move(axis.x, axis.top);
    await page.mouse.down();
    await page.mouse.move(axis.x, (axis.top + axis.bottom) / 2, { steps: 5 });
    await page.mouse.move(axis.x, axis.bottom, { steps: 5 });
    await page.mouse.up();
    await page.waitForFunction(() => (document.querySelector("[data-testid=parcoords]").dataset.brush || "{}") !== "{}");
    seen.brush = await page.evaluate(() => JSON.parse(document.querySelector("[data-testid=parcoords]").dataset.brush));
    seen.brushedRows = await page.$$eval("tr.trial-row", (trs) => trs.map((tr) => tr.dataset.id));
    await shot(page, "stage-brushed.png");
    // A click on the axis clears the brush: every trial comes back.
    await page.mouse.click(axis.x, (axis.top + axis.bottom) / 2);
    await page.waitForFunction(() => document.querySelector("[data-testid=parcoords]").dataset.brush === "{}");
    seen.unbrushedRows = await page.$$eval("tr.trial-row", (trs) => trs.length);

    // The table by keyboard: a header's sort button, then Enter.
    await page.focus("th[data-sort=lr] button");
    await page.keyboard.press("Enter");
    seen.ariaSort = await page.getAttribute("th[data-sort=lr]", "aria-sort");
    seen.sortedLr = await page.$$eval("tr.trial-row", (trs) => trs.map((tr) => tr.dataset.id));

    // Pick two trials, then compare: the URL carries them.
    const pick = await page.$$eval("tr.trial-row", (trs) => trs.slice(1, 3).map((tr) => tr.dataset.id));
    for (const id of pick) await page.check(`tr.trial-row[data-id="${id}"] input[type=checkbox]`);
    seen.stageUrl = page.url();
    await shot(page, "stage.png");
    await page.click("#compare");
    await page.waitForFunction(() => document.querySelectorAll("[data-testid=compare-chart]").length > 0 && [...document.querySelectorAll("[data-testid=compare-chart]")].every((el) => el._uplot.data[0].length > 0));
    seen.compareUrl = page.url();
    seen.compared = pick;
    seen.compare = await page.$$eval("[data-testid=compare-chart]", (els) => els.map((el) => ({
      metric: el.dataset.metric, labels: el._uplot.series.slice(1).map((s) => s.label), data: el._uplot.data,
    })));
    seen.compareHeads = await page.$$eval("#compare-table thead th a", (as) => as.map((a) => a.textContent));
    await shot(page, "compare.png");

    // Trial view: hover shows a step and its value; a drag zooms x; log y.
    await page.goto(new URL(page.url()).origin + seen.overviewPath + `#/trial/${pick[0]}`);
    const chart = "[data-testid=metric-chart][data-metric=score]";
    await page.waitForFunction((sel) => document.querySelector(sel)?._uplot?.data[0].length > 5, chart);
    const pt = await page.evaluate((sel) => {
      const u = document.querySelector(sel)._uplot;
      const r = u.over.getBoundingClientRect();
      const i = 7;
      return { x: r.left + u.valToPos(u.data[0][i], "x"), y: r.top + u.valToPos(u.data[1][i], "y"), left: r.left, top: r.top, width: r.width, height: r.height, xMin: u.scales.x.min, xMax: u.scales.x.max };
    }, chart);
    await page.mouse.move(pt.x, pt.y);
    await page.waitForFunction((sel) => document.querySelector(sel + " .u-legend .u-series .u-value")?.textContent !== "–", chart);
    seen.trialHover = await page.$$eval(chart + " .u-legend .u-series", (rows) => rows.map((r) => r.querySelector(".u-value").textContent));
    await page.mouse.move(pt.left + pt.width * 0.25, pt.top + pt.height / 2);
    await page.mouse.down();
    await page.mouse.move(pt.left + pt.width * 0.45, pt.top + pt.height / 2, { steps: 4 });
    await page.mouse.move(pt.left + pt.width * 0.6, pt.top + pt.height / 2, { steps: 4 });
    await page.mouse.up();
    seen.zoom = { before: [pt.xMin, pt.xMax], after: await page.$eval(chart, (el) => [Number(el.dataset.xMin), Number(el.dataset.xMax)]) };
    await page.check(chart + " input.log-y");
    seen.logY = await page.$eval(chart, (el) => el._uplot.scales.y.distr);
    await shot(page, "trial.png");

    // A phone-width screen: nothing wider than the screen but the scrolling tables.
    await page.setViewportSize({ width: 390, height: 844 });
    await page.goto(new URL(page.url()).origin + seen.overviewPath + "#/stage/train");
    await page.waitForFunction(() => Number(document.querySelector("[data-testid=stage-curves]")?.dataset.series) > 0);
    await page.waitForTimeout(300);
    seen.phone = await page.evaluate(() => ({ scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth }));
    await shot(page, "stage-phone.png");

    // The ASHA example's stage: a × where each stopped trial stopped.
    await page.setViewportSize({ width: 1280, height: 900 });
    await page.goto(new URL(page.url()).origin + "/x/search-space/#/stage/train");
    await page.waitForFunction(() => document.querySelector("[data-testid=stage-curves]")?.dataset.stoppedMarks !== undefined);
    seen.stoppedMarks = await page.$eval("[data-testid=stage-curves]", (el) => Number(el.dataset.stoppedMarks));
    await shot(page, "stage-asha.png");

    // A PBT trial: its params over the steps.
    await page.goto(new URL(page.url()).origin + `/x/pbt/#/trial/${pbtTrial}`);
    await page.waitForFunction(() => document.querySelector("[data-testid=pbt-params]")?._uplot?.data[0].length > 1);
    seen.pbtParams = await page.$eval("[data-testid=pbt-params]", (el) => ({ labels: el._uplot.series.slice(1).map((s) => s.label), data: el._uplot.data }));
    await shot(page, "trial-pbt.png");
  } finally {
    await browser.close();
  }
  console.log(JSON.stringify(seen));
})().catch((e) => {
  console.error(e.stack || String(e));
  process.exit(1);
});
