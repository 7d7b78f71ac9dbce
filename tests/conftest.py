"""Shared test fixtures, and one JAX persistent compilation cache for the whole test session (`gradlens` commands use
one by default: gradlens/compilation_cache.py). The cache starts empty in a new temporary folder, so every run of the
suite compiles cold once; tests that compile the same computation (the same tiny system, model and horizon) then
share it, in-process and in subprocesses alike. Set GRADLENS_COMPILATION_CACHE=off to test without it."""
import os
import shutil
import tempfile

import jax
import pytest

from gradlens import compilation_cache

_OWNED = "GRADLENS_TEST_CACHE_OWNER"

# XLA's CPU backend at optimisation level 0 for the whole session, the commands it runs in subprocesses included: the
# suite is compile-bound (most tests compile small programs and run them a few times), and level 0 compiles about
# twice as fast. Measured, one full run each on the same 2-core machine: 1870 s at XLA's defaults, 1336 s at level 0.
# What the tests assert holds at any level; the tolerances on rounding (batched against unbatched seeds, recomputed
# against stored activations) are set for both, as measured. Users' runs keep XLA's defaults; the test that the
# audit's gradient is compiled as the trainer's checks that directly (test_dynamics.py), since at one level for all
# programs its bit-for-bit comparison cannot. GRADLENS_TEST_XLA_DEFAULTS=1 runs the suite at XLA's defaults.
if os.environ.get("GRADLENS_TEST_XLA_DEFAULTS") != "1" and "xla_backend_optimization_level" not in os.environ.get(
        "XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_backend_optimization_level=0".strip()


def pytest_configure(config):
    if compilation_cache.ENV not in os.environ:  # the controller (or a lone process) makes it; xdist workers inherit
        os.environ[compilation_cache.ENV] = tempfile.mkdtemp(prefix="gradlens-test-jax-cache-")
        os.environ[_OWNED] = str(os.getpid())
    compilation_cache.enable()


# the modules with the longest tests (CI's --durations), run first: under pytest-xdist's work stealing (the README's
# test command) the short tests then fill the workers' last minutes instead of one long test running on alone at the
# end. (xdist's default "load" schedule hands out large fixed chunks: one worker sat idle for minutes while the other
# worked through a queue of long tests.)
_FIRST = ("test_benchmarks.py", "test_readme.py", "test_audit.py", "test_app.py", "test_models.py", "test_train.py",
          "test_baselines.py")


def pytest_collection_modifyitems(items):
    """Modules in `_FIRST` before the others, each module's tests together and in their order (module fixtures are
    built once)."""
    rank = {name: i for i, name in enumerate(_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(_FIRST)))


def pytest_unconfigure(config):
    if os.environ.get(_OWNED) == str(os.getpid()):
        shutil.rmtree(os.environ[compilation_cache.ENV], ignore_errors=True)


@pytest.fixture
def x64():
    """Run the test body in float64 (create arrays and systems inside the test)."""
    with jax.enable_x64(True):
        yield
