"""Profile of the cached float64 removal path: median latency over 40 removals, then cProfile of 20 more,
and the two ways to apply the cached inverse (triangular solves with the factor, or one product).

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

# Why the cache keeps an explicit inverse (certunlearn/curvature.py): XLA's triangular solve against a
# matrix-vector product, for the cached Hessian of this problem.
H = m._cache.matrix
factor = jax.numpy.linalg.cholesky(H)
v = jax.numpy.ones(H.shape[0], H.dtype)
solve = jax.jit(lambda L, v: jax.scipy.linalg.cho_solve((L, True), v))
product = jax.jit(lambda A, v: A @ v)
for name, fn, arg in (("cho_solve with the factor", solve, factor), ("product with the inverse", product, m._cache.inverse)):
    jax.block_until_ready(fn(arg, v))
    ts = []
    for _ in range(50):
        t = time.perf_counter(); jax.block_until_ready(fn(arg, v)); ts.append(time.perf_counter() - t)
    print(f"{name}: median {1e3 * np.median(ts):.3f} ms")
