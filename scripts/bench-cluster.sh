#!/usr/bin/env bash
# Benchmark (not a test): the cluster fan-out of #17, on test hosts this
# script makes in network namespaces (scripts/testbed.sh, kind `host`).
# For each size (hosts in all, the orchestrator included) it measures the
# floor, parallel `ssh HOST true` to every host on fresh connections, then
# `flambe cluster.yaml` cold (first run: keys, this build, setup commands) and
# warm (nothing to do), and prints a table with the ratios against #17's
# goals, and what the warm run spent per host command (from `-vv`).
# Ray comes linked from $FLAMBE_TEST_TOOLS/ray through setup_cmds, as in the
# cluster tests: this measures the fan-out, not pip.
#
#   sudo scripts/bench-cluster.sh [SIZES]      (default "4 64")
#   FLAMBE_BIN=... sudo scripts/bench-cluster.sh "4"
#
# Then, on a cluster of 1+2 hosts (scripts/bench/cluster_trials.py): 40
# trivial trials through Ray's Jobs API (the floor), through Ray Tune, and
# through flambe, on the same Ray; and the warm submit. That part needs Ray
# with Tune in $FLAMBE_TEST_TOOLS/ray-tune (installed here from PyPI if
# missing); BENCH_TRIALS=0 skips it, BENCH_REPS sets its repetitions (2).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "bench-cluster: run as root (network namespaces)" >&2; exit 1; }
SIZES=${1:-"4 64"}
TOOLS=${FLAMBE_TEST_TOOLS:-/opt/flambe-test}
[ -x "$TOOLS/ray/bin/ray" ] || { echo "bench-cluster: no Ray in $TOOLS/ray (scripts/test.sh installs it)" >&2; exit 1; }
. scripts/bench/flambe-bin.sh
WORK=$(mktemp -d)
IDS=()
cleanup() {
  for id in "${IDS[@]}"; do bash scripts/testbed.sh down "$id" >/dev/null 2>&1 || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

for K in $SIZES; do
  id=$((150 + ${#IDS[@]}))
  IDS+=("$id")
  bash scripts/testbed.sh up "$id" "$K" >/dev/null
  bash scripts/testbed.sh env "$id" > "$WORK/env-$id"
  /usr/bin/python3 - "$BIN" "$WORK" "$id" "$K" "$TOOLS" <<'PY'
import os, re, statistics, subprocess, sys, time
from collections import defaultdict
bin, work, bed, k, tools = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
env = dict(l.strip().split("=", 1) for l in open(f"{work}/env-{bed}") if "=" in l)
user, key = env["TESTBED_USER"], env["TESTBED_KEY"]
hosts = [env[f"TESTBED_HOST_{n}"] for n in range(1, k + 1)]
home = f"{work}/home-{bed}"
config = f"{work}/cluster-{bed}.yaml"
link = f"mkdir -p ~/.flambe/bin && ln -sfn {tools}/ray ~/.flambe/ray && ln -sfn {tools}/venv/bin/tensorboard ~/.flambe/bin/tensorboard"
with open(config, "w") as f:
    f.write(f"!SSHCluster\nname: bench{bed}\norchestrator_ip: {hosts[0]}\n"
            f"factories_ips: [{', '.join(hosts[1:])}]\nusername: {user}\nkey: {key}\n"
            f"setup_cmds:\n  - {link}\n")

def ssh_floor():
    t = time.perf_counter()
    procs = [subprocess.Popen(["ssh", "-F", "/dev/null", "-i", key, "-o", "BatchMode=yes",
                               "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                               "-o", "LogLevel=ERROR", f"{user}@{h}", "true"]) for h in hosts]
    for p in procs:
        if p.wait() != 0:
            sys.exit(f"ssh to a test host failed ({p.args[-2]})")
    return time.perf_counter() - t

def flambe(*args):
    t = time.perf_counter()
    out = subprocess.run([bin, config, *args], env={**os.environ, "FLAMBE_HOME": home},
                         capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"flambe {config} failed:\n{out.stderr[-3000:]}")
    return time.perf_counter() - t, out.stderr

floor = statistics.median(ssh_floor() for _ in range(3))
cold, _ = flambe()
warms = [flambe() for _ in range(3)]
warm = statistics.median(w for w, _ in warms)
_, log = flambe("-vv")
# Each command flambe ran on a host, from its `ran` lines.
per_host = defaultdict(list)
for line in log.splitlines():
    if " ran" not in line and "ran " not in line:
        continue
    h, s = re.search(r"host=(\S+)", line), re.search(r"secs=([0-9.]+)", line)
    c = re.search(r"command=(.*?) code=", line)
    if h and s:
        per_host[h.group(1)].append((float(s.group(1)), c.group(1) if c else "?"))
commands = [len(v) for v in per_host.values()]
n = len(hosts)
print(f"\n1+{n - 1} hosts ({os.cpu_count()} CPUs here)")
print(f"{'what':<52} {'s':>7} {'ratio':>7}  goal")
print(f"{'floor: ' + str(n) + ' parallel `ssh host true`, fresh':<52} {floor:>7.2f}")
print(f"{'flambe cluster.yaml, cold (keys, build, setup)':<52} {cold:>7.2f} {cold / floor:>6.2f}x  <= 2x floor + setup commands")
print(f"{'flambe cluster.yaml, warm (nothing to do)':<52} {warm:>7.2f} {warm / floor:>6.2f}x  <= 1.3x floor")
if commands:
    print(f"warm: {min(commands)}-{max(commands)} commands per host over ssh (goal on 1+3: <= 2 round trips)")
    slowest = defaultdict(float)
    for runs in per_host.values():
        for secs, what in runs:
            slowest[what[:60]] += secs / len(per_host)
    print("warm: seconds per host by command (mean):")
    for what, secs in sorted(slowest.items(), key=lambda x: -x[1])[:12]:
        print(f"  {secs:6.2f}  {what}")
PY
  bash scripts/testbed.sh down "$id" >/dev/null 2>&1 || true
done

if [ "${BENCH_TRIALS:-1}" != 0 ]; then
  if ! "$TOOLS/ray-tune/bin/python" -c 'import ray.tune' 2>/dev/null; then
    /usr/bin/python3 -m venv "$TOOLS/ray-tune"
    "$TOOLS/ray-tune/bin/pip" install -q --disable-pip-version-check 'ray[default,tune]==2.60.0'
  fi
  id=149
  IDS+=("$id")
  bash scripts/testbed.sh up "$id" 3 >/dev/null
  bash scripts/testbed.sh env "$id" > "$WORK/env-$id"
  (cd "$WORK" && /usr/bin/python3 "$OLDPWD/scripts/bench/cluster_trials.py" "$BIN" "$WORK" "$id" "$TOOLS")
fi
