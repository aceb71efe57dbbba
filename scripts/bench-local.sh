#!/usr/bin/env bash
# Benchmark (not a test): the local driver's overhead per trial and its peak
# memory, for N trials of `true` (default 500) on 2 CPUs, beside the floor:
# `xargs -P2` running the same N commands. Prints a table and the ratio
# against the goal (#17: flambe within 2.5x of the floor, every durability
# guarantee kept). It runs twice: with the results folder in memory
# (/dev/shm, where flambe's own cost shows) and on disk ($TMPDIR), where
# the filesystem's state shows too: ext4 skips inodes freed in the last
# ~30 s one by one on every create, so right after a large `rm -rf`
# (a build, a test run) the same run takes up to twice as long.
#
#   scripts/bench-local.sh [N]
#   FLAMBE_BIN=~/.cargo/bin/flambe scripts/bench-local.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-500}
. scripts/bench/flambe-bin.sh
for WHERE in /dev/shm "${TMPDIR:-/tmp}"; do
[ -d "$WHERE" ] || continue
WORK=$(mktemp -d -p "$WHERE")
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
/usr/bin/python3 - "$BIN" "$WORK" "$N" "$WHERE" <<'PY'
import os, resource, subprocess, sys, time
bin, work, n, where = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]

def run(cmd, **kw):
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)
    return time.perf_counter() - t

def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]

# The floor: the same n commands, two at a time, by xargs -P2 (no state, no
# logs, no metrics: what running them at all costs).
lines = "".join("true\n" for _ in range(n)).encode()
floors, fresh, resumed = [], [], []
# Each fresh run gets a results folder of its own, and all are removed at
# the end: a folder deleted just before (thousands of inodes) makes ext4
# skip its recently freed inodes one by one for ~30 s on every create,
# which would time the filesystem's quarantine rather than flambe.
config = open(f"{work}/bench.yaml").read()
for i in range(3):
    t = time.perf_counter()
    subprocess.run(["xargs", "-P2", "-I{}", "bash", "-c", "{}"], input=lines, check=True)
    floors.append(time.perf_counter() - t)
    run_config = f"{work}/bench-{i}.yaml"
    with open(run_config, "w") as f:
        f.write(config.replace("save_path: ./runs", f"save_path: ./runs-{i}"))
    fresh.append(run([bin, run_config, "--cpus", "2", "--no-site"]))
    resumed.append(run([bin, run_config, "--cpus", "2", "--no-site"]))
peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
floor, fresh, resumed = median(floors), median(fresh), median(resumed)
rows = [
    (f"floor: `xargs -P2` running the {n} commands", floor, floor / n),
    (f"flambe: {n} trials of `true`, 2 at once", fresh, fresh / n),
    ("flambe: rerun, all finished (resume)", resumed, resumed / n),
]
print(f"\nresults folder in {where}: median of 3 runs each, {os.cpu_count()} CPUs")
print(f"{'what':<46} {'wall s':>8} {'ms/trial':>9}")
for what, wall, per in rows:
    print(f"{what:<46} {wall:>8.2f} {per * 1000:>9.2f}")
ratio = fresh / floor
print(f"flambe / floor: {ratio:.2f}x (goal: <= 2.5x) {'met' if ratio <= 2.5 else 'MISSED'}")
print(f"peak RSS of the largest child (the driver): {peak_kb / 1024:.1f} MB")
PY
rm -rf "$WORK"
done
