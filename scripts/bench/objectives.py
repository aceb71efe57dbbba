#!/usr/bin/env python3
"""The search benchmark's problems, as flambe trials and as Python functions
for the Optuna runner (one definition for both, so they score alike).

    objectives.py branin X1 X2
    objectives.py hartmann6 X1 .. X6
    objectives.py curve LR WIDTH DROPOUT OPTIMIZER

As a trial, it appends `{"step": t, "y": value}` lines to $FLAMBE_METRICS
(one line for the closed-form problems, one per epoch for the curve). Every
problem is minimised; `best(name, params)` is the best value a trial shows.
"""
import json
import math
import os
import sys

# The spaces, in the order the command line takes them:
# (name, kind, low, high); kind is "u" (uniform), "lu" (log-uniform),
# "i" (integer) or "c" (a list of choices in `low`).
SPACES = {
    "branin": [("x1", "u", -5.0, 10.0), ("x2", "u", 0.0, 15.0)],
    "hartmann6": [(f"x{i}", "u", 0.0, 1.0) for i in range(1, 7)],
    "curve": [
        ("lr", "lu", 1e-5, 1.0),
        ("width", "i", 8, 512),
        ("dropout", "u", 0.0, 0.8),
        ("optimizer", "c", ["sgd", "adam", "rmsprop"], None),
    ],
}
OPTIMA = {"branin": 0.397887, "hartmann6": -3.32237}


def branin(x1, x2):
    a, b, c = 1.0, 5.1 / (4 * math.pi**2), 5 / math.pi
    r, s, t = 6.0, 10.0, 1 / (8 * math.pi)
    return a * (x2 - b * x1**2 + c * x1 - r) ** 2 + s * (1 - t) * math.cos(x1) + s


_A = [[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14],
      [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]]
_P = [[1312, 1696, 5569, 124, 8283, 5886], [2329, 4135, 8307, 3736, 1004, 9991],
      [2348, 1451, 3522, 2883, 3047, 6650], [4047, 8828, 8732, 5743, 1091, 381]]
_ALPHA = [1.0, 1.2, 3.0, 3.2]


def hartmann6(*x):
    return -sum(
        _ALPHA[i] * math.exp(-sum(_A[i][j] * (x[j] - _P[i][j] * 1e-4) ** 2 for j in range(6)))
        for i in range(4)
    )


def curve(lr, width, dropout, optimizer, epochs=20):
    """A simulated validation-loss curve: each optimizer has its best
    learning rate, wider nets reach lower floors with diminishing returns,
    dropout has a sweet spot, and a bad learning rate also learns slowly."""
    best_lr = {"sgd": 0.1, "adam": 3e-3, "rmsprop": 1e-3}[optimizer]
    miss = (math.log10(lr) - math.log10(best_lr)) ** 2
    floor = 0.08 + 0.25 * math.exp(-width / 96) + 0.6 * (dropout - 0.35) ** 2 + 0.15 * miss
    floor += {"sgd": 0.03, "adam": 0.0, "rmsprop": 0.015}[optimizer]
    tau = 2.0 * (1 + miss)
    # A small wiggle that depends on every param, as runs vary.
    wiggle = 0.01 * math.sin(1e3 * lr + width + 10 * dropout)
    return [floor + wiggle + (1.2 - floor) * math.exp(-t / tau) for t in range(1, epochs + 1)]


def values(name, params):
    if name == "branin":
        return [branin(*params)]
    if name == "hartmann6":
        return [hartmann6(*params)]
    return curve(*params)


def best(name, params):
    return min(values(name, params))


def parse(name, args):
    out = []
    for (_, kind, _, _), a in zip(SPACES[name], args):
        out.append(int(a) if kind == "i" else a if kind == "c" else float(a))
    return out


if __name__ == "__main__":
    name = sys.argv[1]
    ys = values(name, parse(name, sys.argv[2:]))
    with open(os.environ["FLAMBE_METRICS"], "a") as f:
        for step, y in enumerate(ys, 1):
            f.write(json.dumps({"step": step, "y": y}) + "\n")
