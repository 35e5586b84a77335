"""Test configuration: float64 everywhere, and a modest hypothesis profile."""

import os

os.environ.setdefault("XLA_FLAGS", "")  # keep the single-device default unless a test asks

import jax

jax.config.update("jax_enable_x64", True)

from hypothesis import settings  # noqa: E402

settings.register_profile("ci", derandomize=True, deadline=None, max_examples=25, print_blob=True)
settings.load_profile("ci")
