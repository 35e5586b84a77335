"""Wall time of the audits on this machine (never run by pytest).

    python benchmarks/audit_timing.py [--num-seeds 1000] [--repeats 2]

Prints one JSON line per measurement: the end-to-end epsilon audit on digits 3-vs-8 (logistic, d = 64,
n = 285) over N noise seeds, first call (compilation included) and warm calls; the calibrator audit at
N = 1e3 and 1e5; LiRA shadow training (64 models). The load average is printed too: other processes on a
shared 2-core machine inflate every number.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

import certunlearn as cu
from certunlearn import audit


def _emit(**row):
    print(json.dumps(row), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-seeds", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    ds = cu.load("digits", classes=(3, 8), seed=0)
    cfg = audit.audit_config_defaults()
    for repeat in range(args.repeats):
        for removal in ("newton", "none"):
            start = time.perf_counter()
            r = audit.audit_end_to_end(
                ds.X_train, ds.y_train, l2_reg=cfg["l2_reg"], epsilon=cfg["epsilon"], delta=cfg["delta"],
                residual_budget=cfg["residual_budget"], num_seeds=args.num_seeds, removal=removal, key=repeat,
            )
            _emit(what="end_to_end", removal=removal, repeat=repeat, num_seeds=args.num_seeds,
                  seconds=time.perf_counter() - start, epsilon_lb=r.epsilon_lb, certified_epsilon=r.certified_epsilon,
                  retrained_fraction=r.details["retrained_fraction"], max_epsilon_spent=r.details["max_epsilon_spent"],
                  sigma=r.sigma, loadavg=os.getloadavg()[0])
    for n in (1_000, 100_000):
        for scale in (1.0, 0.5):
            r = audit.audit_calibrator(epsilon=1.0, delta=1e-5, num_samples=n, sigma_scale=scale, key=0)
            _emit(what="calibrator", num_samples=n, sigma_scale=scale, seconds=r.seconds, epsilon_lb=r.epsilon_lb,
                  certified_epsilon=r.certified_epsilon)
    X = np.concatenate([ds.X_train, ds.X_test])
    y = np.concatenate([ds.y_train, ds.y_test])
    start = time.perf_counter()
    audit.train_shadow_models(X, y, loss="logistic", l2_reg=cfg["l2_reg"], num_shadow=64, key=0)
    _emit(what="lira_shadows", num_shadow=64, n=int(X.shape[0]), seconds=time.perf_counter() - start)


if __name__ == "__main__":
    main()
