"""Shared test setup: every graph the tests compile is verified (compile() verifies)."""
import numpy as np
import pytest


@pytest.fixture
def rng():
    return np.random.default_rng(0)
