"""The persistent compilation cache of `gradlens` commands: where it lives, how it is turned off, that compiling
commands turn it on (and the others do not), that a cached compilation gives the same numbers as a cold one, and
that `jit_once` (the audit's one-shot programs) computes what `jax.jit` does, at top level and inside another trace."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gradlens import cli, compilation_cache

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("env, want", [
    ({"GRADLENS_COMPILATION_CACHE": "/x/cache"}, Path("/x/cache")),
    ({"GRADLENS_COMPILATION_CACHE": "off"}, None),
    ({"GRADLENS_COMPILATION_CACHE": " OFF "}, None),
    ({"XDG_CACHE_HOME": "/xdg"}, Path("/xdg/gradlens/jax")),
    ({"HOME": "/home/someone"}, Path("/home/someone/.cache/gradlens/jax")),
])
def test_the_cache_folder_follows_the_environment(env, want, monkeypatch):
    for name in ("GRADLENS_COMPILATION_CACHE", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert compilation_cache.folder() == want


def test_compiling_commands_turn_the_cache_on_and_listing_commands_do_not(monkeypatch, tmp_path, capsys):
    calls = []
    monkeypatch.setattr(compilation_cache, "enable", lambda: calls.append(True))
    assert cli.main(["runs", str(tmp_path)]) == 0 and calls == []
    assert cli.main(["systems", "--horizon", "2"]) == 0 and calls == [True]


_PROGRAM = """
import json, sys
from gradlens import compilation_cache
import jax, jax.numpy as jnp
compilation_cache.enable()
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)  # store even this small program
f = jax.jit(lambda x: jnp.linalg.matrix_power(jnp.sin(x) @ x.T + jnp.eye(64), 9).sum())
print(json.dumps({"dir": jax.config.jax_compilation_cache_dir, "value": float(f(jnp.ones((64, 64)) * 0.01))}))
"""


def test_a_cached_compilation_gives_the_same_numbers_as_a_cold_one(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu",
           "GRADLENS_COMPILATION_CACHE": str(tmp_path / "cache")}
    outs = [subprocess.run([sys.executable, "-c", _PROGRAM], env=env, capture_output=True, text=True, check=True)
            .stdout for _ in range(2)]
    assert outs[0] == outs[1] and f'"dir": "{tmp_path / "cache"}"' in outs[0]
    assert any((tmp_path / "cache").iterdir())  # the first run stored its executable


def test_jit_once_computes_what_jit_does_at_top_level_and_inside_other_traces():
    import jax
    import jax.numpy as jnp
    import numpy as np

    f = lambda x, n: jnp.sum(jnp.sin(x) ** n)
    once = compilation_cache.jit_once(f, static_argnums=1)
    x = jnp.linspace(0.1, 1.2, 7)
    np.testing.assert_allclose(once(x, 3), jax.jit(f, static_argnums=1)(x, 3), rtol=1e-6)
    # XLA options belong to the outermost program: inside a caller's jit, grad or vmap the plain jit runs
    np.testing.assert_allclose(jax.jit(lambda x: once(x, 3))(x), once(x, 3), rtol=1e-6)
    np.testing.assert_allclose(jax.grad(lambda x: once(x, 3))(x), 3 * jnp.sin(x) ** 2 * jnp.cos(x), rtol=1e-5)
    np.testing.assert_allclose(jax.vmap(lambda x: once(x, 2))(x[:, None]), jnp.sin(x) ** 2, rtol=1e-6)
    # traced values that reach the function through its closure only, as in a Jacobian taken under a caller's grad
    shifted = lambda y: compilation_cache.jit_once(lambda d: jnp.sum(jnp.sin(d + y)))(jnp.zeros_like(y))
    np.testing.assert_allclose(jax.grad(shifted)(x), jnp.cos(x), rtol=1e-6)
