#!/usr/bin/env python3
"""The search benchmark's driver (see scripts/bench-search.sh): every problem
× method × seed, at budgets of 50 and 100 trials, then the table of the best
value found (median and IQR over seeds) and the checks it is held to."""
import csv
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import objectives  # noqa: E402

FLAMBE, OPTUNA_PY = sys.argv[1], sys.argv[2]
SEEDS = int(os.environ.get("SEEDS", "10"))
BUDGETS = (50, 100)
PROBLEMS = tuple(os.environ.get("PROBLEMS", "branin hartmann6 curve").split())


def spec(kind, low, high):
    if kind == "c":
        return "!c [" + ", ".join(low) + "]"
    return f"!{kind} [{low!r}, {high!r}]"


def flambe_run(work, problem, method, seed):
    space = objectives.SPACES[problem]
    params = "\n".join(f"      {n}: {spec(k, lo, hi)}" for n, k, lo, hi in space)
    args = " ".join("{" + n + "}" for n, _, _, _ in space)
    search = "!TPE {trials: 100}" if method == "tpe" else "!Random {trials: 100}"
    name = f"{problem}-{method}-{seed}"
    config = os.path.join(work, name + ".yaml")
    with open(config, "w") as f:
        f.write(
            f"!Experiment\nname: {name}\nsave_path: {work}/runs\nseed: {seed}\n"
            f"pipeline:\n  f: !Stage\n"
            f"    run: {sys.executable} {HERE}/objectives.py {problem} {args}\n"
            f"    params:\n{params}\n    search: {search}\n    metric: y\n    mode: min\n"
        )
    subprocess.run(
        [FLAMBE, config, "--no-site", "--cpus", "1" if method == "tpe" else "2"],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    best = [float("inf")] * 100
    with open(f"{work}/runs/{name}/results.csv") as f:
        for row in csv.DictReader(f):
            index = int(row["id"].rsplit("-", 1)[1])
            if row["best_metric"]:
                best[index] = float(row["best_metric"])
    running, out = float("inf"), []
    for v in best:
        running = min(running, v)
        out.append(running)
    return out


def optuna_run(problem, seed):
    out = subprocess.run(
        [OPTUNA_PY, f"{HERE}/optuna_study.py", problem, str(seed), "100"],
        check=True, capture_output=True, text=True,
    ).stdout.split()
    return [float(v) for v in out]


def quartiles(values):
    q = statistics.quantiles(values, n=4, method="inclusive")
    return statistics.median(values), q[2] - q[0]


def main():
    work = tempfile.mkdtemp(prefix="flambe-bench-search-")
    jobs = {}
    with ThreadPoolExecutor(max_workers=2) as pool:
        for problem in PROBLEMS:
            for seed in range(SEEDS):
                for method in ("tpe", "random"):
                    jobs[(problem, method, seed)] = pool.submit(flambe_run, work, problem, method, seed)
                jobs[(problem, "optuna", seed)] = pool.submit(optuna_run, problem, seed)
        results = {k: v.result() for k, v in jobs.items()}
    shutil.rmtree(work, ignore_errors=True)
    methods = (("tpe", "flambe TPE"), ("random", "flambe random"), ("optuna", "Optuna TPE"))
    print(f"\nbest value found (minimised), median [IQR] over {SEEDS} seeds\n")
    print(f"{'problem':<10} {'budget':>6}  " + "  ".join(f"{label:>22}" for _, label in methods))
    failures = []
    for problem in PROBLEMS:
        for budget in BUDGETS:
            medians = {}
            cells = []
            for method, _ in methods:
                m, iqr = quartiles([results[(problem, method, s)][budget - 1] for s in range(SEEDS)])
                medians[method] = m
                cells.append(f"{m:>12.4f} [{iqr:7.4f}]")
            print(f"{problem:<10} {budget:>6}  " + "  ".join(f"{c:>22}" for c in cells))
            # Compared as regret (distance to the optimum) where it is known,
            # else as the value itself.
            optimum = objectives.OPTIMA.get(problem, 0.0)
            regret = {k: v - optimum for k, v in medians.items()}
            if not regret["tpe"] < regret["random"]:
                failures.append(f"{problem} @{budget}: TPE does not beat random")
            gap = abs(medians["tpe"] - medians["optuna"]) / abs(medians["optuna"])
            if gap > 0.10 and regret["tpe"] > regret["optuna"]:
                failures.append(f"{problem} @{budget}: TPE is {gap:.0%} off Optuna's median")
    print()
    for f in failures:
        print("FAIL:", f)
    print("all checks hold" if not failures else f"{len(failures)} checks fail")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
