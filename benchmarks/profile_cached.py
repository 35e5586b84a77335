"""Profile of the cached float64 removal path: median latency over 40 removals, then cProfile of 20 more.

    python -m benchmarks.profile_cached

Fashion-MNIST pullover vs coat (12,000 x 784), l2_reg = 1e-3, sigma = 10. Never run by pytest.
"""
import cProfile
import pstats
import time

import jax
import numpy as np

import certunlearn as cu
ds = cu.load("fashion-mnist", classes=(2, 4))
X, y = ds.X_train, ds.y_train
m = cu.fit(X, y, l2_reg=1e-3, sigma=10.0, solver="cached", key=jax.random.key(0))
for i in range(3):
    m, r = cu.remove(m, i)
ts = []
for i in range(3, 43):
    t = time.perf_counter(); m, r = cu.remove(m, i); ts.append(time.perf_counter() - t)
print("median ms", 1e3 * np.median(ts), "report.seconds", r.seconds)
pr = cProfile.Profile(); pr.enable()
for i in range(43, 63):
    m, r = cu.remove(m, i)
pr.disable()
pstats.Stats(pr).sort_stats("cumulative").print_stats(25)
