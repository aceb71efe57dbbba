#!/usr/bin/env bash
# Benchmark (not a test): the local driver's overhead per trial and its peak
# memory, for N trials of `true` (default 500) on 2 CPUs, against the cost of
# just spawning `bash -c true` N times. Prints a table.
#
#   scripts/bench-local.sh [N]
#   FLAMBE_BIN=~/.cargo/bin/flambe scripts/bench-local.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-500}
# FLAMBE_BIN: a flambe binary already built (e.g. by `cargo install`).
if [ -z "${FLAMBE_BIN:-}" ]; then
  cargo build --release --quiet -p flambe-cli
fi
BIN=${FLAMBE_BIN:-$PWD/target/x86_64-unknown-linux-musl/release/flambe}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cat > "$WORK/bench.yaml" <<YAML
!Experiment
name: bench
save_path: ./runs
pipeline:
  s: !Stage
    run: "true"
    samples: $N
    cpus: 1
YAML
/usr/bin/python3 - "$BIN" "$WORK" "$N" <<'PY'
import os, resource, subprocess, sys, time
bin, work, n = sys.argv[1], sys.argv[2], int(sys.argv[3])

def run(cmd, **kw):
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)
    return time.perf_counter() - t

base = run(["bash", "-c", f"for i in $(seq {n}); do bash -c true; done"])
fresh = run([bin, f"{work}/bench.yaml", "--cpus", "2"])
peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
resumed = run([bin, f"{work}/bench.yaml", "--cpus", "2"])
rows = [
    ("spawn `bash -c true` only (sequential)", base, base / n),
    (f"flambe: {n} trials of `true`, 2 at once", fresh, fresh / n),
    ("flambe: rerun, all finished (resume)", resumed, resumed / n),
]
print(f"{'what':<44} {'wall s':>8} {'ms/trial':>9}")
for what, wall, per in rows:
    print(f"{what:<44} {wall:>8.2f} {per * 1000:>9.2f}")
print(f"driver overhead per trial (wall x 2 CPUs / n - spawn): {(fresh * 2 / n - base / n) * 1000:.2f} ms")
print(f"peak RSS of the largest child (the driver): {peak_kb / 1024:.1f} MB")
PY
