"""Experiment families that are not a removal sequence: one module per family, run by the runner.

A family module ``certunlearn/families/<name>.py`` defines:

* ``FAMILY``: the family name (the ``family`` field of its config and its results' manifest);
* ``run_seed(settings: dict, seed: int) -> list[dict]``: one seed of one cell, as table rows. ``settings``
  is the cell's config without ``family``, ``task`` and ``seeds``. Host-side code on the public API;
  every column but those ending in ``_seconds`` is a deterministic function of ``(settings, seed)``;
* ``plot(table) -> (fig, axes)`` (optional): the family's figure from its stored rows (``status == "ok"``),
  showing the spread over seeds. Registered in :data:`certunlearn.figures.FIGURES` under ``FAMILY``.

Its config (``experiments/configs/<name>.py``) sets ``task = "certunlearn.families.<name>:run_seed"``;
:func:`certunlearn.runner.sweep` then runs every grid cell through ``run_seed`` for each of its ``seeds``
into the same resumable store as every other family.
"""
