"""The training methods, one module per family, each a `protocol.Method` built from a run config:

    bpo   BPO through the true simulator ("simulator") or through a world model (every gradlens.models name)
    sac   soft actor-critic, a model-free baseline (`SACConfig`)
    odt   Online Decision Transformer, a model-free baseline (`ODTConfig`; network in `decision_transformer`)

A baseline reads these run-config fields: system, horizon, total_steps, warmup_steps (None: the baseline's
`default_warmup`), eval_every, noise_std, seed, seeds, and for SAC the BPO options' entropy_coef (its fixed α); its
own hyperparameters are the run config's `baseline`. Its metrics: `model_loss` is SAC's critic loss or ODT's action
NLL, `policy_grad_norm` the actor's / transformer's gradient norm, and the simulator comparisons are NaN.
"""
from __future__ import annotations

import dataclasses

from gradlens import models
from gradlens.training.methods.bpo import BPO_WARMUP_STEPS, SIMULATOR, BPOConfig, make_bpo
from gradlens.training.methods.odt import ODTConfig, make_odt
from gradlens.training.methods.sac import SACConfig, make_sac
from gradlens.training.protocol import Method

BASELINES = {"sac": SACConfig, "odt": ODTConfig}  # method name -> its settings class


def names() -> list[str]:
    """Every method: the true differentiable simulator, every world-model class, the model-free baselines."""
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
    """The Method of a run config."""
    builders = {"sac": make_sac, "odt": make_odt}
    return builders.get(config.method, make_bpo)(config)


__all__ = ["BASELINES", "BPOConfig", "Method", "ODTConfig", "SACConfig", "baseline_settings", "default_warmup",
           "make", "names", "settings_from_dict"]
