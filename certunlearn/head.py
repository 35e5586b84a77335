"""A certified convex head on a frozen feature extractor (Guo et al. 2020, settings 2 and 3).

The pipeline is ``x -> phi(x) -> softmax/logistic head``:

* the **extractor** ``f`` (a :class:`certunlearn.models.Model`) is trained with optax on data that the
  unlearning requests never touch: a *public* part of the data, disjoint from the private rows
  (:func:`split_public`, :func:`train_extractor`), or the private rows themselves under DP-SGD
  (``dp=DPSGD(...)``: per-example clipping, Gaussian noise, Poisson sampling; epsilon from
  ``dp_accounting``);
* the **features** are ``phi(x) = normalize(f_pen(x) - mu)``, the penultimate layer minus the mean of
  the *public* features ``mu`` (zero when there are none), scaled to ``||phi(x)||_2 <= 1`` with
  :func:`certunlearn.data.normalize_rows` (exactly what :func:`certunlearn.api.fit` requires);
* the **head** is :func:`certunlearn.api.fit` on ``(phi(X_private), y_private)`` and every removal is
  :func:`certunlearn.api.remove` on those features, unchanged: same sum convention
  ``L_b(w) = sum_i l(w; phi(x_i), y_i) + lambda n/2 ||w||^2 + <b, w>``, same residual bounds, same
  ledger, same retraining with fresh noise when the budget runs out.

What is certified (:meth:`CertifiedPipeline.certificate`):

* extractor trained on public data: the head's ``(epsilon, delta)`` certificate covers the whole
  pipeline **under the assumption** that the extractor's training rows (and the statistics used for
  preprocessing and ``mu``) are disjoint from, and independent of, the private rows. The object cannot
  prove this; :func:`fit_pipeline` checks that the row indices of a :class:`Split` are disjoint, and the
  printout states the assumption either way.
* extractor trained with DP-SGD on the private rows: ``A`` (extractor) is ``(eps_1, delta_1)``-DP for
  one row; for ``m`` removed rows group privacy gives ``(m eps_1, m e^{(m-1) eps_1} delta_1)``. For
  every fixed extractor the head removal is ``(eps_2, delta_2)``-indistinguishable from retraining the
  head, so the published pair (extractor, head) after removal is
  ``(eps_1' + eps_2, max(e^{eps_2} delta_1' + delta_2, e^{eps_1'} delta_2 + delta_1'))``-indistinguishable
  from (extractor trained on ``D'``, head retrained on ``D'``) (chain the two inequalities; the head
  noise is independent of the extractor's). The extractor itself is never "unlearned": its guarantee is
  DP, and it is spent once, not per removal (except through group privacy).

References:
  Guo, Goldstein, Hannun, van der Maaten. Certified Data Removal from Machine Learning Models. ICML 2020,
  arXiv:1911.03030 (Sec. 4.2 / 5: public extractor, DP extractor).
  Abadi et al. Deep Learning with Differential Privacy. CCS 2016, arXiv:1607.00133 (DP-SGD).
  Mironov, Talwar, Zhang. Renyi Differential Privacy of the Sampled Gaussian Mechanism. arXiv:1908.10530.

Example (a few seconds; the tests run the same steps)::

    import jax
    from certunlearn import data, head, models
    split = head.split_public(data.load("digits", normalize=False), fraction=0.5, key=jax.random.key(0))
    pipe = head.fit_pipeline(models.mlp((64,), 10), split, key=jax.random.key(1), extractor_steps=200,
                             l2_reg=1e-2, sigma=1.0, epsilon=1.0, delta=1e-4)
    pipe2, report = pipe.remove([0])            # exactly certunlearn.api.remove on the head
    print(pipe2.certificate())                  # the head's certificate and the stated assumption
    print(pipe2.score(split.test_X, split.test_y))

>>> group_privacy(0.5, 1e-6, 0)   # removing nothing costs nothing
(0.0, 0.0)
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from certunlearn import api, data
from certunlearn.models import Model

__all__ = [
    "Split",
    "split_public",
    "DPSGD",
    "DPGuarantee",
    "Extractor",
    "dp_sgd_epsilon",
    "group_privacy",
    "compose",
    "private_gradient",
    "train_extractor",
    "feature_mean",
    "head_features",
    "fit_head",
    "fit_pipeline",
    "PipelineCertificate",
    "CertifiedPipeline",
]


# ----------------------------------------------------------------------------------------------------
# Public / private split


class Split(NamedTuple):
    """A public/private partition of a data set's training rows, preprocessed with public statistics.

    Attributes:
        public_X, public_y: rows for the extractor (never removed, never certified).
        private_X, private_y: rows of the certified head; removal indices refer to these rows.
        test_X, test_y: the data set's test rows, preprocessed like the others.
        public_index, private_index: positions of the rows in ``dataset.X_train`` (disjoint, sorted).
    """

    public_X: np.ndarray
    public_y: np.ndarray
    private_X: np.ndarray
    private_y: np.ndarray
    test_X: np.ndarray
    test_y: np.ndarray
    public_index: np.ndarray
    private_index: np.ndarray


_check_key = api._check_key  # one validator for every key argument


def _fraction(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) or not (
            0.0 < float(value) < 1.0):
        raise ValueError(f"{name} must be a number in (0, 1), got {value!r}")
    return float(value)


def _preprocess(X, *, scale, mean):
    return data.normalize_rows((np.asarray(X, np.float64) / scale) - mean, dtype="float64")


def split_public(dataset: data.Dataset, *, fraction: float, key, preprocess: bool = True,
                 max_public: int | None = None) -> Split:
    """Splits a data set's training rows into a public part (for the extractor) and a private part.

    A uniformly random ``round(fraction n)`` of the ``n`` training rows (permutation drawn from ``key``)
    becomes public, the rest private. With ``preprocess=True`` every row (public, private, test) is mapped
    to ``normalize_rows((x / s - m))`` with ``s = max |x|`` and ``m`` the mean, both over the *public* rows
    only, so nothing about the private rows leaks into the feature map. (A data set loaded with
    ``normalize=True`` was already centred with the mean of *all* its training rows; load it with
    ``normalize=False`` for a strictly public preprocessing.)

    Args:
        dataset: a :class:`certunlearn.data.Dataset` (not modified).
        fraction: the public share of the training rows, in (0, 1).
        key: PRNG key of the permutation.
        preprocess: rescale, centre and row-normalise with public statistics (else rows as given).
        max_public: keep at most this many public rows (the rest of the public part is dropped, not
            made private), e.g. to keep extractor training small.

    Returns:
        A :class:`Split`.

    Raises:
        ValueError: on a bad ``fraction``/``key``/``max_public``, or if either part would be empty.

    Example:
        >>> import jax
        >>> ds = data.load("digits", classes=(3, 8))
        >>> s = split_public(ds, fraction=0.25, key=jax.random.key(0))
        >>> s.public_X.shape[0] + s.private_X.shape[0] == ds.n_train
        True
        >>> bool(set(s.public_index) & set(s.private_index))
        False
    """
    if not isinstance(dataset, data.Dataset):
        raise ValueError(f"dataset must be a certunlearn.data.Dataset, got {type(dataset).__name__}")
    fraction = _fraction("fraction", fraction)
    key = _check_key(key)
    n = dataset.n_train
    n_public = int(round(fraction * n))
    if n_public < 1 or n_public >= n - 1:
        raise ValueError(f"fraction={fraction} of {n} training rows leaves an empty public or private part "
                         f"(public {n_public}); choose a fraction between {1 / n:.3g} and {1 - 2 / n:.3g}")
    perm = np.asarray(jax.random.permutation(key, n))
    public = np.sort(perm[:n_public])
    private = np.sort(perm[n_public:])
    if max_public is not None:
        if isinstance(max_public, bool) or not isinstance(max_public, (int, np.integer)) or max_public < 1:
            raise ValueError(f"max_public must be a positive int or None, got {max_public!r}")
        public = np.sort(perm[: min(n_public, int(max_public))])
    X, y = dataset.X_train, dataset.y_train
    if preprocess:
        Xp = np.asarray(X[public], np.float64)
        scale = float(np.max(np.abs(Xp))) or 1.0
        mean = (Xp / scale).mean(axis=0)
        prep = lambda A: _preprocess(A, scale=scale, mean=mean)
    else:
        prep = lambda A: np.array(A, np.float64)
    return Split(prep(X[public]), np.array(y[public]), prep(X[private]), np.array(y[private]),
                 prep(dataset.X_test), np.array(dataset.y_test), public, private)


# ----------------------------------------------------------------------------------------------------
# DP-SGD accounting


@dataclasses.dataclass(frozen=True)
class DPSGD:
    """DP-SGD settings (Abadi et al. 2016) for :func:`train_extractor`.

    Each step samples every row independently with probability ``sampling_rate`` (Poisson sampling),
    clips each per-example gradient to L2 norm ``clip_norm``, sums, adds ``N(0, (noise_multiplier
    clip_norm)^2 I)`` and divides by the expected batch size ``sampling_rate n``; the optax optimiser then
    post-processes this (privacy is unaffected). Neighbouring relation: add/remove one row.

    Attributes:
        clip_norm: ``C > 0``.
        noise_multiplier: ``z > 0`` (noise std over ``C``).
        delta: the ``delta`` at which epsilon is reported, in (0, 1).
        accountant: "rdp" (Renyi DP, Mironov et al.) or "pld" (privacy loss distributions; tighter).
    """

    clip_norm: float = 1.0
    noise_multiplier: float = 1.0
    delta: float = 1e-5
    accountant: str = "rdp"

    def __post_init__(self):
        for name in ("clip_norm", "noise_multiplier"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) or not (
                    math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        _fraction("delta", self.delta)
        if self.accountant not in ("rdp", "pld"):
            raise ValueError(f"accountant must be 'rdp' or 'pld', got {self.accountant!r}")


class DPGuarantee(NamedTuple):
    """The (epsilon, delta)-DP guarantee of a DP-SGD run (add/remove one row).

    Attributes:
        epsilon, delta: the guarantee. noise_multiplier, clip_norm, sampling_rate, steps: the run.
        accountant: "rdp" or "pld" (``dp_accounting``).
    """

    epsilon: float
    delta: float
    noise_multiplier: float
    clip_norm: float
    sampling_rate: float
    steps: int
    accountant: str


def dp_sgd_epsilon(*, noise_multiplier: float, sampling_rate: float, steps: int, delta: float,
                   accountant: str = "rdp") -> float:
    """Epsilon of ``steps`` Poisson-subsampled Gaussian steps, from ``dp_accounting``.

    The event is ``SelfComposedDpEvent(PoissonSampledDpEvent(q, GaussianDpEvent(z)), T)`` (sensitivity
    1 after clipping, add/remove-one adjacency), accounted with ``dp_accounting.rdp.RdpAccountant`` or
    ``dp_accounting.pld.PLDAccountant``.

    Args:
        noise_multiplier: ``z > 0``. sampling_rate: ``q`` in (0, 1]. steps: ``T >= 1``.
        delta: in (0, 1). accountant: "rdp" or "pld".

    Returns:
        epsilon (float; ``inf`` if the accountant cannot certify).

    Raises:
        ValueError: on an out-of-range argument.

    Example:
        >>> round(dp_sgd_epsilon(noise_multiplier=1.0, sampling_rate=0.01, steps=100, delta=1e-5), 2)
        1.21
    """
    DPSGD(1.0, noise_multiplier, delta, accountant)  # validates
    if isinstance(sampling_rate, bool) or not (0.0 < float(sampling_rate) <= 1.0):
        raise ValueError(f"sampling_rate must be in (0, 1], got {sampling_rate!r}")
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    import dp_accounting  # lazy: ~1 s to import

    event = dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(float(sampling_rate),
                                            dp_accounting.GaussianDpEvent(float(noise_multiplier))), int(steps))
    if accountant == "rdp":
        acc = dp_accounting.rdp.RdpAccountant()
    else:
        acc = dp_accounting.pld.PLDAccountant()
    acc.compose(event)
    return float(acc.get_epsilon(float(delta)))


def group_privacy(epsilon: float, delta: float, group_size: int) -> tuple[float, float]:
    """``(k eps, k e^{(k-1) eps} delta)``: an (eps, delta)-DP guarantee for groups of ``k`` rows.

    Zero rows cost nothing: ``group_privacy(e, d, 0) == (0.0, 0.0)``.

    Example:
        >>> e, d = group_privacy(0.5, 1e-6, 2)
        >>> e, round(d, 9)
        (1.0, 3.297e-06)
    """
    if isinstance(group_size, bool) or not isinstance(group_size, (int, np.integer)) or group_size < 0:
        raise ValueError(f"group_size must be an int >= 0, got {group_size!r}")
    k = int(group_size)
    if k == 0:
        return 0.0, 0.0
    return k * epsilon, min(1.0, k * math.exp((k - 1) * epsilon) * delta)


def compose(extractor: tuple[float, float], head: tuple[float, float]) -> tuple[float, float]:
    """(epsilon, delta) of (DP extractor, certified head) against retraining both (module docstring).

    ``(e1 + e2, max(e^{e2} d1 + d2, e^{e1} d2 + d1))`` for an ``(e1, d1)``-DP extractor and an
    ``(e2, d2)``-certified head removal.

    Example:
        >>> e, d = compose((0.5, 1e-6), (1.0, 1e-5))
        >>> e, round(d, 8)
        (1.5, 1.749e-05)
    """
    (e1, d1), (e2, d2) = extractor, head
    return e1 + e2, min(1.0, max(math.exp(e2) * d1 + d2, math.exp(e1) * d2 + d1))


# ----------------------------------------------------------------------------------------------------
# Extractor training


class Extractor(NamedTuple):
    """A trained feature extractor.

    Attributes:
        params: the model's params pytree.
        losses: (steps,) mean training cross-entropy per step (DP runs: on the sampled batch, before
            clipping; for diagnostics only, it is not privatised).
        rows: number of training rows the extractor saw.
        privacy: the :class:`DPGuarantee` of a DP-SGD run, or None (non-private training).
    """

    params: Any
    losses: np.ndarray
    rows: int
    privacy: DPGuarantee | None


def _labels_for_extractor(y, num_outputs: int) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"y must be a 1-D label vector, got shape {y.shape}")
    if np.all(np.isin(y, (-1, 1))) and not np.issubdtype(y.dtype, np.integer):
        y = np.where(y > 0, 0, 1)  # binary +-1 (data.load convention: +1 is classes[0])
    if not (np.issubdtype(y.dtype, np.integer) or np.all(np.mod(y, 1) == 0)):
        raise ValueError("y must hold integer class labels 0..K-1 (or +-1 for a binary task)")
    y = y.astype(np.int32)
    if y.size and (y.min() < 0 or y.max() >= num_outputs):
        raise ValueError(f"y must hold labels in 0..{num_outputs - 1} (the model's outputs), got "
                         f"{int(y.min())}..{int(y.max())}; build the model with num_outputs={int(y.max()) + 1}")
    return y


def _cross_entropy(model: Model, params, X, y):
    return optax.softmax_cross_entropy_with_integer_labels(model.apply(params, X), y)


def private_gradient(model: Model, params, X, y, weights, *, key, clip_norm: float, noise_std: float,
                     expected_batch: float):
    """One DP-SGD gradient: ``(sum_i w_i clip(g_i) + N(0, noise_std^2 I)) / expected_batch``.

    ``g_i`` is the gradient of row i's softmax cross-entropy, ``clip(g) = g min(1, C / ||g||)`` over the
    whole params pytree (global L2 norm), ``w_i`` in {0, 1} marks real rows (0 = padding). Pure and jittable.

    Returns:
        ``(gradient pytree, mean loss of the weighted rows)``.

    Example::

        g, loss = private_gradient(net, params, X_batch, y_batch, weights, key=key, clip_norm=1.0,
                                   noise_std=1.1, expected_batch=q * n)
    """
    def one(x, label):
        return jax.grad(lambda p: _cross_entropy(model, p, x[None], label[None])[0])(params)

    X, y, weights = jnp.asarray(X), jnp.asarray(y), jnp.asarray(weights)
    grads = jax.vmap(one)(X, y)
    flat = jax.vmap(lambda g: ravel_pytree(g)[0])(grads)
    norms = jnp.linalg.norm(flat, axis=1)
    factor = weights * jnp.minimum(1.0, clip_norm / jnp.maximum(norms, 1e-30))
    summed = jax.tree.map(lambda g: jnp.tensordot(factor.astype(g.dtype), g, axes=1), grads)
    leaves, treedef = jax.tree.flatten(summed)
    keys = jax.random.split(key, len(leaves))
    noisy = [(g + noise_std * jax.random.normal(k, g.shape, g.dtype)) / expected_batch for g, k in zip(leaves, keys)]
    loss = jnp.sum(weights * _cross_entropy(model, params, X, y)) / jnp.maximum(weights.sum(), 1)
    return jax.tree.unflatten(treedef, noisy), loss


def _optimizer(learning_rate: float, weight_decay: float):
    return optax.adamw(learning_rate, weight_decay=weight_decay) if weight_decay else optax.adam(learning_rate)


@functools.partial(jax.jit, static_argnames=("model", "batch", "learning_rate", "weight_decay"))
def _train_scan(params, X, y, keys, *, model, batch, learning_rate, weight_decay):
    # Module level and keyed on the (hashable) model: a second run with the same shapes reuses the compile.
    opt = _optimizer(learning_rate, weight_decay)
    n = X.shape[0]

    def body(carry, step_key):
        params, opt_state = carry
        rows = jax.random.choice(step_key, n, (batch,), replace=False)
        loss, grads = jax.value_and_grad(lambda p: _cross_entropy(model, p, X[rows], y[rows]).mean())(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    (params, _), losses = jax.lax.scan(body, (params, opt.init(params)), keys)
    return params, losses


def train_extractor(model: Model, X, y, *, key, steps: int = 500, batch_size: int = 128,
                    learning_rate: float = 1e-3, weight_decay: float = 0.0, dp: DPSGD | None = None) -> Extractor:
    """Trains ``model`` on ``(X, y)`` with optax (Adam/AdamW) on the mean softmax cross-entropy.

    Non-private: ``steps`` minibatches of ``batch_size`` rows drawn without replacement from ``key``,
    all compiled into one ``lax.scan``. With ``dp``: DP-SGD (:class:`DPSGD`) with Poisson sampling rate
    ``q = batch_size / n``; the sampled rows are padded with weight-0 rows to a multiple of 64 so that
    shapes stay static; epsilon is reported by :func:`dp_sgd_epsilon`.

    Args:
        model: a :class:`certunlearn.models.Model` whose outputs are class logits.
        X: (n, d) rows. y: (n,) labels 0..K-1 (or +-1: +1 -> 0, -1 -> 1).
        key: PRNG key for the initialisation, the batches and the DP noise (deterministic given it).
        steps, batch_size, learning_rate, weight_decay: optimiser settings.
        dp: DP-SGD settings, or None.

    Returns:
        An :class:`Extractor`.

    Raises:
        ValueError: on bad arguments or labels outside the model's outputs.

    Example::

        extractor = train_extractor(models.cnn(), split.public_X, split.public_y, key=jax.random.key(0))
        private = train_extractor(models.mlp(), X, y, key=jax.random.key(0), dp=DPSGD(noise_multiplier=1.1))
        print(private.privacy.epsilon)
    """
    key = _check_key(key)
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[0] < 1:
        raise ValueError(f"X must be a non-empty (n, d) matrix, got shape {X.shape}")
    n = X.shape[0]
    for name, value in (("steps", steps), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    for name, value, allow_zero in (("learning_rate", learning_rate, False), ("weight_decay", weight_decay, True)):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) or not (
                math.isfinite(value) and (value >= 0 if allow_zero else value > 0)):
            raise ValueError(f"{name} must be a finite number {'>= 0' if allow_zero else '> 0'}, got {value!r}")
    if dp is not None and not isinstance(dp, DPSGD):
        raise ValueError(f"dp must be a certunlearn.head.DPSGD or None, got {type(dp).__name__}")
    init_key, batch_key, noise_key = jax.random.split(key, 3)
    params = model.init(init_key, X[:1])
    dtype = jax.tree_util.tree_leaves(params)[0].dtype  # the model's dtype (models.mlp(..., dtype=...))
    Xj = jnp.asarray(X, dtype)
    num_outputs = int(model.apply(params, Xj[:1]).shape[-1])
    yj = jnp.asarray(_labels_for_extractor(y, num_outputs))
    opt = _optimizer(float(learning_rate), float(weight_decay))
    opt_state = opt.init(params)

    if dp is None:
        keys = jax.random.split(batch_key, int(steps))
        params, losses = _train_scan(params, Xj, yj, keys, model=model, batch=min(int(batch_size), n),
                                     learning_rate=float(learning_rate), weight_decay=float(weight_decay))
        return Extractor(params, np.asarray(losses), n, None)

    q = min(1.0, float(batch_size) / n)
    clip, std = float(dp.clip_norm), float(dp.clip_norm * dp.noise_multiplier)
    expected = q * n

    @jax.jit
    def dp_step(params, opt_state, rows, weights, step_key):
        grad, loss = private_gradient(model, params, Xj[rows], yj[rows], weights, key=step_key, clip_norm=clip,
                                      noise_std=std, expected_batch=expected)
        updates, opt_state = opt.update(grad, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    losses = np.empty(int(steps))
    for t in range(int(steps)):
        sample_key, step_key = jax.random.split(jax.random.fold_in(batch_key, t))
        chosen = np.flatnonzero(np.asarray(jax.random.bernoulli(sample_key, q, (n,))))
        size = max(64, -(-chosen.size // 64) * 64)  # a bucket: few compilations, exact Poisson sampling
        rows = np.zeros(size, np.int32)
        rows[: chosen.size] = chosen
        weights = np.zeros(size, np.float32)
        weights[: chosen.size] = 1.0
        params, opt_state, loss = dp_step(params, opt_state, jnp.asarray(rows), jnp.asarray(weights, dtype),
                                          jax.random.fold_in(noise_key, t))
        losses[t] = float(loss)
    epsilon = dp_sgd_epsilon(noise_multiplier=dp.noise_multiplier, sampling_rate=q, steps=int(steps),
                             delta=dp.delta, accountant=dp.accountant)
    guarantee = DPGuarantee(epsilon, float(dp.delta), float(dp.noise_multiplier), clip, q, int(steps), dp.accountant)
    return Extractor(params, losses, n, guarantee)


# ----------------------------------------------------------------------------------------------------
# Features


def _raw_features(model: Model, params, X, chunk: int = 4096) -> np.ndarray:
    X = np.asarray(X)
    dtype = jax.tree_util.tree_leaves(params)[0].dtype
    parts = [np.asarray(model.features(params, jnp.asarray(X[i:i + chunk], dtype)), np.float64)
             for i in range(0, X.shape[0], chunk)]
    return np.concatenate(parts) if parts else np.zeros((0, 0))


def feature_mean(model: Model, params, X_public) -> np.ndarray:
    """``mu``: the mean penultimate-layer representation of the *public* rows (float64)."""
    return _raw_features(model, params, X_public).mean(axis=0)


def head_features(model: Model, params, X, *, mean=None) -> np.ndarray:
    """``phi(X) = normalize_rows(f_pen(X) - mu)`` in float64; every row has ``||phi(x)||_2 <= 1``.

    Args:
        model, params: the extractor. X: (n, d) rows, preprocessed like the extractor's training rows.
        mean: ``mu`` (public statistics only, :func:`feature_mean`), or None for no centring.

    Returns:
        (n, width) float64 features, rows of norm <= 1 (zero rows stay zero).

    Example:
        >>> import jax, numpy as np
        >>> from certunlearn import models
        >>> net = models.mlp((6,), 2)
        >>> p = net.init(jax.random.key(0), np.zeros((1, 3)))
        >>> F = head_features(net, p, np.ones((4, 3)))
        >>> F.shape, bool(np.all(np.linalg.norm(F, axis=1) <= 1))
        ((4, 6), True)
    """
    F = _raw_features(model, params, X)
    if mean is not None:
        mean = np.asarray(mean, np.float64)
        if mean.shape != (F.shape[1],):
            raise ValueError(f"mean must have shape ({F.shape[1]},) (the feature width), got {mean.shape}")
        F = F - mean
    return data.normalize_rows(F, dtype="float64")


# ----------------------------------------------------------------------------------------------------
# The certified pipeline


@dataclasses.dataclass(frozen=True)
class PipelineCertificate:
    """What a :class:`CertifiedPipeline` certifies.

    Attributes:
        head: the head's :class:`certunlearn.api.Certificate` (removal of private rows, proven bounds).
        extractor: "public" (trained on rows disjoint from the private rows) or "dp-sgd".
        assumption: what the pipeline's guarantee rests on beyond the head's proofs (text).
        disjoint_verified: whether the public/private row indices were checked to be disjoint.
        extractor_privacy: the extractor's :class:`DPGuarantee` for one row (``dp-sgd`` only).
        epsilon, delta: the guarantee of the whole pipeline after ``head.removals`` removals: the head's
            for "public" (under ``assumption``); the composition with group privacy for "dp-sgd".
    """

    head: api.Certificate
    extractor: str
    assumption: str
    disjoint_verified: bool
    extractor_privacy: DPGuarantee | None
    epsilon: float
    delta: float

    @property
    def certified(self) -> bool:
        """Whether the head is within its residual budget (the assumption is not checkable)."""
        return self.head.certified

    def __str__(self) -> str:
        lines = [f"pipeline: ({self.epsilon:.4g}, {self.delta:.3g}) after {self.head.removals} removals",
                 f"  head: {self.head}"]
        if self.extractor_privacy is not None:
            p = self.extractor_privacy
            lines.append(f"  extractor: DP-SGD ({p.epsilon:.4g}, {p.delta:.3g})-DP per row [{p.accountant}, "
                         f"z={p.noise_multiplier:g}, C={p.clip_norm:g}, q={p.sampling_rate:.3g}, T={p.steps}]; "
                         "composed with the head by group privacy and chaining")
        else:
            lines.append("  extractor: trained on public rows, not unlearned")
        lines.append(f"  ASSUMPTION: {self.assumption}")
        return "\n".join(lines)


_PUBLIC_ASSUMPTION = ("the extractor's training rows and the preprocessing/feature-centring statistics come "
                      "from data disjoint from and independent of the private rows{}; the certificate covers "
                      "the head only, and the whole pipeline under this assumption")
_DP_ASSUMPTION = ("the extractor was trained with DP-SGD on data that may include the private rows; the "
                  "preprocessing/feature-centring statistics are public; group privacy over the removed rows "
                  "and the chaining composition are used (loose for many removals)")


@dataclasses.dataclass(frozen=True, eq=False)
class CertifiedPipeline:
    """A frozen extractor and a certified convex head. Immutable: :meth:`remove` returns a new one.

    Attributes:
        model: the extractor :class:`certunlearn.models.Model`.
        extractor: the :class:`Extractor` (params, training record, DP guarantee if any).
        mean: ``mu``, the public feature mean (or None).
        head: the :class:`certunlearn.api.CertifiedModel` on the private features.
        disjoint_verified: whether public and private row indices were checked to be disjoint.
    """

    model: Model
    extractor: Extractor
    mean: np.ndarray | None
    head: api.CertifiedModel
    disjoint_verified: bool = False

    def features(self, X) -> np.ndarray:
        """``phi(X)``: the head's input rows (float64, norm <= 1)."""
        return head_features(self.model, self.extractor.params, X, mean=self.mean)

    def predict(self, X):
        return self.head.predict(self.features(X))

    def score(self, X, y) -> float:
        return self.head.score(self.features(X), y)

    def remove(self, indices) -> tuple["CertifiedPipeline", api.RemovalReport]:
        """Removes private rows (indices into the private rows): exactly :func:`certunlearn.api.remove`."""
        head, report = api.remove(self.head, indices)
        return dataclasses.replace(self, head=head), report

    def certificate(self) -> PipelineCertificate:
        head = self.head.certificate()
        privacy = self.extractor.privacy
        if privacy is None:
            note = " (public/private indices checked disjoint)" if self.disjoint_verified else " (not verified)"
            return PipelineCertificate(head, "public", _PUBLIC_ASSUMPTION.format(note), self.disjoint_verified,
                                       None, head.epsilon, head.delta)
        group = group_privacy(privacy.epsilon, privacy.delta, head.removals)
        epsilon, delta = compose(group, (head.epsilon, head.delta))
        return PipelineCertificate(head, "dp-sgd", _DP_ASSUMPTION, self.disjoint_verified, privacy, epsilon, delta)


def fit_head(model: Model, extractor: Extractor, X_private, y_private, *, mean=None, disjoint_verified=False,
             **fit_kwargs) -> CertifiedPipeline:
    """Fits the certified head :func:`certunlearn.api.fit` on ``phi(X_private)``.

    Args:
        model, extractor: the frozen extractor. X_private, y_private: the private rows and labels (the
            head's loss convention: +-1 for "logistic", 0..K-1 for "softmax").
        mean: the public feature mean ``mu`` (:func:`feature_mean`), or None.
        disjoint_verified: record that the extractor's rows were checked disjoint from the private rows.
        **fit_kwargs: passed to :func:`certunlearn.api.fit` (loss, l2_reg, epsilon, delta, sigma, key, ...).

    Returns:
        A :class:`CertifiedPipeline`.
    """
    if not isinstance(extractor, Extractor):
        raise ValueError(f"extractor must be a certunlearn.head.Extractor, got {type(extractor).__name__}")
    F = head_features(model, extractor.params, X_private, mean=mean)
    head = api.fit(F, y_private, **fit_kwargs)
    return CertifiedPipeline(model, extractor, None if mean is None else np.asarray(mean, np.float64), head,
                             bool(disjoint_verified))


def fit_pipeline(model: Model, split: Split, *, key, extractor_steps: int = 500, batch_size: int = 128,
                 learning_rate: float = 1e-3, weight_decay: float = 0.0, dp: DPSGD | None = None,
                 loss: str | None = None, **fit_kwargs) -> CertifiedPipeline:
    """Trains the extractor on ``split``'s public rows (or DP-SGD on the private rows) and fits the head.

    Without ``dp``: the extractor is trained on ``split.public_X``; ``mu`` is the public feature mean; the
    split's indices are checked to be disjoint. With ``dp``: the extractor is trained with DP-SGD on the
    *private* rows (Guo et al.'s third setting), ``mu`` is still the public feature mean.

    Args:
        model: the extractor model. split: a :class:`Split`.
        key: PRNG key; split into the extractor's key and the head's noise key.
        extractor_steps, batch_size, learning_rate, weight_decay, dp: :func:`train_extractor` settings.
        loss: the head's loss; default "logistic" for +-1 labels, else "softmax".
        **fit_kwargs: passed to :func:`certunlearn.api.fit` (l2_reg, epsilon, delta, sigma, ...); ``key``
            is set here.

    Returns:
        A :class:`CertifiedPipeline`.

    Raises:
        ValueError: if the split's public and private indices overlap, or on bad arguments.
    """
    if not isinstance(split, Split):
        raise ValueError(f"split must be a certunlearn.head.Split (split_public), got {type(split).__name__}")
    if np.intersect1d(split.public_index, split.private_index).size:
        raise ValueError("split.public_index and split.private_index overlap; the extractor's rows must be "
                         "disjoint from the private rows (use split_public)")
    if "key" in fit_kwargs:
        raise ValueError("pass the PRNG key as fit_pipeline(..., key=...), not in fit_kwargs")
    key = _check_key(key)
    extractor_key, head_key = jax.random.split(key)
    if dp is None:
        X_ex, y_ex = split.public_X, split.public_y
    else:
        X_ex, y_ex = split.private_X, split.private_y
    extractor = train_extractor(model, X_ex, y_ex, key=extractor_key, steps=extractor_steps,
                                batch_size=batch_size, learning_rate=learning_rate, weight_decay=weight_decay, dp=dp)
    mean = feature_mean(model, extractor.params, split.public_X)
    if loss is None:
        y = np.asarray(split.private_y)
        loss = "logistic" if np.all(np.isin(y, (-1, 1))) and not np.issubdtype(y.dtype, np.integer) else "softmax"
    return fit_head(model, extractor, split.private_X, split.private_y, mean=mean, disjoint_verified=True,
                    loss=loss, key=head_key, **fit_kwargs)
