"""The Decision Transformer network of the Online DT (Zheng, Zhang, Grover 2022): a stochastic, return-conditioned
causal transformer over (return-to-go, state, action) tokens.

Glossary of shapes: K context (time steps in a window), 3K tokens, E embedding width, O observation dim, A action dim,
H horizon (rows of the time-step embedding).

Per time step k of a window the tokens are R̂_k, s_k, a_k (each a linear embedding plus the learned embedding of the
episode's time step), interleaved as [R̂_1, s_1, a_1, R̂_2, …] and LayerNorm-ed; GPT-2 blocks
(`layers.CausalTransformer`) run over the 3K tokens, and the output at s_k's token gives the tanh-Gaussian
π(a_k | R̂_≤k, s_≤k, a_<k) with log σ squashed into `log_std_bounds`. Causality means a window whose tail is not yet filled (an episode's first
steps) predicts its filled positions exactly as a shorter window would.
"""
from __future__ import annotations

import dataclasses
import functools

import haiku as hk
import jax
import jax.numpy as jnp

from gradlens.models.layers import CausalTransformer, TimeEmbedding

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class DecisionTransformer:
    """Fields: obs_dim O, action_dim A, horizon H (time steps 0 … H-1), width E, layers and heads of the GPT-2
    blocks (MLP width mlp_ratio·E), log_std_bounds of the pre-tanh Gaussian."""

    obs_dim: int
    action_dim: int
    horizon: int
    width: int = 64
    layers: int = 2
    heads: int = 2
    mlp_ratio: int = 4
    log_std_bounds: tuple[float, float] = (-5.0, 2.0)

    @functools.cached_property
    def _net(self) -> hk.Transformed:
        def forward(rtg, states, actions, timesteps):
            time = TimeEmbedding(self.horizon, self.width, name="time")(timesteps, states.dtype)  # [K, E]
            tokens = jnp.stack([hk.Linear(self.width, name="embed_return")(rtg[:, None]) + time,
                                hk.Linear(self.width, name="embed_state")(states) + time,
                                hk.Linear(self.width, name="embed_action")(actions) + time], axis=1)  # [K, 3, E]
            tokens = hk.LayerNorm(-1, True, True, name="embed_ln")(tokens.reshape(-1, self.width))  # [3K, E]
            out = CausalTransformer(self.width, self.layers, self.heads, self.mlp_ratio, name="gpt")(tokens)
            loc, raw = jnp.split(hk.Linear(2 * self.action_dim, name="action_head")(out[1::3]), 2, axis=-1)  # [K, A]
            low, high = self.log_std_bounds
            return loc, jnp.exp(low + 0.5 * (high - low) * (jnp.tanh(raw) + 1.0))

        return hk.without_apply_rng(hk.transform(forward))

    def init(self, key: Array, context: int):
        return self._net.init(key, jnp.zeros(context), jnp.zeros((context, self.obs_dim)),
                              jnp.zeros((context, self.action_dim)), jnp.zeros(context, jnp.int32))

    def apply(self, params, rtg: Array, states: Array, actions: Array, timesteps: Array) -> tuple[Array, Array]:
        """rtg [K], states [K, O], actions [K, A], timesteps [K] int -> (loc [K, A], scale [K, A]) for a_1 … a_K."""
        return self._net.apply(params, rtg, states, actions, timesteps)
