"""Noise calibration: sigma <-> (epsilon, delta) <-> residual budget.

A certified removal publishes parameters whose gradient residual r (sum convention, THEORY.md section 2)
is masked by the objective perturbation b ~ N(0, sigma^2 I). The certificate is the Gaussian mechanism
with L2 sensitivity beta = ||r|| (the residual budget spent, the paper's epsilon') and noise std sigma,
under the remove-m neighbouring relation the residual bound was computed for. This module converts
between sigma, the privacy parameters (epsilon, delta) and the largest residual they certify.

Two calibrations (``CALIBRATIONS``):

* ``"guo"``: Guo et al. (2020), Thm. 3: sigma = c * beta / epsilon with c = sqrt(2 ln(1.5 / delta)).
  Like the classical Gaussian mechanism (sigma = sqrt(2 ln(1.25 / delta)) * beta / epsilon) its proof
  needs epsilon <= 1; for large epsilon it under-noises: at delta = 1e-5 it stops being
  (epsilon, delta)-DP above epsilon ~ 8.8 (at epsilon = 10 its true delta is 1.9e-5).
* ``"analytic"``: the exact condition of Balle & Wang (2018), Thm. 8: a Gaussian with sensitivity beta
  and std sigma is (epsilon, delta)-DP iff

      delta >= Phi(beta / (2 sigma) - epsilon sigma / beta)
               - e^epsilon Phi(-beta / (2 sigma) - epsilon sigma / beta),

  solved for sigma with ``dp_accounting`` (unit sensitivity; noise multiplier m = sigma / beta), and for
  epsilon (once per removal, so it must be fast) by bisection on the condition itself; tests check both
  against ``dp_accounting``. Its answer is only the starting point: every sigma and epsilon returned is the smallest value (to 2^-40 relative)
  that an independent, stable evaluation of the condition (``analytic_delta``) certifies with a 1e-11
  relative margin on delta. This matters: ``dp_accounting`` under-reports epsilon for noise multipliers
  below ~1e-8, raises below ~1e-150, and its root jitters by ~1e-16 absolute, which breaks the
  monotonicity of epsilon in the residual near epsilon = 0. At delta = 1e-5, epsilon = 1 the analytic
  sigma is 0.77x the classical one, i.e. ~1.3x more residual budget per noise draw.

Everything here is host-side Python on floats (no JAX): it runs once per removal, not under jit.

References:
  Guo, Goldstein, Hannun, van der Maaten. Certified Data Removal from Machine Learning Models.
  ICML 2020, arXiv:1911.03030, Theorem 3.
  Balle, Wang. Improving the Gaussian Mechanism for Differential Privacy: Analytical Calibration and
  Optimal Denoising. ICML 2018, arXiv:1805.06530, Theorem 8.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable

import numpy as np
from scipy import special

__all__ = [
    "CALIBRATIONS",
    "Calibration",
    "analytic_delta",
    "budget_for_sigma",
    "calibrate",
    "classical_sigma",
    "epsilon_for_residual",
    "guo_constant",
    "sigma_for_budget",
    "validate_calibration",
    "validate_privacy",
]

CALIBRATIONS = ("guo", "analytic")

_SQRT2 = math.sqrt(2.0)
# Noise multipliers sigma / beta are rounded down to this many significant bits before the analytic
# solve. Rounding down assumes less noise than there is (safe). It makes epsilon_for_residual monotone in
# the residual: neighbouring grid points differ in epsilon by >= ~2e-10 relative, far more than the
# search resolution and the evaluation error (~1e-12), so nearly equal residuals cannot swap order.
_MULTIPLIER_BITS = 33
# Relative resolution of the final search; well below the multiplier grid spacing.
_RESOLUTION = 2.0**-40
# Below this noise multiplier epsilon > 5e5: certifies nothing useful, and dp_accounting loses accuracy,
# so the closed-form upper bound is returned instead.
_MIN_SOLVED_MULTIPLIER = 2.0**-10
# Verified values must reach delta * (1 - 1e-11): covers the <= 1e-12 error of _unit_log_delta.
_LOG_DELTA_MARGIN = 1e-11
# The two Balle-Wang terms agreeing to this relative precision cannot be told apart in float64.
_MIN_RELATIVE_GAP = 1e-13


# --------------------------------------------------------------------------------------------------
# Validation.



def _dp_accounting():
    """``dp_accounting``, imported on first use (it costs ~1-3 s and only the analytic path needs it)."""
    import dp_accounting

    return dp_accounting

def _as_float(name: str, value: object) -> float:
    """Converts a real scalar (Python, NumPy or 0-d array) to float; rejects bools and non-numbers."""
    if isinstance(value, (bool, np.bool_)):  # ValueError for every bad input: one type for callers
        raise ValueError(  # noqa: TRY004
            f"{name} must be a real number, got the bool {value!r}; pass a float.")
    if isinstance(value, numbers.Real):
        return float(value)
    kind = getattr(getattr(value, "dtype", None), "kind", None)
    if getattr(value, "shape", None) == () and kind in ("f", "i", "u"):
        return float(value)  # 0-d NumPy / JAX arrays
    raise ValueError(f"{name} must be a real number, got {value!r} of type {type(value).__name__}; "
                     "pass a float.")


def _check_nonnegative(name: str, value: object, *, allow_inf: bool = False) -> float:
    x = _as_float(name, value)
    if math.isnan(x) or x < 0 or (math.isinf(x) and not allow_inf):
        bound = "a number >= 0" if allow_inf else "a finite number >= 0"
        raise ValueError(f"{name} must be {bound}, got {x!r}; pass {bound}.")
    return x


def _check_positive(name: str, value: object) -> float:
    x = _as_float(name, value)
    if not (math.isfinite(x) and x > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {x!r}; pass a positive float.")
    return x


def validate_privacy(epsilon: object, delta: object) -> tuple[float, float]:
    """Checks the privacy parameters of an (epsilon, delta) certificate.

    Args:
      epsilon: the privacy loss bound; must be finite and > 0 (epsilon = inf certifies nothing and is
        never a target).
      delta: the failure probability; must lie in the open interval (0, 1).

    Returns:
      ``(epsilon, delta)`` as Python floats.

    Raises:
      ValueError: naming the argument, its value and the fix, for a bool, a non-number, NaN, an
        out-of-range or an infinite value.

    Example:
      >>> validate_privacy(1, 1e-5)
      (1.0, 1e-05)
      >>> validate_privacy(0.0, 1e-5)
      Traceback (most recent call last):
      ...
      ValueError: epsilon must be a finite number > 0, got 0.0; pass a positive float such as 1.0.
    """
    eps = _as_float("epsilon", epsilon)
    if not (math.isfinite(eps) and eps > 0):
        raise ValueError(
            f"epsilon must be a finite number > 0, got {eps!r}; pass a positive float such as 1.0.")
    dlt = _as_float("delta", delta)
    if not 0.0 < dlt < 1.0:
        raise ValueError(
            f"delta must be in the open interval (0, 1), got {dlt!r}; pass e.g. delta=1e-5 "
            "(smaller than 1/n for n training points).")
    return eps, dlt


def validate_calibration(calibration: object) -> str:
    """Checks that ``calibration`` names a supported calibration.

    Args:
      calibration: one of ``CALIBRATIONS`` = ("guo", "analytic").

    Returns:
      ``calibration`` unchanged.

    Raises:
      ValueError: naming the argument, its value and the accepted names.

    Example:
      >>> validate_calibration("analytic")
      'analytic'
    """
    if not isinstance(calibration, str) or calibration not in CALIBRATIONS:
        raise ValueError(f"calibration must be one of {CALIBRATIONS}, got {calibration!r}; "
                         "use 'analytic' (exact, Balle & Wang 2018) or 'guo' (Guo et al. 2020 Thm. 3).")
    return calibration


# --------------------------------------------------------------------------------------------------
# Closed forms.


def guo_constant(delta: float) -> float:
    """The constant c of Guo et al. (2020), Thm. 3: c = sqrt(2 ln(1.5 / delta)).

    With b ~ N(0, sigma^2 I), sigma = c * epsilon' / epsilon, a removal whose gradient residual has norm
    <= epsilon' is (epsilon, delta)-certified (valid for epsilon <= 1; see the module docstring).

    Args:
      delta: the failure probability, in (0, 1).

    Returns:
      c as a float.

    Raises:
      ValueError: if delta is not in (0, 1).

    References:
      Guo et al., Certified Data Removal from Machine Learning Models, arXiv:1911.03030, Thm. 3.

    Example:
      >>> round(guo_constant(1e-5), 4)
      4.8823
    """
    _, delta = validate_privacy(1.0, delta)
    return math.sqrt(2.0 * math.log(1.5 / delta))


def classical_sigma(epsilon: float, delta: float) -> float:
    """The classical Gaussian-mechanism noise for unit sensitivity: sqrt(2 ln(1.25 / delta)) / epsilon.

    Dwork & Roth (2014), Thm. A.1. Only valid for epsilon < 1: for larger epsilon it can under-noise
    (at epsilon = 10, delta = 1e-5 its true delta is 2.3e-5). Provided for tables and comparisons; the
    certificates use ``sigma_for_budget``.

    Args:
      epsilon: privacy loss bound, finite and > 0.
      delta: failure probability, in (0, 1).

    Returns:
      sigma for sensitivity 1 (multiply by the sensitivity for others).

    Raises:
      ValueError: for invalid epsilon or delta.

    References:
      Balle & Wang, arXiv:1805.06530, Section 2 (the classical calibration and its failure for
      epsilon > 1).

    Example:
      >>> round(classical_sigma(1.0, 1e-5), 3)
      4.845
    """
    epsilon, delta = validate_privacy(epsilon, delta)
    return math.sqrt(2.0 * math.log(1.25 / delta)) / epsilon


def _epsilon_upper_bound(multiplier: float, delta: float) -> float:
    # Privacy loss L ~ N(mu, 2 mu), mu = 1 / (2 m^2): delta(eps) <= P[L > eps] = Q(tau) for
    # eps = mu + tau / m, and Q(tau) <= exp(-tau^2 / 2) / 2 = delta / 2 at tau = sqrt(2 ln(1/delta)).
    tau = math.sqrt(2.0 * math.log(1.0 / delta))
    bound = (0.5 / multiplier) / multiplier + tau / multiplier  # overflows to inf, never raises
    return bound * (1.0 + 1e-12)  # covers the rounding of the line above


def _multiplier_upper_bound(epsilon: float, delta: float) -> float:
    # Inverts _epsilon_upper_bound: epsilon m^2 - tau m - 1/2 = 0.
    tau = math.sqrt(2.0 * math.log(1.0 / delta))
    return (tau + math.sqrt(tau * tau + 2.0 * epsilon)) / (2.0 * epsilon) * (1.0 + 1e-12)


# --------------------------------------------------------------------------------------------------
# The exact Balle-Wang delta, evaluated stably.


def _unit_log_delta(epsilon: float, multiplier: float) -> float:
    """log delta(epsilon) of the Gaussian mechanism, sensitivity 1, noise std ``multiplier`` (> 0).

    With t = eps m - 1/(2m), z = eps m + 1/(2m) = t + 1/m and erfc(x) = exp(-x^2) erfcx(x), the
    Balle-Wang delta Phi(-t) - e^eps Phi(-z) equals exactly (the e^eps cancels against the tail)

        delta = exp(-t^2 / 2) * (erfcx(t / sqrt2) - erfcx(z / sqrt2)) / 2,

    which avoids the eps - z^2/2 cancellation of the direct form for small m. For large m the
    erfcx difference over the short step h = 1 / (sqrt2 m) is summed as a Taylor series (derivatives
    from y' = 2xy - 2/sqrt(pi), y^(k+1) = 2x y^(k) + 2k y^(k-1)) instead of being subtracted.
    Relative accuracy ~1e-12 for delta >= 1e-300 (checked against 50-digit mpmath).
    """
    m = multiplier
    t = epsilon * m - 0.5 / m
    z = epsilon * m + 0.5 / m
    if math.isnan(t) or not math.isfinite(z):
        return 0.0  # m or epsilon * m overflows: the mechanism releases the difference, delta = 1
    x = t / _SQRT2
    h = 1.0 / (_SQRT2 * m)  # z / sqrt2 - x
    if h <= 0.05 and abs(x) * h <= 2.0:
        # Terms shrink like (2 |x| h + h)^k / k!, so 30 terms reach float precision, and rounding errors
        # grow by at most max_k (2 |x| h)^k / k! < 11 along the (forward) recurrence.
        y_prev = float(special.erfcx(x))
        y_k = 2.0 * x * y_prev - 2.0 / math.sqrt(math.pi)
        difference, power = 0.0, 1.0
        for k in range(1, 31):
            power *= h / k
            term = y_k * power
            difference -= term
            if abs(term) <= 1e-17 * abs(difference):
                break
            y_prev, y_k = y_k, 2.0 * x * y_k + 2.0 * k * y_prev
        return -0.5 * t * t + _log(0.5 * difference)
    if t >= 0:
        # Both terms share exp(-t^2/2); compare the erfcx factors directly.
        erfcx_t = float(special.erfcx(x))
        log_a = -0.5 * t * t + _log(0.5 * erfcx_t)
        if log_a == -math.inf:
            return -math.inf
        log_ratio = _log(float(special.erfcx(z / _SQRT2))) - _log(erfcx_t)
    else:
        log_a = float(special.log_ndtr(-t))
        log_ratio = -0.5 * t * t + _log(0.5 * float(special.erfcx(z / _SQRT2))) - log_a
    if -log_ratio < _MIN_RELATIVE_GAP:
        # A and B agree to float precision: return the smaller of two upper bounds, A and delta(0).
        return min(log_a, _log(float(special.erf(0.5 / (_SQRT2 * m)))))
    return log_a + math.log(-math.expm1(log_ratio))


def _log(x: float) -> float:
    return math.log(x) if x > 0 else -math.inf


def analytic_delta(epsilon: float, sigma: float, sensitivity: float) -> float:
    """The exact delta of the Gaussian mechanism at a given epsilon (Balle & Wang 2018, Thm. 8).

        delta = Phi(beta / (2 sigma) - epsilon sigma / beta)
                - e^epsilon Phi(-beta / (2 sigma) - epsilon sigma / beta),

    with beta = ``sensitivity`` (for a removal: the residual norm bound, Guo's epsilon') and Phi the
    standard normal CDF. Evaluated in log space (``scipy.special.log_ndtr``, ``erfcx``, ``expm1``) in the
    variable t = epsilon sigma / beta - beta / (2 sigma), with the difference of the two terms summed
    as a series when sigma / beta is large, so it stays accurate (~1e-12 relative) where the direct
    formula cancels catastrophically (tiny or huge sigma / beta, large epsilon). Should the two terms
    ever agree to all float64 digits, it returns an upper bound on delta, never an underestimate.

    Args:
      epsilon: privacy loss, >= 0 (may be inf: delta = 0).
      sigma: noise standard deviation, finite and >= 0.
      sensitivity: L2 sensitivity beta, finite and >= 0.

    Returns:
      The smallest delta for which the mechanism is (epsilon, delta)-DP; 0.0 when sensitivity = 0,
      1.0 when sigma = 0 < sensitivity.

    Raises:
      ValueError: for negative, NaN or non-numeric arguments.

    References:
      Balle & Wang, Improving the Gaussian Mechanism for Differential Privacy, arXiv:1805.06530, Thm. 8.

    Example:
      >>> f"{analytic_delta(1.0, 3.7306316, 1.0):.3e}"
      '1.000e-05'
      >>> analytic_delta(10.0, classical_sigma(10.0, 1e-5), 1.0) > 1e-5   # the classical one under-noises
      True
    """
    epsilon = _check_nonnegative("epsilon", epsilon, allow_inf=True)
    sigma = _check_nonnegative("sigma", sigma)
    sensitivity = _check_nonnegative("sensitivity", sensitivity)
    if sensitivity == 0.0 or epsilon == math.inf:
        return 0.0
    if sigma == 0.0:
        return 1.0
    multiplier = sigma / sensitivity
    if multiplier == math.inf:
        return 0.0
    if multiplier == 0.0:
        return 1.0
    return min(1.0, math.exp(_unit_log_delta(epsilon, multiplier)))


def _certifies(epsilon: float, multiplier: float, log_delta: float) -> bool:
    return _unit_log_delta(epsilon, multiplier) <= log_delta


def _bisect(passes: Callable[[float], bool], low: float, high: float) -> float:
    """Bisects a monotone predicate (false at ``low``, true at ``high``) to relative _RESOLUTION."""
    for _ in range(2200):  # halving from 1.8e308 down to 5e-324 takes < 2100 steps
        middle = low + 0.5 * (high - low)
        if high - low <= _RESOLUTION * high or not low < middle < high:
            break
        if passes(middle):
            high = middle
        else:
            low = middle
    return high


def _smallest_passing(passes: Callable[[float], bool], guess: float, upper: float) -> float:
    """The smallest x in [0, upper] with passes(x), to relative _RESOLUTION, searched near ``guess``.

    ``passes`` is monotone (false, then true) and ``upper`` is known to pass. The answer depends only on
    ``passes`` (up to the resolution), not on how good the guess is: a guess that passes is pushed down
    too, so jitter of ``dp_accounting`` on the safe side does not leak into the result.
    """
    if not (math.isfinite(guess) and 0.0 < guess < upper):
        return 0.0 if passes(0.0) else _bisect(passes, 0.0, upper)
    width = 2.0**-36
    low = guess * (1.0 - width)
    while passes(low):
        if width >= 0.25:
            return 0.0 if passes(0.0) else _bisect(passes, 0.0, low)
        width *= 16.0
        low = guess * (1.0 - width)
    width = 2.0**-36
    high = guess * (1.0 + width)
    while high < upper and not passes(high):
        width *= 16.0
        high = guess * (1.0 + width)
    return _bisect(passes, low, min(high, upper))


def _unit_sigma(epsilon: float, delta: float) -> float:
    """Smallest verified sigma for unit sensitivity under the analytic calibration."""
    log_delta = math.log(delta) - _LOG_DELTA_MARGIN
    try:
        with np.errstate(all="ignore"):  # its log-space search divides by zero at extremes
            guess = float(_dp_accounting().get_sigma_gaussian(epsilon, delta, tol=1e-300))
    except (ValueError, RuntimeError, ArithmeticError):
        guess = math.nan
    # The closed-form sigma is proven sufficient (see _epsilon_upper_bound), so it bounds the search.
    return _smallest_passing(lambda m: m > 0 and _certifies(epsilon, m, log_delta), guess,
                             _multiplier_upper_bound(epsilon, delta))


def _unit_epsilon(multiplier: float, delta: float) -> float:
    """Smallest verified epsilon for unit sensitivity and noise std ``multiplier`` (> 0, finite)."""
    mantissa, exponent = math.frexp(multiplier)
    multiplier = math.ldexp(math.floor(mantissa * 2.0**_MULTIPLIER_BITS) / 2.0**_MULTIPLIER_BITS, exponent)
    upper = _epsilon_upper_bound(multiplier, delta)
    if multiplier < _MIN_SOLVED_MULTIPLIER:
        return upper
    log_delta = math.log(delta) - _LOG_DELTA_MARGIN
    # Plain bisection on analytic_delta: the answer depends only on _certifies, and this is ~80x faster
    # (0.06 ms) than starting from dp_accounting's get_epsilon_gaussian (5 ms of scipy.stats calls),
    # which matters because every removal reports its epsilon. Tests check it against dp_accounting.
    return _smallest_passing(lambda e: _certifies(e, multiplier, log_delta), math.nan, upper)


# --------------------------------------------------------------------------------------------------
# Conversions.


def sigma_for_budget(residual_budget: float, *, epsilon: float, delta: float, calibration: str) -> float:
    """Noise std sigma under which a residual of norm ``residual_budget`` is (epsilon, delta)-certified.

    * guo:      sigma = c * beta / epsilon, c = sqrt(2 ln(1.5 / delta))    (Guo et al., Thm. 3)
    * analytic: sigma = beta * sigma_1(epsilon, delta)                       (Balle & Wang, Thm. 8)

    where beta = ``residual_budget`` (Guo's epsilon': the bound on ||grad L_b(w; D')||, sum convention,
    for whichever neighbouring relation the residual bound used) and sigma_1 is the smallest unit-
    sensitivity sigma with analytic_delta(epsilon, sigma_1, 1) <= delta: ``dp_accounting``'s
    ``get_sigma_gaussian``, refined with ``analytic_delta`` (see the module docstring).

    Args:
      residual_budget: the largest residual norm to certify, finite and > 0.
      epsilon: privacy loss bound, finite and > 0.
      delta: failure probability, in (0, 1).
      calibration: "guo" or "analytic". "guo" under-noises for epsilon above ~8.8 at delta = 1e-5.

    Returns:
      sigma, the standard deviation of each coordinate of b.

    Raises:
      ValueError: for an invalid argument (named in the message).

    References:
      Guo et al., arXiv:1911.03030, Thm. 3; Balle & Wang, arXiv:1805.06530, Thm. 8.

    Example:
      >>> round(sigma_for_budget(1.0, epsilon=1.0, delta=1e-5, calibration="analytic"), 4)
      3.7306
      >>> round(sigma_for_budget(0.5, epsilon=1.0, delta=1e-5, calibration="guo"), 4)
      2.4411
    """
    residual_budget = _check_positive("residual_budget", residual_budget)
    epsilon, delta = validate_privacy(epsilon, delta)
    if validate_calibration(calibration) == "guo":
        return guo_constant(delta) * residual_budget / epsilon
    return residual_budget * _unit_sigma(epsilon, delta)


def budget_for_sigma(sigma: float, *, epsilon: float, delta: float, calibration: str) -> float:
    """The largest residual norm that noise std ``sigma`` certifies at (epsilon, delta).

    The inverse of ``sigma_for_budget``:

    * guo:      beta = sigma * epsilon / c, c = sqrt(2 ln(1.5 / delta))   (Guo et al., Thm. 3)
    * analytic: beta = sigma / sigma_1(epsilon, delta)                      (Balle & Wang, Thm. 8)

    Args:
      sigma: noise std, finite and >= 0 (sigma = 0 certifies no residual: budget 0).
      epsilon: privacy loss bound, finite and > 0.
      delta: failure probability, in (0, 1).
      calibration: "guo" or "analytic".

    Returns:
      The residual budget beta (Guo's epsilon').

    Raises:
      ValueError: for an invalid argument (named in the message).

    References:
      Guo et al., arXiv:1911.03030, Thm. 3; Balle & Wang, arXiv:1805.06530, Thm. 8.

    Example:
      >>> round(budget_for_sigma(1.0, epsilon=1.0, delta=1e-5, calibration="analytic"), 4)
      0.2681
      >>> round(budget_for_sigma(1.0, epsilon=1.0, delta=1e-5, calibration="guo"), 4)
      0.2048
    """
    sigma = _check_nonnegative("sigma", sigma)
    epsilon, delta = validate_privacy(epsilon, delta)
    calibration = validate_calibration(calibration)
    if sigma == 0.0:
        return 0.0
    if calibration == "guo":
        return sigma * epsilon / guo_constant(delta)
    return sigma / _unit_sigma(epsilon, delta)


def epsilon_for_residual(residual: float, *, sigma: float, delta: float, calibration: str) -> float:
    """The epsilon certified at ``delta`` for a spent residual beta under noise std sigma.

    * guo:      epsilon = c * beta / sigma, c = sqrt(2 ln(1.5 / delta))   (Guo et al., Thm. 3)
    * analytic: the smallest epsilon with analytic_delta(epsilon, sigma, beta) <= delta, i.e.
      ``dp_accounting.get_epsilon_gaussian(sigma / beta, delta)``                (Balle & Wang, Thm. 8)

    For "analytic" the result is never below the true epsilon (to float64 precision): the noise
    multiplier m = sigma / beta is first rounded down to 33 significant bits (a relative change
    < 2.4e-10 that keeps the result monotone in beta), then the smallest epsilon that ``analytic_delta``
    certifies with a 1e-11 relative margin on delta is found by bisection (it agrees with
    ``dp_accounting``'s answer, which alone under-reports for m < ~1e-8, and is ~80x faster). For m < 2^-10 (epsilon > 5e5, nothing
    useful is certified) the proven closed-form bound 1/(2 m^2) + sqrt(2 ln(1/delta)) / m is
    returned. For "guo" the formula is the paper's; it under-reports epsilon above ~8.8 at
    delta = 1e-5 (the theorem's proof assumes epsilon <= 1).

    Degenerate inputs: residual = 0 costs nothing (0.0); sigma = 0 < residual certifies nothing (inf).

    Args:
      residual: the spent residual norm beta (the accumulated bound, training residual included),
        >= 0; inf gives inf.
      sigma: noise std, finite and >= 0.
      delta: failure probability, in (0, 1).
      calibration: "guo" or "analytic".

    Returns:
      epsilon, monotone non-decreasing in ``residual``.

    Raises:
      ValueError: for an invalid argument (named in the message).

    References:
      Guo et al., arXiv:1911.03030, Thm. 3; Balle & Wang, arXiv:1805.06530, Thm. 8.

    Example:
      >>> sigma = sigma_for_budget(0.1, epsilon=1.0, delta=1e-5, calibration="analytic")
      >>> round(epsilon_for_residual(0.1, sigma=sigma, delta=1e-5, calibration="analytic"), 6)
      1.0
      >>> epsilon_for_residual(0.0, sigma=0.0, delta=1e-5, calibration="analytic")
      0.0
      >>> epsilon_for_residual(0.1, sigma=0.0, delta=1e-5, calibration="guo")
      inf
    """
    residual = _check_nonnegative("residual", residual, allow_inf=True)
    sigma = _check_nonnegative("sigma", sigma)
    _, delta = validate_privacy(1.0, delta)
    calibration = validate_calibration(calibration)
    if residual == 0.0:
        return 0.0
    if sigma == 0.0 or residual == math.inf:
        return math.inf
    if calibration == "guo":
        return guo_constant(delta) * residual / sigma
    # Capping an overflowing sigma / residual at the largest float only removes noise: safe.
    multiplier = min(sigma / residual, np.finfo(np.float64).max)
    if multiplier == 0.0:
        return math.inf
    return _unit_epsilon(multiplier, delta)


# --------------------------------------------------------------------------------------------------
# The calibration record.


@dataclasses.dataclass(frozen=True)
class Calibration:
    """A noise calibration: one noise draw b ~ N(0, sigma^2 I) and the residual it certifies.

    Attributes:
      epsilon: target privacy loss bound (> 0).
      delta: target failure probability, in (0, 1).
      sigma: noise std of the objective perturbation b (>= 0).
      residual_budget: the largest accumulated residual norm beta (training residual plus the removal
        bounds, THEORY.md section 5) certified at (epsilon, delta) by sigma; Guo's epsilon'.
      calibration: "guo" or "analytic".

    Build it with ``calibrate``; direct construction is validated and refuses a residual_budget larger
    than what sigma certifies.

    Example:
      >>> cal = calibrate(epsilon=1.0, delta=1e-5, sigma=1.0)
      >>> round(cal.residual_budget, 4)
      0.2681
      >>> round(cal.remaining(0.2), 4)
      0.0681
      >>> cal.epsilon_spent(0.2) < cal.epsilon < cal.epsilon_spent(0.3)
      True
    """

    epsilon: float
    delta: float
    sigma: float
    residual_budget: float
    calibration: str = "analytic"

    def __post_init__(self):
        epsilon, delta = validate_privacy(self.epsilon, self.delta)
        calibration = validate_calibration(self.calibration)
        sigma = _check_nonnegative("sigma", self.sigma)
        residual_budget = _check_nonnegative("residual_budget", self.residual_budget)
        certified = budget_for_sigma(sigma, epsilon=epsilon, delta=delta, calibration=calibration)
        if residual_budget > certified * (1.0 + 1e-12):
            raise ValueError(
                f"residual_budget={residual_budget!r} exceeds the {certified!r} that sigma={sigma!r} "
                f"certifies at epsilon={epsilon!r}, delta={delta!r} ({calibration}); build the "
                "Calibration with calibrate() instead.")
        for name, value in (("epsilon", epsilon), ("delta", delta), ("sigma", sigma),
                            ("residual_budget", residual_budget)):
            object.__setattr__(self, name, value)

    def epsilon_spent(self, residual: float) -> float:
        """epsilon certified at ``self.delta`` after spending a residual of norm ``residual``.

        ``epsilon_for_residual(residual, sigma=self.sigma, delta=self.delta, ...)``. Compare residuals,
        not epsilons, against the budget: at residual = residual_budget the analytic value equals
        ``self.epsilon`` only to ~1e-9 relative (both come from numerical solves, each sound).
        """
        return epsilon_for_residual(residual, sigma=self.sigma, delta=self.delta,
                                    calibration=self.calibration)

    def remaining(self, residual: float) -> float:
        """Residual budget left after spending ``residual``: max(residual_budget - residual, 0)."""
        residual = _check_nonnegative("residual", residual, allow_inf=True)
        return max(self.residual_budget - residual, 0.0)


def calibrate(*, epsilon: float, delta: float, sigma: float | None = None,
              residual_budget: float | None = None, calibration: str = "analytic",
              default_sigma: float = 1.0) -> Calibration:
    """Builds a ``Calibration`` from (epsilon, delta) and either sigma or a residual budget.

    Given sigma, residual_budget = budget_for_sigma(sigma, ...); given residual_budget,
    sigma = sigma_for_budget(residual_budget, ...); given neither, sigma = ``default_sigma``.

    Args:
      epsilon: privacy loss bound, finite and > 0.
      delta: failure probability, in (0, 1).
      sigma: noise std (>= 0, finite), or None.
      residual_budget: residual norm to certify (> 0, finite), or None. At most one of sigma and
        residual_budget.
      calibration: "analytic" (default, exact) or "guo".
      default_sigma: sigma used when neither is given.

    Returns:
      The frozen ``Calibration``.

    Raises:
      ValueError: for an invalid argument, or when both sigma and residual_budget are given.

    References:
      Guo et al., arXiv:1911.03030, Thm. 3 and Alg. 2; Balle & Wang, arXiv:1805.06530, Thm. 8.

    Example:
      >>> cal = calibrate(epsilon=1.0, delta=1e-5, residual_budget=0.1)
      >>> round(cal.sigma, 5)
      0.37306
      >>> calibrate(epsilon=1.0, delta=1e-5).sigma
      1.0
    """
    epsilon, delta = validate_privacy(epsilon, delta)
    calibration = validate_calibration(calibration)
    if sigma is not None and residual_budget is not None:
        raise ValueError(
            f"pass sigma or residual_budget, not both (got sigma={sigma!r}, "
            f"residual_budget={residual_budget!r}); the other one is derived from (epsilon, delta).")
    if residual_budget is not None:
        residual_budget = _check_positive("residual_budget", residual_budget)
        sigma = sigma_for_budget(residual_budget, epsilon=epsilon, delta=delta, calibration=calibration)
    else:
        name = "sigma" if sigma is not None else "default_sigma"
        sigma = _check_nonnegative(name, sigma if sigma is not None else default_sigma)
        residual_budget = budget_for_sigma(sigma, epsilon=epsilon, delta=delta, calibration=calibration)
    return Calibration(epsilon=epsilon, delta=delta, sigma=sigma, residual_budget=residual_budget,
                       calibration=calibration)
