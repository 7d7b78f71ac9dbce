"""Registry of differentiable systems: `names()`, `make(name, **overrides)`.

Each system lives in its own module as a builder function `make_<name>(horizon=..., noise_std=..., **constants)`
returning a `System`. Builders are imported lazily, so `import gradlens` stays cheap. Adding a system is one new
module plus one line in `_BUILDERS`.
"""
from __future__ import annotations

import importlib
import inspect

from gradlens.envs.base import System, affine_to_bounds

_BUILDERS: dict[str, str] = {
    "bacteria": "gradlens.envs.myriad.bacteria:make_bacteria",
    "bear_populations": "gradlens.envs.myriad.bear_populations:make_bear_populations",
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


def names() -> list[str]:
    """All registered system names, sorted."""
    return sorted(_BUILDERS)


def builder(name: str):
    """The builder function of system `name` (ValueError listing the valid names if unknown)."""
    if not isinstance(name, str) or name not in _BUILDERS:
        raise ValueError(f"unknown system {name!r}; valid systems: {', '.join(names())}")
    module, function = _BUILDERS[name].split(":")
    return getattr(importlib.import_module(module), function)


def overrides(name: str) -> dict[str, object]:
    """The keyword overrides `make(name, ...)` accepts, with their defaults."""
    return {p.name: p.default for p in inspect.signature(builder(name)).parameters.values()}


def make(name: str, **kwargs) -> System:
    """Build system `name` with keyword overrides (horizon, noise_std, physical constants, ...).

    Raises ValueError for an unknown name (listing the valid ones) or an unknown override (listing the allowed ones).
    """
    allowed = overrides(name)
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ValueError(
            f"unknown override(s) {', '.join(map(repr, unknown))} for system {name!r}; "
            f"allowed: {', '.join(sorted(allowed))}"
        )
    return builder(name)(**kwargs)


__all__ = ["System", "MYRIAD", "affine_to_bounds", "builder", "make", "names", "overrides"]
