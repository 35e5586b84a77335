"""certunlearn: certified machine unlearning in JAX.

Train a model whose loss is perturbed with Gaussian noise, remove training rows with one Newton step
each, and read an (epsilon, delta) certificate that is backed by proven residual bounds
(Guo et al. 2020, arXiv:1911.03030).

Importing certunlearn enables JAX's float64 support (``jax_enable_x64``): certificates are computed in
float64. Models may still train in float32 through ``dtype="float32"``.
"""

import jax as _jax

_jax.config.update("jax_enable_x64", True)

from certunlearn import (
    accounting,
    calibration,
    curvature,
    data,
    distributed,
    hessian,
    losses,
    objective,
    removal,
    solvers,
    train,
)
from certunlearn import audit, deep, evaluate, head, models, modify  # noqa: E402  (they build on the facade below)
from certunlearn.accounting import Event, Ledger
from certunlearn.api import (
    BudgetExhaustedError,
    Certificate,
    CertificationError,
    CertifiedModel,
    RemovalReport,
    fit,
    fit_batch,
    remove,
)
from certunlearn.calibration import Calibration, calibrate
from certunlearn.data import Dataset, load
from certunlearn.head import CertifiedPipeline, fit_pipeline, split_public
from certunlearn.losses import Loss, get_loss
from certunlearn.modify import ModificationReport, relabel, replace_feature
from certunlearn.solvers import SolveResult, cholesky_solve, conjugate_gradient

__version__ = "0.1.0"

__all__ = [
    "BudgetExhaustedError",
    "Calibration",
    "Certificate",
    "CertifiedPipeline",
    "CertificationError",
    "CertifiedModel",
    "Dataset",
    "Event",
    "Ledger",
    "Loss",
    "ModificationReport",
    "RemovalReport",
    "SolveResult",
    "accounting",
    "calibrate",
    "calibration",
    "cholesky_solve",
    "conjugate_gradient",
    "curvature",
    "data",
    "deep",
    "distributed",
    "evaluate",
    "audit",
    "fit",
    "fit_batch",
    "fit_pipeline",
    "get_loss",
    "head",
    "hessian",
    "load",
    "losses",
    "models",
    "modify",
    "objective",
    "relabel",
    "remove",
    "removal",
    "replace_feature",
    "solvers",
    "split_public",
    "train",
]
