"""JAX's persistent compilation cache for `gradlens` commands: a second run of the same command skips most of XLA's
compilation (on 2 CPU cores, compilation is most of a short audit's time).

The folder is `$GRADLENS_COMPILATION_CACHE` when set (`off` turns the cache off), else
`$XDG_CACHE_HOME/gradlens/jax` (default `~/.cache/gradlens/jax`). Entries are keyed by the computation, the JAX and
XLA versions and the machine, so a stale entry is never used; the folder can be deleted at any time. Only
compilations that take at least MIN_COMPILE_S are stored. The Python API leaves JAX's configuration alone; call
`enable()` to use the cache there too.
"""
from __future__ import annotations

import os
from pathlib import Path

ENV = "GRADLENS_COMPILATION_CACHE"
MIN_COMPILE_S = 0.2


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
