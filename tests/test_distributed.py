"""Data parallelism: core functions on rows sharded over 8 CPU devices equal the single-device results.

The pytest process has already started JAX with one CPU device, so the multi-device checks run in
subprocesses: this file, run as a script, is the worker (``python tests/test_distributed.py CASE``).

* ``CASE`` in ``CASES`` (``XLA_FLAGS=--xla_force_host_platform_device_count=8``): every core function
  twice, on one device with the user's ``n`` rows and on 8 devices with the rows (zero-padded to a
  multiple of 8, weight 0) sharded over the mesh; prints the largest relative differences, the output
  placements and the partitioning of the compiled program as JSON.
* ``multihost ID PORT``: one of two ``jax.distributed`` processes with 4 CPU devices each, each loading
  only its block of rows (Gloo collectives over localhost).
* ``api``: ``fit(..., mesh=)``/``remove`` against the same calls on one device (once api.py has ``mesh``).

The workers run concurrently (compilation dominates). Float64 throughout; the tolerance is 1e-12: the
only difference is the order of summation.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import re
import socket
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import certunlearn as cu
from certunlearn import distributed

NUM_DEVICES = 8
TOL = 1e-12
CASES = ("logistic-64", "softmax-61")  # n divisible by 8; n = 61 padded to 64 (with int labels)
CHECKS = (
    "gradient",
    "reference_gradient",
    "glm_hvp",
    "dense_hessian",
    "fit_newton_cholesky",
    "newton_step_cholesky_guo",
    "newton_step_cg_gradient",
    "residual_terms_data-dependent",
    "residual_terms_exact",
    "build_cache_factor",
    "cached_removal",
    "spectral_norm_upper_bound",
)


# ----------------------------------------------------------------------------------------------------
# The worker (runs in the 8-device subprocess)


def _data(loss, n, d=6, k=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    X *= rng.uniform(0.3, 1.0, size=(n, 1))
    teacher = rng.normal(size=(d, k))
    if loss == "logistic":
        y = np.where(X @ teacher[:, 0] + 0.3 * rng.normal(size=n) > 0, 1.0, -1.0)
    elif loss == "softmax":
        y = np.argmax(X @ teacher + 0.3 * rng.normal(size=(n, k)), axis=1).astype(np.int32)
    else:
        y = X @ teacher[:, 0] + 0.1 * rng.normal(size=n)
    return X, y


def _rel(a, b, floor=1e-3) -> float:
    """max over the leaves of two pytrees of ``max |a - b| / max(max |b|, floor)`` (NaN leaves must match).

    Relative, except for leaves below ``floor``: solve errors and the exact residual of an exact step
    are rounding noise (~1e-16) whose relative difference is O(1), so they are compared absolutely.
    """
    worst = 0.0
    for x, r in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        x, r = np.asarray(x, np.float64), np.asarray(r, np.float64)
        if x.ndim and x.shape[1:] == r.shape[1:] and x.shape[0] > r.shape[0]:
            # Per-row leaves (the cache's drift record) of the row-padded run: padding rows are zero.
            assert not np.any(x[r.shape[0]:]), "padding rows must stay zero"
            x = x[: r.shape[0]]
        assert x.shape == r.shape, (x.shape, r.shape)
        assert np.array_equal(np.isnan(x), np.isnan(r)), "NaN pattern differs"
        x, r = np.nan_to_num(x), np.nan_to_num(r)
        worst = max(worst, float(np.max(np.abs(x - r), initial=0.0) / max(np.max(np.abs(r), initial=0.0), floor)))
    return worst


def _devices(tree) -> int:
    """The most devices any committed leaf of ``tree`` lives on."""
    return max(len(leaf.sharding.device_set) for leaf in jax.tree_util.tree_leaves(tree) if hasattr(leaf, "sharding"))


def _run_case(loss, n, mesh):
    import reference as ref

    from certunlearn import curvature, hessian, objective, removal, train

    X, y = _data(loss, n)
    d = X.shape[1]
    shape = (d,) if loss != "softmax" else (d, 3)
    lam = 0.05
    rng = np.random.default_rng(1)
    b = 0.1 * rng.normal(size=shape)
    params = 0.3 * rng.normal(size=shape)
    vector = rng.normal(size=shape)
    removed = np.array([2, 7, n - 1])  # the last real row sits next to the padding
    keep_before = np.ones(n, bool)
    keep_before[[5, 20]] = False  # rows removed earlier
    keep = keep_before.copy()
    keep[removed] = False
    rows = jnp.asarray(np.r_[removed, 0])  # padded to a bucket of 4 with a weight-0 entry
    row_weights = jnp.asarray([1.0, 1.0, 1.0, 0.0])
    data_norm = removal.spectral_norm_upper_bound(X)
    max_row_norm = 1.0

    # Single device: the user's n rows, on device 0 (committed, so nothing can spread them).
    dev0 = jax.devices()[0]
    one = lambda a: jax.device_put(jnp.asarray(a), dev0)
    X1, y1, kb1, k1 = one(X), one(y), one(keep_before.astype(float)), one(keep.astype(float))

    # 8 devices: rows padded to a multiple of 8 (weight 0) and sharded; small arrays replicated.
    X_pad, y_pad, n_orig = distributed.pad_rows(X, y, distributed.num_shards(mesh))
    assert n_orig == n and X_pad.shape[0] % NUM_DEVICES == 0
    Xs, ys = distributed.shard_rows((X_pad, y_pad), mesh)
    kbs = distributed.place_weights(keep_before, num_rows=X_pad.shape[0], mesh=mesh)
    ks = distributed.place_weights(keep, num_rows=X_pad.shape[0], mesh=mesh)
    params_r, b_r, vector_r = distributed.replicate((jnp.asarray(params), jnp.asarray(b), jnp.asarray(vector)), mesh)

    rows_per_device = {s.data.shape[0] for s in Xs.addressable_shards}
    sharding = dict(
        x_spec=str(Xs.sharding.spec),
        x_devices=len(Xs.sharding.device_set),
        mask_devices=len(ks.sharding.device_set),
        rows_per_device=sorted(rows_per_device),
        padded_rows=int(X_pad.shape[0]),
        reference_devices=_devices(X1),
    )

    kw = dict(loss=loss, l2_reg=lam)
    out, devices = {}, {}

    def compare(name, fn, single_args, sharded_args, floor=1e-3):
        a = fn(*single_args)
        s = fn(*sharded_args)
        out[name] = _rel(s, a, floor)
        devices[name] = (_devices(a), _devices(s))
        return a, s

    grad = jax.jit(functools.partial(objective.gradient, **kw))
    compare("gradient", grad, (params, X1, y1, k1, b), (params_r, Xs, ys, ks, b_r))
    # The sum over sharded rows is partitioned: 8 partitions and an all-reduce in the compiled program.
    hlo = grad.lower(params_r, Xs, ys, ks, b_r).compile().as_text()
    sharding["gradient_partitions"] = int(re.search(r"num_partitions=(\d+)", hlo).group(1))
    sharding["gradient_all_reduce"] = "all-reduce" in hlo
    reference = ref.gradient(params, X, y, keep.astype(float), b, lam, loss)  # independent NumPy float64
    out["reference_gradient"] = _rel(grad(params_r, Xs, ys, ks, b_r), reference)
    devices["reference_gradient"] = (1, NUM_DEVICES)

    hvp = jax.jit(lambda w, X, y, m, v: hessian.glm_hvp(w, X, y, m, v, **kw))
    compare("glm_hvp", hvp, (params, X1, y1, k1, vector), (params_r, Xs, ys, ks, vector_r))
    dense = jax.jit(lambda w, X, y, m: hessian.dense_hessian(w, X, y, m, **kw))
    compare("dense_hessian", dense, (params, X1, y1, k1), (params_r, Xs, ys, ks))

    # Newton to the float64 floor, so that both runs reach the same point whatever their step counts.
    fit = functools.partial(train.fit_params, loss=loss, method="newton", solver="cholesky")
    zeros = jnp.zeros(shape)
    fit1, fits = compare("fit_newton_cholesky", lambda *args: fit(*args, lam, 1e-11),
                         (zeros, X1, y1, kb1, b), (zeros, Xs, ys, kbs, b_r))
    assert bool(fit1.converged) and bool(fits.converged)
    out["fit_newton_cholesky"] = _rel(fits.params, fit1.params)  # step counts may differ; the minimiser not
    w_fit = fit1.params
    w_fit_r = distributed.replicate(jnp.asarray(np.asarray(w_fit)), mesh)

    for solver, update in (("cholesky", "guo"), ("cg", "gradient")):
        step = functools.partial(removal.newton_step, loss=loss, solver=solver, update=update)
        compare(f"newton_step_{solver}_{update}", lambda *args, step=step: step(*args, lam, cg_rtol=1e-12).params,
                (w_fit, X1, y1, k1, rows, row_weights, b), (w_fit_r, Xs, ys, ks, rows, row_weights, b_r))
    w_new = removal.newton_step(w_fit, X1, y1, k1, rows, row_weights, b, lam, loss=loss).params
    w_new_r = distributed.replicate(jnp.asarray(np.asarray(w_new)), mesh)
    for bound in ("data-dependent", "exact"):  # "worst-case" shares the data pass of both
        terms = functools.partial(removal.residual_terms, loss=loss, update="guo", bound=bound)
        # The exact residual (~1e-3) is what is left of a sum of n O(1) terms after cancellation: it is
        # resolved to ~n eps absolutely, not relatively, so it is compared in the units of those terms.
        compare(f"residual_terms_{bound}", lambda *args, terms=terms: terms(*args, lam, data_norm, max_row_norm),
                (w_fit, w_new, X1, y1, k1, rows, row_weights, b),
                (w_fit_r, w_new_r, Xs, ys, ks, rows, row_weights, b_r),
                floor=1.0 if bound == "exact" else 1e-3)

    build = functools.partial(curvature.build_cache, loss=loss, capacity=8 * (3 if loss == "softmax" else 1))
    cache1 = build(w_fit, X1, y1, kb1, lam)
    caches = build(w_fit_r, Xs, ys, kbs, lam)
    out["build_cache_factor"] = _rel(caches, cache1)
    devices["build_cache_factor"] = (_devices(cache1), _devices(caches))
    cached = functools.partial(removal.cached_removal, loss=loss, update="guo", bound="data-dependent")
    compare("cached_removal", lambda *args: cached(*args[:-1], lam, args[-1], data_norm, max_row_norm),
            (w_fit, X1, y1, k1, rows, row_weights, row_weights, b, cache1),
            (w_fit_r, Xs, ys, ks, rows, row_weights, row_weights, b_r, caches))

    bound_sharded = distributed.spectral_norm_upper_bound(Xs)
    out["spectral_norm_upper_bound"] = abs(bound_sharded - data_norm) / data_norm
    devices["spectral_norm_upper_bound"] = (1, NUM_DEVICES)
    assert bound_sharded >= ref.spectral_norm(X)
    return dict(errors=out, devices=devices, sharding=sharding)


def _run_api(mesh):
    """fit(..., mesh=) and remove() against the same calls without a mesh (after the api.py patch)."""
    results = {}
    for loss, solver in (("logistic", "cached"), ("softmax", "cg")):
        X, y = _data(loss, 61)
        kw = dict(loss=loss, l2_reg=0.05, sigma=0.5, solver=solver, key=jax.random.key(0))
        single, sharded = cu.fit(X, y, **kw), cu.fit(X, y, mesh=mesh, **kw)
        assert sharded.retained.shape == (61,) and len(sharded._data.X.sharding.device_set) == NUM_DEVICES
        assert sharded._data.X.shape[0] == 64 and sharded._data.user_rows64()[0].shape == X.shape
        errors = [_rel(sharded.params, single.params), abs(sharded.exact_residual() - single.exact_residual())]
        for batch in ([3], [0, 60]):  # 60: the last real row, next to the padding
            single, r1 = cu.remove(single, batch)
            sharded, r2 = cu.remove(sharded, batch)
            assert r1.retrained == r2.retrained
            spent = abs(r2.residual_spent - r1.residual_spent) / r1.residual_spent
            errors += [_rel(sharded.params, single.params), spent]
        results[f"{loss}-{solver}"] = max(errors)
    return results


def _run_multihost(process_id, port):
    """One of two processes with 4 CPU devices each: every process loads only its block of rows."""
    jax.config.update("jax_num_cpu_devices", NUM_DEVICES // 2)
    jax.config.update("jax_enable_x64", True)
    try:
        jax.distributed.initialize(
            f"localhost:{port}", num_processes=2, process_id=process_id, initialization_timeout=60
        )
    except Exception as err:  # noqa: BLE001 (no loopback networking here: nothing to test)
        return {"skip": f"jax.distributed.initialize failed: {err!r}"[:500]}
    from certunlearn import hessian, objective, removal

    assert jax.process_count() == 2 and jax.device_count() == NUM_DEVICES
    assert jax.local_device_count() == NUM_DEVICES // 2
    mesh = distributed.make_data_mesh()
    loss, n, lam = "softmax", 61, 0.05
    X, y = _data(loss, n)  # the whole data set, for the single-device reference only
    keep = np.ones(n, bool)
    keep[[2, 7, n - 1]] = False
    num_rows = distributed.padded_size(n, distributed.num_shards(mesh))
    block = distributed.process_row_block(num_rows, mesh)
    real = slice(block.start, min(block.stop, n))
    X_local, y_local, _ = distributed.pad_rows(X[real], y[real], block.stop - block.start)
    keep_local = np.zeros(block.stop - block.start)
    keep_local[: real.stop - real.start] = keep[real]
    Xg, yg, kg = (distributed.global_rows(a, mesh, num_rows=num_rows) for a in (X_local, y_local, keep_local))
    assert len(Xg.sharding.device_set) == NUM_DEVICES and not Xg.is_fully_addressable

    local = lambda a: jax.device_put(jnp.asarray(a), jax.local_devices()[0])
    X1, y1, k1 = local(X), local(y), local(keep.astype(float))
    shape = (X.shape[1], 3)
    b = 0.1 * np.random.default_rng(1).normal(size=shape)
    b_r = distributed.replicate(jnp.asarray(b), mesh)
    host = lambda tree: jax.tree_util.tree_map(lambda a: np.asarray(distributed._local_copy(a)), tree)
    kw = dict(loss=loss, l2_reg=lam)
    rows, row_weights = jnp.asarray([2, 7, n - 1, 0]), jnp.asarray([1.0, 1.0, 1.0, 0.0])
    errors = {}

    w0 = 0.3 * np.random.default_rng(2).normal(size=shape)  # any point: each check is a function of w
    w1, wg = local(w0), distributed.replicate(jnp.asarray(w0), mesh)
    grad = jax.jit(functools.partial(objective.gradient, **kw))
    errors["gradient"] = _rel(host(grad(wg, Xg, yg, kg, b_r)), grad(w1, X1, y1, k1, local(b)))
    dense = jax.jit(lambda w, X, y, m: hessian.dense_hessian(w, X, y, m, **kw))
    errors["dense_hessian"] = _rel(host(dense(wg, Xg, yg, kg)), dense(w1, X1, y1, k1))
    step = functools.partial(removal.newton_step, loss=loss, solver="cholesky", update="guo")
    errors["newton_step_cholesky_guo"] = _rel(host(step(wg, Xg, yg, kg, rows, row_weights, b_r, lam).params),
                                              step(w1, X1, y1, k1, rows, row_weights, local(b), lam).params)
    data_norm = removal.spectral_norm_upper_bound(X)
    errors["spectral_norm_upper_bound"] = abs(distributed.spectral_norm_upper_bound(Xg) - data_norm) / data_norm
    return {"errors": errors, "block": [block.start, block.stop]}


def _worker(argv) -> None:
    """``python tests/test_distributed.py CASE|api|multihost ID PORT``: prints one case's results as JSON."""
    if argv[0] == "multihost":
        print(json.dumps(_run_multihost(int(argv[1]), int(argv[2]))))
        return
    assert jax.device_count() == NUM_DEVICES, f"expected {NUM_DEVICES} CPU devices, got {jax.devices()}"
    jax.config.update("jax_enable_x64", True)
    mesh = distributed.make_data_mesh()
    (case,) = argv
    if case == "api":
        print(json.dumps(_run_api(mesh)))
        return
    loss, n = case.rsplit("-", 1)
    print(json.dumps(_run_case(loss, int(n), mesh)))


# ----------------------------------------------------------------------------------------------------
# The tests (run in the pytest process)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


def _spawn(*cases, timeout=300) -> dict:
    """Runs each worker in its own subprocess, all at once (compilation dominates their time).

    ``cases`` are worker argument lists; a case's results are the JSON its worker prints last.
    """
    tests_dir = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ)
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join([tests_dir] + [p for p in [env.get("PYTHONPATH")] if p])
    flags = f"{env.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={NUM_DEVICES}".strip()
    eight = dict(env, XLA_FLAGS=flags)
    procs = {}
    for args in cases:
        worker_env = env if args[0] == "multihost" else eight  # multihost sets its own device count
        procs[" ".join(args[:2])] = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), *args], env=worker_env, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )
    results = {}
    for name, proc in procs.items():
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
        assert proc.returncode == 0, f"worker {name} failed (rc={proc.returncode}):\n{stdout[-4000:]}\n{stderr[-8000:]}"
        results[name] = json.loads(stdout.strip().splitlines()[-1])
    return results


HAS_MESH_API = "mesh" in inspect.signature(cu.fit).parameters


@pytest.fixture(scope="module")
def sharded_results():
    port = str(_free_port())
    cases = [[case] for case in CASES] + [["multihost", "0", port], ["multihost", "1", port]]
    return _spawn(*cases, *([["api"]] if HAS_MESH_API else []))


@pytest.mark.parametrize("case", CASES)
def test_rows_are_sharded_over_eight_devices(sharded_results, case):
    info = sharded_results[case]["sharding"]
    assert info["x_spec"] == str(jax.sharding.PartitionSpec("data"))
    assert info["x_devices"] == NUM_DEVICES and info["mask_devices"] == NUM_DEVICES
    assert info["rows_per_device"] == [info["padded_rows"] // NUM_DEVICES]
    assert info["padded_rows"] == distributed.padded_size(int(case.split("-")[1]), NUM_DEVICES)
    assert info["reference_devices"] == 1
    assert info["gradient_partitions"] == NUM_DEVICES and info["gradient_all_reduce"]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("check", CHECKS)
def test_sharded_equals_single_device(sharded_results, case, check):
    result = sharded_results[case]
    assert check in result["errors"], f"{check} did not run"
    assert result["errors"][check] <= TOL, f"{case} {check}: relative difference {result['errors'][check]:.3g}"
    single, sharded = result["devices"][check]
    assert single == 1 and sharded == NUM_DEVICES  # the sharded run's outputs live on the whole mesh


@pytest.mark.parametrize("process", ["0", "1"])
def test_two_processes_each_loading_their_rows_match_one_device(sharded_results, process):
    """jax.distributed with 2 processes x 4 CPU devices; rows assembled by global_rows."""
    result = sharded_results[f"multihost {process}"]
    if "skip" in result:
        pytest.skip(result["skip"])
    assert result["block"] == [32 * int(process), 32 * int(process) + 32]  # 61 rows padded to 64
    for check, error in result["errors"].items():
        assert error <= TOL, f"process {process} {check}: relative difference {error:.3g}"
    assert len(result["errors"]) == 4


@pytest.mark.skipif(not HAS_MESH_API, reason="api.fit has no mesh= argument yet")
def test_fit_and_remove_with_a_mesh_match_one_device(sharded_results):
    for name, error in sharded_results["api"].items():
        assert error <= 1e-10, f"{name}: sharded fit/remove differ from one device by {error:.3g}"


# ----------------------------------------------------------------------------------------------------
# Single-process helpers (one device)


def test_pad_rows_appends_zero_rows_and_valid_labels():
    X, y = np.ones((5, 3)), np.array([2, 0, 1, 1, 0])
    X_pad, y_pad, n = distributed.pad_rows(X, y, 4)
    assert n == 5 and X_pad.shape == (8, 3) and y_pad.shape == (8,)
    np.testing.assert_array_equal(X_pad[5:], 0.0)
    np.testing.assert_array_equal(y_pad[:5], y)
    assert set(y_pad[5:].tolist()) <= set(y.tolist())
    same = distributed.pad_rows(X[:4], y[:4], 4)
    assert same[0].shape == (4, 3) and same[2] == 4
    with pytest.raises(ValueError, match="y must have 5 rows"):
        distributed.pad_rows(X, y[:3], 4)


def test_padding_with_weight_zero_changes_nothing_on_one_device():
    """The padding argument behind the mesh path, checked without a mesh: zero rows, weight 0."""
    from certunlearn import hessian, objective, removal

    X, y = _data("logistic", 13)
    X_pad, y_pad, n = distributed.pad_rows(X, y, 8)
    w = jnp.linspace(-0.5, 0.5, X.shape[1])
    keep = np.ones(n, bool)
    keep[[0, 4]] = False
    weights = distributed.place_weights(keep, num_rows=X_pad.shape[0])
    assert weights.shape == (16,) and float(weights[n:].sum()) == 0.0
    kw = dict(loss="logistic", l2_reg=0.1)
    args = lambda X_, y_, m: (w, jnp.asarray(X_), jnp.asarray(y_), m)
    g = jax.jit(functools.partial(objective.gradient, **kw))
    expected = g(*args(X, y, jnp.asarray(keep, float)), w)
    np.testing.assert_allclose(g(*args(X_pad, y_pad, weights), w), expected, rtol=1e-13)
    H = jax.jit(functools.partial(hessian.dense_hessian, **kw))
    np.testing.assert_allclose(H(*args(X_pad, y_pad, weights)), H(*args(X, y, jnp.asarray(keep, float))), rtol=1e-13)
    r = removal.data_dependent_remainder(jnp.asarray(X_pad), weights, w, gamma=0.1, data_norm=1.0)
    np.testing.assert_allclose(r, removal.data_dependent_remainder(jnp.asarray(X), jnp.asarray(keep, float), w,
                                                                   gamma=0.1, data_norm=1.0), rtol=1e-13)


def test_shard_rows_refuses_unpadded_rows_and_meshes_are_checked():
    mesh = distributed.make_data_mesh(1)
    assert distributed.num_shards(mesh) == 1
    assert distributed.check_mesh(mesh) is mesh
    placed = distributed.shard_rows(np.arange(6.0), mesh)
    assert placed.sharding.spec == jax.sharding.PartitionSpec("data")
    assert distributed.process_row_block(6, mesh) == slice(0, 6)
    np.testing.assert_array_equal(distributed.global_rows(np.arange(6.0), mesh), np.arange(6.0))
    with pytest.raises(ValueError, match="num_devices must be an int"):
        distributed.make_data_mesh(jax.device_count() + 1)
    with pytest.raises(ValueError, match="mesh must be a jax.sharding.Mesh"):
        distributed.check_mesh("data")
    with pytest.raises(ValueError, match="must be of type Auto"):
        distributed.check_mesh(jax.make_mesh((1,), ("data",), axis_types=(jax.sharding.AxisType.Explicit,)))
    with pytest.raises(ValueError, match="axis named 'data'"):
        distributed.check_mesh(distributed.Mesh(np.asarray(jax.devices()[:1]), ("batch",)))
    with pytest.raises(ValueError, match="multiple of 1"):
        distributed.shard_rows(np.float64(1.0), mesh)


def test_spectral_norm_upper_bound_matches_the_host_bound():
    import reference as ref

    from certunlearn import removal

    X, _ = _data("squared", 40, d=7)
    bound = distributed.spectral_norm_upper_bound(jnp.asarray(X))
    assert ref.spectral_norm(X) <= bound
    np.testing.assert_allclose(bound, removal.spectral_norm_upper_bound(X), rtol=1e-12)


if __name__ == "__main__":
    _worker(sys.argv[1:])
