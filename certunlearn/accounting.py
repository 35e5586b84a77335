"""The ledger of one certified model: residual spent, removals and retrains (host side, no JAX).

One noise draw ``b`` serves a whole training run (Guo et al. 2020, Alg. 2). The ledger tracks
``beta``, a proven upper bound on the current gradient residual ``||grad L_b(w; D')||``:

* after training, ``beta = ||r_0||``, the *training residual* (the optimiser never reaches the exact
  minimiser; Guo et al.'s code ignores this term);
* each certified removal either adds its bound (``mode="accumulate"``: Guo's triangle inequality
  ``||r_T|| <= ||r_0|| + sum_t bound_t``) or replaces ``beta`` by a bound on the full new residual
  (``mode="replace"``: exact residuals and full-gradient Newton steps);
* a retrain with fresh noise resets ``beta`` to the new training residual.

Ledgers are immutable; every method returns a new one. ``events`` is the full history, one
:class:`Event` per training run or removal, ready for a results table
(``pandas.DataFrame([e._asdict() for e in ledger.events])``).
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

__all__ = ["Event", "Ledger"]


class Event(NamedTuple):
    """One entry of the ledger.

    Attributes:
      kind: "train" (the initial fit), "removal" (a certified Newton step), "modification" (a certified
        Newton step that replaced the values of rows, :mod:`certunlearn.modify`) or "retrain" (a removal
        or modification served by retraining with fresh noise).
      num_removed: rows removed by this event (0 for "train"); for "modification", the rows modified.
      residual_bound: for "removal", the step's bound; for "train"/"retrain", the training residual.
      residual_spent: ``beta`` after the event.
      removals: total rows removed so far. retrains: retrains so far.
    """

    kind: str
    num_removed: int
    residual_bound: float
    residual_spent: float
    removals: int
    retrains: int


@dataclasses.dataclass(frozen=True)
class Ledger:
    """Residual spent under one noise draw, and the history of the model.

    Attributes:
      residual_spent: ``beta``, an upper bound on the current gradient residual.
      removals: rows removed since the first fit (over all noise draws).
      retrains: retrains since the first fit.
      events: the history, oldest first.
      modifications: rows whose values were replaced since the first fit (a row modified twice counts twice).
    """

    residual_spent: float
    removals: int = 0
    retrains: int = 0
    events: tuple[Event, ...] = ()
    modifications: int = 0

    @classmethod
    def start(cls, training_residual: float) -> "Ledger":
        """The ledger of a freshly trained model: ``beta = ||r_0||``."""
        _check_nonnegative("training_residual", training_residual)
        beta = float(training_residual)
        return cls(beta, 0, 0, (Event("train", 0, beta, beta, 0, 0),))

    def after_removal(self, bound: float, num_removed: int, *, mode: str = "accumulate") -> "Ledger":
        """``beta`` after a certified removal step whose residual bound is ``bound``.

        Args:
          bound: the step's proven bound (``mode="accumulate"``) or a proven bound on the whole new
            residual (``mode="replace"``).
          num_removed: rows removed by the step.
          mode: "accumulate" or "replace".
        """
        _check_nonnegative("bound", bound)
        if mode == "accumulate":
            spent = self.residual_spent + float(bound)
        elif mode == "replace":
            spent = float(bound)
        else:
            raise ValueError(f"mode must be 'accumulate' or 'replace', got {mode!r}")
        removals = self.removals + int(num_removed)
        event = Event("removal", int(num_removed), float(bound), spent, removals, self.retrains)
        return dataclasses.replace(
            self, residual_spent=spent, removals=removals, events=self.events + (event,)
        )

    def after_modification(self, bound: float, num_modified: int, *, mode: str = "accumulate") -> "Ledger":
        """``beta`` after a certified step that replaced the values of ``num_modified`` rows (as
        :meth:`after_removal`, removing none)."""
        new = self.after_removal(bound, 0, mode=mode)
        event = new.events[-1]._replace(kind="modification", num_removed=int(num_modified))
        return dataclasses.replace(new, events=new.events[:-1] + (event,),
                                   modifications=self.modifications + int(num_modified))

    def peek(self, bound: float, *, mode: str = "accumulate") -> float:
        """``beta`` that :meth:`after_removal` would give, without recording anything."""
        return self.residual_spent + float(bound) if mode == "accumulate" else float(bound)

    def after_retrain(self, training_residual: float, num_removed: int) -> "Ledger":
        """``beta`` after retraining on the retained rows with fresh noise."""
        _check_nonnegative("training_residual", training_residual)
        beta = float(training_residual)
        removals = self.removals + int(num_removed)
        retrains = self.retrains + 1
        event = Event("retrain", int(num_removed), beta, beta, removals, retrains)
        return Ledger(beta, removals, retrains, self.events + (event,), self.modifications)


def _check_nonnegative(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
