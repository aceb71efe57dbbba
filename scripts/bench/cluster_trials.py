"""#17's cluster-trial benchmark, run by scripts/bench-cluster.sh on a test
bed of 1+2 hosts it made: on one Ray cluster (flambe's own, brought up by a
warm-up experiment), 40 trivial trials three ways, one after another:

  - the floor: 40 Ray jobs of `true` (1 CPU each) through the Jobs API;
  - Ray Tune: 40 trials of a function running `true` (1 CPU each),
    submitted as one Ray job (Tune's own driver on the head);
  - flambe: `flambe forty.yaml --cluster cluster.yaml`, the whole command
    from this machine (slot workers; a fresh experiment each time);

and the warm submit: from `flambe one.yaml --cluster` to its trial running.
Prints a table with each goal's ratio.

  python3 cluster_trials.py BIN WORK BED TOOLS
"""
import json

import os
import statistics
import subprocess
import sys
import time

bin, work, bed, tools = sys.argv[1:5]
env = dict(l.strip().split("=", 1) for l in open(f"{work}/env-{bed}") if "=" in l)
user, key = env["TESTBED_USER"], env["TESTBED_KEY"]
hosts = [env[f"TESTBED_HOST_{n}"] for n in (1, 2, 3)]
orch_home = env["TESTBED_HOME_1"]
home = f"{work}/home-{bed}"
ns = f"fb{bed}h1"
TRIALS = 40
REPS = int(os.environ.get("BENCH_REPS", "2"))

# Ray with Tune in it, linked as the hosts' Ray (flambe checks its version).
link = (f"mkdir -p ~/.flambe/bin && ln -sfn {tools}/ray-tune ~/.flambe/ray"
        f" && ln -sfn {tools}/venv/bin/tensorboard ~/.flambe/bin/tensorboard")
cluster = f"{work}/trials-cluster.yaml"
with open(cluster, "w") as f:
    f.write(f"!SSHCluster\nname: trials{bed}\norchestrator_ip: {hosts[0]}\n"
            f"factories_ips: [{hosts[1]}, {hosts[2]}]\nusername: {user}\nkey: {key}\n"
            f"setup_cmds:\n  - {link}\n")


def experiment(name, trials, run, metric=None):
    path = f"{work}/{name}.yaml"
    values = ", ".join(str(i) for i in range(trials))
    with open(path, "w") as f:
        f.write(f"!Experiment\nname: {name}\nsave_path: ./runs\npipeline:\n  t: !Stage\n"
                f"    run: '{run}'\n    params:\n      i: !g [{values}]\n    cpus: 1\n")
        if metric:
            f.write(f"    metric: {metric}\n    mode: max\n")
    return path


def flambe(config, *args):
    t = time.time()
    out = subprocess.run([bin, config, "--cluster", cluster, *args],
                         env={**os.environ, "FLAMBE_HOME": home}, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"flambe {config} failed:\n{out.stderr[-3000:]}")
    return t, time.time() - t


# A Python client of the orchestrator's Jobs API, run in its namespace (the
# dashboard listens on its loopback only), with the cluster's token.
JOBS = r'''
import json, shlex, sys, time, urllib.request
token = open(sys.argv[1]).read().strip()
mode, n = sys.argv[2], int(sys.argv[3])
base = "http://127.0.0.1:8265/api/jobs/"
def call(method, url, body=None):
    req = urllib.request.Request(url, method=method, data=None if body is None else json.dumps(body).encode(),
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    return json.loads(urllib.request.urlopen(req, timeout=60).read() or b"null")
def wait(ids):
    while True:
        jobs = {j["submission_id"]: j for j in call("GET", base) if j["submission_id"] in ids}
        if len(jobs) == len(ids) and all(j["status"] in ("SUCCEEDED", "FAILED", "STOPPED") for j in jobs.values()):
            return jobs
        time.sleep(0.2)
tag = f"bench-{time.time_ns()}"
t = time.time()
if mode == "floor":
    ids = set()
    for i in range(n):
        sid = f"{tag}-{i}"
        call("POST", base, {"entrypoint": "true", "submission_id": sid, "entrypoint_num_cpus": 1})
        ids.add(sid)
    jobs = wait(ids)
    starts = sorted(j["start_time"] / 1000 for j in jobs.values())
    ok = sum(j["status"] == "SUCCEEDED" for j in jobs.values())
    print(json.dumps({"secs": time.time() - t, "ok": ok, "first_start": min(starts) - t}))
else:
    src = open(sys.argv[4]).read()
    sid = f"{tag}-tune"
    call("POST", base, {"entrypoint": f"python -c {shlex.quote(src)}", "submission_id": sid})
    jobs = wait({sid})
    logs = call("GET", base + sid + "/logs")["logs"]
    fit = [l.split()[1] for l in logs.splitlines() if l.startswith("FIT ")]
    print(json.dumps({"secs": time.time() - t, "ok": jobs[sid]["status"] == "SUCCEEDED",
                      "fit": float(fit[0]) if fit else None, "tail": logs[-1500:]}))
'''
TUNE = r'''
import subprocess, time, ray
from ray import tune
ray.init()
def trial(config):
    subprocess.run(["true"])
    tune.report({"v": config["i"]})
t = time.time()
tuner = tune.Tuner(tune.with_resources(trial, {"cpu": 1}),
                   param_space={"i": tune.grid_search(list(range(40)))},
                   tune_config=tune.TuneConfig(metric="v", mode="max"))
tuner.fit()
print("FIT", time.time() - t)
'''
with open(f"{work}/jobs.py", "w") as f:
    f.write(JOBS)
with open(f"{work}/tune.py", "w") as f:
    f.write(TUNE)


def jobs_api(mode, n=TRIALS):
    out = subprocess.run(["ip", "netns", "exec", ns, "/usr/bin/python3", f"{work}/jobs.py",
                          f"{orch_home}/.flambe/cluster/ray_token", mode, str(n), f"{work}/tune.py"],
                         capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"the Jobs API client failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# Warm-up: the cluster, Ray on it, this build everywhere.
t = time.time()
flambe(experiment("warmup", 2, "true"))
print(f"\nwarm-up (cluster, Ray, two trials): {time.time() - t:.1f} s", flush=True)

floors, tunes, fits, ours, submits, ray_starts = [], [], [], [], [], []
for rep in range(REPS):
    floor = jobs_api("floor")
    if floor["ok"] != TRIALS:
        sys.exit(f"the Jobs API floor: only {floor['ok']} of {TRIALS} jobs succeeded")
    floors.append(floor["secs"])
    ray_starts.append(floor["first_start"])
    tune_run = jobs_api("tune")
    if not tune_run["ok"]:
        sys.exit(f"Ray Tune failed:\n{tune_run['tail']}")
    tunes.append(tune_run["secs"])
    fits.append(tune_run["fit"] or float("nan"))
    _, secs = flambe(experiment(f"forty{rep}", TRIALS, "true"))
    ours.append(secs)
    # Warm submit: the trial notes when it runs, as its metric.
    one = experiment(f"one{rep}", 1,
                     'echo "{{\\"step\\": 1, \\"at\\": $(date +%s.%N)}}" >> $FLAMBE_METRICS', "at")
    start, _ = flambe(one)
    pulled = subprocess.run([bin, "pull", f"one{rep}", "--cluster", cluster, "--to", f"{work}/one{rep}"],
                            env={**os.environ, "FLAMBE_HOME": home}, capture_output=True, text=True)
    if pulled.returncode != 0:
        sys.exit(f"flambe pull failed:\n{pulled.stderr[-2000:]}")
    rows = json.load(open(f"{work}/one{rep}/results.json"))
    submits.append(rows[0]["final_metric"] - start)
    print(f"rep {rep + 1}: floor {floors[-1]:.1f} s, Ray Tune {tunes[-1]:.1f} s, flambe {ours[-1]:.1f} s, "
          f"submit {submits[-1]:.2f} s", flush=True)

floor, tune_secs, fit = statistics.median(floors), statistics.median(tunes), statistics.median(fits)
us, submit, ray_start = statistics.median(ours), statistics.median(submits), statistics.median(ray_starts)
print(f"\n{TRIALS} trivial trials on 1+2 hosts (2 CPUs per factory; median of {REPS})")
print(f"{'what':<60} {'s':>7} {'ratio':>7}  goal")
print(f"{'floor: Ray Jobs API, 40 `true` jobs of 1 CPU':<60} {floor:>7.1f}")
print(f"{'Ray Tune, 40 trials as one Ray job (fit ' + format(fit, '.1f') + ' s)':<60} {tune_secs:>7.1f}")
print(f"{'flambe forty.yaml --cluster, the whole command':<60} {us:>7.1f} {us / tune_secs:>6.2f}x  <= 0.2x Ray Tune")
print(f"{'':<60} {'':>7} {us / floor:>6.2f}x  < 1x the Jobs floor")
print(f"{'warm submit: command start to its trial running':<60} {submit:>7.2f}")
# Ray's own cost of one job, per slot: the floor's time over its rounds.
slots = 4
per_job = floor * slots / TRIALS
print(f"{'Ray job cost per slot (floor x 4 slots / 40 jobs)':<60} {per_job:>7.2f} {submit / (2 + per_job):>6.2f}x  submit <= 2 s + this")
