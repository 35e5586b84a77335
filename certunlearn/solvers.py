"""Linear solvers for ``H x = b`` with a symmetric positive-definite ``H``.

Both solvers return a :class:`SolveResult` with a ``converged`` flag, so that code under ``jit`` can
report a failed solve instead of raising, and the certificate layer can refuse to certify from it.
A solver sees only a matrix or a ``matvec`` callable, never a loss (as in jaxopt's ``solve(matvec, b)``).

* :func:`cholesky_solve`: dense, ``O(p^3)``; never forms an explicit inverse.
* :func:`conjugate_gradient`: matrix-free, one ``matvec`` per iteration, optional preconditioner and warm
  start. Unlike ``jax.scipy.sparse.linalg.cg`` it reports its iteration count and final residual.

References:
  Hestenes & Stiefel, Methods of conjugate gradients for solving linear systems, 1952.
  Golub & Van Loan, Matrix Computations, 4th ed., Sec. 4.2 (Cholesky) and 11.3 (CG).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

Array = jax.Array

__all__ = ["SolveResult", "cholesky_solve", "conjugate_gradient"]


class SolveResult(NamedTuple):
    """Result of a linear solve.

    Attributes:
      x: the solution, shape of ``b``.
      converged: True iff ``x`` is finite and ``||A x - b|| <= rtol * ||b|| + atol`` (CG), or the
        factorisation succeeded and ``x`` is finite (Cholesky).
      steps: iterations used (1 for Cholesky).
      residual: ``||A x - b||_2`` as computed by the solver.
    """

    x: Array
    converged: Array
    steps: Array
    residual: Array


def _norm(v):
    return jnp.sqrt(jnp.sum(v * v))


def cholesky_solve(matrix: Array, b: Array) -> SolveResult:
    """Solves ``matrix @ x = b`` by a Cholesky factorisation (``matrix`` symmetric positive definite).

    If ``matrix`` is not numerically positive definite the factor contains NaNs and ``converged`` is
    False. ``residual`` is ``||matrix @ x - b||``, an O(p^2) check.

    >>> import jax.numpy as jnp
    >>> r = cholesky_solve(jnp.array([[4.0, 1.0], [1.0, 3.0]]), jnp.array([1.0, 2.0]))
    >>> [round(v, 6) for v in r.x.tolist()], bool(r.converged)
    ([0.090909, 0.636364], True)
    """
    factor = jax.scipy.linalg.cho_factor(matrix, lower=True)
    x = jax.scipy.linalg.cho_solve(factor, b)
    residual = _norm(matrix @ x - b)
    converged = jnp.all(jnp.isfinite(x)) & jnp.isfinite(residual)
    return SolveResult(x=x, converged=converged, steps=jnp.asarray(1, jnp.int32), residual=residual)


def conjugate_gradient(
    matvec: Callable[[Array], Array],
    b: Array,
    *,
    x0: Array | None = None,
    rtol: float = 1e-10,
    atol: float = 0.0,
    maxiter: int | None = None,
    preconditioner: Callable[[Array], Array] | None = None,
) -> SolveResult:
    """Preconditioned conjugate gradients for ``A x = b`` with ``A`` given by ``matvec``.

    Stops when ``||r_k|| <= max(rtol * ||b||, atol)`` or after ``maxiter`` iterations (default
    ``10 * b.size``). The residual is the recursively updated one; callers that certify from the
    solution recompute ``||A x - b||`` independently (:mod:`certunlearn.removal` does).

    Args:
      matvec: ``v -> A v`` for a symmetric positive-definite ``A``; ``b`` and ``v`` may be any array shape.
      b: right-hand side.
      x0: warm start (default zeros).
      rtol, atol: relative and absolute tolerance on the residual norm.
      maxiter: iteration cap (a Python int: it is static).
      preconditioner: ``v -> M^{-1} v`` for an SPD approximation ``M`` of ``A``.

    >>> import jax.numpy as jnp
    >>> A = jnp.array([[4.0, 1.0], [1.0, 3.0]])
    >>> r = conjugate_gradient(lambda v: A @ v, jnp.array([1.0, 2.0]))
    >>> [round(v, 6) for v in r.x.tolist()], bool(r.converged), int(r.steps)
    ([0.090909, 0.636364], True, 2)
    """
    if maxiter is None:
        maxiter = 10 * b.size
    precond = preconditioner if preconditioner is not None else (lambda v: v)
    x = jnp.zeros_like(b) if x0 is None else x0
    r = b - matvec(x) if x0 is not None else b
    z = precond(r)
    p = z
    rz = jnp.sum(r * z)
    threshold = jnp.maximum(rtol * _norm(b), atol)

    def cond(state):
        _, r, _, _, k = state
        return (_norm(r) > threshold) & (k < maxiter)

    def body(state):
        x, r, p, rz, k = state
        ap = matvec(p)
        alpha = rz / jnp.sum(p * ap)
        x = x + alpha * p
        r = r - alpha * ap
        z = precond(r)
        rz_new = jnp.sum(r * z)
        p = z + (rz_new / rz) * p
        return x, r, p, rz_new, k + 1

    x, r, _, _, k = jax.lax.while_loop(cond, body, (x, r, p, rz, jnp.asarray(0, jnp.int32)))
    residual = _norm(r)
    converged = (residual <= threshold) & jnp.all(jnp.isfinite(x))
    return SolveResult(x=x, converged=converged, steps=k, residual=residual)
