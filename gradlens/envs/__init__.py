"""Registry of differentiable systems: `names()`, `make(name, **overrides)`.

Each system lives in its own module as a builder function `make_<name>(horizon=..., noise_std=..., **constants)`
returning a `System`. Builders are imported lazily, so `import gradlens` stays cheap. Adding a system to gradlens is
one new module plus one line in `_BUILDERS`; a system of your own, outside the package, is `register(name, builder)`
(then `make`, `rollout`, `audit`, `train` and the CLI in the same process accept its name).
"""
from __future__ import annotations

import functools
import importlib
import inspect

import jax
import jax.numpy as jnp

from gradlens.envs.base import System, affine_to_bounds, physical, time_index, with_time

_BUILDERS: dict[str, object] = {  # name -> "module:function" (imported on first use) or the builder itself
    "bacteria": "gradlens.envs.myriad.bacteria:make_bacteria",
    "bear_populations": "gradlens.envs.myriad.bear_populations:make_bear_populations",
    "brax_ant": "gradlens.envs.physics:make_brax_ant",
    "brax_hopper": "gradlens.envs.physics:make_brax_hopper",
    "brax_inverted_double_pendulum": "gradlens.envs.physics:make_brax_inverted_double_pendulum",
    "brax_inverted_pendulum": "gradlens.envs.physics:make_brax_inverted_pendulum",
    "brax_reacher": "gradlens.envs.physics:make_brax_reacher",
    "bioreactor": "gradlens.envs.myriad.bioreactor:make_bioreactor",
    "cancer": "gradlens.envs.myriad.cancer:make_cancer",
    "double_pendulum": "gradlens.envs.pendulum:make_double_pendulum",
    "glucose": "gradlens.envs.myriad.glucose:make_glucose",
    "harvest": "gradlens.envs.myriad.harvest:make_harvest",
    "hiv": "gradlens.envs.myriad.hiv:make_hiv",
    "linear": "gradlens.envs.linear:make_linear",
    "lorenz96": "gradlens.envs.lorenz96:make_lorenz96",
    "mould_fungicide": "gradlens.envs.myriad.mould_fungicide:make_mould_fungicide",
    "one_bounce": "gradlens.envs.bounce:make_one_bounce",
    "predator_prey": "gradlens.envs.myriad.predator_prey:make_predator_prey",
    "timber_harvest": "gradlens.envs.myriad.timber_harvest:make_timber_harvest",
}

MYRIAD = ("cancer", "bear_populations", "bioreactor", "hiv", "mould_fungicide", "bacteria", "predator_prey",
          "glucose", "harvest", "timber_harvest")
PHYSICS = ("brax_reacher", "brax_inverted_pendulum", "brax_inverted_double_pendulum", "brax_hopper", "brax_ant")


def names() -> list[str]:
    """All registered system names, sorted."""
    return sorted(_BUILDERS)


def _any_brax(name) -> bool:
    """Is `name` of the form "brax_<env>" or "brax_<env>_<backend>" (any Brax environment; docs/physics.md)?"""
    return isinstance(name, str) and name.startswith("brax_") and len(name) > 5 and name.isidentifier() \
        and name == name.lower()


def known(name) -> bool:
    """Is `name` a system `make` can build: a registered name, or any Brax environment as "brax_<env>" or
    "brax_<env>_<backend>" (whether Brax has that environment is checked when it is built)?"""
    return isinstance(name, str) and (name in _BUILDERS or _any_brax(name))


def check(name) -> str:
    """`name` if `known`, else ValueError listing the valid names."""
    if not known(name):
        raise ValueError(f"unknown system {name!r}; valid systems: {', '.join(names())}; or any Brax environment "
                         f"as brax_<env> or brax_<env>_<backend>")
    return name


def builder(name: str):
    """The builder function of system `name` (ValueError listing the valid names if unknown)."""
    check(name)
    if name not in _BUILDERS:
        from gradlens.envs import physics

        return physics.named_builder(name)
    found = _BUILDERS[name]
    if callable(found):
        return found
    module, function = found.split(":")
    return getattr(importlib.import_module(module), function)


def register(name: str, build, *, overwrite: bool = False) -> None:
    """Register `build(horizon=..., noise_std=..., **constants) -> System` as system `name`. ValueError for a name
    that is not a lowercase identifier, a builder without `horizon` and `noise_std` keywords, or a taken name (unless
    `overwrite`)."""
    if not isinstance(name, str) or not name.isidentifier() or name != name.lower():
        raise ValueError(f"a system name must be a lowercase identifier such as 'my_system', got {name!r}")
    if not callable(build):
        raise ValueError(f"the builder of system {name!r} must be callable, got {type(build).__name__}")
    missing = {"horizon", "noise_std"} - set(inspect.signature(build).parameters)
    if missing:
        raise ValueError(f"the builder of system {name!r} must take the keywords horizon and noise_std (every "
                         f"command sets them); it lacks {', '.join(sorted(missing))}")
    if name in _BUILDERS and not overwrite:
        raise ValueError(f"system {name!r} is already registered; pass overwrite=True to replace it")
    _BUILDERS[name] = build


def overrides(name: str) -> dict[str, object]:
    """The keyword overrides `make(name, ...)` accepts, with their defaults."""
    return {p.name: p.default for p in inspect.signature(builder(name)).parameters.values()}


def make(name: str, **kwargs) -> System:
    """Build system `name` with keyword overrides (horizon, noise_std, physical constants, ...).

    The same name, builder, overrides and float mode (x64 on or off) give the same `System` object (the last 128 are
    kept): a System is immutable, and JAX's compiled functions of it are found again instead of being traced and
    compiled anew (each build makes new closures). Overrides that cannot be hashed (lists) build afresh.
    Raises ValueError for an unknown name (listing the valid ones) or an unknown override (listing the allowed ones).
    """
    allowed = overrides(name)
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ValueError(
            f"unknown override(s) {', '.join(map(repr, unknown))} for system {name!r}; "
            f"allowed: {', '.join(sorted(allowed))}"
        )
    build = builder(name)
    key = (name, build, jax.dtypes.canonicalize_dtype(jnp.float64).name, tuple(sorted(kwargs.items())))
    try:
        hash(key)
    except TypeError:
        return build(**kwargs)
    return _build(*key)


@functools.lru_cache(maxsize=128)
def _build(name: str, build, float_mode: str, items: tuple) -> System:
    return build(**dict(items))


__all__ = ["System", "MYRIAD", "PHYSICS", "affine_to_bounds", "builder", "check", "known", "make", "names",
           "overrides", "physical", "register", "time_index", "with_time"]
