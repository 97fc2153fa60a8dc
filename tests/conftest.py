"""Shared test set-up: tracing is silent unless a test captures it."""

from __future__ import annotations

import pytest

from bootemu import tracing


@pytest.fixture(autouse=True)
def _silent_tracing():
    tracing.configure(None)
    yield
    tracing.configure(None)
