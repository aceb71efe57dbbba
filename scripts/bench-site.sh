#!/usr/bin/env bash
# Benchmark (not a test): the report site over a stage of N trials
# (default 2000) of STEPS steps each (default 200), each trial with two
# params (lr log-uniform, width a choice), so every stage view is drawn:
# curves, parallel coordinates, scatter, table.
#
# 1. Finished: the API's response times, then in headless Chromium the
#    stage view's render time and the page's CPU as it updates every second.
# 2. Live: the same stage while it runs (a few hundred trials at once, each
#    reporting a step every 50 ms): the page's CPU and each update's time.
# Goals (#15): the stage view renders within 1 s; the page's CPU stays low.
#
#   scripts/bench-site.sh [N] [STEPS] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-2000}
STEPS=${2:-200}
SECONDS_OPEN=${3:-20}
TOOLS=${FLAMBE_TEST_TOOLS:-/opt/flambe-test}
export PLAYWRIGHT_CORE="$TOOLS/node/node_modules/playwright-core"
. scripts/bench/flambe-bin.sh
WORK=$(mktemp -d)
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$WORK"' EXIT
experiment() { # NAME PAUSE CPUS_PER_TRIAL
  cat > "$WORK/$1.yaml" <<YAML
!Experiment
name: $1
save_path: ./runs
pipeline:
  s: !Stage
    run: |-
      python3 -c "
      import json, math, os, random, time
      f = open(os.environ['FLAMBE_METRICS'], 'a', buffering=1)
      for s in range(1, $STEPS + 1):
          f.write(json.dumps({'step': s, 'acc': (1 - math.exp(-s / 40)) * (1 - abs(math.log10({lr}) + 2) / 4) + random.random() / 50}) + chr(10))
          time.sleep($2)
      "
    params:
      lr: !lu [0.0001, 1.0]
      width: !c [64, 128, 256]
    samples: $N
    cpus: $3
    metric: acc
    mode: max
YAML
}
serve() { # FOLDER → URL in $URL
  "$BIN" site "$1" --no-tensorboard > "$WORK/site.out" 2>/dev/null &
  PIDS+=($!)
  until grep -q '^Report site: ' "$WORK/site.out" 2>/dev/null; do sleep 0.05; done
  URL=$(sed -n 's/^Report site: //p' "$WORK/site.out")
  : > "$WORK/site.out"
}
row() { printf '%-52s %10s %s\n' "$1" "$2" "$3"; }
ms() { # PATH → best of 5, in ms
  local best=999999 t
  for _ in 1 2 3 4 5; do
    t=$(curl -s -o /dev/null -w '%{time_total}' "$URL$1")
    best=$(python3 -c "print(min($best, $t * 1000))")
  done
  printf '%.1f' "$best"
}
browser() { [ -d "$PLAYWRIGHT_CORE" ] && [ -x /usr/bin/chromium ]; }

experiment done 0 0.05
start=$(date +%s.%N)
"$BIN" "$WORK/done.yaml" --cpus 2 --no-site >/dev/null 2>&1
made=$(python3 -c "print(f'{$(date +%s.%N) - $start:.0f}')")
serve "$WORK/runs/done"
echo "== a finished stage: $N trials x $STEPS steps (made in ${made} s), $(nproc) CPUs"
row "what" "measured" ""
row "GET /api/v1/experiment (best of 5)" "$(ms api/v1/experiment)" ms
row "GET /api/v1/stages/s (best of 5)" "$(ms api/v1/stages/s)" ms
row "GET /api/v1/stages/s/metrics, whole (best of 5)" "$(ms api/v1/stages/s/metrics)" ms
row "  its size" "$(curl -s "${URL}api/v1/stages/s/metrics" | wc -c | awk '{printf "%.1f", $1 / 1048576}')" MB
CURSOR=$(curl -s "${URL}api/v1/stages/s/metrics?points=2" | python3 -c "import json, sys; print(json.load(sys.stdin)['cursor'])")
row "GET /api/v1/stages/s/metrics?after= (nothing new)" "$(ms "api/v1/stages/s/metrics?after=$CURSOR")" ms
if browser; then
  node scripts/bench/site_page.cjs "$URL" s "$N" "$SECONDS_OPEN"
else
  echo "(Chromium or playwright-core missing: scripts/test.sh installs them)"
fi

# Live: trials report a step every 50 ms; 1/100 CPU each, so 200 run at once.
experiment live 0.05 0.01
"$BIN" "$WORK/live.yaml" --cpus 2 --no-site >/dev/null 2>&1 &
PIDS+=($!)
LIVE=$!
until [ -e "$WORK/runs/live/state.db" ]; do sleep 0.1; done
serve "$WORK/runs/live"
# Wait until a first wave of trials has reported, so there is a stage to draw.
until [ "$(curl -s "${URL}api/v1/experiment" | python3 -c "import json, sys; print(json.load(sys.stdin)['stages'][0]['running'])" 2>/dev/null || echo 0)" -ge 100 ]; do sleep 0.5; done
echo "== the same stage while it runs: 200 trials at once, a step every 50 ms each"
row "what" "measured" ""
if browser; then
  node scripts/bench/site_page.cjs "$URL" s 100 "$SECONDS_OPEN"
fi
row "trials done when measured" "$(curl -s "${URL}api/v1/experiment" | python3 -c "import json, sys; s = json.load(sys.stdin)['stages'][0]; print(s['done'], '/', s['total'])")" ""
kill "$LIVE" 2>/dev/null || true
