#!/usr/bin/env python3
"""A small trainer with no dependencies: a one-hidden-layer network learns a
two-moons classification problem with SGD, and reports its validation
accuracy after every epoch the way every flambe trial does: one JSON line per
step appended to the file in $FLAMBE_METRICS.

    train.py --lr 0.1 --hidden 8 --epochs 20 --out DIR
    train.py --eval MODEL.json --out DIR       (test accuracy of a saved model)
"""
import argparse
import json
import math
import os
import random


def moons(n, seed, noise=0.2):
    rng = random.Random(seed)
    points = []
    for i in range(n):
        label = i % 2
        t = rng.uniform(0, math.pi)
        x = math.cos(t) if label == 0 else 1 - math.cos(t)
        y = math.sin(t) if label == 0 else 0.5 - math.sin(t)
        points.append(((x + rng.gauss(0, noise), y + rng.gauss(0, noise)), label))
    return points


def forward(model, x):
    hidden = [math.tanh(w[0] * x[0] + w[1] * x[1] + b) for w, b in zip(model["w1"], model["b1"])]
    z = sum(v * h for v, h in zip(model["w2"], hidden)) + model["b2"]
    return hidden, 1 / (1 + math.exp(-max(-30.0, min(30.0, z))))


def accuracy(model, data):
    return sum((forward(model, x)[1] > 0.5) == bool(y) for x, y in data) / len(data)


def train(args):
    rng = random.Random(args.seed)
    h = args.hidden
    model = {
        "w1": [[rng.gauss(0, 1), rng.gauss(0, 1)] for _ in range(h)],
        "b1": [0.0] * h,
        "w2": [rng.gauss(0, 1) / math.sqrt(h) for _ in range(h)],
        "b2": 0.0,
    }
    data, val = moons(400, 1), moons(200, 2)
    metrics = open(os.environ.get("FLAMBE_METRICS", os.devnull), "a")
    os.makedirs(args.out, exist_ok=True)
    for epoch in range(1, args.epochs + 1):
        rng.shuffle(data)
        loss = 0.0
        for x, y in data:
            hidden, p = forward(model, x)
            loss -= math.log(max(p if y else 1 - p, 1e-12))
            g = p - y
            for j in range(h):
                gh = g * model["w2"][j] * (1 - hidden[j] ** 2)
                model["w2"][j] -= args.lr * g * hidden[j]
                model["w1"][j][0] -= args.lr * gh * x[0]
                model["w1"][j][1] -= args.lr * gh * x[1]
                model["b1"][j] -= args.lr * gh
            model["b2"] -= args.lr * g
        record = {"step": epoch, "loss": loss / len(data), "val_acc": accuracy(model, val)}
        # The model of every epoch is saved before the epoch is reported:
        # a trial a scheduler stops early (ASHA) still leaves the model its
        # last metrics are of, for the next stage to evaluate.
        save(model, args.out)
        metrics.write(json.dumps(record) + "\n")
        metrics.flush()
        print(f"epoch {epoch}: loss {record['loss']:.4f} val_acc {record['val_acc']:.3f}", flush=True)


def save(model, out):
    """model.json, replaced whole (a kill mid-write leaves the last one)."""
    tmp = os.path.join(out, "model.json.tmp")
    with open(tmp, "w") as f:
        json.dump(model, f)
    os.replace(tmp, os.path.join(out, "model.json"))


def evaluate(args):
    with open(args.eval) as f:
        model = json.load(f)
    acc = accuracy(model, moons(1000, 3))
    with open(os.environ.get("FLAMBE_METRICS", os.devnull), "a") as metrics:
        metrics.write(json.dumps({"step": 1, "test_acc": acc}) + "\n")
    print(f"test_acc {acc:.3f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--hidden", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval")
    parser.add_argument("--out", default=".")
    args = parser.parse_args()
    evaluate(args) if args.eval else train(args)
