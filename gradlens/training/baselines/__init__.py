"""Model-free baselines (PAPER.md §4, §6), trained by the same `train()` loop, run store and metrics table as BPO.

    sac   soft actor-critic (`sac.py`, `SACConfig`)
    odt   Online Decision Transformer (`odt.py`, `ODTConfig`; network in `decision_transformer.py`)

A baseline reads these TrainConfig fields: system, horizon, total_steps, warmup_steps (None: the baseline's
`default_warmup`), eval_every, noise_std, seed, seeds, and for SAC entropy_coef (its fixed α). Its own
hyperparameters are `TrainConfig.baseline`, a SACConfig / ODTConfig (written to config.json as a nested object);
the BPO-only fields (model_*, policy_*, grad_clip, policy, policy_input_grad, compare_to_simulator) are unused.
Metrics: `model_loss` is SAC's critic loss or ODT's action NLL, `policy_grad_norm` the actor's / transformer's
gradient norm, and the simulator comparisons are NaN.
"""
from __future__ import annotations

from gradlens.training.baselines.common import config_from_dict
from gradlens.training.baselines.odt import ODTConfig, make_odt_trainer
from gradlens.training.baselines.sac import SACConfig, make_sac_trainer

CONFIGS = {"sac": SACConfig, "odt": ODTConfig}
_BUILDERS = {"sac": make_sac_trainer, "odt": make_odt_trainer}


def names() -> list[str]:
    """The baseline method names."""
    return list(CONFIGS)


def default_warmup(method: str) -> int | None:
    """The baseline's default warmup_steps, or None when `method` is not a baseline."""
    return CONFIGS[method].default_warmup if method in CONFIGS else None


def resolve(config):
    """`config.baseline` as the method's config dataclass (None for BPO methods), checked against `config`.

    Accepts None (the defaults), a dict (from config.json; unknown keys raise) or the dataclass itself.
    """
    settings = config.baseline
    if config.method not in CONFIGS:
        if settings is not None:
            raise ValueError(f"baseline settings are for methods {', '.join(names())} only; method "
                             f"{config.method!r} takes none, got {settings!r}")
        return None
    cls = CONFIGS[config.method]
    if settings is None:
        settings = cls()
    elif not isinstance(settings, cls):
        settings = config_from_dict(cls, settings, config.method)
    settings.check(config)
    return settings


def make_trainer(config):
    """The `Trainer` of a baseline TrainConfig (see `gradlens.training.loop.make_trainer`)."""
    return _BUILDERS[config.method](config)


__all__ = ["CONFIGS", "ODTConfig", "SACConfig", "default_warmup", "make_trainer", "names", "resolve"]
