"""Data parallelism: the rows of ``X``, ``y`` and the retained-row mask sharded over a device mesh.

Every core function (:mod:`certunlearn.objective`, :mod:`certunlearn.hessian`, :mod:`certunlearn.train`,
:mod:`certunlearn.removal`, :mod:`certunlearn.curvature`) is a pure jitted function that takes the data
as *arguments*. Placing those arguments with a row sharding ``NamedSharding(mesh, P("data"))`` is enough:
XLA partitions the computation (GSPMD/Shardy), each device works on its ``n / D`` rows, and the sums over
rows (``r @ X``, ``X^T S X``, ``sum(weights)``) end in an all-reduce. Parameters, the noise ``b``, the
dense Hessian, its Cholesky factor and the curvature cache are small and *replicated*. No function needs
``shard_map`` and no code changes.

Two rules make this work:

* The mesh axis must be of type ``Auto`` (:func:`make_data_mesh` makes one). ``jax.make_mesh`` defaults
  to ``Explicit`` axes, under which a contraction over the sharded row axis is rejected ("Contracting
  dimensions are sharded ...") unless every call site names an output sharding.
* The number of stored rows must be a multiple of the device count. :func:`pad_rows` appends zero rows
  and :func:`place_weights` gives them weight 0, so they add nothing to any sum, to ``n = sum(weights)``,
  to a gradient, a Hessian or a residual bound (a zero row has predictor 0 and every loss is finite
  there). Padding rows sit after the user's rows, so user row indices are unchanged.

Results equal the single-device ones up to the order of floating-point summation (about ``1e-15``
relative in float64; tested to ``1e-12``).

Multi-host: after ``jax.distributed.initialize()``, :func:`make_data_mesh` spans every process's devices;
each process loads only its block of rows (:func:`process_row_block`) and :func:`global_rows` assembles
the global array with ``jax.make_array_from_process_local_data``. See ``docs/multi_device.md``.

This module imports nothing from certunlearn, so any layer may use it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

Array = jax.Array

__all__ = [
    "DATA_AXIS",
    "check_mesh",
    "global_rows",
    "make_data_mesh",
    "num_shards",
    "pad_rows",
    "padded_size",
    "place_rows",
    "place_weights",
    "process_row_block",
    "replicate",
    "replicated_sharding",
    "row_sharding",
    "shard_rows",
    "spectral_norm_upper_bound",
]

DATA_AXIS = "data"


def _auto_axis_types() -> dict[str, Any]:
    axis_type = getattr(jax.sharding, "AxisType", None)  # JAX < 0.5 has no axis types: Auto is implied.
    return {} if axis_type is None else {"axis_types": (axis_type.Auto,)}


def make_data_mesh(num_devices: int | None = None, *, devices: Sequence[Any] | None = None) -> Mesh:
    """A 1-D mesh with one ``Auto`` axis named ``"data"`` over which rows are sharded.

    Args:
      num_devices: how many devices to use (default: all of ``devices``).
      devices: the devices to choose from (default ``jax.devices()``: every device of every process).
        They are ordered by (process, id), so that each process holds a contiguous block of rows.

    Returns:
      A :class:`jax.sharding.Mesh` with the axis ``DATA_AXIS``.

    Raises:
      ValueError: ``num_devices`` is not an int in ``[1, len(devices)]``.

    >>> mesh = make_data_mesh(1)
    >>> mesh.axis_names, num_shards(mesh)
    (('data',), 1)
    """
    devices = list(jax.devices() if devices is None else devices)
    devices.sort(key=lambda dev: (dev.process_index, dev.id))
    if num_devices is None:
        num_devices = len(devices)
    if isinstance(num_devices, bool) or not isinstance(num_devices, (int, np.integer)) or not (
        1 <= num_devices <= len(devices)
    ):
        raise ValueError(
            f"num_devices must be an int in [1, {len(devices)}] (the devices available), got {num_devices!r}; "
            "on CPU, set XLA_FLAGS=--xla_force_host_platform_device_count=N before JAX starts for N devices"
        )
    return Mesh(np.asarray(devices[: int(num_devices)]), (DATA_AXIS,), **_auto_axis_types())


def check_mesh(mesh) -> Mesh:
    """Validates a mesh for row sharding: a ``Mesh`` with an ``Auto`` axis ``"data"`` (others size 1).

    Raises:
      ValueError: naming what is wrong and pointing to :func:`make_data_mesh`.
    """
    if not isinstance(mesh, Mesh):
        raise ValueError(  # noqa: TRY004 (argument errors are ValueErrors here, STYLE.md)
            f"mesh must be a jax.sharding.Mesh (use certunlearn.distributed.make_data_mesh()), got {mesh!r}"
        )
    if DATA_AXIS not in mesh.axis_names:
        raise ValueError(f"mesh must have an axis named {DATA_AXIS!r} to shard rows over, got axes {mesh.axis_names}")
    others = {name: size for name, size in mesh.shape.items() if name != DATA_AXIS and size != 1}
    if others:
        raise ValueError(f"mesh axes other than {DATA_AXIS!r} must have size 1 (data parallelism only), got {others}")
    axis_types = getattr(mesh, "axis_types", None)
    if axis_types is not None:
        kind = dict(zip(mesh.axis_names, axis_types))[DATA_AXIS]
        if getattr(kind, "name", str(kind)) != "Auto":
            raise ValueError(
                f"mesh axis {DATA_AXIS!r} must be of type Auto, got {kind} (jax.make_mesh defaults to Explicit, "
                "under which sums over sharded rows are rejected); use certunlearn.distributed.make_data_mesh()"
            )
    return mesh


def num_shards(mesh: Mesh) -> int:
    """The number of row shards: the size of the mesh axis ``"data"``."""
    return int(mesh.shape[DATA_AXIS])


def row_sharding(mesh: Mesh) -> NamedSharding:
    """``NamedSharding(mesh, P("data"))``: the leading (row) axis split over the devices."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicated_sharding(mesh: Mesh) -> NamedSharding:
    """``NamedSharding(mesh, P())``: a full copy on every device."""
    return NamedSharding(mesh, PartitionSpec())


def padded_size(num_rows: int, multiple: int) -> int:
    """The least multiple of ``multiple`` that is ``>= num_rows``.

    >>> padded_size(61, 8), padded_size(64, 8)
    (64, 64)
    """
    if multiple < 1:
        raise ValueError(f"multiple must be >= 1, got {multiple!r}")
    return -(-int(num_rows) // int(multiple)) * int(multiple)


def pad_rows(X, y, multiple: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Appends zero rows to ``X`` (and labels to ``y``) up to a multiple of ``multiple`` rows, on the host.

    The padding rows must get weight 0 (:func:`place_weights` does that); with weight 0 and ``x = 0`` they
    add nothing to the objective, its gradient, its Hessian, ``n = sum(weights)`` or any residual bound.
    ``y`` is padded with its first label, so that every label stays valid for the loss.

    Args:
      X: (n, d) rows. y: (n,) labels (or any array with n leading rows).
      multiple: typically the device count, :func:`num_shards`.

    Returns:
      ``(X_pad, y_pad, n)``: NumPy arrays with ``padded_size(n, multiple)`` rows, and the original ``n``.

    >>> X_pad, y_pad, n = pad_rows(np.ones((3, 2)), np.array([1.0, -1.0, 1.0]), 4)
    >>> X_pad.shape, y_pad.tolist(), n
    ((4, 2), [1.0, -1.0, 1.0, 1.0], 3)
    """
    X, y = np.asarray(X), np.asarray(y)
    n = X.shape[0]
    if y.shape[:1] != (n,):
        raise ValueError(f"y must have {n} rows to match X, got shape {y.shape}")
    extra = padded_size(n, multiple) - n
    if extra == 0:
        return X, y, n
    X_pad = np.concatenate([X, np.zeros((extra,) + X.shape[1:], X.dtype)])
    fill = y[:1] if n else np.zeros((1,) + y.shape[1:], y.dtype)
    y_pad = np.concatenate([y, np.repeat(fill, extra, axis=0)])
    return X_pad, y_pad, n


def shard_rows(array, mesh: Mesh):
    """Places ``array`` (or every leaf of a pytree) with its rows split over the mesh axis ``"data"``.

    Raises:
      ValueError: the number of rows is not a multiple of the device count (pad first: :func:`pad_rows`).
    """
    sharding, shards = row_sharding(mesh), num_shards(mesh)

    def put(a):
        rows = np.shape(a)[0] if np.ndim(a) else None
        if rows is None or rows % shards:
            raise ValueError(
                f"arrays sharded by rows need a multiple of {shards} rows (the devices of the mesh), got shape "
                f"{np.shape(a)}; pad them with certunlearn.distributed.pad_rows and give the padding weight 0"
            )
        return jax.device_put(a, sharding)

    return jax.tree_util.tree_map(put, array)


def replicate(tree, mesh: Mesh):
    """Places ``tree`` (an array or pytree: params, noise, a curvature cache) on every device of the mesh."""
    return jax.device_put(tree, replicated_sharding(mesh))


def place_rows(array, mesh: Mesh | None):
    """``shard_rows(array, mesh)``, or ``jnp.asarray(array)`` on the default device when ``mesh`` is None."""
    return jnp.asarray(array) if mesh is None else shard_rows(array, mesh)


def place_weights(mask, *, num_rows: int, mesh: Mesh | None = None, dtype=jnp.float64) -> Array:
    """A 0/1 row mask over the user's ``n`` rows as weights over the ``num_rows >= n`` stored rows.

    The padding rows get weight 0; the result is row-sharded over ``mesh`` (or on the default device).

    >>> place_weights(np.array([True, False, True]), num_rows=4).tolist()
    [1.0, 0.0, 1.0, 0.0]
    """
    mask = np.asarray(mask)
    if mask.ndim != 1 or mask.shape[0] > num_rows:
        raise ValueError(f"mask must be 1-D with at most num_rows={num_rows} entries, got shape {mask.shape}")
    weights = np.zeros(num_rows, np.dtype(dtype))
    weights[: mask.shape[0]] = mask
    return place_rows(weights, mesh)


def process_row_block(num_rows: int, mesh: Mesh) -> slice:
    """The global rows this process supplies to :func:`global_rows` (multi-host; all rows on one host).

    ``num_rows`` is the global, *padded* row count (a multiple of :func:`num_shards`). Rows at or past the
    real row count are padding: load the real ones, then pad the block with zeros (:func:`pad_rows`).

    Raises:
      ValueError: this process's devices do not hold one contiguous block (build the mesh with
        :func:`make_data_mesh`, which orders devices by process).
    """
    if num_rows % num_shards(mesh):
        raise ValueError(f"num_rows must be a multiple of {num_shards(mesh)} (pad first), got {num_rows}")
    index_map = row_sharding(mesh).addressable_devices_indices_map((num_rows,))
    starts = sorted({idx[0].indices(num_rows)[:2] for idx in index_map.values()})
    if not starts:
        raise ValueError("this process has no device in the mesh; build it with make_data_mesh() over all devices")
    if any(a[1] != b[0] for a, b in itertools.pairwise(starts)):
        raise ValueError(f"this process's devices hold non-contiguous row blocks {starts}; use make_data_mesh()")
    return slice(starts[0][0], starts[-1][1])


def global_rows(local_data, mesh: Mesh, *, num_rows: int | None = None) -> Array:
    """Assembles a row-sharded global array from each process's block of rows.

    Args:
      local_data: this process's rows ``[process_row_block(num_rows, mesh)]`` of the padded array.
      mesh: the data mesh (spanning every process). num_rows: the global row count (default: inferred,
        ``rows per process * processes`` for equal blocks).

    Returns:
      A global ``jax.Array`` sharded like :func:`shard_rows`; pass it to any core function.
    """
    local_data = np.asarray(local_data)
    shape = None if num_rows is None else (int(num_rows),) + local_data.shape[1:]
    return jax.make_array_from_process_local_data(row_sharding(mesh), local_data, shape)


def _gram_and_frobenius(X, *, gram: bool):
    X = X.astype(jnp.float64)
    return (X.T @ X if gram else None), jnp.sum(X * X)


def spectral_norm_upper_bound(X: Array) -> float:
    """A proven upper bound on ``||X||_2`` for a (possibly row-sharded, multi-host) array ``X``.

    The sharded counterpart of :func:`certunlearn.removal.spectral_norm_upper_bound`, with the same
    rounding margin: the ``d x d`` Gram matrix ``X^T X`` and ``||X||_F^2`` are summed on the devices in
    float64 (the margin ``4 n eps ||X||_F^2`` covers any order of summation, so also the all-reduce), and
    the largest eigenvalue is computed on the host. Zero padding rows change nothing. Falls back to the
    Frobenius norm, also an upper bound, when ``d > 8192``. Needs ``jax_enable_x64``.

    >>> X = jnp.diag(jnp.array([3.0, 4.0]))
    >>> 4.0 <= spectral_norm_upper_bound(X) <= 4.0 * (1 + 1e-9)
    True
    """
    n, d = X.shape
    eps = np.finfo(np.float64).eps
    k = max(n, d)
    sharding = getattr(X, "sharding", None)
    out = replicated_sharding(sharding.mesh) if isinstance(sharding, NamedSharding) else None
    use_gram = d <= 8192
    gram, frob_sq = jax.jit(_gram_and_frobenius, static_argnames="gram", out_shardings=out)(X, gram=use_gram)
    frob_sq = float(np.asarray(_local_copy(frob_sq)))
    frobenius_bound = math.sqrt(frob_sq) * (1 + 4 * k * eps)
    if not use_gram:
        return frobenius_bound
    lam = float(np.linalg.eigvalsh(np.asarray(_local_copy(gram), np.float64))[-1])
    margin = 4 * k * eps * frob_sq + 4 * d * eps * abs(lam)
    return min(math.sqrt(max(lam, 0.0) + margin), frobenius_bound)


def _local_copy(a: Array):
    """This process's copy of a replicated array (``np.asarray`` refuses arrays spanning several hosts)."""
    return a.addressable_data(0) if hasattr(a, "addressable_data") else a
