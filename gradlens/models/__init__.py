"""World models behind one interface: `make(name, system, **overrides)`, `names()`, `register(name, factory)`.

    markov            ŝ_{t+1} = ŝ_t + f(ŝ_t, a_t)                      MLP (64, 64) swish, residual
    hwm-rnn           ŝ_{t+1} = g(s_1, [ŝ_1, a_1], …, [ŝ_t, a_t])       LSTM 48
    hwm-transformer                                                   causal transformer, KV-cached rollout
    awm-rnn           ŝ_{t+1} = g(s_1, a_1, …, a_t)                    LSTM 48
    awm-transformer                                                   causal transformer, one pass open-loop
    awm-ssm                                                           diagonal LRU stack, associative scan

A factory is `factory(system, **overrides) -> WorldModel`; built-in factories are imported lazily. A user model is a
Haiku core (prime / step / optional sequence) wrapped in a `WorldModel` and registered: see docs/models.md.
"""
from __future__ import annotations

import importlib
from typing import Callable

from gradlens.envs.base import System
from gradlens.models.base import NORMALIZER, ModelConfig, WorldModel, build_config

Factory = Callable[..., WorldModel]  # (system, **overrides) -> WorldModel

_FACTORIES: dict[str, str | Factory] = {
    "markov": "gradlens.models.markov:make_markov",
    "hwm-rnn": "gradlens.models.history:make_hwm_rnn",
    "hwm-transformer": "gradlens.models.history:make_hwm_transformer",
    "awm-rnn": "gradlens.models.actions:make_awm_rnn",
    "awm-transformer": "gradlens.models.actions:make_awm_transformer",
    "awm-ssm": "gradlens.models.actions:make_awm_ssm",
}


def names() -> list[str]:
    """All registered model names (built-in and user-registered), sorted."""
    return sorted(_FACTORIES)


def factory(name: str) -> Factory:
    """The factory of model `name` (ValueError listing the valid names if unknown)."""
    if not isinstance(name, str) or name not in _FACTORIES:
        raise ValueError(f"unknown model {name!r}; valid models: {', '.join(names())}")
    entry = _FACTORIES[name]
    if isinstance(entry, str):
        module, function = entry.split(":")
        entry = getattr(importlib.import_module(module), function)
    return entry


def make(name: str, system: System, **overrides) -> WorldModel:
    """World model `name` of `system` with config overrides (sizes, normalize, max_horizon, ...).

    Raises ValueError for an unknown name (listing the valid ones), a system that is not a `System`, or an unknown
    or invalid override (listing the allowed ones).
    """
    build = factory(name)
    if not isinstance(system, System):
        raise ValueError(f"system must be a gradlens System (gradlens.envs.make(...)), got {type(system).__name__}")
    return build(system, **overrides)


def register(name: str, build: Factory, *, overwrite: bool = False) -> None:
    """Make `make(name, system, **overrides)` call `build(system, **overrides)`, which must return a `WorldModel`.

    ValueError if `name` is taken (pass overwrite=True to replace a user model) or not a non-empty string.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"model name must be a non-empty string, got {name!r}")
    if not callable(build):
        raise ValueError(f"factory for {name!r} must be callable (system, **overrides) -> WorldModel")
    if name in _FACTORIES and not (overwrite and not isinstance(_FACTORIES[name], str)):
        raise ValueError(f"model {name!r} is already registered" +
                         ("" if isinstance(_FACTORIES[name], str) else "; pass overwrite=True to replace it"))
    _FACTORIES[name] = build


__all__ = ["NORMALIZER", "ModelConfig", "WorldModel", "build_config", "factory", "make", "names", "register"]
