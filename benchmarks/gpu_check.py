"""Correctness on an accelerator: the same fit and removals on the default device and on the CPU.

    python -m benchmarks.gpu_check [--out DIR]

Trains a certified logistic model on Fashion-MNIST pullover vs coat (or digits if absent) in float64,
removes 10 rows with each solver, and compares parameters, spent residuals and certified epsilons
between the accelerator and the host CPU. Exits non-zero on a mismatch.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import jax
import numpy as np

import certunlearn as cu


def _run(device, X, y, solver):
    with jax.default_device(device):
        model = cu.fit(X, y, l2_reg=1e-3, sigma=10.0, solver=solver, key=jax.random.key(0))
        for i in range(10):
            model, _ = cu.remove(model, [i] if i % 3 else [i, 5000 + i])
        return np.asarray(model.params), model.certificate()


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=os.environ.get("OUT", "benchmarks/results"))
    args = parser.parse_args(argv)
    try:
        ds = cu.load("fashion-mnist", classes=(2, 4), download=False)
    except FileNotFoundError:
        ds = cu.load("digits", classes=(3, 8))
    X, y = ds.X_train, ds.y_train
    accel, cpu = jax.devices()[0], jax.devices("cpu")[0]
    rows, ok = [], True
    for solver in ("cholesky", "cached", "cg"):
        p_acc, c_acc = _run(accel, X, y, solver)
        p_cpu, c_cpu = _run(cpu, X, y, solver)
        rel = float(np.linalg.norm(p_acc - p_cpu) / np.linalg.norm(p_cpu))
        spent_rel = abs(c_acc.residual_spent - c_cpu.residual_spent) / c_cpu.residual_spent
        good = rel < 1e-8 and spent_rel < 1e-6 and c_acc.epsilon <= c_acc.target_epsilon
        ok &= good
        rows.append(dict(solver=solver, device=str(accel), params_rel_diff=rel, spent_rel_diff=spent_rel,
                         epsilon_accel=c_acc.epsilon, epsilon_cpu=c_cpu.epsilon, ok=good))
        print(rows[-1], flush=True)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "gpu_check.json"), "w") as f:
        json.dump(rows, f, indent=2)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
