"""Check certificates empirically: membership inference and (epsilon, delta) lower bounds.

Two kinds of check (THEORY.md Sec. 6):

* **Membership inference** on forgotten vs never-seen points: the loss-threshold attack (Yeom et al. 2018)
  and the likelihood-ratio attack LiRA (Carlini et al. 2022) with shadow models trained in one vmapped call.
  An unlearned model whose forgotten points look like never-seen ones gives AUC ~ 0.5.
* **Empirical epsilon audits**. A distinguishing test between the outputs of two mechanisms with false
  positive rate FPR and false negative rate FNR proves, for an (epsilon, delta) guarantee,
  ``epsilon >= ln((1 - delta - FNR) / FPR)`` (and the same with FPR and FNR swapped). With one-sided
  Clopper-Pearson upper bounds ``FPR_u``, ``FNR_u`` the lower bound
  ``epsilon_lb = ln((1 - delta - FNR_u) / FPR_u)`` holds with confidence ``1 - alpha``: each of the two
  bounds is taken at level ``alpha / 2``, so by a union bound both hold together with probability
  ``>= 1 - alpha`` (and then ``epsilon_lb <= epsilon`` for any true (epsilon, delta) guarantee). The
  threshold, the direction of the test and which mechanism plays "positive" are chosen on *selection*
  samples that are independent of the *evaluation* samples ("split", the default; for the end-to-end audit
  the first half of the seeds selects and the second half evaluates), or fixed in advance on a grid of
  ``T`` thresholds with a Bonferroni correction over all ``8 T`` bounds ("union"). ``epsilon_lb`` is
  clamped at 0 (no evidence). With ``N`` evaluation samples per side it cannot exceed about
  ``ln(N / ln(2 / alpha))``.

  - :func:`audit_calibrator`: the Gaussian mechanism with the residual set exactly at its budget
    ``beta``: ``M(D) ~ N(0, sigma^2)`` vs ``M(D') ~ N(beta, sigma^2)`` (the projection on the worst
    direction; every other direction carries no information), ``sigma`` from
    :mod:`certunlearn.calibration`. ``sigma_scale=0.5`` builds a deliberately mis-calibrated mechanism.
    What N can see: at ``delta = 1e-5`` no epsilon lets N = 1000 samples flag sigma/2 (its expected
    ``epsilon_lb`` stays below the certified epsilon: 0.57 vs 1 at epsilon = 1, 1.5 vs 2 at epsilon = 2);
    N ~ 1e5 flags it at epsilon = 1 (1-D samples are free), and N = 1000 suffices from
    ``delta ~ 1e-2`` (epsilon = 2) or ``delta = 0.05`` (epsilon = 1).
  - :func:`audit_end_to_end`: over ``N`` noise seeds, train the certified model on ``D`` and remove one row
    ``x`` with a Newton step (retraining with fresh noise when the step would exceed the budget, as
    :func:`certunlearn.remove` does), versus retraining on ``D \\ {x}`` with fresh noise. The default
    statistic is the *unperturbed gradient on the retained rows*, ``g(w) = grad L(w; D')``: a retrained
    model has ``g = -b'`` exactly (up to the training tolerance), an unlearned one ``g = -b + r`` with ``r``
    the residual, so the test works in the space where the certificate's Gaussian mechanism lives; it is
    then projected on the mean difference estimated on the selection seeds. ``distinguisher="params"``
    projects the parameters themselves instead. ``removal="none"`` publishes the model trained on ``D``
    unchanged, a broken "unlearning" that the audit must flag (a power check).

Sum convention (THEORY.md Sec. 1) throughout; the neighbouring relation of the end-to-end audit is
remove-one.

References:
  Guo et al. Certified Data Removal from Machine Learning Models. ICML 2020, arXiv:1911.03030.
  Jagielski, Ullman, Oprea. Auditing Differentially Private Machine Learning. NeurIPS 2020, arXiv:2006.07709.
  Nasr et al. Adversary Instantiation: Lower Bounds for Differentially Private ML. S&P 2021, arXiv:2101.04535.
  Carlini et al. Membership Inference Attacks From First Principles. S&P 2022, arXiv:2112.03570.
  Yeom et al. Privacy Risk in Machine Learning. CSF 2018, arXiv:1709.01604.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from scipy import special, stats

from certunlearn import api, hessian, objective, train
from certunlearn import calibration as calib
from certunlearn import removal as removal_lib
from certunlearn.evaluate import newton_removal_step
from certunlearn.losses import LOSSES, get_loss

__all__ = [
    "AUDIT_CONFIG_DEFAULTS",
    "AttackResult",
    "EpsilonAudit",
    "ShadowModels",
    "ThresholdTest",
    "audit_calibrator",
    "audit_config_defaults",
    "audit_end_to_end",
    "clopper_pearson_lower",
    "clopper_pearson_upper",
    "epsilon_lower_bound",
    "lira_attack",
    "lira_scores",
    "logit_margin",
    "loss_threshold_attack",
    "per_example_loss",
    "roc_metrics",
    "run_audit",
    "train_shadow_models",
]

DISTINGUISHERS = ("gradient", "params")
REMOVALS = ("newton", "none")
SELECTIONS = ("split", "union")
_DEFAULT_FPRS = (1e-2, 1e-3)


# ----------------------------------------------------------------------------------------------------
# Validation


def _check_alpha(alpha) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.floating)) or not 0 < float(alpha) < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha!r}")
    return float(alpha)


def _check_delta(delta) -> float:
    if isinstance(delta, bool) or not isinstance(delta, (int, float, np.floating)) or not 0 <= float(delta) < 1:
        raise ValueError(f"delta must lie in [0, 1), got {delta!r}")
    return float(delta)


def _check_count(name, value, minimum) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _key(key, seed_default=0):
    if key is None:
        return jax.random.key(seed_default)
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        return jax.random.key(int(key))
    return api._check_key(key)


# ----------------------------------------------------------------------------------------------------
# Clopper-Pearson


def _binomial_args(k, n):
    k = np.asarray(k, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    if np.any(n < 1) or np.any(k < 0) or np.any(k > n) or np.any(np.mod(k, 1) != 0) or np.any(np.mod(n, 1) != 0):
        raise ValueError(f"need integer counts 0 <= k <= n with n >= 1, got k={k!r}, n={n!r}")
    return k, n


def clopper_pearson_upper(k, n, alpha):
    """One-sided Clopper-Pearson upper bound on a binomial rate at confidence ``1 - alpha``.

    ``p_u = Beta^{-1}(1 - alpha; k + 1, n - k)`` (and 1 when ``k = n``): ``P(p <= p_u) >= 1 - alpha`` for
    ``k ~ Binomial(n, p)``. For ``k = 0`` it is ``1 - alpha^(1/n)``. Vectorised over ``k`` and ``n``.

    References: Clopper & Pearson, Biometrika 26 (1934).

    >>> round(float(clopper_pearson_upper(0, 100, 0.05)), 6)  # 1 - 0.05 ** (1 / 100)
    0.029513
    """
    alpha = _check_alpha(alpha)
    k, n = _binomial_args(k, n)
    with np.errstate(invalid="ignore"):
        p = stats.beta.ppf(1.0 - alpha, k + 1.0, np.maximum(n - k, 1.0))
    out = np.where(k >= n, 1.0, p)
    return float(out) if out.ndim == 0 else out


def clopper_pearson_lower(k, n, alpha):
    """One-sided Clopper-Pearson lower bound ``Beta^{-1}(alpha; k, n - k + 1)`` (0 when ``k = 0``).

    >>> round(float(clopper_pearson_lower(100, 100, 0.05)), 6)  # 0.05 ** (1 / 100)
    0.970487
    """
    alpha = _check_alpha(alpha)
    k, n = _binomial_args(k, n)
    with np.errstate(invalid="ignore"):
        p = stats.beta.ppf(alpha, np.maximum(k, 1.0), n - k + 1.0)
    out = np.where(k <= 0, 0.0, p)
    return float(out) if out.ndim == 0 else out


# ----------------------------------------------------------------------------------------------------
# Membership inference


@dataclasses.dataclass(frozen=True)
class AttackResult:
    """ROC summary of a membership-inference attack (higher score = "member").

    Attributes:
      auc: area under the ROC curve (ties count 1/2).
      tpr_at_fpr: ``{fpr: tpr}``, the largest TPR at a threshold whose FPR is ``<= fpr``. With ``m``
        non-members an FPR below ``1/m`` can only be met at FPR = 0.
      advantage: ``max_t (TPR - FPR)``.
      n_members, n_nonmembers: sample sizes.
      member_scores, nonmember_scores: the raw scores.
    """

    auc: float
    tpr_at_fpr: dict
    advantage: float
    n_members: int
    n_nonmembers: int
    member_scores: np.ndarray = dataclasses.field(repr=False)
    nonmember_scores: np.ndarray = dataclasses.field(repr=False)

    def as_dict(self) -> dict[str, Any]:
        """Flat, JSON-friendly summary (no raw scores)."""
        out = dict(auc=self.auc, advantage=self.advantage, n_members=self.n_members, n_nonmembers=self.n_nonmembers)
        out.update({f"tpr_at_fpr_{f:g}": t for f, t in self.tpr_at_fpr.items()})
        return out


def roc_metrics(member_scores, nonmember_scores, *, fprs: Sequence[float] = _DEFAULT_FPRS) -> AttackResult:
    """AUC, TPR at fixed FPRs and the advantage of scores where larger means "member".

    >>> r = roc_metrics([3.0, 2.0, 0.5], [1.0, 0.0, -1.0])
    >>> round(r.auc, 4), r.tpr_at_fpr[0.01]
    (0.8889, 0.6666666666666666)
    """
    pos = np.asarray(member_scores, np.float64).ravel()
    neg = np.asarray(nonmember_scores, np.float64).ravel()
    if pos.size == 0 or neg.size == 0:
        raise ValueError(f"need at least one member and one non-member score, got {pos.size} and {neg.size}")
    if not (np.all(np.isfinite(pos)) and np.all(np.isfinite(neg))):
        raise ValueError("scores must be finite")
    ranks = stats.rankdata(np.concatenate([pos, neg]))
    auc = (ranks[: pos.size].sum() - pos.size * (pos.size + 1) / 2) / (pos.size * neg.size)
    # Thresholds "score >= t" at every distinct value, from the strictest down.
    t = np.unique(np.concatenate([pos, neg]))[::-1]
    tpr = np.concatenate([[0.0], (pos.size - np.searchsorted(np.sort(pos), t, side="left")) / pos.size])
    fpr = np.concatenate([[0.0], (neg.size - np.searchsorted(np.sort(neg), t, side="left")) / neg.size])
    tpr_at = {float(f): float(np.max(tpr[fpr <= f])) for f in fprs}
    return AttackResult(
        auc=float(auc), tpr_at_fpr=tpr_at, advantage=float(np.max(tpr - fpr)), n_members=int(pos.size),
        n_nonmembers=int(neg.size), member_scores=pos, nonmember_scores=neg,
    )


def _labels(y, loss):
    return jnp.asarray(y, jnp.int32) if loss == "softmax" else jnp.asarray(y, jnp.float64)


def per_example_loss(params, X, y, *, loss: str) -> np.ndarray:
    """``l(x_i w, y_i)`` for each row (float64)."""
    z = jnp.asarray(X, jnp.float64) @ jnp.asarray(params, jnp.float64)
    return np.asarray(get_loss(loss).value(z, _labels(y, loss)))


def _margin(z, y, loss):
    if loss == "logistic":
        return y * z
    if loss == "softmax":
        zy = jnp.take_along_axis(z, y[..., None], -1)[..., 0]
        others = jnp.where(jax.nn.one_hot(y, z.shape[-1], dtype=bool), -jnp.inf, z)
        return zy - jax.nn.logsumexp(others, axis=-1)
    return -0.5 * (z - y) ** 2  # squared loss: a Gaussian log-likelihood up to a constant


def logit_margin(params, X, y, *, loss: str) -> np.ndarray:
    """LiRA's logit-scaled confidence ``phi = log(p_y / (1 - p_y))`` of the true label, in closed form.

    Logistic: ``phi = y (x w)``; softmax: ``phi = z_y - logsumexp_{k != y} z_k``; squared loss:
    ``-(x w - y)^2 / 2``. Computed from the logits, so it does not saturate like ``log p``.
    """
    z = jnp.asarray(X, jnp.float64) @ jnp.asarray(params, jnp.float64)
    return np.asarray(_margin(z, _labels(y, loss), loss))


def loss_threshold_attack(
    params, X_members, y_members, X_nonmembers, y_nonmembers, *, loss: str, fprs: Sequence[float] = _DEFAULT_FPRS
) -> AttackResult:
    """Loss-threshold membership inference (Yeom et al. 2018): score = ``-l(x w, y)``.

    For unlearning, ``X_members`` are the forgotten rows and the model is the unlearned one; AUC ~ 0.5
    means they look like the never-seen rows ``X_nonmembers``.

    >>> import numpy as np
    >>> w = np.array([5.0, -5.0]); X = np.eye(2)
    >>> loss_threshold_attack(w, X, [1.0, -1.0], X, [-1.0, 1.0], loss="logistic").auc
    1.0
    """
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {sorted(LOSSES)}, got {loss!r}")
    return roc_metrics(
        -per_example_loss(params, X_members, y_members, loss=loss),
        -per_example_loss(params, X_nonmembers, y_nonmembers, loss=loss),
        fprs=fprs,
    )


class ShadowModels(NamedTuple):
    """Shadow models of LiRA: ``params[s]`` was trained on the rows with ``masks[s]`` True.

    Attributes:
      params: (S, d) or (S, d, K). masks: (S, n) bool; every row is in exactly ``S // 2`` models.
      converged: (S,) whether each training reached its tolerance.
    """

    params: np.ndarray
    masks: np.ndarray
    converged: np.ndarray


def _solver_for(shape) -> str:
    # Dense Hessians cost O(n p^2) per Newton step (O(K^2 n d^2) blockwise for softmax, slow to compile
    # under vmap); Newton-CG on Hessian-vector products is much faster on CPU beyond small scalar models.
    return "cholesky" if len(shape) == 1 and shape[0] <= 256 else "cg"


def _batches(total: int, batch_size: int):
    for start in range(0, total, batch_size):
        yield start, min(start + batch_size, total)


def _pad(a, size):
    """Pads the leading axis of ``a`` to ``size`` by repeating its first entry (the padding is discarded)."""
    short = size - a.shape[0]
    if short <= 0:
        return a
    return jnp.concatenate([a, jnp.repeat(a[:1], short, axis=0)], axis=0)


@functools.partial(jax.jit, static_argnames=("loss", "solver", "max_steps", "shape"))
def _fit_batch(keys, masks, X, y, l2_reg, sigma, tol, *, loss, solver, max_steps, shape):
    """Vmapped :func:`certunlearn.train.fit_params` over noise keys and retained-row masks."""

    def one(key, mask):
        b = sigma * jax.random.normal(key, shape, jnp.float64)
        res = train.fit_params(
            jnp.zeros(shape, jnp.float64), X, y, mask, b, l2_reg, tol, loss=loss, method="newton", solver=solver,
            max_steps=max_steps,
        )
        return res.params, res.converged

    return jax.vmap(one)(keys, masks)


def _param_shape(X, y, loss, num_classes):
    d = np.shape(X)[1]
    if loss != "softmax":
        return (d,)
    k = int(np.max(np.asarray(y))) + 1 if num_classes is None else int(num_classes)
    return (d, k)


def _default_batch(shape) -> int:
    p = int(np.prod(shape))
    return int(max(1, min(4096, 2**30 // (8 * 3 * p * p))))  # ~1 GiB of dense Hessians per batch


def train_shadow_models(
    X,
    y,
    *,
    loss: str,
    l2_reg: float,
    num_shadow: int = 64,
    sigma: float = 0.0,
    key=None,
    tol: float | None = None,
    max_steps: int = 100,
    num_classes: int | None = None,
    batch_size: int | None = None,
) -> ShadowModels:
    """Trains ``num_shadow`` models of the target's procedure on random halves of the population (vmapped).

    Each shadow minimises ``L_b`` (sum convention) on its rows with its own noise ``b ~ N(0, sigma^2 I)``
    (use the target's ``sigma`` and ``l2_reg`` to mimic it). The masks are balanced as in Carlini et al.'s
    code: every row is IN for exactly ``num_shadow // 2`` shadows.

    Args:
      X, y: the population (all rows any candidate could come from). loss, l2_reg: the objective.
      num_shadow: S (even, >= 4). sigma: noise std. key: PRNG key (or int seed).
      tol: training tolerance (default ``1e-8 sqrt(n)``). max_steps: Newton step cap.
      num_classes: K for softmax (default ``max(y) + 1``). batch_size: models per vmapped call.

    Returns:
      :class:`ShadowModels`.
    """
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {sorted(LOSSES)}, got {loss!r}")
    num_shadow = _check_count("num_shadow", num_shadow, 4)
    if num_shadow % 2:
        raise ValueError(f"num_shadow must be even (balanced IN/OUT), got {num_shadow}")
    X = np.asarray(X, np.float64)
    n = X.shape[0]
    shape = _param_shape(X, y, loss, num_classes)
    key = _key(key)
    k_mask, k_noise = jax.random.split(key)
    order = np.argsort(np.asarray(jax.random.uniform(k_mask, (num_shadow, n))), axis=0)
    masks = order < num_shadow // 2
    noise_keys = jax.random.split(k_noise, num_shadow)
    tol = 1e-8 * math.sqrt(n) if tol is None else float(tol)
    batch = min(num_shadow, batch_size or _default_batch(shape))
    Xj, yj = jnp.asarray(X), _labels(y, loss)
    params, conv = [], []
    for lo, hi in _batches(num_shadow, batch):
        p, c = _fit_batch(
            _pad(noise_keys[lo:hi], batch), _pad(jnp.asarray(masks[lo:hi], jnp.float64), batch), Xj, yj,
            float(l2_reg), float(sigma), tol, loss=loss, solver=_solver_for(shape), max_steps=int(max_steps),
            shape=shape,
        )
        params.append(np.asarray(p)[: hi - lo])
        conv.append(np.asarray(c)[: hi - lo])
    return ShadowModels(np.concatenate(params), masks, np.concatenate(conv))


def lira_scores(
    target_params, shadows: ShadowModels, X, y, candidates, *, loss: str, online: bool = True,
    fix_variance: bool = False,
) -> np.ndarray:
    """LiRA membership scores of ``candidates`` (indices into the population ``X, y``) for a target model.

    With ``phi`` the :func:`logit_margin`, per candidate the shadows' ``phi`` are fitted by Gaussians
    ``N(mu_in, s_in^2)`` (shadows that trained on it) and ``N(mu_out, s_out^2)`` (shadows that did not).
    Online: score = ``log N(phi_t; mu_in, s_in^2) - log N(phi_t; mu_out, s_out^2)``; offline (OUT models
    only, one-sided as in the paper): ``log Phi((phi_t - mu_out) / s_out)``.

    ``fix_variance=True`` uses one variance for all candidates (the paper's choice for few shadows): the
    pooled *within-candidate* variance. (Carlini et al.'s code pools the raw values instead, which adds the
    spread of the means across candidates; we do not.)
    """
    idx = np.asarray(candidates, np.int64).ravel()
    masks = np.asarray(shadows.masks)[:, idx]  # (S, m)
    Xc = jnp.asarray(np.asarray(X, np.float64)[idx])
    yc = _labels(np.asarray(y)[idx], loss)
    phi_shadow = np.asarray(jax.vmap(lambda w: _margin(Xc @ w, yc, loss))(jnp.asarray(shadows.params)))
    phi_target = np.asarray(_margin(Xc @ jnp.asarray(target_params, jnp.float64), yc, loss))

    def fit(sel):
        count = sel.sum(0)
        if np.any(count < 2):
            raise ValueError("every candidate needs >= 2 IN and 2 OUT shadow models; use more shadows")
        mean = np.where(sel, phi_shadow, 0.0).sum(0) / count
        var = np.where(sel, (phi_shadow - mean) ** 2, 0.0).sum(0) / (count - 1)
        if fix_variance:
            var = np.full_like(var, var.mean())
        return mean, np.sqrt(var) + 1e-30

    mu_out, s_out = fit(~masks)
    if not online:
        return special.log_ndtr((phi_target - mu_out) / s_out)
    mu_in, s_in = fit(masks)
    return stats.norm.logpdf(phi_target, mu_in, s_in) - stats.norm.logpdf(phi_target, mu_out, s_out)


def lira_attack(
    target_params,
    X,
    y,
    members,
    nonmembers,
    *,
    loss: str,
    l2_reg: float | None = None,
    shadows: ShadowModels | None = None,
    num_shadow: int = 64,
    sigma: float = 0.0,
    key=None,
    online: bool = True,
    fix_variance: bool = False,
    fprs: Sequence[float] = _DEFAULT_FPRS,
    **shadow_kwargs,
) -> AttackResult:
    """The likelihood-ratio attack (Carlini et al. 2022) on ``members`` vs ``nonmembers``.

    Args:
      target_params: the attacked model (e.g. the unlearned one).
      X, y: the population; ``members`` and ``nonmembers`` index it (for unlearning: the forgotten rows vs
        never-seen rows). The shadows train on random halves of the whole population.
      loss, l2_reg, sigma: the target's training procedure, mimicked by the shadows.
      shadows: reuse trained shadows (e.g. to attack several models); else ``num_shadow`` are trained
        with ``key`` (:func:`train_shadow_models`, ``**shadow_kwargs``).
      online, fix_variance: see :func:`lira_scores`.

    Returns:
      :class:`AttackResult`.
    """
    if shadows is None:
        if l2_reg is None:
            raise ValueError("pass l2_reg (the target's lambda) or trained shadows")
        shadows = train_shadow_models(
            X, y, loss=loss, l2_reg=l2_reg, num_shadow=num_shadow, sigma=sigma, key=key, **shadow_kwargs
        )
    members = np.asarray(members, np.int64).ravel()
    nonmembers = np.asarray(nonmembers, np.int64).ravel()
    scores = lira_scores(
        target_params, shadows, X, y, np.concatenate([members, nonmembers]), loss=loss, online=online,
        fix_variance=fix_variance,
    )
    return roc_metrics(scores[: members.size], scores[members.size :], fprs=fprs)


# ----------------------------------------------------------------------------------------------------
# Threshold tests and epsilon lower bounds


@dataclasses.dataclass(frozen=True)
class ThresholdTest:
    """A threshold test between samples ``a`` (from M(D)) and ``b`` (from M(D')), and its epsilon bound.

    The test declares "positive" when ``sign * score > threshold``; the positive mechanism is ``b`` unless
    ``positive == "a"``. Its negatives give ``false_positives`` of ``n_negative``, its positives
    ``false_negatives`` of ``n_positive``.

    Attributes:
      epsilon_lb: ``max(0, ln((1 - delta - fnr_upper) / fpr_upper))``.
      fpr, fnr: empirical rates on the evaluation samples; fpr_upper, fnr_upper: their Clopper-Pearson
        upper bounds at the per-bound level ``bound_alpha``.
      threshold, sign, positive: the chosen test. selection: "split" or "union".
      bound_alpha: ``alpha / 2`` (split) or ``alpha / (8 T)`` (union over T thresholds).
    """

    epsilon_lb: float
    fpr: float
    fnr: float
    fpr_upper: float
    fnr_upper: float
    false_positives: int
    false_negatives: int
    n_negative: int
    n_positive: int
    threshold: float
    sign: int
    positive: str
    selection: str
    bound_alpha: float


def _eps_from_counts(fp, n_neg, fn, n_pos, delta, bound_alpha):
    fpr_u = np.asarray(clopper_pearson_upper(fp, n_neg, bound_alpha))
    fnr_u = np.asarray(clopper_pearson_upper(fn, n_pos, bound_alpha))
    num = 1.0 - delta - fnr_u
    with np.errstate(divide="ignore", invalid="ignore"):
        eps = np.where(num > 0, np.log(np.maximum(num, 1e-300)) - np.log(fpr_u), -np.inf)
    return eps, fpr_u, fnr_u


def _counts(neg, pos, thresholds):
    """False positives (#neg > t) and false negatives (#pos <= t) for sorted ``neg`` and ``pos``."""
    fp = neg.size - np.searchsorted(neg, thresholds, side="right")
    fn = np.searchsorted(pos, thresholds, side="right")
    return fp, fn


def _orientations(a, b):
    """The four tests: (negative sample, positive sample, sign, name of the positive mechanism)."""
    for positive, neg, pos in (("b", a, b), ("a", b, a)):
        for sign in (1, -1):
            yield np.sort(sign * neg), np.sort(sign * pos), sign, positive


def _candidate_thresholds(neg_sorted):
    """Thresholds giving k = 0, 1, 2, ... (then geometrically more) false positives on ``neg_sorted``."""
    n = neg_sorted.size
    ks = np.unique(np.concatenate([np.arange(min(n, 64)), np.round(np.geomspace(1, n, 256)).astype(int) - 1]))
    return neg_sorted[::-1][np.clip(ks, 0, n - 1)]


def epsilon_lower_bound(
    a,
    b,
    *,
    delta: float,
    alpha: float = 0.05,
    selection: str = "split",
    select_a=None,
    select_b=None,
    thresholds=None,
) -> ThresholdTest:
    """Lower-bounds epsilon (at ``delta``) from 1-D samples of two mechanisms' outputs (module docstring).

    Args:
      a, b: evaluation scores from M(D) and M(D') (i.i.d. within each sample).
      delta: the delta of the guarantee being audited. alpha: ``1 - confidence`` of the whole statement.
      selection: "split": the test is the one maximising the bound on ``select_a``/``select_b`` (default:
        the first halves of ``a`` and ``b``, whose second halves then evaluate), over thresholds at the
        selection negatives' order statistics, both signs and both roles; evaluated on independent samples,
        each Clopper-Pearson bound at ``alpha / 2``. "union": every threshold of the data-independent grid
        ``thresholds`` (applied to ``sign * score`` for both signs, and both roles) is evaluated on all
        of ``a``, ``b`` with each bound at ``alpha / (8 T)``; the best is reported.

    Returns:
      :class:`ThresholdTest`.

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> t = epsilon_lower_bound(rng.normal(0, 1, 4000), rng.normal(4, 1, 4000), delta=1e-5)
    >>> 2.5 < t.epsilon_lb < 7.0
    True
    """
    delta = _check_delta(delta)
    alpha = _check_alpha(alpha)
    if selection not in SELECTIONS:
        raise ValueError(f"selection must be one of {list(SELECTIONS)}, got {selection!r}")
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    for name, arr in (("a", a), ("b", b)):
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} must hold finite scores")

    if selection == "union":
        if thresholds is None:
            raise ValueError("selection='union' needs a data-independent grid: pass thresholds=")
        grid = np.asarray(thresholds, np.float64).ravel()
        if grid.size == 0 or not np.all(np.isfinite(grid)):
            raise ValueError("thresholds must be a non-empty array of finite values")
        if a.size < 1 or b.size < 1:
            raise ValueError("a and b must be non-empty")
        bound_alpha = alpha / (8 * grid.size)
        best = None
        for neg, pos, sign, positive in _orientations(a, b):
            fp, fn = _counts(neg, pos, grid)
            eps, fpr_u, fnr_u = _eps_from_counts(fp, neg.size, fn, pos.size, delta, bound_alpha)
            i = int(np.argmax(eps))
            if best is None or eps[i] > best[0]:
                best = (eps[i], grid[i], sign, positive, fp[i], fn[i], neg.size, pos.size, fpr_u[i], fnr_u[i])
        eps, t, sign, positive, fp, fn, n_neg, n_pos, fpr_u, fnr_u = best
    else:
        if (select_a is None) != (select_b is None):
            raise ValueError("pass both select_a and select_b, or neither")
        if select_a is None:
            if a.size < 2 or b.size < 2:
                raise ValueError("need >= 2 samples per side to split them into selection and evaluation halves")
            ha, hb = a.size // 2, b.size // 2
            select_a, a, select_b, b = a[:ha], a[ha:], b[:hb], b[hb:]
        select_a = np.asarray(select_a, np.float64).ravel()
        select_b = np.asarray(select_b, np.float64).ravel()
        if min(select_a.size, select_b.size, a.size, b.size) < 1:
            raise ValueError("selection and evaluation samples must be non-empty")
        bound_alpha = alpha / 2
        chosen = None
        for neg, pos, sign, positive in _orientations(select_a, select_b):
            cand = _candidate_thresholds(neg)
            fp, fn = _counts(neg, pos, cand)
            eps, _, _ = _eps_from_counts(fp, neg.size, fn, pos.size, delta, bound_alpha)
            i = int(np.argmax(eps))
            if chosen is None or eps[i] > chosen[0]:
                chosen = (eps[i], cand[i], sign, positive)
        _, t, sign, positive = chosen
        neg, pos = (a, b) if positive == "b" else (b, a)
        neg, pos = np.sort(sign * neg), np.sort(sign * pos)
        fp, fn = _counts(neg, pos, np.asarray([t]))
        fp, fn = int(fp[0]), int(fn[0])
        n_neg, n_pos = neg.size, pos.size
        eps, fpr_u, fnr_u = _eps_from_counts(fp, n_neg, fn, n_pos, delta, bound_alpha)
    eps = float(eps)
    return ThresholdTest(
        epsilon_lb=eps if eps > 0 else 0.0,
        fpr=int(fp) / n_neg,
        fnr=int(fn) / n_pos,
        fpr_upper=float(fpr_u),
        fnr_upper=float(fnr_u),
        false_positives=int(fp),
        false_negatives=int(fn),
        n_negative=int(n_neg),
        n_positive=int(n_pos),
        threshold=float(t),
        sign=int(sign),
        positive=str(positive),
        selection=selection,
        bound_alpha=float(bound_alpha),
    )


@dataclasses.dataclass(frozen=True)
class EpsilonAudit:
    """The result of an epsilon audit.

    Attributes:
      kind: "calibrator" or "end-to-end".
      epsilon_lb: the audited lower bound (confidence ``1 - alpha``); ``flagged`` when it exceeds
        ``certified_epsilon``, which a sound certificate allows with probability at most ``alpha``.
      certified_epsilon: the epsilon the mechanism claims at ``delta``.
      delta, alpha: as audited.
      num_samples: samples per mechanism used to *evaluate* the test (``n`` of the Clopper-Pearson
        bounds). num_select: samples per mechanism used to *select* it (0 for "union").
      test: the :class:`ThresholdTest` (threshold, FPR/FNR, their bounds, counts).
      sigma: the noise std actually used; seconds: wall time of the audit.
      details: kind-specific diagnostics (see each audit).
    """

    kind: str
    epsilon_lb: float
    certified_epsilon: float
    delta: float
    alpha: float
    num_samples: int
    num_select: int
    test: ThresholdTest
    sigma: float
    seconds: float
    details: dict = dataclasses.field(default_factory=dict)

    @property
    def flagged(self) -> bool:
        """Whether the audit refutes the certificate: ``epsilon_lb > certified_epsilon``."""
        return self.epsilon_lb > self.certified_epsilon

    @property
    def threshold(self) -> float:
        return self.test.threshold

    def as_dict(self) -> dict[str, Any]:
        """Flat, JSON-friendly row."""
        out = dict(
            kind=self.kind, epsilon_lb=self.epsilon_lb, certified_epsilon=self.certified_epsilon,
            flagged=self.flagged, delta=self.delta, alpha=self.alpha, num_samples=self.num_samples,
            num_select=self.num_select, sigma=self.sigma, seconds=self.seconds,
        )
        out.update({f"test_{k}": v for k, v in dataclasses.asdict(self.test).items()})
        out.update(self.details)
        return out


def audit_calibrator(
    *,
    epsilon: float = 1.0,
    delta: float = 1e-5,
    residual_budget: float = 1.0,
    calibration: str = "analytic",
    sigma_scale: float = 1.0,
    num_samples: int = 1000,
    alpha: float = 0.05,
    selection: str = "split",
    thresholds=None,
    key=None,
) -> EpsilonAudit:
    """Audits the noise calibrator: the Gaussian mechanism with the residual exactly at its budget.

    ``sigma = calibrate(epsilon=..., delta=..., residual_budget=beta).sigma`` (certifying
    ``(epsilon, delta)`` for residuals ``<= beta``); the audited mechanism uses ``sigma_scale * sigma``
    (1: as certified; 0.5: the bug "sigma halved"). Samples ``M(D) ~ N(0, s^2)`` and
    ``M(D') ~ N(beta, s^2)``: the one-dimensional worst case of ``b`` vs ``b + r`` with ``||r|| = beta``.

    Args:
      epsilon, delta, residual_budget (``beta``), calibration: the certificate being audited.
      sigma_scale: multiplies the calibrated sigma (mis-calibration on purpose).
      num_samples: evaluation samples per mechanism. With "split" an independent set of the same size
        selects the test (samples are free here).
      alpha: 1 - confidence. selection, thresholds: see :func:`epsilon_lower_bound`; for "union" the
        default grid is ``beta/2 + sigma * linspace(-2, 5, 36)`` in the *claimed* sigma (data-independent).
      key: PRNG key or int seed.

    Returns:
      :class:`EpsilonAudit` with ``details`` = claimed sigma, sigma_scale, residual_budget, calibration.

    >>> r = audit_calibrator(epsilon=1.0, delta=1e-5, num_samples=1000, key=0)
    >>> r.epsilon_lb <= r.certified_epsilon
    True
    """
    start = time.perf_counter()
    num_samples = _check_count("num_samples", num_samples, 1)
    alpha = _check_alpha(alpha)
    if not (isinstance(sigma_scale, (int, float)) and sigma_scale > 0 and math.isfinite(sigma_scale)):
        raise ValueError(f"sigma_scale must be a finite number > 0, got {sigma_scale!r}")
    cal = calib.calibrate(epsilon=epsilon, delta=delta, residual_budget=residual_budget, calibration=calibration)
    beta = cal.residual_budget
    sigma = cal.sigma * float(sigma_scale)
    k = jax.random.split(_key(key, 1), 4)
    draw = lambda kk, mean: np.asarray(mean + sigma * jax.random.normal(kk, (num_samples,), jnp.float64))
    a, b = draw(k[0], 0.0), draw(k[1], beta)
    if selection == "union" and thresholds is None:
        thresholds = beta / 2 + cal.sigma * np.linspace(-2.0, 5.0, 36)
    if selection == "split":
        test = epsilon_lower_bound(
            a, b, delta=cal.delta, alpha=alpha, select_a=draw(k[2], 0.0), select_b=draw(k[3], beta)
        )
        num_select = num_samples
    else:
        test = epsilon_lower_bound(a, b, delta=cal.delta, alpha=alpha, selection=selection, thresholds=thresholds)
        num_select = 0
    return EpsilonAudit(
        kind="calibrator",
        epsilon_lb=test.epsilon_lb,
        certified_epsilon=cal.epsilon_spent(beta),
        delta=cal.delta,
        alpha=alpha,
        num_samples=num_samples,
        num_select=num_select,
        test=test,
        sigma=sigma,
        seconds=time.perf_counter() - start,
        details=dict(claimed_sigma=cal.sigma, sigma_scale=float(sigma_scale), residual_budget=beta,
                     calibration=cal.calibration, target_epsilon=cal.epsilon),
    )


# ----------------------------------------------------------------------------------------------------
# End-to-end audit


class _SeedOutputs(NamedTuple):
    published: np.ndarray  # the unlearning mechanism's output, per seed
    reference: np.ndarray  # retrain on D' with fresh noise
    within_budget: np.ndarray  # the Newton step was published (else the mechanism retrained)
    residual_spent: np.ndarray  # beta of the Newton candidate (r0 + step bound, or the exact residual)
    exact_residual: np.ndarray  # ||grad L_b(candidate; D')||
    converged: np.ndarray  # every training of this seed converged


@functools.partial(jax.jit, static_argnames=("loss", "shape", "update", "bound", "removal_method", "solver"))
def _removal_batch(
    noise_keys, params, X, y, keep, removed, l2_reg, sigma, data_norm, max_row_norm, *,
    loss, shape, update, bound, removal_method, solver,
):
    """Vmapped Newton removal of the rows ``removed`` and its spent residual ``beta`` (as ``api.remove``)."""
    full = jnp.ones_like(keep)
    gamma = get_loss(loss).gamma
    kw = dict(loss=loss, l2_reg=l2_reg)

    def one(noise_key, w):
        b = sigma * jax.random.normal(noise_key, shape, jnp.float64)
        if removal_method == "none":
            # Publishing w unchanged needs the whole residual ||grad L_b(w; D')|| to be certified.
            exact = objective.gradient_norm(w, X, y, keep, b, **kw)
            return w, exact, exact
        r0 = objective.gradient_norm(w, X, y, full, b, **kw)
        w_new, _ = newton_removal_step(w, X, y, keep, removed, b, l2_reg, loss=loss, update=update, solver=solver)
        u = w_new - w
        rhs = (objective.removed_gradient(w, X, y, removed, **kw) if update == "guo"
               else -objective.gradient(w, X, y, keep, b, **kw))
        solve_error = jnp.sqrt(jnp.sum((hessian.glm_hvp(w, X, y, keep, u, **kw) - rhs) ** 2))
        exact = objective.gradient_norm(w_new, X, y, keep, b, **kw)
        if bound == "exact":
            return w_new, exact, exact
        if bound == "data-dependent":
            remainder = removal_lib.data_dependent_remainder(X, keep, u, gamma=gamma, data_norm=data_norm)
        else:
            remainder = removal_lib.worst_case_remainder(
                jnp.sqrt(jnp.sum(u * u)), jnp.sum(keep), gamma=gamma, max_row_norm=max_row_norm
            )
        spent = solve_error + remainder + (r0 if update == "guo" else 0.0)  # accumulate vs replace
        return w_new, jnp.where(jnp.all(jnp.isfinite(w_new)), spent, jnp.inf), exact

    return jax.vmap(one)(noise_keys, params)


def _split_keys(keys):
    """``(next_key, sub) = jax.random.split(key)`` per key, as ``api._train`` consumes its key."""
    pairs = jax.vmap(jax.random.split)(keys)
    return pairs[:, 0], pairs[:, 1]


def _fit_many(noise_keys, mask, X, y, l2_reg, sigma, tol, *, loss, shape, solver, max_steps, batch):
    """Fits ``L_b`` on the rows ``mask`` for ``b = sigma * normal(noise_key)``, one model per key, batched."""
    total = noise_keys.shape[0]
    masks = jnp.broadcast_to(jnp.asarray(mask, jnp.float64), (batch, mask.shape[0]))
    params, conv = [], []
    for lo, hi in _batches(total, batch):
        p, c = _fit_batch(
            _pad(noise_keys[lo:hi], batch), masks, X, y, l2_reg, sigma, tol, loss=loss, solver=solver,
            max_steps=max_steps, shape=shape,
        )
        params.append(np.asarray(p)[: hi - lo])
        conv.append(np.asarray(c)[: hi - lo])
    return np.concatenate(params), np.concatenate(conv)


def _run_seeds(
    keys_model, keys_reference, X, y, keep, removed, *, l2_reg, sigma, tol, data_norm, max_row_norm, budget,
    loss, shape, update, bound, removal_method, solver, max_steps, batch,
) -> _SeedOutputs:
    """The mechanism and the reference for every seed (vmapped in batches; one compilation per kernel).

    Seed ``i``: ``api.fit(key=keys_model[i])`` then ``api.remove`` of ``removed`` (Newton step if its
    ``beta`` is within ``budget``, else a retrain with the model's next key); reference: a fit on ``keep``
    with noise from ``keys_reference[i]``.
    """
    fit_kw = dict(loss=loss, shape=shape, solver=solver, max_steps=max_steps, batch=batch)
    full = np.ones(X.shape[0])
    next_keys, noise_keys = _split_keys(keys_model)
    trained, trained_ok = _fit_many(noise_keys, full, X, y, l2_reg, sigma, tol, **fit_kw)
    _, ref_keys = _split_keys(keys_reference)
    reference, reference_ok = _fit_many(ref_keys, keep, X, y, l2_reg, sigma, tol, **fit_kw)
    parts = []
    for lo, hi in _batches(keys_model.shape[0], batch):
        out = _removal_batch(
            _pad(noise_keys[lo:hi], batch), _pad(jnp.asarray(trained[lo:hi]), batch), X, y, keep, removed, l2_reg,
            sigma, data_norm, max_row_norm, loss=loss, shape=shape, update=update, bound=bound,
            removal_method=removal_method, solver=solver,
        )
        parts.append([np.asarray(a)[: hi - lo] for a in out])
    published, spent, exact = (np.concatenate(p) for p in zip(*parts))
    within = trained_ok & (spent <= budget) if removal_method == "newton" else trained_ok
    converged = trained_ok & reference_ok
    over = np.flatnonzero(~within)
    if over.size:
        _, fallback_keys = _split_keys(next_keys[jnp.asarray(over)])
        refit, refit_ok = _fit_many(fallback_keys, keep, X, y, l2_reg, sigma, tol, **fit_kw)
        published[over] = refit
        converged[over] &= refit_ok
    return _SeedOutputs(published, reference, within, spent, exact, converged)


def _statistic(params, X, y, keep, l2_reg, loss, distinguisher):
    """Per-seed feature vectors: ``grad L(w; D')`` (unperturbed) or the parameters, flattened."""
    if distinguisher == "params":
        return np.asarray(params).reshape(params.shape[0], -1)
    grad = jax.jit(jax.vmap(
        lambda w: objective.gradient(w, X, y, keep, jnp.zeros_like(w), loss=loss, l2_reg=l2_reg)
    ))
    return np.asarray(grad(jnp.asarray(params))).reshape(params.shape[0], -1)


def _default_index(X, y, loss, l2_reg, shape, tol, solver):
    """The row with the largest ``||lambda w + grad l(w; x, y)||`` at the noise-free optimum: the largest
    Newton step, hence the largest residual and the most detectable removal."""
    w = train.fit_params(
        jnp.zeros(shape, jnp.float64), X, y, jnp.ones(X.shape[0]), jnp.zeros(shape, jnp.float64), l2_reg, tol,
        loss=loss, method="newton", solver=solver, max_steps=200,
    ).params
    z = X @ w
    r = get_loss(loss).dz(z, y)
    # ||x_i (x) r_i + lambda w||^2 = ||x_i||^2 ||r_i||^2 + 2 lambda <z_i, r_i> + lambda^2 ||w||^2.
    dot = (lambda a, b: jnp.sum(a * b, axis=-1)) if r.ndim == 2 else (lambda a, b: a * b)
    sq = jnp.sum(X * X, axis=1) * dot(r, r) + 2 * l2_reg * dot(z, r)
    return int(jnp.argmax(sq))


def audit_end_to_end(
    X,
    y,
    *,
    index: int | None = None,
    loss: str = "logistic",
    l2_reg: float = 1e-3,
    epsilon: float = 1.0,
    delta: float = 1e-5,
    sigma: float | None = None,
    residual_budget: float | None = None,
    calibration: str = "analytic",
    bound: str = "data-dependent",
    update: str = "guo",
    removal: str = "newton",
    distinguisher: str = "gradient",
    num_seeds: int = 1000,
    alpha: float = 0.05,
    key=None,
    tol: float | None = None,
    max_steps: int = 100,
    num_classes: int | None = None,
    batch_size: int | None = None,
) -> EpsilonAudit:
    """End-to-end audit of removing row ``index``: certified fit + Newton removal vs retrain (fresh noise).

    For each of ``num_seeds`` seeds ``k_i``: ``b_i ~ N(0, sigma^2 I)`` drawn exactly as
    ``certunlearn.fit(X, y, key=k_i)`` draws it; ``w_i`` fits ``L_{b_i}`` on ``D`` to ``tol`` (Newton with
    Cholesky for scalar losses up to 256 parameters, Newton-CG otherwise: the same minimiser up to ``tol``);
    the Newton step removes ``index`` (Guo's update or the gradient update; exact Cholesky or CG solve, the
    solve error is charged as in ``remove``), its residual is
    bounded with ``bound`` and, if the spent residual ``beta_i`` would exceed the budget (or anything did not
    converge), the published model is a retrain on ``D'`` with fresh noise, as :func:`certunlearn.remove`
    does. The reference is a retrain on ``D'`` with independent noise ``b'_i``. Everything is vmapped over
    seeds, in batches of ``batch_size``. The first half of the seeds selects the distinguisher's
    direction (mean difference of the statistic) and threshold; the second half evaluates it
    (:func:`epsilon_lower_bound`, "split").

    Args:
      X, y: training rows (``||x_i|| <= 1``) and labels (+-1 logistic, 0..K-1 softmax).
      index: the row removed; default: the row with the largest removal step (see ``_default_index``).
      loss, l2_reg, epsilon, delta, sigma, residual_budget, calibration, bound, update: the certified
        model, as in :func:`certunlearn.fit` (with neither ``sigma`` nor ``residual_budget``, sigma = 1).
      removal: "newton" (the certified mechanism) or "none" (publish the model trained on D: must be
        flagged when the noise is small against the row's influence).
      distinguisher: "gradient" (``grad L(w; D')``, module docstring) or "params".
      num_seeds: N, even, >= 4. alpha: 1 - confidence. key: PRNG key or int seed.
      tol: training tolerance (default as ``fit``: ``1e-9 sqrt(n)``). max_steps: Newton step cap.
      num_classes: K for softmax. batch_size: seeds per vmapped call (default: ~1 GiB of Hessians).

    Returns:
      :class:`EpsilonAudit`; ``certified_epsilon`` is the target epsilon (every published output is within
      budget or retrained); ``details`` holds the removed index, the fraction of seeds retrained, the largest
      spent residual and its certified epsilon, mean exact residual, sigma, budget and timings.
    """
    start = time.perf_counter()
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {sorted(LOSSES)}, got {loss!r}")
    if bound not in removal_lib.BOUNDS:
        raise ValueError(f"bound must be one of {list(removal_lib.BOUNDS)}, got {bound!r}")
    if update not in ("guo", "gradient"):
        raise ValueError(f"update must be 'guo' or 'gradient', got {update!r}")
    if removal not in REMOVALS:
        raise ValueError(f"removal must be one of {list(REMOVALS)}, got {removal!r}")
    if distinguisher not in DISTINGUISHERS:
        raise ValueError(f"distinguisher must be one of {list(DISTINGUISHERS)}, got {distinguisher!r}")
    num_seeds = _check_count("num_seeds", num_seeds, 4)
    if num_seeds % 2:
        raise ValueError(f"num_seeds must be even (half select, half evaluate), got {num_seeds}")
    alpha = _check_alpha(alpha)
    l2_reg = api._positive("l2_reg", l2_reg)
    X64 = api._check_X(X)
    api._check_row_norms(X64)
    n = X64.shape[0]
    y64, k = api._check_y(y, n, loss, num_classes)
    shape = (X64.shape[1],) if k is None else (X64.shape[1], k)
    solver = _solver_for(shape)
    cal = calib.calibrate(
        epsilon=epsilon, delta=delta, sigma=sigma, residual_budget=residual_budget, calibration=calibration
    )
    tol = 1e-9 * math.sqrt(n) if tol is None else api._positive("tol", tol)
    Xj = jnp.asarray(X64)
    yj = jnp.asarray(y64, jnp.int32) if loss == "softmax" else jnp.asarray(y64, jnp.float64)
    if index is None:
        index = _default_index(Xj, yj, loss, l2_reg, shape, tol, solver)
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index < n:
        raise ValueError(f"index must be a row index in [0, {n}), got {index!r}")
    removed = np.zeros(n)
    removed[int(index)] = 1.0
    keep = jnp.asarray(1.0 - removed)
    removed = jnp.asarray(removed)
    max_row_norm = max(1.0, float(np.sqrt(np.sum(X64 * X64, axis=1)).max()))
    data_norm = removal_lib.spectral_norm_upper_bound(X64) if bound == "data-dependent" else math.nan

    root = _key(key)
    k_model, k_ref = jax.random.split(root)
    keys_model = jax.random.split(k_model, num_seeds)
    keys_ref = jax.random.split(k_ref, num_seeds)
    # An explicit batch_size is kept even above num_seeds (padded), so runs of any size share a compilation.
    batch = int(batch_size) if batch_size else min(num_seeds, _default_batch(shape))
    out = _run_seeds(
        keys_model, keys_ref, Xj, yj, keep, removed, l2_reg=l2_reg, sigma=cal.sigma, tol=tol, data_norm=data_norm,
        max_row_norm=max_row_norm, budget=cal.residual_budget, loss=loss, shape=shape, update=update, bound=bound,
        removal_method=removal, solver=solver, max_steps=int(max_steps), batch=batch,
    )
    published = out.published
    t_pipeline = time.perf_counter() - start

    stat_pub = _statistic(published, Xj, yj, keep, l2_reg, loss, distinguisher)
    stat_ref = _statistic(out.reference, Xj, yj, keep, l2_reg, loss, distinguisher)
    half = num_seeds // 2
    direction = stat_pub[:half].mean(0) - stat_ref[:half].mean(0)
    norm = np.linalg.norm(direction)
    direction = direction / norm if norm > 0 else np.eye(direction.size)[0]
    s_pub, s_ref = stat_pub @ direction, stat_ref @ direction
    test = epsilon_lower_bound(
        s_pub[half:], s_ref[half:], delta=cal.delta, alpha=alpha, select_a=s_pub[:half], select_b=s_ref[:half]
    )
    max_spent = float(np.max(out.residual_spent[out.within_budget])) if out.within_budget.any() else math.nan
    details = dict(
        index=int(index),
        n_train=int(n),
        num_params=int(np.prod(shape)),
        removal=removal,
        distinguisher=distinguisher,
        bound=bound,
        update=update,
        calibration=cal.calibration,
        residual_budget=cal.residual_budget,
        retrained_fraction=float(np.mean(~out.within_budget)),
        max_residual_spent=max_spent,
        max_epsilon_spent=cal.epsilon_spent(max_spent) if math.isfinite(max_spent) else math.nan,
        mean_exact_residual=float(np.mean(out.exact_residual)),
        all_converged=bool(np.all(out.converged)),
        pipeline_seconds=t_pipeline,
        batch_size=int(batch),
    )
    return EpsilonAudit(
        kind="end-to-end",
        epsilon_lb=test.epsilon_lb,
        certified_epsilon=cal.epsilon,
        delta=cal.delta,
        alpha=alpha,
        num_samples=num_seeds - half,
        num_select=half,
        test=test,
        sigma=cal.sigma,
        seconds=time.perf_counter() - start,
        details=details,
    )


# ----------------------------------------------------------------------------------------------------
# Config-driven entry point (for ``certunlearn audit CONFIG`` and the experiments runner)


AUDIT_CONFIG_DEFAULTS: dict[str, Any] = {
    # which audits to run
    "kinds": ("calibrator", "end_to_end"),
    "seed": 0,
    "alpha": 0.05,
    # the certificate
    "epsilon": 1.0,
    "delta": 1e-5,
    "calibration": "analytic",
    # calibrator audit: the Gaussian mechanism at its budget, once per sigma scale
    "calibrator_residual_budget": 1.0,
    "calibrator_num_samples": 1000,
    "calibrator_sigma_scales": (1.0, 0.5),
    "calibrator_selection": "split",
    # end-to-end audit: data, model, removal
    "dataset": "digits",
    "classes": (3, 8),
    "n_train": None,
    "data_seed": 0,
    "loss": "logistic",
    "l2_reg": 1e-2,  # at 1e-3 the default row's data-dependent bound (~0.14) exceeds the budget: all retrain
    "sigma": None,
    "residual_budget": 0.05,
    "bound": "data-dependent",
    "update": "guo",
    "index": None,
    "removal": "newton",
    "distinguisher": "gradient",
    "num_seeds": 1000,
    "batch_size": None,
}


def audit_config_defaults() -> dict[str, Any]:
    """A fresh copy of :data:`AUDIT_CONFIG_DEFAULTS` (a plain dict a config file can override)."""
    return dict(AUDIT_CONFIG_DEFAULTS)


def run_audit(config: Mapping[str, Any] | None = None, **overrides) -> dict[str, Any]:
    """Runs the audits a config asks for and returns tidy rows.

    Args:
      config: a mapping with keys of :data:`AUDIT_CONFIG_DEFAULTS` (missing keys take the defaults; unknown
        keys raise). ``sigma`` and ``residual_budget``: at most one non-None (set the other to None).
      **overrides: applied on top of ``config``.

    Returns:
      ``{"config": the resolved config, "calibrator": [row per sigma scale], "end_to_end": [row]}`` where
      each row is :meth:`EpsilonAudit.as_dict`.
    """
    cfg = audit_config_defaults()
    given = dict(config or {})
    given.update(overrides)
    unknown = sorted(set(given) - set(cfg))
    if unknown:
        raise ValueError(f"unknown audit config keys {unknown}; known keys: {sorted(cfg)}")
    cfg.update(given)
    if cfg["sigma"] is not None and cfg["residual_budget"] is not None and "residual_budget" not in given:
        cfg["residual_budget"] = None  # a config that sets sigma means it
    kinds = tuple(cfg["kinds"])
    bad = sorted(set(kinds) - {"calibrator", "end_to_end"})
    if bad:
        raise ValueError(f"kinds must be among ['calibrator', 'end_to_end'], got {bad}")
    root = jax.random.key(int(cfg["seed"]))
    k_cal, k_e2e = jax.random.split(root)
    result: dict[str, Any] = {"config": cfg, "calibrator": [], "end_to_end": []}
    if "calibrator" in kinds:
        for i, scale in enumerate(cfg["calibrator_sigma_scales"]):
            r = audit_calibrator(
                epsilon=cfg["epsilon"], delta=cfg["delta"], residual_budget=cfg["calibrator_residual_budget"],
                calibration=cfg["calibration"], sigma_scale=float(scale),
                num_samples=int(cfg["calibrator_num_samples"]), alpha=cfg["alpha"], selection=cfg["calibrator_selection"], key=jax.random.fold_in(k_cal, i),
            )
            result["calibrator"].append(r.as_dict())
    if "end_to_end" in kinds:
        from certunlearn import data as data_module

        classes = cfg["classes"]
        ds = data_module.load(
            cfg["dataset"], classes=None if classes is None else tuple(classes), n_train=cfg["n_train"],
            seed=int(cfg["data_seed"]),
        )
        r = audit_end_to_end(
            ds.X_train, ds.y_train, index=cfg["index"], loss=cfg["loss"], l2_reg=cfg["l2_reg"],
            epsilon=cfg["epsilon"], delta=cfg["delta"], sigma=cfg["sigma"], residual_budget=cfg["residual_budget"],
            calibration=cfg["calibration"], bound=cfg["bound"], update=cfg["update"], removal=cfg["removal"],
            distinguisher=cfg["distinguisher"], num_seeds=int(cfg["num_seeds"]), alpha=cfg["alpha"], key=k_e2e,
            batch_size=cfg["batch_size"], num_classes=ds.num_classes if cfg["loss"] == "softmax" else None,
        )
        result["end_to_end"].append(dict(r.as_dict(), dataset=cfg["dataset"]))
    return result
