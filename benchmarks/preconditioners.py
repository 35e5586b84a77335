"""CG preconditioners for the softmax removal step: iterations to a tolerance, and the cost of one apply.

    python -m benchmarks.preconditioners            # Fashion-MNIST, 60,000 x 784 x 10 (~3 minutes)
    python -m benchmarks.preconditioners --rows 12000

Fits the perturbed softmax model, then solves ``H u = Delta`` for the removal of row 0 with each
preconditioner and prints a markdown table (also ``--out``/preconditioners.md and .csv). The
"dense subsample" row is the preconditioner certunlearn used before the projected one; "block-diagonal"
(the per-class blocks of the subsample Hessian) is a comparison only. Never run by pytest.
"""

from __future__ import annotations

import argparse
import functools
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

import certunlearn as cu
from certunlearn import curvature, hessian, objective, solvers


def _apply_ms(apply, pre, v, repeats=5):
    fn = jax.jit(apply)  # the preconditioner is an argument: never a (huge) jit constant
    jax.block_until_ready(fn(pre, v))
    start = time.perf_counter()
    for _ in range(repeats):
        jax.block_until_ready(fn(pre, v))
    return (time.perf_counter() - start) / repeats * 1e3


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=60000)
    parser.add_argument("--l2-reg", type=float, default=1e-3)
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args(argv)
    ds = cu.load("fashion-mnist")
    X_np, y_np = ds.X_train[: args.rows], ds.y_train[: args.rows]
    lam = args.l2_reg
    model = cu.fit(X_np, y_np, loss="softmax", l2_reg=lam, sigma=10.0, solver="cg", key=jax.random.key(0))
    X, y, w = jnp.asarray(X_np), jnp.asarray(y_np, jnp.int32), model.params
    n, d = X.shape
    k = w.shape[1]
    keep = jnp.ones(n).at[0].set(0.0)
    rhs = objective.removed_gradient(w, X[:1], y[:1], jnp.ones(1), loss="softmax", l2_reg=lam)
    shift = lam * (n - 1)
    rng = np.random.default_rng(0)

    def subsample(m):
        rows = jnp.asarray(rng.choice(n, min(m, n), replace=False))
        return X[rows], jnp.ones(rows.shape[0]), n / rows.shape[0]

    candidates = {"none": (None, None, 0.0)}
    X_s, w_s, scale = subsample(2048)
    t = time.perf_counter()
    dense = jax.block_until_ready(curvature.build_cache(w, X_s, y[: X_s.shape[0]], w_s * scale, lam, loss="softmax",
                                                        capacity=1))
    candidates["dense subsample, 2,048 rows (before)"] = (curvature.apply_inverse, dense, time.perf_counter() - t)
    t = time.perf_counter()
    kron = jax.block_until_ready(curvature.kronecker_preconditioner(w, X_s, w_s, scale, shift, loss="softmax"))
    candidates["K-FAC (kronecker), 2,048 rows"] = (curvature.apply_kronecker_inverse, kron, time.perf_counter() - t)
    X_s, w_s, scale = subsample(8192)

    @jax.jit
    def block_diagonal(w, X_s):
        p = jax.nn.softmax(X_s @ w, axis=1)
        blocks = jax.vmap(lambda c: (X_s * c[:, None]).T @ X_s)((p * (1 - p)).T) * scale
        return jax.vmap(jnp.linalg.inv)(blocks + shift * jnp.eye(d))

    t = time.perf_counter()
    inv_blocks = jax.block_until_ready(block_diagonal(w, X_s))
    candidates["block-diagonal per class, 8,192 rows"] = (
        lambda blocks, v: jnp.einsum("kab,bk->ak", blocks, v), inv_blocks, time.perf_counter() - t)
    for rank in (50, curvature.projection_rank(d, k)):
        t = time.perf_counter()
        pre = jax.block_until_ready(
            curvature.projected_preconditioner(w, X_s, w_s, scale, shift, loss="softmax", rank=rank))
        candidates[f"projected, r = {rank}, 8,192 rows"] = (curvature.apply_projected_inverse, pre,
                                                            time.perf_counter() - t)

    @functools.partial(jax.jit, static_argnames=("apply", "rtol"))
    def solve(w, X, keep, rhs, pre, *, apply, rtol):
        matvec = hessian.glm_hvp_operator(w, X, keep, loss="softmax", l2_reg=lam)
        precond = None if apply is None else (lambda v: apply(pre, v))
        return solvers.conjugate_gradient(matvec, rhs, rtol=rtol, maxiter=1000, preconditioner=precond)

    rows = []
    for name, (apply, pre, build_s) in candidates.items():
        steps = []
        for rtol in (1e-6, 1e-8, 1e-10):
            result = solve(w, X, keep, rhs, pre, apply=apply, rtol=rtol)
            assert bool(result.converged), (name, rtol)
            steps.append(int(result.steps))
        rows.append(dict(preconditioner=name, iters_1e6=steps[0], iters_1e8=steps[1], iters_1e10=steps[2],
                         apply_ms=_apply_ms(apply, pre, jnp.ones_like(w)) if apply is not None else 0.0,
                         build_s_with_compile=build_s))
    title = f"CG iterations for one softmax removal, Fashion-MNIST n={n}, d={d}, K={k}, l2_reg={lam}"
    columns = list(rows[0])
    lines = [f"### {title}", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        lines.append("| " + " | ".join(f"{r[c]:.3g}" if isinstance(r[c], float) else str(r[c]) for c in columns)
                     + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    os.makedirs(args.out, exist_ok=True)
    import pandas as pd

    pd.DataFrame(rows).to_csv(os.path.join(args.out, "preconditioners.csv"), index=False)
    tmp = os.path.join(args.out, ".preconditioners.md.tmp")
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, os.path.join(args.out, "preconditioners.md"))


if __name__ == "__main__":
    main()
