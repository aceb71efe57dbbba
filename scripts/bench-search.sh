#!/usr/bin/env bash
# Benchmark (not a test): flambe's TPE against flambe's random search and
# Optuna's TPE on Branin (2-D), Hartmann-6 and a simulated learning curve,
# 100 trials per study (best value read at 50 and at 100) over SEEDS seeds
# (default 10). Prints the median and IQR of the best value found, and
# whether TPE beats random and is within 10% of Optuna on each problem.
# Optuna is installed into a venv of the benchmark's own (from PyPI).
#
#   scripts/bench-search.sh
#   SEEDS=3 FLAMBE_BIN=~/.cargo/bin/flambe scripts/bench-search.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${FLAMBE_BIN:-}" ]; then
  cargo build --quiet -p flambe-cli
fi
BIN=${FLAMBE_BIN:-$PWD/target/x86_64-unknown-linux-musl/debug/flambe}
VENV=${BENCH_VENV:-$HOME/.cache/flambe-bench/optuna}
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import optuna' 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check 'optuna>=4,<5'
fi
exec python3 scripts/bench/search.py "$BIN" "$VENV/bin/python"
