"""The sequence-model core shared by History (HWM) and Actions (AWM) world models, and its configs.

Glossary of shapes: H horizon, T = H + 1 token positions, D physical state dim, A action dim, E width.

Tokens (PAPER.md §2.1), built from the normalised physical state only (time enters through the position embedding):

    x_0 = E_s(s_1) + P(0)
    x_t = E_a(a_t) + P(t)              AWM: predicted states never re-enter the model
    x_t = E([ŝ_t, a_t]) + P(t)         HWM: its own predictions in a rollout (ŝ_1 = s_1), true states when fitting

for t = 1 … H; a backbone (causal transformer, LSTM or LRU stack) maps them to features and an MLP decoder maps the
feature at position t to the absolute prediction ŝ_{t+1} [D]. P is a learned table of max_horizon + 1 rows.
"""
from __future__ import annotations

import dataclasses

import haiku as hk
import jax
import jax.numpy as jnp

from gradlens.envs.base import System
from gradlens.models.base import ModelConfig, WorldModel, build_config
from gradlens.models.layers import CausalTransformer, LSTMBackbone, TimeEmbedding, lecun_uniform, mlp
from gradlens.models.ssm import SSMBackbone

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class TransformerConfig(ModelConfig):
    """Causal transformer (GPT-2 blocks, pre-LN): width E, layers, heads (E % heads == 0), MLP inner mlp_ratio·E;
    embedders `embed_hidden` -> E (() = one Dense layer, as the paper), decoder `decoder_hidden` relu -> D."""

    width: int = 48
    layers: int = 2
    heads: int = 3
    mlp_ratio: int = 4
    embed_hidden: tuple[int, ...] = ()
    decoder_hidden: tuple[int, ...] = (64, 64)

    def __post_init__(self):
        super().__post_init__()
        if self.width % self.heads:
            raise ValueError(f"width ({self.width}) must be a multiple of heads ({self.heads})")

    def backbone(self) -> hk.Module:
        return CausalTransformer(self.width, self.layers, self.heads, self.mlp_ratio, name="transformer")


@dataclasses.dataclass(frozen=True)
class LSTMConfig(ModelConfig):
    """LSTM of `width` units; embedders MLP `embed_hidden` relu -> width; decoder MLP `decoder_hidden` relu -> D."""

    width: int = 48
    embed_hidden: tuple[int, ...] = (64, 64)
    decoder_hidden: tuple[int, ...] = (64, 64)

    def backbone(self) -> hk.Module:
        return LSTMBackbone(self.width, name="lstm")


@dataclasses.dataclass(frozen=True)
class SSMConfig(ModelConfig):
    """LRU stack: `layers` units of width E and `state` complex states, |λ| initialised in [r_min, r_max] (< 1),
    phases in [0, max_phase]; embedders `embed_hidden` -> E; decoder `decoder_hidden` relu -> D."""

    width: int = 48
    layers: int = 2
    state: int = 48
    r_min: float = 0.5
    r_max: float = 0.99
    max_phase: float = 3.14
    embed_hidden: tuple[int, ...] = ()
    decoder_hidden: tuple[int, ...] = (64, 64)

    def __post_init__(self):
        super().__post_init__()
        if not (isinstance(self.r_min, (int, float)) and isinstance(self.r_max, (int, float))
                and 0.0 <= self.r_min < self.r_max < 1.0):
            raise ValueError(f"need 0 <= r_min < r_max < 1 (stable recurrences), got r_min={self.r_min!r}, "
                             f"r_max={self.r_max!r}")
        if not (isinstance(self.max_phase, (int, float)) and self.max_phase > 0):
            raise ValueError(f"max_phase must be a positive number, got {self.max_phase!r}")

    def backbone(self) -> hk.Module:
        return SSMBackbone(self.width, self.layers, self.state, self.r_min, self.r_max, self.max_phase, name="ssm")


class TokenCore(hk.Module):
    """Embed tokens, run `config.backbone()`, decode: the core of every HWM / AWM (subclasses set reads_states)."""

    reads_states: bool

    def __init__(self, config, system: System, name: str | None = None):
        super().__init__(name=name)
        e = config.width
        self.embed_s1 = mlp(config.embed_hidden, e, w_init=lecun_uniform(), name="embed_s1")  # E_s
        self.embed_token = mlp(config.embed_hidden, e, w_init=lecun_uniform(), name="embed_token")  # E_a or E
        self.position = TimeEmbedding(config.max_horizon + 1, e, name="time_embedding")  # P
        self.backbone = config.backbone()
        self.decoder = mlp(config.decoder_hidden, system.state_dim, name="decoder")

    def _token(self, x: Array, action: Array) -> Array:
        """E([x, a]) (HWM) or E_a(a) (AWM): [..., E]."""
        return self.embed_token(jnp.concatenate([x, action], -1) if self.reads_states else action)

    def sequence(self, xs: Array, actions: Array) -> Array:
        """ys [H, D] from xs [H, D] (AWM: xs[0] only) and actions [H, A]: one causal pass over H + 1 tokens."""
        horizon = actions.shape[0]
        tokens = jnp.concatenate([self.embed_s1(xs[0])[None], self._token(xs, actions)])  # [T, E]
        tokens = tokens + self.position(jnp.arange(horizon + 1), tokens.dtype)
        return self.decoder(self.backbone(tokens)[1:])  # outputs at positions 1 … H

    def prime(self, x1: Array, horizon: int):
        """Backbone memory after token x_0 = E_s(s_1) + P(0), sized for H + 1 positions."""
        token = self.embed_s1(x1) + self.position(0, x1.dtype)
        memory = self.backbone.initial(horizon + 1, token.dtype)
        return self.backbone.step(token, memory, jnp.zeros((), jnp.int32))[1]

    def step(self, memory, x: Array, action: Array, t: Array):
        """Token at position t + 1 from x = states[t] [D] and action = actions[t] [A] -> (memory, y [D]);
        y predicts states[t + 1]."""
        token = self._token(x, action.astype(x.dtype))
        out, memory = self.backbone.step(token + self.position(t + 1, token.dtype), memory, t + 1)
        return memory, self.decoder(out)

    def step_probed(self, x: Array, action: Array, t: Array, frozen, probes):
        """`step` recomputed in a reverse pass against `frozen`, the final memory of the same rollout (transformer
        backbones only, see `CausalTransformer.step_probed`) -> (y [D], new cache entries, per-layer (q, weights))."""
        token = self._token(x, action.astype(x.dtype))
        out, entries, aux = self.backbone.step_probed(token + self.position(t + 1, token.dtype), frozen, t + 1, probes)
        return self.decoder(out), entries, aux


def sequence_model(name: str, system: System, config_cls: type, core: type, overrides: dict) -> WorldModel:
    """A `WorldModel` called `name` with core class `core` and config `config_cls(**overrides)`."""
    return WorldModel(name, system, build_config(config_cls, name, overrides), core.reads_states, core)
