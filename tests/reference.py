"""Independent float64 NumPy/SciPy references for the tests (no certunlearn imports).

Sum convention: L_b(w) = sum_{i retained} l(x_i w, y_i) + lam * n / 2 ||w||^2 + <b, w>.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import scipy.special


def _z(w, X):
    return X @ w


def loss_values(w, X, y, loss):
    z = _z(w, X)
    if loss == "logistic":
        return np.logaddexp(0.0, -y * z)
    if loss == "softmax":
        return scipy.special.logsumexp(z, axis=1) - z[np.arange(len(y)), y]
    return 0.5 * (z - y) ** 2


def objective(w, X, y, mask, b, lam, loss):
    n = mask.sum()
    return float(np.sum(mask * loss_values(w, X, y, loss)) + 0.5 * lam * n * np.sum(w * w) + np.sum(b * w))


def gradient(w, X, y, mask, b, lam, loss):
    z = _z(w, X)
    n = mask.sum()
    if loss == "logistic":
        r = -y * scipy.special.expit(-y * z)
    elif loss == "softmax":
        p = scipy.special.softmax(z, axis=1)
        p[np.arange(len(y)), y] -= 1.0
        r = p
    else:
        r = z - y
    if r.ndim == 1:
        g = X.T @ (mask * r)
    else:
        g = X.T @ (mask[:, None] * r)
    return g + lam * n * w + b


def hessian(w, X, y, mask, lam, loss):
    """Dense Hessian acting on w.ravel() (row-major), built row by row with explicit Kronecker products."""
    z = _z(w, X)
    n = mask.sum()
    p = w.size
    H = np.zeros((p, p))
    for i in range(X.shape[0]):
        if not mask[i]:
            continue
        xx = np.outer(X[i], X[i])
        if loss == "logistic":
            s = scipy.special.expit(z[i])
            H += s * (1 - s) * xx
        elif loss == "softmax":
            pi = scipy.special.softmax(z[i])
            H += np.kron(xx, np.diag(pi) - np.outer(pi, pi))
        else:
            H += xx
    return H + lam * n * np.eye(p)


def train(X, y, mask, b, lam, loss, shape, *, tol=1e-12, max_steps=100):
    """Newton's method with backtracking, in NumPy."""
    w = np.zeros(shape)
    for _ in range(max_steps):
        g = gradient(w, X, y, mask, b, lam, loss)
        if np.linalg.norm(g) <= tol:
            break
        H = hessian(w, X, y, mask, lam, loss)
        d = -np.linalg.solve(H, g.ravel()).reshape(shape)
        f0 = objective(w, X, y, mask, b, lam, loss)
        t = 1.0
        while objective(w + t * d, X, y, mask, b, lam, loss) > f0 + 1e-4 * t * np.sum(g * d) and t > 1e-12:
            t *= 0.5
        w = w + t * d
    return w


def guo_removal(w, X, y, mask_after, removed, lam, loss):
    """w + H^{-1} Delta, Delta = sum_{j in U} (lam w + grad l_j), H on the retained rows (scipy solve)."""
    delta = gradient(w, X, y, removed.astype(float), np.zeros_like(w), lam, loss)
    H = hessian(w, X, y, mask_after, lam, loss)
    u = scipy.linalg.solve(H, delta.ravel(), assume_a="pos").reshape(w.shape)
    return w + u


def ridge_solution(X, y, mask, b, lam):
    """Closed form of the perturbed ridge objective on the retained rows."""
    Xm = X[mask.astype(bool)]
    ym = y[mask.astype(bool)]
    n = len(ym)
    A = Xm.T @ Xm + lam * n * np.eye(X.shape[1])
    return np.linalg.solve(A, Xm.T @ ym - b)


def spectral_norm(X):
    return float(np.linalg.svd(X, compute_uv=False)[0])
