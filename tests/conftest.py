"""Shared test fixtures."""
import jax
import pytest


@pytest.fixture
def x64():
    """Run the test body in float64 (create arrays and systems inside the test)."""
    with jax.enable_x64(True):
        yield
