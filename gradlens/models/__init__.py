"""World models behind one interface: `make(name, system, **overrides)`, `names()`, `register(name, factory)`, and
each class's `structure(name)` (its kind, network and the paper's depth, which the gradient-path graphs read).

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

import dataclasses
import importlib
from typing import Callable

from gradlens import validate
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
KINDS = ("markov", "hwm", "awm")
NETWORKS = {"markov": ("mlp",), "hwm": ("rnn", "transformer", "ssm"), "awm": ("rnn", "transformer", "ssm")}


@dataclasses.dataclass(frozen=True)
class Structure:
    """A model class's shape, as its gradient graph (`gradlens.analysis.paths`) reads it.

    kind: "markov" ŝ_{t+1} = ŝ_t + f(ŝ_t, a_t) (network "mlp"); "hwm" ŝ_{t+1} from s_1 and every [ŝ_j, a_j], j <= t;
    "awm" ŝ_{t+1} from s_1 and a_{1:t} (network "rnn", "transformer" or "ssm" for both). paper_layers: the depth of
    the paper's network (MLP hidden layers, LSTM layers, GPT-2 blocks, S4 layers), the graphs' default depth.
    """

    kind: str
    network: str
    paper_layers: int

    def __post_init__(self):
        validate.one_of(self.kind, KINDS, "structure kind")
        validate.one_of(self.network, NETWORKS[self.kind], f"network of a {self.kind} model")
        validate.positive_int(self.paper_layers, "paper_layers")


# The built-in classes; depths of the paper code's networks: MLP 64-64, one LSTM, GPT-2 with 2 blocks, S4 3 layers.
_STRUCTURES: dict[str, Structure] = {
    "markov": Structure("markov", "mlp", 2),
    "hwm-rnn": Structure("hwm", "rnn", 1),
    "hwm-transformer": Structure("hwm", "transformer", 2),
    "awm-rnn": Structure("awm", "rnn", 1),
    "awm-transformer": Structure("awm", "transformer", 2),
    "awm-ssm": Structure("awm", "ssm", 3),
}


def names() -> list[str]:
    """All registered model names (built-in and user-registered), sorted."""
    return sorted(_FACTORIES)


def _known(name: str) -> str:
    if not isinstance(name, str) or name not in _FACTORIES:
        raise ValueError(f"unknown model {name!r}; valid models: {', '.join(names())}")
    return name


def factory(name: str) -> Factory:
    """The factory of model `name` (ValueError listing the valid names if unknown)."""
    entry = _FACTORIES[_known(name)]
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


def structure(name: str) -> Structure | None:
    """The `Structure` model `name` was registered with (None: registered without one; ValueError if unknown)."""
    return _STRUCTURES.get(_known(name))


def structures() -> dict[str, Structure]:
    """Every model registered with a `Structure`, name -> structure, built-in ones first, in registration order."""
    return {name: _STRUCTURES[name] for name in _FACTORIES if name in _STRUCTURES}


def register(name: str, build: Factory, *, structure: Structure | None = None, overwrite: bool = False) -> None:
    """Make `make(name, system, **overrides)` call `build(system, **overrides)`, which must return a `WorldModel`.

    `structure` (optional) states the model's kind and network, so that `gradlens.analysis.paths` can draw and count
    its gradient graph. ValueError if `name` is taken (pass overwrite=True to replace a user model) or not a
    non-empty string, or `structure` is not a `Structure`.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"model name must be a non-empty string, got {name!r}")
    if not callable(build):
        raise ValueError(f"factory for {name!r} must be callable (system, **overrides) -> WorldModel")
    if structure is not None and not isinstance(structure, Structure):
        raise ValueError(f"structure of {name!r} must be a gradlens.models.Structure, got {structure!r}")
    if name in _FACTORIES and not (overwrite and not isinstance(_FACTORIES[name], str)):
        raise ValueError(f"model {name!r} is already registered" +
                         ("" if isinstance(_FACTORIES[name], str) else "; pass overwrite=True to replace it"))
    _FACTORIES[name] = build
    _STRUCTURES.pop(name, None)
    if structure is not None:
        _STRUCTURES[name] = structure


__all__ = ["KINDS", "NETWORKS", "NORMALIZER", "ModelConfig", "Structure", "WorldModel", "build_config", "factory",
           "make", "names", "register", "structure", "structures"]
