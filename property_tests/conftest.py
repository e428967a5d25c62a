"""Hypothesis profiles for the property suite.

``default`` (``make test``) keeps the whole suite fast; ``deep``
(``make test-deep``, ``HYPOTHESIS_PROFILE=deep``) runs thousands of examples per
property. Signing is real, so examples are never free: deadlines are off.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "default",
    max_examples=60,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "deep",
    max_examples=2000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
