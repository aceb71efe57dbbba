#!/usr/bin/env python3
"""Optuna's TPE (its defaults) on one benchmark problem: prints the best
value after each trial, one per line.

    optuna_study.py PROBLEM SEED TRIALS
"""
import sys

import optuna

import objectives

optuna.logging.set_verbosity(optuna.logging.WARNING)
name, seed, trials = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])


def objective(trial):
    params = []
    for pname, kind, low, high in objectives.SPACES[name]:
        if kind == "u":
            params.append(trial.suggest_float(pname, low, high))
        elif kind == "lu":
            params.append(trial.suggest_float(pname, low, high, log=True))
        elif kind == "i":
            params.append(trial.suggest_int(pname, low, high))
        else:
            params.append(trial.suggest_categorical(pname, low))
    return objectives.best(name, params)


study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed))
best = float("inf")
for _ in range(trials):
    study.optimize(objective, n_trials=1)
    best = min(best, study.trials[-1].value)
    print(best)
