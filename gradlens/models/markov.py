"""Markovian world model: ŝ_{t+1} = ŝ_t + f(ŝ_t, a_t), f an MLP (64, 64) swish on the physical state (residual).

Glossary of shapes: H horizon, D physical state dim, A action dim. The time channel is appended exactly by the wrapper.
Unrolled, it is the state chain of an RNN whose hidden state is the predicted state (PAPER.md §2).
"""
from __future__ import annotations

import dataclasses

import haiku as hk
import jax
import jax.numpy as jnp

from gradlens.envs.base import System
from gradlens.models.base import ModelConfig, WorldModel, build_config
from gradlens.models.layers import activation, mlp

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class MarkovConfig(ModelConfig):
    """f: MLP `hidden` with `activation` (relu, swish, gelu, tanh, elu) -> D, added to the current state."""

    hidden: tuple[int, ...] = (64, 64)
    activation: str = "swish"

    def __post_init__(self):
        super().__post_init__()
        activation(self.activation)


class MarkovCore(hk.Module):
    """One-step residual MLP; no memory (carry = ())."""

    reads_states = True

    def __init__(self, config: MarkovConfig, system: System, name: str | None = None):
        super().__init__(name=name)
        self.f = mlp(config.hidden, system.state_dim, config.activation, name="f")

    def _next(self, x: Array, action: Array) -> Array:
        return x + self.f(jnp.concatenate([x, action.astype(x.dtype)], -1))  # [..., D]

    def sequence(self, xs: Array, actions: Array) -> Array:
        """ys [H, D]: ys[t] = xs[t] + f(xs[t], actions[t]) (teacher-forced one-step predictions)."""
        return self._next(xs, actions)

    def prime(self, x1: Array, horizon: int):
        return ()

    def step(self, carry, x: Array, action: Array, t: Array):
        return carry, self._next(x, action)


def make_markov(system: System, **overrides) -> WorldModel:
    """Markovian model of `system`; overrides: the fields of `MarkovConfig`."""
    return WorldModel("markov", system, build_config(MarkovConfig, "markov", overrides), True, MarkovCore)
