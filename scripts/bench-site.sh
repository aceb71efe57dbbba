#!/usr/bin/env bash
# Benchmark (not a test): the report site over an experiment of N trials
# (default 2000). Prints the API's response times and, when Chromium and
# playwright-core are installed (scripts/test.sh does), the time from
# navigation until the overview shows the trial count.
#
#   scripts/bench-site.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-2000}
TOOLS=${FLAMBE_TEST_TOOLS:-/opt/flambe-test}
cargo build --release --quiet -p flambe-cli
BIN=$PWD/target/x86_64-unknown-linux-musl/release/flambe
WORK=$(mktemp -d)
trap 'kill $SITE 2>/dev/null || true; rm -rf "$WORK"' EXIT
cat > "$WORK/bench.yaml" <<YAML
!Experiment
name: bench
save_path: ./runs
pipeline:
  s: !Stage
    run: 'echo "{\"step\": 1, \"m\": \$RANDOM}" >> \$FLAMBE_METRICS'
    samples: $N
    cpus: 1
    metric: m
    mode: max
YAML
"$BIN" "$WORK/bench.yaml" --no-site >/dev/null 2>&1
"$BIN" site "$WORK/bench.yaml" > "$WORK/site.out" 2>/dev/null &
SITE=$!
until grep -q '^Report site: ' "$WORK/site.out" 2>/dev/null; do sleep 0.05; done
URL=$(sed -n 's/^Report site: //p' "$WORK/site.out")
printf '%-44s %10s\n' "what ($N trials)" "ms"
for path in api/v1/experiment api/v1/stages/s api/v1/trials/s-000; do
  best=999999
  for _ in 1 2 3 4 5; do
    t=$(curl -s -o /dev/null -w '%{time_total}' "$URL$path")
    best=$(python3 -c "print(min($best, $t * 1000))")
  done
  printf '%-44s %10.1f\n' "GET /$path (best of 5)" "$best"
done
if [ -d "$TOOLS/node/node_modules/playwright-core" ] && [ -x /usr/bin/chromium ]; then
  PLAYWRIGHT_CORE="$TOOLS/node/node_modules/playwright-core" node -e '
    const { chromium } = require(process.env.PLAYWRIGHT_CORE);
    (async () => {
      const b = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"] });
      const p = await b.newPage();
      let best = Infinity;
      for (let i = 0; i < 3; i++) {
        const t = Date.now();
        await p.goto(process.argv[1]);
        await p.waitForSelector("[data-testid=trial-count]");
        best = Math.min(best, Date.now() - t);
      }
      console.log("overview rendered in Chromium (best of 3)".padEnd(44) + " " + String(best.toFixed(1)).padStart(10));
      await b.close();
    })();' "$URL"
fi
