"""Networks as pairs of pure functions: ``Model(init, apply)`` with flax nnx behind ``nnx.split``/``nnx.merge``.

A :class:`Model` holds three pure functions over a *params* pytree, a plain nested ``dict`` of arrays
(``nnx.to_pure_dict``), so params work with ``jax.flatten_util.ravel_pytree``, ``jax.vmap``,
``jax.jit``, ``jax.grad`` and Hessian-vector products, and can be stored with any pytree tool:

* ``init(key, sample_input) -> params``: deterministic given ``key``; only the trailing dimension of
  ``sample_input`` (the row width) is read;
* ``apply(params, X) -> outputs``: ``X`` holds flat rows, shape ``(n, d)`` (images are flat rows of
  ``prod(image_shape)`` pixels; the CNN reshapes them); outputs are ``(n, num_outputs)`` logits;
* ``features(params, X) -> phi``: the penultimate-layer representation, shape ``(n, width)``, used as the
  input of a certified convex head (:mod:`certunlearn.head`).

The flax module is rebuilt abstractly (``nnx.eval_shape``, no arrays allocated) from the row width and
merged with the params inside ``apply``; under ``jax.jit`` this happens once, at trace time.

Example:
    >>> import jax, jax.numpy as jnp
    >>> net = mlp((8,), num_outputs=3)
    >>> params = net.init(jax.random.key(0), jnp.zeros((1, 5)))
    >>> net.apply(params, jnp.ones((2, 5))).shape, features(net, params, jnp.ones((2, 5))).shape
    ((2, 3), (2, 8))
    >>> num_params(params)
    75
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

__all__ = ["Model", "mlp", "cnn", "features", "num_params", "ACTIVATIONS"]

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": jax.nn.relu,
    "tanh": jnp.tanh,
    "softplus": jax.nn.softplus,
    "gelu": jax.nn.gelu,
}


class Model(NamedTuple):
    """A network as pure functions over a params pytree (a nested dict of arrays).

    Attributes:
        init: ``init(key, sample_input) -> params``; deterministic given the PRNG ``key``.
        apply: ``apply(params, X) -> (n, num_outputs)`` outputs for flat rows ``X`` of shape ``(n, d)``.
        features: ``features(params, X) -> (n, width)`` penultimate-layer representation.
    """

    init: Callable[[jax.Array, jax.Array], Any]
    apply: Callable[[Any, jax.Array], jax.Array]
    features: Callable[[Any, jax.Array], jax.Array]


def _activation(activation: str) -> Callable[[jax.Array], jax.Array]:
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    return ACTIVATIONS[activation]


def _positive_ints(name: str, value, *, allow_empty: bool) -> tuple[int, ...]:
    try:
        out = tuple(int(v) for v in value)
    except TypeError:
        raise ValueError(f"{name} must be a tuple of positive ints, got {value!r}") from None
    if (not out and not allow_empty) or any(v <= 0 for v in out) or any(
            int(v) != v for v in value):
        raise ValueError(f"{name} must be a {'' if allow_empty else 'non-empty '}tuple of positive ints, "
                         f"got {value!r}")
    return out


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


# Older flax (< 0.12) stores plain lists of modules as attributes; nnx.List is the newer spelling.
_List = getattr(nnx, "List", list)


def _pure_dict(state):
    return nnx.to_pure_dict(state) if hasattr(nnx, "to_pure_dict") else state.to_pure_dict()


class _MLP(nnx.Module):
    def __init__(self, in_features, hidden, num_outputs, activation, dtype, *, rngs):
        sizes = (in_features, *hidden)
        self.hidden = _List([nnx.Linear(a, b, param_dtype=dtype, dtype=dtype, rngs=rngs)
                                for a, b in zip(sizes[:-1], sizes[1:])])
        self.head = nnx.Linear(sizes[-1], num_outputs, param_dtype=dtype, dtype=dtype, rngs=rngs)
        self.activation = activation

    def features(self, x):
        for layer in self.hidden:
            x = ACTIVATIONS[self.activation](layer(x))
        return x

    def __call__(self, x):
        return self.head(self.features(x))


class _CNN(nnx.Module):
    def __init__(self, image_shape, channels, hidden, num_outputs, activation, dtype, *, rngs):
        height, width, depth = image_shape
        chans = (depth, *channels)
        self.convs = _List([nnx.Conv(a, b, kernel_size=(3, 3), padding="SAME", param_dtype=dtype,
                                        dtype=dtype, rngs=rngs) for a, b in zip(chans[:-1], chans[1:])])
        for _ in channels:  # each block halves the spatial size (2x2 average pooling, floor)
            height, width = height // 2, width // 2
        self.dense = nnx.Linear(height * width * chans[-1], hidden, param_dtype=dtype, dtype=dtype, rngs=rngs)
        self.head = nnx.Linear(hidden, num_outputs, param_dtype=dtype, dtype=dtype, rngs=rngs)
        self.image_shape = tuple(image_shape)
        self.activation = activation

    def features(self, x):
        act = ACTIVATIONS[self.activation]
        x = x.reshape((x.shape[0], *self.image_shape))
        for conv in self.convs:
            x = nnx.avg_pool(act(conv(x)), window_shape=(2, 2), strides=(2, 2))
        return act(self.dense(x.reshape((x.shape[0], -1))))

    def __call__(self, x):
        return self.head(self.features(x))


def _wrap(build: Callable[[int, nnx.Rngs], nnx.Module], check_width: Callable[[int], None]) -> Model:
    """Turn ``build(in_features, rngs) -> nnx.Module`` into a :class:`Model` of pure functions."""

    @functools.lru_cache(maxsize=32)
    def skeleton(in_features: int):
        graphdef, abstract = nnx.split(nnx.eval_shape(lambda: build(in_features, nnx.Rngs(0))))
        return graphdef, abstract

    def _module(params, X):
        X = jnp.asarray(X)
        if X.ndim != 2:
            raise ValueError(f"X must be a (n, d) matrix of flat rows, got shape {X.shape}")
        check_width(X.shape[1])
        graphdef, abstract = skeleton(int(X.shape[1]))
        state = jax.tree.map(lambda a: a, abstract)  # a fresh copy: replace_by_pure_dict writes in place
        nnx.replace_by_pure_dict(state, params)
        return nnx.merge(graphdef, state), X

    @functools.partial(jax.jit, static_argnums=1)
    def init_width(key, width: int):
        return _pure_dict(nnx.split(build(width, nnx.Rngs(params=key)))[1])

    def init(key, sample_input):
        width = int(np.shape(sample_input)[-1])  # only the row width matters: one compile per width
        check_width(width)
        return init_width(key, width)

    def apply(params, X):
        module, X = _module(params, X)
        return module(X)

    def feats(params, X):
        module, X = _module(params, X)
        return module.features(X)

    # Compiled once per input shape: eager nnx construction costs ~1 s per call, a compiled call microseconds.
    return Model(init=init, apply=jax.jit(apply), features=jax.jit(feats))


def mlp(hidden=(128,), num_outputs: int = 10, *, activation: str = "relu", dtype=jnp.float32) -> Model:
    """A fully connected network: ``x -> act(W_1 x + b_1) -> ... -> W_out h + b_out``.

    Args:
        hidden: widths of the hidden layers; ``()`` gives a linear model whose features are the inputs.
        num_outputs: output width (logits).
        activation: ``"relu"``, ``"tanh"``, ``"softplus"`` or ``"gelu"``.
        dtype: parameter and computation dtype.

    Returns:
        A :class:`Model`; ``features`` returns the last hidden layer's activations.

    Raises:
        ValueError: on an unknown activation or non-positive widths.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> p = mlp((4,), 2).init(jax.random.key(1), jnp.zeros((1, 3)))
        >>> sorted(p), p["hidden"][0]["kernel"].shape
        (['head', 'hidden'], (3, 4))
    """
    hidden = _positive_ints("hidden", hidden, allow_empty=True)
    num_outputs = _positive_int("num_outputs", num_outputs)
    _activation(activation)
    return _wrap(lambda width, rngs: _MLP(width, hidden, num_outputs, activation, dtype, rngs=rngs),
                 lambda width: None)


def cnn(channels=(16, 32), num_outputs: int = 10, *, image_shape=(28, 28), hidden: int = 128,
        activation: str = "relu", dtype=jnp.float32) -> Model:
    """A small convolutional network on flat image rows.

    Each block is a 3x3 'SAME' convolution, the activation and 2x2 average pooling (stride 2); then a
    dense layer of width ``hidden`` with the activation (the features) and a linear output layer.

    Args:
        channels: output channels of the convolution blocks.
        num_outputs: output width (logits).
        image_shape: ``(height, width)`` or ``(height, width, channels)``; rows have ``prod(image_shape)``
            entries, reshaped channels-last.
        hidden: width of the dense feature layer.
        activation: ``"relu"``, ``"tanh"``, ``"softplus"`` or ``"gelu"``.
        dtype: parameter and computation dtype.

    Returns:
        A :class:`Model`; ``features`` returns the dense layer's activations, shape ``(n, hidden)``.

    Raises:
        ValueError: on an unknown activation, non-positive sizes, or rows whose width is not
            ``prod(image_shape)``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> net = cnn((2,), 3, image_shape=(4, 4), hidden=5)
        >>> p = net.init(jax.random.key(0), jnp.zeros((1, 16)))
        >>> net.apply(p, jnp.ones((2, 16))).shape
        (2, 3)
    """
    channels = _positive_ints("channels", channels, allow_empty=False)
    image_shape = _positive_ints("image_shape", image_shape, allow_empty=False)
    if len(image_shape) == 2:
        image_shape = (*image_shape, 1)
    if len(image_shape) != 3:
        raise ValueError(f"image_shape must be (height, width) or (height, width, channels), got {image_shape}")
    if min(image_shape[:2]) < 2 ** len(channels):
        raise ValueError(f"image_shape {image_shape[:2]} is too small for {len(channels)} pooling blocks; "
                         f"use fewer channels entries or larger images")
    num_outputs = _positive_int("num_outputs", num_outputs)
    hidden = _positive_int("hidden", hidden)
    _activation(activation)
    pixels = math.prod(image_shape)

    def check_width(width):
        if width != pixels:
            raise ValueError(f"rows must have prod(image_shape) = {pixels} entries for image_shape "
                             f"{image_shape}, got {width}")

    return _wrap(lambda width, rngs: _CNN(image_shape, channels, hidden, num_outputs, activation, dtype,
                                          rngs=rngs), check_width)


def features(model: Model, params, X) -> jax.Array:
    """The penultimate-layer representation ``phi(X)`` of ``model`` at ``params``, shape ``(n, width)``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> net = mlp((), 2)
        >>> p = net.init(jax.random.key(0), jnp.zeros((1, 3)))
        >>> features(net, p, jnp.ones((1, 3))).tolist()   # no hidden layer: the inputs
        [[1.0, 1.0, 1.0]]
    """
    return model.features(params, X)


def num_params(params) -> int:
    """The number of scalar parameters in a params pytree.

    Example:
        >>> num_params({"a": jnp.zeros((2, 3)), "b": [jnp.zeros(4)]})
        10
    """
    return int(sum(np.size(leaf) for leaf in jax.tree_util.tree_leaves(params)))
