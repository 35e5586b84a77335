"""Per-example losses of generalised linear models, with the constants their bounds need.

Every loss here is a function of the *linear predictor* ``z = x @ params`` only:

* ``logistic`` (binary, labels in {-1, +1}): ``l(z, y) = log(1 + exp(-y z))``; ``params`` has shape (d,).
* ``softmax`` (multiclass cross-entropy, labels in {0, ..., K-1}):
    ``l(z, y) = logsumexp(z) - z[y]``; ``z`` has shape (K,), ``params`` has shape (d, K).
* ``squared`` (ridge regression, real labels): ``l(z, y) = (z - y)^2 / 2``; ``params`` has shape (d,).

For each loss we record ``gamma``, a Lipschitz constant of the curvature ``A(z) = d^2 l / dz^2`` in the
spectral norm, ``||A(z') - A(z)||_2 <= gamma ||z' - z||_2``. It enters every residual bound of
:mod:`certunlearn.removal`:

* logistic: ``A(z) = s(1 - s)`` with ``s = sigmoid(z)``; ``|A'(z)| = |s(1-s)(1-2s)| <= sqrt(3)/18 =
    1/(6 sqrt(3)) ~ 0.0962``, attained at ``s = (3 +- sqrt(3))/6``. Guo et al. (2020) use the looser 1/4.
* softmax: ``A(z) = diag(p) - p p^T`` with ``p = softmax(z)``. Its derivative in direction ``v`` applied
    twice to ``a`` is the third cumulant ``sum_i p_i v~_i a~_i^2`` (``v~ = v - <p, v>``, same for ``a``), so
    ``||dA[v]||_2 <= max_i |v~_i| * Var_p(a) <= sqrt(2) * 1/2``: |v~_i| = |<e_i - p, v>| <= ||e_i - p|| <=
    sqrt(2) and Var_p(a) = a^T A a <= lambda_max(A) <= 1/2 (Gershgorin). Hence ``gamma = 1/sqrt(2)``,
    valid for every K. This is new (published certified code only does one-vs-rest); the bound is checked
    numerically in ``tests/test_losses.py``.
* squared: ``A(z) = 1`` is constant, ``gamma = 0``: one Newton step is exact.

References:
    Guo, Goldstein, Hannun, van der Maaten. Certified Data Removal from Machine Learning Models. ICML 2020,
    arXiv:1911.03030.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import jax
import jax.numpy as jnp

Array = jax.Array

__all__ = ["Loss", "LOSSES", "get_loss", "logistic", "softmax", "squared"]


@dataclasses.dataclass(frozen=True, eq=False)
class Loss:
    """A GLM loss ``l(z, y)`` on the linear predictor ``z`` and its curvature constants.

    Attributes:
        name: registry name ("logistic", "softmax" or "squared").
        value: ``value(z, y) -> (n,)`` per-example losses for a batch of predictors ``z`` ((n,) or (n, K)).
        dz: ``dz(z, y)``: derivative of the loss in ``z``, same shape as ``z``.
        curvature_vp: ``curvature_vp(z, v) -> A(z) v`` row by row, same shape as ``z``
            (the Hessian of the loss in ``z``, applied to ``v``; it does not depend on ``y`` for these losses).
        curvature_diag: for scalar predictors, ``A(z)`` as an (n,) array; ``None`` for softmax.
        gamma: Lipschitz constant of ``A`` in the spectral norm (see the module docstring).
        multiclass: whether ``z`` has a class axis (softmax).
    """

    name: str
    value: Callable[[Array, Array], Array]
    dz: Callable[[Array, Array], Array]
    curvature_vp: Callable[[Array, Array], Array]
    curvature_diag: Callable[[Array], Array] | None
    gamma: float
    multiclass: bool

    def __repr__(self) -> str:
        return f"Loss({self.name!r}, gamma={self.gamma:.6g})"


def _logistic_value(z, y):
    return jnp.logaddexp(0.0, -y * z)


def _logistic_dz(z, y):
    return -y * jax.nn.sigmoid(-y * z)


def _logistic_curv(z):
    s = jax.nn.sigmoid(z)
    return s * (1.0 - s)


def _softmax_value(z, y):
    return jax.nn.logsumexp(z, axis=-1) - jnp.take_along_axis(z, y[:, None].astype(jnp.int32), -1)[:, 0]


def _softmax_dz(z, y):
    return jax.nn.softmax(z, axis=-1) - jax.nn.one_hot(y, z.shape[-1], dtype=z.dtype)


def _softmax_curv_vp(z, v):
    p = jax.nn.softmax(z, axis=-1)
    pv = p * v
    return pv - p * jnp.sum(pv, axis=-1, keepdims=True)


def _squared_value(z, y):
    return 0.5 * (z - y) ** 2


def _squared_dz(z, y):
    return z - y


logistic = Loss(
    name="logistic",
    value=_logistic_value,
    dz=_logistic_dz,
    curvature_vp=lambda z, v: _logistic_curv(z) * v,
    curvature_diag=_logistic_curv,
    gamma=math.sqrt(3.0) / 18.0,
    multiclass=False,
)

softmax = Loss(
    name="softmax",
    value=_softmax_value,
    dz=_softmax_dz,
    curvature_vp=_softmax_curv_vp,
    curvature_diag=None,
    gamma=1.0 / math.sqrt(2.0),
    multiclass=True,
)

squared = Loss(
    name="squared",
    value=_squared_value,
    dz=_squared_dz,
    curvature_vp=lambda z, v: v,
    curvature_diag=lambda z: jnp.ones_like(z),
    gamma=0.0,
    multiclass=False,
)

LOSSES: dict[str, Loss] = {l.name: l for l in (logistic, softmax, squared)}


def get_loss(name: str | Loss) -> Loss:
    """Returns the :class:`Loss` called ``name`` (a :class:`Loss` is returned unchanged).

    >>> round(get_loss("logistic").gamma, 10)  # 1 / (6 sqrt(3))
    0.0962250449
    """
    if isinstance(name, Loss):
        return name
    try:
        return LOSSES[name]
    except (KeyError, TypeError):
        raise ValueError(f"loss must be one of {sorted(LOSSES)}, got {name!r}") from None
