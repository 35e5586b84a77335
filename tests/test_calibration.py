"""Tests for certunlearn.calibration against independent float64 references.

The reference for the analytic Gaussian mechanism is written here from Balle & Wang (2018), Thm. 8, in
its original epsilon-parametrised form with scipy.stats.norm, and solved with scipy.optimize.brentq;
the module evaluates it differently (erfcx form, Taylor series for large noise) and searches from
dp_accounting's answer. Table values are THEORY.md section 4, not numbers taken from the code.
"""

import ast
import dataclasses
import itertools
import math
import pathlib

import dp_accounting
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import optimize, stats

from certunlearn import calibration

DELTA = 1e-5
MODULE_PATH = pathlib.Path(calibration.__file__)


# ------------------------------------------------------------------------------------------------
# Independent references.


def reference_delta(epsilon, sigma, sensitivity=1.0):
    """Balle & Wang (2018) Thm. 8 in its direct form, e^epsilon folded into the log CDF so that large
    epsilon does not overflow; accurate for the moderate arguments used here."""
    a = sensitivity / (2 * sigma) - epsilon * sigma / sensitivity
    b = -sensitivity / (2 * sigma) - epsilon * sigma / sensitivity
    return float(np.exp(stats.norm.logcdf(a)) - np.exp(epsilon + stats.norm.logcdf(b)))


def reference_sigma(epsilon, delta):
    """Smallest unit-sensitivity sigma with reference_delta(epsilon, sigma) <= delta (brentq)."""
    return optimize.brentq(lambda s: reference_delta(epsilon, s) - delta, 1e-3, 1e4,
                           xtol=1e-15, rtol=1e-15, maxiter=500)


def reference_epsilon(multiplier, delta):
    """Smallest epsilon with reference_delta(epsilon, multiplier) <= delta (brentq)."""
    if reference_delta(0.0, multiplier) <= delta:
        return 0.0
    high = 1.0
    while reference_delta(high, multiplier) > delta:
        high *= 2.0
    return optimize.brentq(lambda e: reference_delta(e, multiplier) - delta, 0.0, high,
                           xtol=1e-15, rtol=1e-15, maxiter=500)


# THEORY.md section 4, delta = 1e-5, unit sensitivity, copied as printed except one erratum: THEORY.md
# prints Guo c / epsilon = 9.77 at epsilon = 0.5, but sqrt(2 ln(1.5e5)) / 0.5 = 4.88229 / 0.5 = 9.7646.
THEORY_TABLE = {
    # epsilon: (classical sigma, Guo c / epsilon, analytic sigma)
    0.1: ("48.45", "48.82", "30.75"),
    0.5: ("9.69", "9.76", "7.03"),
    1.0: ("4.84", "4.88", "3.73"),
    2.0: ("2.42", "2.44", "1.99"),
    5.0: ("0.969", "0.976", "0.892"),
    10.0: ("0.484", "0.488", "0.500"),
}



def log_uniform(low, high):
    return st.floats(math.log10(low), math.log10(high)).map(lambda exponent: 10.0**exponent)


epsilons = st.floats(0.05, 20.0)
deltas = log_uniform(1e-10, 0.1)
sigmas = log_uniform(1e-3, 1e3)
calibrations = st.sampled_from(calibration.CALIBRATIONS)
property_settings = settings(derandomize=True, max_examples=50, deadline=None)


def assert_printed(value, printed):
    """value rounds to the printed table entry (half a unit in its last printed digit)."""
    decimals = len(printed.split(".")[1])
    assert abs(value - float(printed)) <= 0.5 * 10.0**-decimals + 1e-12, (value, printed)


# ------------------------------------------------------------------------------------------------
# The THEORY.md table.


@pytest.mark.parametrize("epsilon", sorted(THEORY_TABLE))
def test_theory_table(epsilon):
    classical, guo, analytic = THEORY_TABLE[epsilon]
    assert_printed(calibration.classical_sigma(epsilon, DELTA), classical)
    assert_printed(calibration.guo_constant(DELTA) / epsilon, guo)
    assert_printed(calibration.sigma_for_budget(1.0, epsilon=epsilon, delta=DELTA, calibration="guo"), guo)
    assert_printed(calibration.sigma_for_budget(1.0, epsilon=epsilon, delta=DELTA, calibration="analytic"),
                   analytic)


def test_table_formulas_from_first_principles():
    assert calibration.guo_constant(DELTA) == pytest.approx(math.sqrt(2 * math.log(1.5e5)), rel=1e-15)
    assert calibration.classical_sigma(2.0, DELTA) == pytest.approx(math.sqrt(2 * math.log(1.25e5)) / 2,
                                                                    rel=1e-15)
    # Analytic needs 0.77x the classical sigma at epsilon = 1 (THEORY.md section 4).
    ratio = (calibration.sigma_for_budget(1.0, epsilon=1.0, delta=DELTA, calibration="analytic")
             / calibration.classical_sigma(1.0, DELTA))
    assert ratio == pytest.approx(0.77, abs=0.005)


# ------------------------------------------------------------------------------------------------
# The analytic calibration against the independent Balle-Wang reference.


@pytest.mark.parametrize("delta", [1e-10, 1e-5, 1e-2])
@pytest.mark.parametrize("epsilon", [0.05, 0.3, 1.0, 3.0, 10.0, 20.0])
def test_analytic_sigma_matches_brentq_reference(epsilon, delta):
    sigma = calibration.sigma_for_budget(1.0, epsilon=epsilon, delta=delta, calibration="analytic")
    assert sigma == pytest.approx(reference_sigma(epsilon, delta), rel=1e-6)
    # Sound: the calibrated sigma meets delta (exactly, by the module's own evaluator, as documented;
    # within 1e-9 by the reference); tight: 1e-6 less noise does not.
    assert calibration.analytic_delta(epsilon, sigma, 1.0) <= delta
    assert reference_delta(epsilon, sigma) <= delta * (1 + 1e-9)
    assert reference_delta(epsilon, sigma * (1 - 1e-6)) > delta


@pytest.mark.parametrize("sensitivity", [1e-3, 1.0, 7.0])
def test_analytic_sigma_scales_with_sensitivity(sensitivity):
    sigma = calibration.sigma_for_budget(sensitivity, epsilon=1.0, delta=DELTA, calibration="analytic")
    assert sigma == pytest.approx(sensitivity * reference_sigma(1.0, DELTA), rel=1e-6)
    assert reference_delta(1.0, sigma, sensitivity) <= DELTA * (1 + 1e-9)


@pytest.mark.parametrize("epsilon", [0.0, 1e-3, 0.1, 1.0, 4.0, 15.0])
@pytest.mark.parametrize("sigma", [0.2, 1.0, 3.0, 40.0])
def test_analytic_delta_matches_direct_formula(epsilon, sigma):
    expected = reference_delta(epsilon, sigma, 0.7)
    assert calibration.analytic_delta(epsilon, sigma, 0.7) == pytest.approx(expected, rel=1e-9, abs=1e-300)


@pytest.mark.parametrize("multiplier", [0.05, 0.3, 1.0, 10.0, 300.0])
def test_analytic_delta_inverts_dp_accounting(multiplier):
    # dp_accounting solves the same condition with its own code; its epsilon must give back delta.
    epsilon = dp_accounting.get_epsilon_gaussian(multiplier, DELTA)
    assert calibration.analytic_delta(epsilon, multiplier, 1.0) == pytest.approx(DELTA, rel=1e-6, abs=0)


@pytest.mark.parametrize("multiplier", [1e7, 1e11])
def test_analytic_delta_large_noise_regime(multiplier):
    # sigma / beta >> 1: the direct difference of the two terms loses log10(m) digits.
    # delta(0) is the total variation distance erf(1 / (2 sqrt2 m)), exactly.
    assert calibration.analytic_delta(0.0, multiplier, 1.0) == pytest.approx(
        math.erf(0.5 / (math.sqrt(2) * multiplier)), rel=1e-12, abs=0)
    # Gaussian DP with mu = 1/m -> 0: delta(eps) = mu (phi(u) - u Q(u)) (1 + O(mu)), u = eps / mu.
    for u in (0.3, 1.5, 4.0):
        first_order = (stats.norm.pdf(u) - u * stats.norm.sf(u)) / multiplier
        assert calibration.analytic_delta(u / multiplier, multiplier, 1.0) == pytest.approx(
            first_order, rel=1e-9 + 10 / multiplier, abs=0)


def test_analytic_delta_degenerate_and_monotone():
    assert calibration.analytic_delta(1.0, 1.0, 0.0) == 0.0
    assert calibration.analytic_delta(1.0, 0.0, 1.0) == 1.0
    assert calibration.analytic_delta(math.inf, 1.0, 1.0) == 0.0
    values = [calibration.analytic_delta(e, 1.0, 1.0) for e in np.linspace(0, 8, 50)]
    assert all(b < a for a, b in itertools.pairwise(values))


def test_classical_formula_under_noises_above_epsilon_one():
    sigma = calibration.classical_sigma(10.0, DELTA)
    assert calibration.analytic_delta(10.0, sigma, 1.0) > DELTA
    assert reference_delta(10.0, sigma) == pytest.approx(2.3e-5, rel=0.02, abs=0)  # THEORY.md: 2.3e-5


def test_guo_formula_sound_for_small_epsilon_and_under_noises_at_ten():
    for epsilon in (0.1, 0.5, 1.0):
        sigma = calibration.sigma_for_budget(1.0, epsilon=epsilon, delta=DELTA, calibration="guo")
        assert reference_delta(epsilon, sigma) <= DELTA
    # Documented limitation of Guo et al. Thm. 3 (its proof assumes epsilon <= 1).
    sigma = calibration.sigma_for_budget(1.0, epsilon=10.0, delta=DELTA, calibration="guo")
    assert reference_delta(10.0, sigma) > DELTA


# ------------------------------------------------------------------------------------------------
# Round trips and epsilon_for_residual.


@property_settings
@given(sigma=sigmas, epsilon=epsilons, delta=deltas, method=calibrations)
def test_sigma_budget_sigma_round_trip(sigma, epsilon, delta, method):
    budget = calibration.budget_for_sigma(sigma, epsilon=epsilon, delta=delta, calibration=method)
    back = calibration.sigma_for_budget(budget, epsilon=epsilon, delta=delta, calibration=method)
    assert back == pytest.approx(sigma, rel=1e-12, abs=0)


@property_settings
@given(budget=sigmas, epsilon=epsilons, delta=deltas, method=calibrations)
def test_budget_sigma_budget_round_trip(budget, epsilon, delta, method):
    sigma = calibration.sigma_for_budget(budget, epsilon=epsilon, delta=delta, calibration=method)
    back = calibration.budget_for_sigma(sigma, epsilon=epsilon, delta=delta, calibration=method)
    assert back == pytest.approx(budget, rel=1e-12, abs=0)


@property_settings
@given(sigma=sigmas, epsilon=epsilons, delta=deltas, method=calibrations)
def test_epsilon_for_full_budget_is_epsilon(sigma, epsilon, delta, method):
    budget = calibration.budget_for_sigma(sigma, epsilon=epsilon, delta=delta, calibration=method)
    spent = calibration.epsilon_for_residual(budget, sigma=sigma, delta=delta, calibration=method)
    assert spent == pytest.approx(epsilon, rel=1e-6, abs=0)
    if method == "analytic":  # sound for the residual actually spent, by both evaluators
        assert calibration.analytic_delta(spent, sigma, budget) <= delta
        assert reference_delta(spent, sigma, budget) <= delta * (1 + 1e-9)


def test_guo_epsilon_formula():
    c = math.sqrt(2 * math.log(1.5 / DELTA))
    got = calibration.epsilon_for_residual(0.3, sigma=2.0, delta=DELTA, calibration="guo")
    assert got == pytest.approx(c * 0.3 / 2.0, rel=1e-15)


@pytest.mark.parametrize("delta", [1e-10, 1e-5, 0.05])
@pytest.mark.parametrize("multiplier", [0.01, 0.2, 1.0, 5.0, 100.0, 3e4])
def test_analytic_epsilon_sound_and_tight(multiplier, delta):
    epsilon = calibration.epsilon_for_residual(1.0 / multiplier, sigma=1.0, delta=delta,
                                               calibration="analytic")
    expected = reference_epsilon(multiplier, delta)
    assert epsilon >= expected * (1 - 1e-12)
    assert epsilon == pytest.approx(expected, rel=1e-6, abs=1e-12)
    assert reference_delta(epsilon, multiplier) <= delta * (1 + 1e-9)
    assert calibration.analytic_delta(epsilon, multiplier, 1.0) <= delta


def test_analytic_epsilon_never_below_truth_for_tiny_noise():
    # m = sigma / beta = 1e-10: the privacy loss L ~ N(mu, 2 mu), mu = 1 / (2 m^2) = 5e19, so
    # delta(mu) ~ 1/2 and the true epsilon exceeds mu; dp_accounting alone returns ~4.99999989e19.
    multiplier = 1e-10
    epsilon = calibration.epsilon_for_residual(1.0, sigma=multiplier, delta=DELTA, calibration="analytic")
    mu = 0.5 / multiplier**2
    assert epsilon > mu
    tau = math.sqrt(2 * math.log(1 / DELTA))
    assert epsilon <= (mu + tau / multiplier) * (1 + 1e-9)  # the Chernoff-type upper bound
    assert calibration.epsilon_for_residual(1e300, sigma=1.0, delta=DELTA, calibration="analytic") == math.inf


def test_analytic_epsilon_zero_when_zero_delta_suffices():
    # (0, delta)-DP iff the total variation erf(1 / (2 sqrt2 m)) <= delta.
    m_boundary = optimize.brentq(lambda m: math.erf(0.5 / (math.sqrt(2) * m)) - DELTA, 1.0, 1e9, rtol=1e-15)
    def spent(sigma):
        return calibration.epsilon_for_residual(1.0, sigma=sigma, delta=DELTA, calibration="analytic")

    assert spent(m_boundary * 1.001) == 0.0
    assert spent(m_boundary * 0.999) > 0.0


@property_settings
@given(residuals=st.lists(log_uniform(1e-12, 1e3), min_size=2, max_size=6), sigma=sigmas, delta=deltas,
       method=calibrations)
def test_epsilon_monotone_in_residual(residuals, sigma, delta, method):
    residuals = sorted(residuals)
    spent = [calibration.epsilon_for_residual(r, sigma=sigma, delta=delta, calibration=method)
             for r in residuals]
    assert all(a <= b for a, b in itertools.pairwise(spent)), (residuals, spent)


@pytest.mark.parametrize("delta", [1e-10, 1e-5])
def test_epsilon_monotone_for_nearly_equal_residuals(delta):
    # Root-finder jitter would break monotonicity here; near the (0, delta) boundary it is largest.
    for center in (delta * math.sqrt(2 * math.pi) * 1.06, 0.37, 2.0):
        for step in (1e-15, 1e-11, 3e-10):
            residuals = center * (1 + step * np.arange(16))
            spent = [calibration.epsilon_for_residual(float(r), sigma=1.0, delta=delta,
                                                      calibration="analytic") for r in residuals]
            assert all(a <= b for a, b in itertools.pairwise(spent)), (center, step, spent)


@pytest.mark.parametrize("method", calibration.CALIBRATIONS)
def test_degenerate_residual_and_sigma(method):
    assert calibration.epsilon_for_residual(0.0, sigma=1.0, delta=DELTA, calibration=method) == 0.0
    assert calibration.epsilon_for_residual(0.0, sigma=0.0, delta=DELTA, calibration=method) == 0.0
    assert calibration.epsilon_for_residual(0.1, sigma=0.0, delta=DELTA, calibration=method) == math.inf
    assert calibration.budget_for_sigma(0.0, epsilon=1.0, delta=DELTA, calibration=method) == 0.0


# ------------------------------------------------------------------------------------------------
# Calibration and calibrate().


@pytest.mark.parametrize("method", calibration.CALIBRATIONS)
def test_calibrate_from_sigma_and_from_budget(method):
    from_sigma = calibration.calibrate(epsilon=1.0, delta=DELTA, sigma=2.0, calibration=method)
    assert from_sigma.sigma == 2.0
    assert from_sigma.residual_budget == calibration.budget_for_sigma(2.0, epsilon=1.0, delta=DELTA,
                                                                      calibration=method)
    from_budget = calibration.calibrate(epsilon=1.0, delta=DELTA, residual_budget=from_sigma.residual_budget,
                                        calibration=method)
    assert from_budget.sigma == pytest.approx(2.0, rel=1e-12)
    assert from_budget.calibration == method
    default = calibration.calibrate(epsilon=1.0, delta=DELTA, calibration=method, default_sigma=3.0)
    assert default.sigma == 3.0


def test_calibration_spending():
    cal = calibration.calibrate(epsilon=2.0, delta=DELTA, sigma=1.5)
    assert cal.residual_budget == pytest.approx(1.5 / reference_sigma(2.0, DELTA), rel=1e-6)
    assert cal.epsilon_spent(0.0) == 0.0
    assert cal.epsilon_spent(cal.residual_budget) == pytest.approx(2.0, rel=1e-6)
    assert cal.epsilon_spent(0.5 * cal.residual_budget) < 2.0 < cal.epsilon_spent(1.5 * cal.residual_budget)
    assert cal.epsilon_spent(0.5 * cal.residual_budget) == pytest.approx(
        reference_epsilon(1.5 / (0.5 * cal.residual_budget), DELTA), rel=1e-6)
    assert cal.remaining(0.25 * cal.residual_budget) == pytest.approx(0.75 * cal.residual_budget, rel=1e-12)
    assert cal.remaining(2 * cal.residual_budget) == 0.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        cal.sigma = 0.1  # type: ignore[misc]


def test_calibration_accepts_numpy_scalars():
    cal = calibration.calibrate(epsilon=np.float32(1.0), delta=np.float64(DELTA), sigma=np.array(2.0))
    assert type(cal.epsilon) is float and type(cal.sigma) is float
    assert cal == calibration.calibrate(epsilon=1.0, delta=DELTA, sigma=2.0)


def test_calibration_refuses_an_uncertified_budget():
    budget = calibration.budget_for_sigma(1.0, epsilon=1.0, delta=DELTA, calibration="analytic")
    calibration.Calibration(epsilon=1.0, delta=DELTA, sigma=1.0, residual_budget=budget)
    calibration.Calibration(epsilon=1.0, delta=DELTA, sigma=1.0, residual_budget=0.5 * budget)
    with pytest.raises(ValueError, match="residual_budget"):
        calibration.Calibration(epsilon=1.0, delta=DELTA, sigma=1.0, residual_budget=1.01 * budget)


# ------------------------------------------------------------------------------------------------
# Bad inputs.


@pytest.mark.parametrize("epsilon", [0.0, -1.0, math.nan, math.inf, True, "1.0", None])
def test_bad_epsilon(epsilon):
    with pytest.raises(ValueError, match="epsilon"):
        calibration.validate_privacy(epsilon, DELTA)
    with pytest.raises(ValueError, match="epsilon"):
        calibration.sigma_for_budget(1.0, epsilon=epsilon, delta=DELTA, calibration="analytic")
    with pytest.raises(ValueError, match="epsilon"):
        calibration.calibrate(epsilon=epsilon, delta=DELTA)


@pytest.mark.parametrize("delta", [0.0, 1.0, -1e-5, 1.5, math.nan, math.inf, False, "1e-5"])
def test_bad_delta(delta):
    with pytest.raises(ValueError, match="delta"):
        calibration.validate_privacy(1.0, delta)
    with pytest.raises(ValueError, match="delta"):
        calibration.epsilon_for_residual(0.1, sigma=1.0, delta=delta, calibration="guo")
    with pytest.raises(ValueError, match="delta"):
        calibration.guo_constant(delta)


def test_error_message_names_value_and_fix():
    with pytest.raises(ValueError, match=r"epsilon must be .*> 0, got -2\.0; pass"):
        calibration.validate_privacy(-2.0, DELTA)
    with pytest.raises(ValueError, match=r"delta must be in the open interval \(0, 1\), got 0\.0"):
        calibration.validate_privacy(1.0, 0.0)


@pytest.mark.parametrize("value", [0.0, -1.0, math.nan, math.inf])
def test_bad_residual_budget(value):
    with pytest.raises(ValueError, match="residual_budget"):
        calibration.sigma_for_budget(value, epsilon=1.0, delta=DELTA, calibration="analytic")
    with pytest.raises(ValueError, match="residual_budget"):
        calibration.calibrate(epsilon=1.0, delta=DELTA, residual_budget=value)


@pytest.mark.parametrize("value", [-1.0, math.nan, math.inf])
def test_bad_sigma(value):
    with pytest.raises(ValueError, match="sigma"):
        calibration.budget_for_sigma(value, epsilon=1.0, delta=DELTA, calibration="analytic")
    with pytest.raises(ValueError, match="sigma"):
        calibration.epsilon_for_residual(0.1, sigma=value, delta=DELTA, calibration="analytic")
    with pytest.raises(ValueError, match="sigma"):
        calibration.calibrate(epsilon=1.0, delta=DELTA, sigma=value)


@pytest.mark.parametrize("value", [-0.1, math.nan, "0.1"])
def test_bad_residual(value):
    with pytest.raises(ValueError, match="residual"):
        calibration.epsilon_for_residual(value, sigma=1.0, delta=DELTA, calibration="analytic")


def test_both_sigma_and_budget_rejected():
    with pytest.raises(ValueError, match="sigma") as info:
        calibration.calibrate(epsilon=1.0, delta=DELTA, sigma=1.0, residual_budget=0.1)
    assert "residual_budget" in str(info.value) and "not both" in str(info.value)


@pytest.mark.parametrize("name", ["Guo", "classical", "", None, 1])
def test_unknown_calibration(name):
    with pytest.raises(ValueError, match="calibration"):
        calibration.validate_calibration(name)
    with pytest.raises(ValueError, match="calibration"):
        calibration.sigma_for_budget(1.0, epsilon=1.0, delta=DELTA, calibration=name)
    with pytest.raises(ValueError, match="calibration"):
        calibration.calibrate(epsilon=1.0, delta=DELTA, calibration=name)


def test_module_is_host_side_only():
    tree = ast.parse(MODULE_PATH.read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module}
    assert "jax" not in imported and "jaxlib" not in imported
    assert imported <= {"__future__", "dataclasses", "math", "numbers", "collections", "dp_accounting",
                        "numpy", "scipy"}
