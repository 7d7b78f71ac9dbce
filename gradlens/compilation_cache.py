"""JAX's persistent compilation cache for `gradlens` commands: a second run of the same command skips most of XLA's
compilation (on 2 CPU cores, compilation is most of a short audit's time).

The folder is `$GRADLENS_COMPILATION_CACHE` when set (`off` turns the cache off), else
`$XDG_CACHE_HOME/gradlens/jax` (default `~/.cache/gradlens/jax`). Entries are keyed by the computation, the JAX and
XLA versions and the machine, so a stale entry is never used; the folder can be deleted at any time. Only
compilations that take at least MIN_COMPILE_S are stored. The Python API leaves JAX's configuration alone; call
`enable()` to use the cache there too.

`jit_once` compiles the programs an audit runs once (its zeroth-order gradient estimates, Jacobians, landscape grids,
data collection, model initialisation and error curves) with the XLA options `ONE_SHOT`: without the backend's
optimisation passes they compile about twice as fast and run slower (by milliseconds at the demo's sizes, up to about
5x on small programs), the better trade for a program run once (`benchmarks/README.md`, "Demo wall time"). Programs
run many times (a fit's epochs, the trainers) keep XLA's defaults, and so do the audit's first-order policy
gradients, which must be the trainer's bit for bit (`tests/test_dynamics.py`).
"""
from __future__ import annotations

import functools
import os
from pathlib import Path

ENV = "GRADLENS_COMPILATION_CACHE"
MIN_COMPILE_S = 0.2
ONE_SHOT = {"xla_backend_optimization_level": 0}


def folder() -> Path | None:
    """The cache folder this process would use, or None when `$GRADLENS_COMPILATION_CACHE` is `off`."""
    chosen = os.environ.get(ENV)
    if chosen is not None:
        return None if chosen.strip().lower() in ("", "off", "0", "false", "no") else Path(chosen).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "gradlens" / "jax"


def enable() -> Path | None:
    """Turn the persistent cache on for this process (before its first compilation); returns the folder, or None when
    it is off or cannot be created (the command then simply compiles, as without a cache)."""
    path = folder()
    if path is None:
        return None
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    import jax

    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_S)
    return path


def jit_once(fn, **jit_kwargs):
    """`jax.jit(fn, **jit_kwargs)` compiled with `ONE_SHOT` when called at top level; called inside another trace (a
    caller's jit, vmap or grad), the plain jit, since XLA options belong to the outermost program. Usable as
    `@functools.partial(jit_once, static_argnames=...)`."""
    import jax

    once = jax.jit(fn, compiler_options=ONE_SHOT, **jit_kwargs)
    nested = jax.jit(fn, **jit_kwargs)

    @functools.wraps(fn)
    def call(*args, **kwargs):
        if any(isinstance(x, jax.core.Tracer) for x in jax.tree_util.tree_leaves((args, kwargs))):
            return nested(*args, **kwargs)
        try:
            return once(*args, **kwargs)
        except ValueError as err:  # traced values reached fn through its closure (under a caller's grad, say)
            if "compiler_options" not in str(err):
                raise
            return nested(*args, **kwargs)

    call._cache_size = lambda: once._cache_size() + nested._cache_size()  # programs compiled so far (as a jit's)
    return call
