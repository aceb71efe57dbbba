#!/usr/bin/env bash
# Benchmark (not a test): the local driver at scale. N trials (default
# 10000), up to P at once (default 1000): each sleeps S seconds (default 2)
# and reports one metric, with `cpus: 1/P` on `--cpus 1`, so P fit at once.
# While it runs, the driver's own CPU and memory are sampled from /proc and
# the report site's overview (`/api/v1/experiment`) is timed twice a second.
# Prints one table beside the goals of #17 (driver peak memory < 100 MB,
# driver CPU < 10% of one core while trials run, overview < 200 ms).
#
#   scripts/bench-driver.sh [N] [P] [S]
#   FLAMBE_BIN=~/.cargo/bin/flambe scripts/bench-driver.sh
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-10000}
P=${2:-1000}
S=${3:-2}
. scripts/bench/flambe-bin.sh
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
CPUS=$(python3 -c "print(1 / $P)")
cat > "$WORK/bench.yaml" <<YAML
!Experiment
name: scale
save_path: ./runs
pipeline:
  s: !Stage
    run: 'sleep $S; echo "{\"step\": 1, \"m\": \$RANDOM}" >> \$FLAMBE_METRICS'
    samples: $N
    cpus: $CPUS
    metric: m
    mode: max
YAML
/usr/bin/python3 - "$BIN" "$WORK" "$N" "$P" "$S" <<'PY'
import os, re, subprocess, sys, threading, time, urllib.request
bin, work, n, p, s = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
tick = os.sysconf("SC_CLK_TCK")
start = time.perf_counter()
proc = subprocess.Popen([bin, f"{work}/bench.yaml", "--cpus", "1"],
                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
url = None
lines = []
def read():
    global url
    for line in proc.stdout:
        lines.append(line)
        m = re.search(r"Report site: (http://\S+)", line)
        if m and url is None:
            url = m.group(1).rstrip("/")
threading.Thread(target=read, daemon=True).start()

def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime

def hwm_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0

latencies, samples, peak = [], [], 0
last = None
while proc.poll() is None:
    try:
        peak = max(peak, hwm_kb(proc.pid))
        now = (time.perf_counter(), cpu_ticks(proc.pid))
    except OSError:
        break
    if last is not None:
        samples.append((now[1] - last[1]) / tick / (now[0] - last[0]))
    last = now
    if url:
        t = time.perf_counter()
        try:
            urllib.request.urlopen(f"{url}/api/v1/experiment", timeout=10).read()
            latencies.append(time.perf_counter() - t)
        except OSError:
            pass
    time.sleep(0.5)
wall = time.perf_counter() - start
code = proc.wait()
if code != 0:
    sys.stdout.write("".join(lines[-20:]))
    sys.exit(f"flambe exited {code}")
# While trials run: leave out the first and last samples (start-up, the end).
steady = samples[2:-2] or samples
steady.sort()
lat = sorted(latencies)
floor = n / p * s
def pct(xs, q):
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")
print(f"{n} trials of `sleep {s:g}`, {p} at once, {os.cpu_count()} CPUs")
print(f"{'what':<44} {'measured':>12} {'goal':>12}")
print(f"{'wall time (floor: n/p x sleep = %.0f s)' % floor:<44} {wall:>10.1f} s {'':>12}")
print(f"{'driver peak memory (VmHWM)':<44} {peak / 1024:>9.1f} MB {'< 100 MB':>12}")
print(f"{'driver CPU, median while trials run':<44} {pct(steady, 0.5) * 100:>10.1f} % {'< 10 %':>12}")
print(f"{'driver CPU, 90th percentile':<44} {pct(steady, 0.9) * 100:>10.1f} % {'':>12}")
print(f"{'site overview, median':<44} {pct(lat, 0.5) * 1000:>9.0f} ms {'':>12}")
print(f"{'site overview, slowest (%d requests)' % len(lat):<44} {(lat[-1] if lat else float('nan')) * 1000:>9.0f} ms {'< 200 ms':>12}")
PY
