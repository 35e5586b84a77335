"""Metrics of an unlearned model against the retrained one, and unlearning baselines under one interface.

Conventions (THEORY.md Sec. 1): sum convention ``L_b(w; D') = sum_{i in D'} l(x_i w, y_i) +
lambda n'/2 ||w||^2 + <b, w>`` over the ``n'`` rows *retained after* the removal; ``params`` are ``(d,)``
(logistic, squared) or ``(d, K)`` (softmax). The neighbouring relation is remove-m: ``forget_idx`` is the
set ``U`` of original row indices removed in one request.

Baselines (:func:`unlearn`, ``METHODS``):

* ``"newton"``: certified removal, :func:`certunlearn.remove` (one Newton step, Guo et al. 2020 Alg. 1).
* ``"retrain"``: the exact oracle, the perturbed objective re-fitted from zero on ``D'`` with the *same*
  noise ``b`` (so it is the minimiser that the Newton step approximates; the distributional reference,
  with fresh noise, lives in :mod:`certunlearn.audit`).
* ``"finetune"``: a few full-batch gradient steps (optax) on ``L_b(w; D') / n'`` from the current ``w``.
* ``"gradient_ascent"``: a few steps *ascending* the mean loss of the forgotten rows ("reverse gradient").
* ``"none"``: the parameters unchanged.

Each returns an :class:`UnlearnResult` (parameters, wall time, work counters);
:func:`unlearning_metrics` compares any parameters with the retrained ones, and :func:`compare_methods`
does both for a list of methods and returns tidy rows for the experiments runner.

Work counters. ``hvp_count`` counts Hessian-vector products where they are known exactly: Newton with
an iterative model solver (``"cg"``, ``"cached"``) uses one per CG iteration (``report.solver_steps``)
plus one in the certificate (the solve error is recomputed with an HVP; a rebuild of the cached
factorisation is not counted); Newton with ``solver="cholesky"`` forms one dense Hessian
(``dense_hessians=1``) and uses one HVP for the certificate. A removal served by retraining has
``hvp_count=None``. Retraining with Newton-Cholesky forms one dense Hessian per Newton step; with
Newton-CG or L-BFGS the inner HVP / gradient counts are not reported by
:func:`certunlearn.train.fit_params`, so ``hvp_count`` is ``None`` there. Gradient methods use no HVPs.

References:
  Guo, Goldstein, Hannun, van der Maaten. Certified Data Removal from Machine Learning Models.
  ICML 2020, arXiv:1911.03030.
  Golatkar, Achille, Soatto. Eternal Sunshine of the Spotless Net (fine-tuning baseline). CVPR 2020,
  arXiv:1911.04933. Thudi et al. Unrolling SGD (gradient ascent). EuroS&P 2022, arXiv:2109.13398.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from certunlearn import api, hessian, objective, solvers, train
from certunlearn.losses import LOSSES, get_loss

__all__ = [
    "METHODS",
    "UnlearnResult",
    "UnlearningMetrics",
    "accuracy",
    "compare_methods",
    "mean_loss",
    "newton_removal_step",
    "predict",
    "unlearn",
    "unlearning_metrics",
]

METHODS = ("newton", "retrain", "finetune", "gradient_ascent", "none")
_DEFAULT_LEARNING_RATE = {"finetune": 1.0, "gradient_ascent": 0.1}


# ----------------------------------------------------------------------------------------------------
# Predictions, accuracy, loss


def _labels(y, loss: str):
    return jnp.asarray(y, jnp.int32) if loss == "softmax" else jnp.asarray(y, jnp.float64)


def predict(params, X, *, loss: str) -> np.ndarray:
    """Predicted labels: ``sign(x w)`` in {-1, +1} (logistic; 0 maps to +1), ``argmax_k (x W)_k`` (softmax),
    or ``x w`` (squared)."""
    z = np.asarray(X, np.float64) @ np.asarray(params, np.float64)
    if loss == "logistic":
        return np.where(z >= 0, 1.0, -1.0)
    if loss == "softmax":
        return np.argmax(z, axis=-1)
    return z


def accuracy(params, X, y, *, loss: str) -> float:
    """Fraction of rows predicted correctly (NaN for ``loss="squared"`` or no rows)."""
    if loss == "squared" or np.shape(X)[0] == 0:
        return math.nan
    return float(np.mean(predict(params, X, loss=loss) == np.asarray(y)))


def mean_loss(params, X, y, *, loss: str) -> float:
    """Mean per-example loss ``(1/m) sum_i l(x_i w, y_i)`` (unregularised; NaN for no rows)."""
    if np.shape(X)[0] == 0:
        return math.nan
    z = jnp.asarray(X, jnp.float64) @ jnp.asarray(params, jnp.float64)
    return float(jnp.mean(get_loss(loss).value(z, _labels(y, loss))))


# ----------------------------------------------------------------------------------------------------
# Metrics


@dataclasses.dataclass(frozen=True)
class UnlearningMetrics:
    """How far unlearned parameters ``w`` are from the retrained ``w_ref``, and how they perform.

    Attributes:
      param_distance: ``||w - w_ref||_2`` (Frobenius for (d, K)).
      relative_param_distance: ``||w - w_ref|| / ||w_ref||`` (inf if ``w_ref = 0`` and ``w != 0``).
      prediction_disagreement: fraction of test rows where the predicted labels differ (NaN for squared).
      max_logit_difference: ``max_{i,k} |(X_test w)_ik - (X_test w_ref)_ik|``.
      accuracy_forget, accuracy_retain, accuracy_test: accuracy of ``w`` on the forgotten rows ``U``, the
        retained rows ``D'`` and the test set.
      loss_forget, loss_retain, loss_test: mean per-example loss of ``w`` on the same sets.
      exact_residual: ``||grad L_b(w; D')||_2`` in float64, with the model's noise ``b`` (zero if none):
        the quantity the certificate bounds (THEORY.md Sec. 2).
      seconds: wall time of the unlearning call that produced ``w`` (NaN if not given).
      hvp_count: Hessian-vector products used (None where not known; module docstring).
    """

    param_distance: float
    relative_param_distance: float
    prediction_disagreement: float
    max_logit_difference: float
    accuracy_forget: float
    accuracy_retain: float
    accuracy_test: float
    loss_forget: float
    loss_retain: float
    loss_test: float
    exact_residual: float
    seconds: float = math.nan
    hvp_count: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _forget_mask(forget_idx, n: int) -> np.ndarray:
    idx = np.asarray(forget_idx).reshape(-1)
    if idx.size and not np.issubdtype(idx.dtype, np.integer):
        if not np.all(np.mod(idx, 1) == 0):
            raise ValueError(f"forget_idx must hold integer row indices, got dtype {idx.dtype}")
        idx = idx.astype(np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise ValueError(f"forget_idx must lie in [0, {n}), got values from {idx.min()} to {idx.max()}")
    mask = np.zeros(n, dtype=bool)
    mask[idx.astype(np.int64)] = True
    if mask.sum() != idx.size:
        raise ValueError("forget_idx must hold distinct indices")
    return mask


def unlearning_metrics(
    params,
    reference_params,
    X,
    y,
    forget_idx,
    X_test,
    y_test,
    *,
    loss: str,
    l2_reg: float,
    retained=None,
    perturbation=None,
    seconds: float = math.nan,
    hvp_count: int | None = None,
) -> UnlearningMetrics:
    """Compares unlearned parameters with the retrained ones (module docstring for the conventions).

    Args:
      params: the unlearned parameters ``w``, (d,) or (d, K).
      reference_params: the retrained parameters ``w_ref`` (e.g. ``unlearn("retrain", ...).params``).
      X, y: all training rows (original indexing) and labels.
      forget_idx: original indices of the forgotten rows ``U``.
      X_test, y_test: held-out rows.
      loss: "logistic", "softmax" or "squared". l2_reg: ``lambda`` (for the exact residual).
      retained: boolean mask of the rows retained after the removal (default: all rows not in
        ``forget_idx``); rows removed earlier count in neither the forgotten nor the retained set.
      perturbation: the noise ``b`` of the objective (default zeros).
      seconds, hvp_count: passed through from the unlearning call.

    Returns:
      :class:`UnlearningMetrics`.

    >>> import numpy as np
    >>> X = np.eye(3); y = np.array([1.0, -1.0, 1.0]); w = np.array([1.0, -1.0, 0.5])
    >>> m = unlearning_metrics(w, w, X, y, [0], X, y, loss="logistic", l2_reg=0.1)
    >>> m.param_distance, m.prediction_disagreement, m.accuracy_test
    (0.0, 0.0, 1.0)
    """
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {sorted(LOSSES)}, got {loss!r}")
    w = np.asarray(params, np.float64)
    w_ref = np.asarray(reference_params, np.float64)
    if w.shape != w_ref.shape:
        raise ValueError(f"params and reference_params must have the same shape, got {w.shape} and {w_ref.shape}")
    X = np.asarray(X, np.float64)
    y = np.asarray(y)
    X_test = np.asarray(X_test, np.float64)
    y_test = np.asarray(y_test)
    n = X.shape[0]
    forget = _forget_mask(forget_idx, n)
    keep = ~forget if retained is None else np.asarray(retained, bool) & ~forget
    b = np.zeros_like(w) if perturbation is None else np.asarray(perturbation, np.float64)

    dist = float(np.linalg.norm(w - w_ref))
    ref_norm = float(np.linalg.norm(w_ref))
    rel = dist / ref_norm if ref_norm > 0 else (0.0 if dist == 0 else math.inf)
    z, z_ref = X_test @ w, X_test @ w_ref
    if loss == "squared" or X_test.shape[0] == 0:
        disagree = math.nan
    else:
        disagree = float(np.mean(predict(w, X_test, loss=loss) != predict(w_ref, X_test, loss=loss)))
    max_logit = float(np.max(np.abs(z - z_ref))) if z.size else math.nan
    residual = float(
        objective.gradient_norm(
            jnp.asarray(w), jnp.asarray(X), _labels(y, loss), jnp.asarray(keep, jnp.float64), jnp.asarray(b),
            loss=loss, l2_reg=float(l2_reg),
        )
    )
    return UnlearningMetrics(
        param_distance=dist,
        relative_param_distance=rel,
        prediction_disagreement=disagree,
        max_logit_difference=max_logit,
        accuracy_forget=accuracy(w, X[forget], y[forget], loss=loss),
        accuracy_retain=accuracy(w, X[keep], y[keep], loss=loss),
        accuracy_test=accuracy(w, X_test, y_test, loss=loss),
        loss_forget=mean_loss(w, X[forget], y[forget], loss=loss),
        loss_retain=mean_loss(w, X[keep], y[keep], loss=loss),
        loss_test=mean_loss(w, X_test, y_test, loss=loss),
        exact_residual=residual,
        seconds=float(seconds),
        hvp_count=hvp_count,
    )


# ----------------------------------------------------------------------------------------------------
# Baselines


@functools.partial(jax.jit, static_argnames=("loss", "solver", "update"))
def newton_removal_step(params, X, y, keep, removed, perturbation, l2_reg, *, loss, solver="cholesky", update="guo"):
    """One Newton removal step ``w + H^{-1} Delta`` (or ``w - H^{-1} grad L_b(w; D')``), uncertified.

    The same step as :func:`certunlearn.removal.newton_step` (THEORY.md Sec. 2), written on the stable
    primitives (:mod:`certunlearn.objective`, :mod:`certunlearn.hessian`) with masks for both ``D'``
    (``keep``) and ``U`` (``removed``) so that it vmaps over noise draws; the audit uses it and the
    tests check it against :func:`certunlearn.remove`.

    Returns:
      ``(new_params, solver_steps)`` (1 for Cholesky; NaN parameters if the Hessian is not positive
      definite).
    """
    kw = dict(loss=loss, l2_reg=l2_reg)
    if update == "guo":
        rhs = objective.removed_gradient(params, X, y, removed, **kw)
    else:
        rhs = -objective.gradient(params, X, y, keep, perturbation, **kw)
    if solver == "cholesky":
        H = hessian.dense_hessian(params, X, y, keep, **kw)
        u = jax.scipy.linalg.cho_solve(jax.scipy.linalg.cho_factor(H, lower=True), rhs.ravel())
        return params + u.reshape(params.shape), jnp.asarray(1, jnp.int32)
    matvec = hessian.glm_hvp_operator(params, X, keep, **kw)
    result = solvers.conjugate_gradient(matvec, rhs, rtol=1e-10, maxiter=10 * rhs.size)
    return params + result.x, jnp.asarray(result.steps, jnp.int32)


@dataclasses.dataclass(frozen=True, eq=False)
class UnlearnResult:
    """The output of one :func:`unlearn` call.

    Attributes:
      method: one of ``METHODS``.
      params: the parameters after unlearning.
      retained: boolean mask of the rows retained after the call (original indexing).
      seconds: wall time of the call (host to ``block_until_ready``; includes compilation on a first call
        unless ``warmup=True``).
      steps: optimiser / solver steps (Newton solver steps, training steps, gradient steps; 0 for none).
      hvp_count: Hessian-vector products, or None where not known (module docstring).
      dense_hessians: dense Hessians formed.
      model: the new :class:`certunlearn.CertifiedModel` for ``"newton"`` on a model, else None.
      report: the :class:`certunlearn.RemovalReport` for ``"newton"`` on a model, else None.
    """

    method: str
    params: jax.Array
    retained: np.ndarray
    seconds: float
    steps: int
    hvp_count: int | None
    dense_hessians: int
    model: api.CertifiedModel | None = None
    report: api.RemovalReport | None = None


@functools.partial(jax.jit, static_argnames=("loss", "steps", "optimizer", "ascent"))
def _gradient_steps(params, X, y, weights, perturbation, l2_reg, learning_rate, *, loss, steps, optimizer, ascent):
    """``steps`` full-batch optax steps on the mean objective (fine-tuning) or the negated mean forgotten loss."""
    spec = get_loss(loss)
    count = jnp.maximum(jnp.sum(weights), 1.0)
    if ascent:
        fun = lambda w: -jnp.sum(weights * spec.value(X @ w, y)) / count
    else:
        fun = lambda w: objective.objective(w, X, y, weights, perturbation, loss=spec, l2_reg=l2_reg) / count
    opt = {"sgd": optax.sgd, "adam": optax.adam}[optimizer](learning_rate)

    def body(carry, _):
        w, state = carry
        updates, state = opt.update(jax.grad(fun)(w), state, w)
        return (optax.apply_updates(w, updates), state), None

    (w, _), _ = jax.lax.scan(body, (params, opt.init(params)), None, length=steps)
    return w


def _resolve(model_or_params, X, y, loss, l2_reg, perturbation, retained):
    """(params, X, y, loss, l2_reg, b, retained, model) from a CertifiedModel or raw parameters."""
    if isinstance(model_or_params, api.CertifiedModel):
        m = model_or_params
        cfg = m.config
        X64, y64 = m._data.user_rows64()
        X = X64 if X is None else np.asarray(X, np.float64)
        y = y64 if y is None else y
        b = m.perturbation if perturbation is None else perturbation
        keep = m.retained if retained is None else retained
        return (jnp.asarray(m.params, jnp.float64), X, y, cfg.loss, cfg.l2_reg if l2_reg is None else l2_reg,
                jnp.asarray(b, jnp.float64), np.asarray(keep, bool), m)
    if X is None or y is None or loss is None or l2_reg is None:
        raise ValueError("with raw parameters, pass X, y, loss= and l2_reg= (or pass a CertifiedModel)")
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {sorted(LOSSES)}, got {loss!r}")
    params = jnp.asarray(model_or_params, jnp.float64)
    X = np.asarray(X, np.float64)
    if X.ndim != 2 or X.shape[1] != params.shape[0]:
        raise ValueError(f"X must have shape (n, {params.shape[0]}) to match params, got {X.shape}")
    b = jnp.zeros_like(params) if perturbation is None else jnp.asarray(perturbation, jnp.float64)
    if b.shape != params.shape:
        raise ValueError(f"perturbation must have the shape of params {params.shape}, got {b.shape}")
    keep = np.ones(X.shape[0], bool) if retained is None else np.asarray(retained, bool)
    return params, X, y, loss, float(l2_reg), b, keep, None


def unlearn(
    method: str,
    model_or_params,
    X=None,
    y=None,
    forget_idx=(),
    *,
    loss: str | None = None,
    l2_reg: float | None = None,
    perturbation=None,
    retained=None,
    steps: int = 10,
    learning_rate: float | None = None,
    optimizer: str = "sgd",
    tol: float | None = None,
    solver: str | None = None,
    train_method: str | None = None,
    max_steps: int | None = None,
    warmup: bool = False,
) -> UnlearnResult:
    """Removes the rows ``forget_idx`` with one of the ``METHODS`` (module docstring).

    Args:
      method: "newton", "retrain", "finetune", "gradient_ascent" or "none".
      model_or_params: a :class:`certunlearn.CertifiedModel` (then ``X``, ``y``, ``loss``, ``l2_reg``, the
        noise ``b`` and the retained mask default to the model's; ``"newton"`` calls
        :func:`certunlearn.remove`, with its budget and retraining logic) or raw parameters (d,)/(d, K)
        (then ``X``, ``y``, ``loss`` and ``l2_reg`` are required; ``"newton"`` is one uncertified
        :func:`newton_removal_step`, Guo's update).
      X, y: all training rows (original indexing) and labels.
      forget_idx: original indices of the rows ``U`` to forget (distinct, currently retained).
      loss, l2_reg: the objective (sum convention). perturbation: its noise ``b`` (default: the model's,
        or zeros). retained: mask of the rows retained before the call (default: the model's, or all).
      steps: gradient steps for "finetune" / "gradient_ascent" (full batch, so one step is one epoch).
      learning_rate: their step size on the *mean* objective (default 1.0 for finetune, 0.1 for
        gradient ascent). optimizer: "sgd" or "adam".
      tol, solver, train_method, max_steps: the training settings of "retrain" (default: the model's; for
        raw parameters ``tol=1e-9 sqrt(n')``, Newton-Cholesky, 200 steps); ``solver`` ("cholesky" or
        "cg") is also the solver of "newton" on raw parameters.
      warmup: run the method once untimed first, so ``seconds`` excludes compilation.

    Returns:
      :class:`UnlearnResult`.

    >>> import numpy as np
    >>> X = np.eye(4) * 0.9; y = np.array([1.0, -1.0, 1.0, -1.0]); w = np.array([1.0, -1.0, 1.0, -1.0])
    >>> r = unlearn("none", w, X, y, [0], loss="logistic", l2_reg=0.1)
    >>> r.params.tolist(), r.retained.tolist()
    ([1.0, -1.0, 1.0, -1.0], [False, True, True, True])
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}, got {method!r}")
    if optimizer not in ("sgd", "adam"):
        raise ValueError(f"optimizer must be 'sgd' or 'adam', got {optimizer!r}")
    if not isinstance(steps, (int, np.integer)) or steps < 0:
        raise ValueError(f"steps must be an int >= 0, got {steps!r}")
    params, X, y, loss, l2_reg, b, keep_before, model = _resolve(
        model_or_params, X, y, loss, l2_reg, perturbation, retained
    )
    n = X.shape[0]
    forget = _forget_mask(forget_idx, n)
    if np.any(forget & ~keep_before):
        raise ValueError(f"forget_idx {np.flatnonzero(forget & ~keep_before)[:5].tolist()} were already removed")
    keep = keep_before & ~forget
    if not keep.any():
        raise ValueError("forget_idx would remove every retained row; at least one must remain")
    keep.setflags(write=False)
    yj = _labels(y, loss)
    Xj = jnp.asarray(X, jnp.float64)
    cfg = model.config if model is not None else None
    t = tol if tol is not None else (cfg.tol if cfg is not None else 1e-9 * math.sqrt(keep.sum()))
    tm = train_method if train_method is not None else (cfg.train_method if cfg is not None else "newton")
    # Training only knows "cholesky" and "cg"; api.fit trains every other Newton solver with Cholesky.
    sv = solver if solver is not None else ("cg" if cfg is not None and cfg.solver == "cg" else "cholesky")
    ms = max_steps if max_steps is not None else (cfg.max_steps if cfg is not None else 200)
    if tm not in train.METHODS:
        raise ValueError(f"train_method must be one of {list(train.METHODS)}, got {tm!r}")
    if sv not in ("cholesky", "cg"):
        raise ValueError(f"solver must be 'cholesky' or 'cg', got {sv!r}")

    def run():
        if method == "none":
            return params, 0, 0, 0, None, None
        if method == "newton":
            if model is not None:
                new_model, report = api.remove(model, np.flatnonzero(forget))
                dense = model.config.solver == "cholesky"
                hvps = 1 if dense else report.solver_steps + 1
                if report.retrained:
                    hvps = None
                return new_model.params, report.solver_steps, hvps, int(dense), new_model, report
            w, n_steps = newton_removal_step(
                params, Xj, yj, jnp.asarray(keep, jnp.float64), jnp.asarray(forget, jnp.float64), b, l2_reg,
                loss=loss, solver=sv, update="guo",
            )
            hvps = int(n_steps) if sv == "cg" else 0
            return w, int(n_steps), hvps, 0 if sv == "cg" else 1, None, None
        if method == "retrain":
            result = train.fit_params(
                jnp.zeros_like(params), Xj, yj, jnp.asarray(keep, jnp.float64), b, l2_reg, t,
                loss=loss, method=tm, solver=sv, max_steps=ms,
            )
            k = int(result.steps)
            dense = k if (tm == "newton" and sv == "cholesky") else 0
            return result.params, k, (0 if dense else None), dense, None, None
        lr = _DEFAULT_LEARNING_RATE[method] if learning_rate is None else float(learning_rate)
        ascent = method == "gradient_ascent"
        weights = jnp.asarray(forget if ascent else keep, jnp.float64)
        w = _gradient_steps(
            params, Xj, yj, weights, b, l2_reg, lr, loss=loss, steps=int(steps), optimizer=optimizer, ascent=ascent
        )
        return w, int(steps), 0, 0, None, None

    if warmup:
        jax.block_until_ready(run()[0])
    start = time.perf_counter()
    out = run()
    new_params = jax.block_until_ready(out[0])
    seconds = time.perf_counter() - start
    _, n_steps, hvps, dense, new_model, report = out
    return UnlearnResult(
        method=method,
        params=jnp.asarray(new_params),
        retained=keep,
        seconds=seconds,
        steps=int(n_steps),
        hvp_count=hvps,
        dense_hessians=int(dense),
        model=new_model,
        report=report,
    )


def compare_methods(
    model: api.CertifiedModel,
    forget_idx,
    X_test,
    y_test,
    *,
    methods: Sequence[str] = METHODS,
    warmup: bool = True,
    method_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
    **kwargs,
) -> list[dict[str, Any]]:
    """Runs each method on ``model`` and compares it with the same-noise retrain; tidy rows.

    Args:
      model: a :class:`certunlearn.CertifiedModel` (left unchanged).
      forget_idx: original indices to forget. X_test, y_test: held-out rows.
      methods: which of ``METHODS`` to run (distinct).
      warmup: exclude compilation from the timings.
      method_kwargs: per-method keyword arguments of :func:`unlearn`, e.g.
        ``{"finetune": {"steps": 20}, "gradient_ascent": {"learning_rate": 0.05}}``; they win over
        ``kwargs``.
      **kwargs: passed to :func:`unlearn` for every method but the retrained reference (steps,
        learning_rate, optimizer, ...).

    Returns:
      One dict per method: ``{"method": ..., **UnlearningMetrics.as_dict(), "steps": ...,
      "dense_hessians": ..., "retrained": ..., "certified_epsilon": ..., "residual_spent": ...,
      "residual_budget": ...}``; distances are to ``unlearn("retrain", ...)``. ``retrained`` says whether
      a "newton" removal was served by retraining with fresh noise (its budget would have overflowed).
      The last three are the certificate of the model that "newton" publishes (:meth:`CertifiedModel.certificate`:
      the epsilon certified for the residual spent, a proven bound); NaN for every other method, which
      certifies nothing.

    Raises:
      ValueError: an unknown or repeated method, or ``method_kwargs`` for a method not run.
    """
    methods = tuple(methods)
    unknown = [m for m in methods if m not in METHODS]
    if unknown or len(set(methods)) != len(methods):
        raise ValueError(f"methods must be distinct names from {list(METHODS)}, got {list(methods)}")
    method_kwargs = dict(method_kwargs or {})
    extra = sorted(set(method_kwargs) - set(methods))
    if extra:
        raise ValueError(f"method_kwargs names methods that are not run: {extra}; methods are {list(methods)}")
    reference = unlearn("retrain", model, forget_idx=forget_idx, warmup=warmup, **method_kwargs.get("retrain", {}))
    X, y = model._data.user_rows64()
    rows = []
    for method in methods:
        if method == "retrain":
            result = reference
        else:
            result = unlearn(method, model, forget_idx=forget_idx, warmup=warmup,
                             **{**kwargs, **method_kwargs.get(method, {})})
        b = result.model.perturbation if result.model is not None else model.perturbation
        metrics = unlearning_metrics(
            result.params, reference.params, X, y, forget_idx, X_test, y_test, loss=model.config.loss,
            l2_reg=model.config.l2_reg, retained=model.retained, perturbation=b, seconds=result.seconds,
            hvp_count=result.hvp_count,
        )
        certificate = result.model.certificate() if result.model is not None else None
        rows.append(dict(
            method=method, **metrics.as_dict(), steps=result.steps, dense_hessians=result.dense_hessians,
            retrained=bool(result.report.retrained) if result.report is not None else False,
            certified_epsilon=certificate.epsilon if certificate is not None else math.nan,
            residual_spent=certificate.residual_spent if certificate is not None else math.nan,
            residual_budget=certificate.residual_budget if certificate is not None else math.nan,
        ))
    return rows
