"""The training methods, one module per family, each a `protocol.Method` built from a run config:

    bpo   BPO through the true simulator ("simulator") or through a world model (every gradlens.models name)
    sac   soft actor-critic, a model-free baseline (`SACConfig`)
    odt   Online Decision Transformer, a model-free baseline (`ODTConfig`; network in `decision_transformer`)

Every method but BPO is registered: `register(name, settings_cls, build)` (one call per method, at the end of this
module for the built-in ones) makes `name` valid in `TrainConfig(method=...)`, its settings the run config's
`baseline`, and `make` call `build(config)`. A new method is one module implementing `protocol.Method` plus that call.

A baseline reads these run-config fields: system, horizon, total_steps, warmup_steps (None: the baseline's
`default_warmup`), eval_every, noise_std, seed, seeds, and for SAC the BPO options' entropy_coef (its fixed α); its
own hyperparameters are the run config's `baseline`. Its metrics: `model_loss` is SAC's critic loss or ODT's action
NLL, `policy_grad_norm` the actor's / transformer's gradient norm, and the simulator comparisons are NaN.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

from gradlens import models, validate
from gradlens.training.methods.bpo import BPO_WARMUP_STEPS, SIMULATOR, BPOConfig, make_bpo
from gradlens.training.methods.odt import ODTConfig, make_odt
from gradlens.training.methods.sac import SACConfig, make_sac
from gradlens.training.protocol import Method

BASELINES: dict[str, type] = {}  # registered method name -> its settings class, in registration order
_BUILDERS: dict[str, Callable[..., Method]] = {}  # registered method name -> build(config) -> Method


def register(name: str, settings_cls: type, build: Callable[..., Method], *, overwrite: bool = False) -> None:
    """Make `name` a training method: a run config `TrainConfig(method=name, baseline=...)` holds its settings, a
    `settings_cls` instance, and `make(config)` returns `build(config)`, a `protocol.Method`.

    settings_cls: a frozen dataclass whose fields all have defaults, with a ClassVar `default_warmup` (int >= 0, the
    run's warmup_steps when left unset) and a method `check(config)` (its constraints on the run config). ValueError
    for a name that is not a lowercase identifier or is a BPO method's (the simulator, a world model), for a taken
    name (unless `overwrite`), or for settings or a builder of the wrong kind.
    """
    if not isinstance(name, str) or not name.isidentifier() or name != name.lower():
        raise ValueError(f"a method name must be a lowercase identifier such as 'my_method', got {name!r}")
    if name == SIMULATOR or name in models.names():
        raise ValueError(f"method {name!r} is a BPO method (the simulator or a world model); choose another name")
    if name in BASELINES and not overwrite:
        raise ValueError(f"method {name!r} is already registered; pass overwrite=True to replace it")
    if not (isinstance(settings_cls, type) and dataclasses.is_dataclass(settings_cls)
            and settings_cls.__dataclass_params__.frozen and callable(getattr(settings_cls, "check", None))):
        raise ValueError(f"the settings of method {name!r} must be a frozen dataclass with a check(config) method, "
                         f"got {settings_cls!r}")
    validate.integer(getattr(settings_cls, "default_warmup", None), f"{settings_cls.__name__}.default_warmup", low=0)
    if not callable(build):
        raise ValueError(f"the builder of method {name!r} must be callable (config) -> Method")
    BASELINES[name] = settings_cls
    _BUILDERS[name] = build


def names() -> list[str]:
    """Every method: the true differentiable simulator, every world-model class, the registered methods (SAC, ODT,
    and any added with `register`)."""
    return [SIMULATOR, *models.names(), *BASELINES]


def default_warmup(method: str) -> int:
    """warmup_steps of a run of `method` that leaves it unset."""
    return BASELINES[method].default_warmup if method in BASELINES else BPO_WARMUP_STEPS


def settings_from_dict(cls, data, what: str):
    """`cls(**data)` for a settings dataclass `cls`; lists become tuples; a `cls` passes through; unknown keys raise
    listing the valid ones."""
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise ValueError(f"{what} settings must be a dict or a {cls.__name__}, got {type(data).__name__}")
    fields = sorted(f.name for f in dataclasses.fields(cls))
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"unknown {what} setting(s) {', '.join(map(repr, unknown))}; valid: {', '.join(fields)}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def baseline_settings(method: str, settings):
    """The settings of baseline `method` from None (the defaults), a dict (config.json) or the dataclass; None for a
    BPO method, which takes none."""
    if method not in BASELINES:
        if settings is not None:
            raise ValueError(f"baseline settings are for methods {', '.join(BASELINES)} only; method "
                             f"{method!r} takes none, got {settings!r}")
        return None
    return BASELINES[method]() if settings is None else settings_from_dict(BASELINES[method], settings, method)


def make(config) -> Method:
    """The Method of a run config: its registered builder's, BPO's for the simulator and the world models."""
    return _BUILDERS.get(config.method, make_bpo)(config)


register("sac", SACConfig, make_sac)
register("odt", ODTConfig, make_odt)

__all__ = ["BASELINES", "BPOConfig", "Method", "ODTConfig", "SACConfig", "baseline_settings", "default_warmup",
           "make", "names", "register", "settings_from_dict"]
