#!/usr/bin/env bash
# Benchmark (not a test): PBT against the fixed learning rates it starts
# from, on the toy of scripts/bench/pbt_toy.py (six rates, 30 steps, the
# best rate falling as v shrinks). Runs the six rates once without a
# scheduler (their results do not depend on timing) and RUNS times (default
# 10) with `!PBT {perturbation_interval: 2, quantile: 0.25, mutations:
# [lr]}`, whose exploits depend on the order the trials report in. Prints
# the best final loss of each, and how often PBT beats the best fixed rate.
#
#   scripts/bench-pbt.sh
#   RUNS=3 FLAMBE_BIN=~/.cargo/bin/flambe scripts/bench-pbt.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${FLAMBE_BIN:-}" ]; then
  cargo build --quiet -p flambe-cli
fi
BIN=${FLAMBE_BIN:-$PWD/target/x86_64-unknown-linux-musl/debug/flambe}
TOY=$PWD/scripts/bench/pbt_toy.py
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
RUNS=${RUNS:-10}

# run NAME SCHEDULER_LINE: the best final loss of one run
run() {
  cat > "$WORK/$1.yaml" <<YAML
!Experiment
name: $1
save_path: $WORK/runs
pipeline:
  train: !Stage
    run: python3 $TOY {lr}
    params:
      lr: !g [0.025, 0.05, 0.1, 0.2, 0.4, 0.8]
    metric: loss
    mode: min
$2
YAML
  "$BIN" "$WORK/$1.yaml" --no-site --no-tensorboard --cpus 6 > /dev/null 2> "$WORK/$1.log" \
    || { cat "$WORK/$1.log" >&2; exit 1; }
  python3 -c 'import json, sys; print(min(r["final_metric"] for r in json.load(open(sys.argv[1]))))' \
    "$WORK/runs/$1/results.json"
}

fixed=$(run fixed "")
pbt=()
for i in $(seq 1 "$RUNS"); do
  pbt+=("$(run "pbt$i" "    scheduler: !PBT {perturbation_interval: 2, quantile: 0.25, mutations: [lr]}")")
done
python3 - "$fixed" "${pbt[@]}" <<'PY'
import statistics, sys
fixed, pbt = float(sys.argv[1]), sorted(map(float, sys.argv[2:]))
print("| run | best final loss |")
print("|---|---|")
print(f"| best fixed rate (lr 0.2) | {fixed:.4f} |")
print(f"| PBT, median of {len(pbt)} | {statistics.median(pbt):.4f} |")
print(f"| PBT, best / worst | {pbt[0]:.4f} / {pbt[-1]:.4f} |")
wins = sum(p < fixed for p in pbt)
print(f"\nPBT below the best fixed rate in {wins} of {len(pbt)} runs")
PY
