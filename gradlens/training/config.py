"""`TrainConfig`, the run configuration: what every method shares, plus each method's own frozen settings nested in
it (`bpo`, `baseline`), each validated when built.

config.json keeps the flat layout of the first runs, so that their folders load and resume unchanged: the BPO
options are top-level keys, a baseline's settings the object `baseline`, and the fields added later
(`_LATER_FIELDS`) are left out at their defaults.
"""
from __future__ import annotations

import dataclasses

from gradlens import envs, validate
from gradlens.training import methods
from gradlens.training.methods import BPOConfig, ODTConfig, SACConfig

_RUN_FIELDS = ("system", "method", "horizon", "total_steps", "warmup_steps", "eval_every", "noise_std", "seed",
               "seeds")
_BPO_FIELDS = tuple(f.name for f in dataclasses.fields(BPOConfig))
_LATER_FIELDS = {"remat": True, "simulator_grad_clip": None, "policy_time_input": "raw",
                 "nonfinite_policy_grad": "stop", "discount": 1.0, "truncate": None, "update_rule": "adam",
                 "natural_kl": 0.01}


@dataclasses.dataclass(frozen=True, init=False)
class TrainConfig:
    """Run configuration; defaults are the paper's (PAPER.md §6). Steps count real-environment steps.

    Fields:
      system, method: names (`envs.names()`, `methods.names()`: "simulator", a gradlens.models name, "sac", "odt").
      horizon: H, actions per episode.
      total_steps: env steps of the run; warmup_steps: env steps before the first update (None: the method's
        default, `methods.default_warmup`); eval_every: env steps per chunk, each ending in an evaluation.
      noise_std: process noise of the system; seed, seeds: seeds seed, seed+1, ... trained together under vmap.
      bpo: the BPO options (BPOConfig); a baseline reads only its entropy_coef (SAC's α).
      baseline: "sac" / "odt" only, a SACConfig / ODTConfig (a dict of its fields, or None for the defaults, is
        converted); None for BPO methods.

    The BPO options may also be given and read by their own names, as in config.json: `TrainConfig(policy_lr=3e-4)`
    is `TrainConfig(bpo=BPOConfig(policy_lr=3e-4))`, and `config.policy_lr` is `config.bpo.policy_lr`.
    """

    system: str
    method: str
    horizon: int
    total_steps: int
    warmup_steps: int
    eval_every: int
    noise_std: float
    seed: int
    seeds: int
    bpo: BPOConfig
    baseline: SACConfig | ODTConfig | None

    def __init__(self, system: str = "cancer", method: str = "awm-transformer", horizon: int = 100,
                 total_steps: int = 5000, warmup_steps: int | None = None, *, eval_every: int = 32,
                 noise_std: float = 0.0, seed: int = 0, seeds: int = 1, bpo: BPOConfig | None = None,
                 baseline: SACConfig | ODTConfig | dict | None = None, **bpo_options):
        unknown = sorted(set(bpo_options) - set(_BPO_FIELDS))
        if unknown:
            raise TypeError(f"TrainConfig got unknown option(s) {', '.join(unknown)}; valid: "
                            f"{', '.join(sorted((*_RUN_FIELDS, *_BPO_FIELDS, 'bpo', 'baseline')))}")
        bpo = methods.settings_from_dict(BPOConfig, {} if bpo is None else bpo, "bpo")
        values = dict(system=system, method=method, horizon=horizon, total_steps=total_steps,
                      warmup_steps=warmup_steps, eval_every=eval_every, noise_std=noise_std, seed=seed, seeds=seeds,
                      bpo=dataclasses.replace(bpo, **bpo_options) if bpo_options else bpo, baseline=baseline)
        for name, value in values.items():
            object.__setattr__(self, name, value)
        self._validate()

    def _validate(self) -> None:
        envs.check(self.system)
        validate.name(self.method, methods.names(), "method")
        if self.warmup_steps is None:
            object.__setattr__(self, "warmup_steps", methods.default_warmup(self.method))
        validate.horizon(self.horizon)
        for name in ("total_steps", "eval_every"):
            validate.positive_int(getattr(self, name), name)
        validate.seed_count(self.seeds)
        validate.integer(self.warmup_steps, "warmup_steps", low=0)
        if self.total_steps <= self.warmup_steps:
            raise ValueError(f"total_steps ({self.total_steps}) must exceed warmup_steps ({self.warmup_steps}): no "
                             "update would run; raise --steps or lower --warmup")
        validate.seed(self.seed)
        self.bpo.check(self)  # builds the system: checks noise_std
        object.__setattr__(self, "baseline", methods.baseline_settings(self.method, self.baseline))
        if self.baseline is not None:
            self.baseline.check(self)

    def __getattr__(self, name: str):
        """The BPO options by their config.json names: `config.policy_lr` is `config.bpo.policy_lr`."""
        if name in _BPO_FIELDS:
            return getattr(self.bpo, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def zeroes_nonfinite_policy_grad(self) -> bool:
        """True when the run zeroes non-finite policy gradients (a BPO method with nonfinite_policy_grad="zero")."""
        return self.bpo.nonfinite_policy_grad == "zero" and self.method not in methods.BASELINES

    def to_dict(self) -> dict:
        """config.json's flat layout: the run fields, the BPO options, `baseline` (baselines only); the fields added
        after the first runs (`_LATER_FIELDS`) are left out at their defaults, so older runs' files stay the same."""
        data = {name: getattr(self, name) for name in _RUN_FIELDS}
        data.update(dataclasses.asdict(self.bpo))
        for name, default in _LATER_FIELDS.items():
            if data[name] == default:
                del data[name]
        if self.baseline is not None:
            data["baseline"] = dataclasses.asdict(self.baseline)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        """Inverse of `to_dict`; unknown keys raise ValueError listing the valid ones."""
        keys = {*_RUN_FIELDS, *_BPO_FIELDS, "baseline"}
        unknown = sorted(set(data) - keys)
        if unknown:
            raise ValueError(f"unknown config key(s) {', '.join(map(repr, unknown))}; valid keys: "
                             f"{', '.join(sorted(keys))}")
        return cls(**data)


def run_name(config: TrainConfig) -> str:
    """Deterministic folder name of a run, so `--resume` finds it again."""
    seeds = f"seed{config.seed}" if config.seeds == 1 else f"seeds{config.seed}-{config.seed + config.seeds - 1}"
    time_input = "" if config.policy_time_input == "raw" else f"-t{config.policy_time_input}"
    nonfinite = "-zeronan" if config.zeroes_nonfinite_policy_grad else ""
    return f"{config.system}-{config.method}-H{config.horizon}{time_input}{nonfinite}{_stabilisers(config)}-{seeds}"


def _stabilisers(config: TrainConfig) -> str:
    """The run name's part for BPO stabilisers set away from their defaults ("" for the paper's settings, so the
    names of earlier runs do not change): -clipC, -gG, -tbpttK, -naturalD."""
    if config.method in methods.BASELINES:
        return ""
    bpo, default = config.bpo, BPOConfig()
    clip = bpo.simulator_grad_clip if config.method == methods.SIMULATOR else bpo.grad_clip
    parts = [f"-clip{clip:g}" if clip != (None if config.method == methods.SIMULATOR else default.grad_clip) else "",
             f"-g{bpo.discount:g}" if bpo.discount != 1.0 else "",
             f"-tbptt{bpo.truncate}" if bpo.truncate is not None else "",
             f"-natural{bpo.natural_kl:g}" if bpo.update_rule == "natural" else ""]
    return "".join(parts)
