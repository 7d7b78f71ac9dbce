"""Shared Haiku layers: MLPs, the learned time-step embedding, a KV-cached causal transformer, an LSTM backbone.

Glossary of shapes: T token positions (H + 1: position 0 holds s_1), E embedding width, h heads, dh = E / h head
width, L layers.

A *backbone* maps tokens to features causally and offers the same computation one token at a time:

    __call__(tokens [T, E]) -> [T, E]                 whole sequence (output t depends on tokens[:t + 1] only)
    initial(length, dtype) -> carry                   empty memory for `length` positions
    step(token [E], carry, pos, frozen=None) -> (out [E], carry)
                                                      the token at position pos (int32) given positions < pos;
                                                      frozen: the final carry of an identical rollout, read by
                                                      derivatives only (see `attend_cached`)
"""
from __future__ import annotations

import math

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

ACTIVATIONS = {"relu": jax.nn.relu, "swish": jax.nn.swish, "gelu": jax.nn.gelu, "tanh": jnp.tanh, "elu": jax.nn.elu}


def activation(name: str):
    """The activation function called `name` (ValueError listing the valid names)."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; valid: {', '.join(sorted(ACTIVATIONS))}")
    return ACTIVATIONS[name]


def lecun_uniform() -> hk.initializers.Initializer:
    """Variance-scaling uniform init, fan-in (the paper's embedders and policy)."""
    return hk.initializers.VarianceScaling(1.0, "fan_in", "uniform")


def mlp(hidden: tuple[int, ...], out: int, act: str = "relu", w_init=None, name: str | None = None) -> hk.nets.MLP:
    """MLP hidden… -> out, activation between layers, linear output (hidden = () gives one Dense layer)."""
    return hk.nets.MLP([*hidden, out], activation=activation(act), w_init=w_init, name=name)


class TimeEmbedding(hk.Module):
    """Learned table P [rows, E] of time-step embeddings (rows = max_horizon + 1, positions 0 … max_horizon)."""

    def __init__(self, rows: int, width: int, name: str | None = None):
        super().__init__(name=name)
        self.rows, self.width = rows, width

    def __call__(self, positions: Array, dtype) -> Array:
        """P[positions]: [..., E] for an int array of positions (each < rows)."""
        init = hk.initializers.TruncatedNormal(1.0 / math.sqrt(self.width))
        table = hk.get_parameter("table", [self.rows, self.width], dtype, init=init)  # [rows, E]
        return table[positions]


def causal_mask(length: int) -> np.ndarray:
    """[T, T] boolean, True where query t may attend to key k (k <= t)."""
    return np.tril(np.ones((length, length), dtype=bool))


def attend(q: Array, k: Array, v: Array, mask: Array) -> Array:
    """Softmax attention: q [Q, h, dh], k, v [K, h, dh], mask [Q, K] -> [Q, h, dh]; masked keys get weight 0."""
    logits = jnp.einsum("qhd,khd->hqk", q, k) / math.sqrt(q.shape[-1])  # [h, Q, K]
    logits = jnp.where(mask[None], logits, jnp.finfo(logits.dtype).min)
    return jnp.einsum("hqk,khd->qhd", jax.nn.softmax(logits, axis=-1), v)


class Block(hk.Module):
    """GPT-2 block, pre-LayerNorm: x + Attn(LN(x)), then x + MLP(LN(x)) with inner width mlp_ratio·E, gelu (tanh)."""

    def __init__(self, width: int, heads: int, mlp_ratio: int, name: str | None = None):
        super().__init__(name=name)
        self.width, self.heads = width, heads
        init = hk.initializers.RandomNormal(0.02)
        self.ln1 = hk.LayerNorm(-1, create_scale=True, create_offset=True, name="ln1")
        self.ln2 = hk.LayerNorm(-1, create_scale=True, create_offset=True, name="ln2")
        self.qkv = hk.Linear(3 * width, w_init=init, name="qkv")
        self.proj = hk.Linear(width, w_init=init, name="proj")
        self.fc = hk.Linear(mlp_ratio * width, w_init=init, name="fc")
        self.fc_out = hk.Linear(width, w_init=init, name="fc_out")

    def qkv_heads(self, x: Array) -> tuple[Array, Array, Array]:
        """x [..., E] -> q, k, v [..., h, dh]."""
        qkv = self.qkv(self.ln1(x)).reshape(*x.shape[:-1], 3, self.heads, self.width // self.heads)
        return qkv[..., 0, :, :], qkv[..., 1, :, :], qkv[..., 2, :, :]

    def finish(self, x: Array, att: Array) -> Array:
        x = x + self.proj(att.reshape(*x.shape))
        return x + self.fc_out(jax.nn.gelu(self.fc(self.ln2(x)), approximate=True))

    def __call__(self, x: Array) -> Array:
        """Causal pass over x [T, E] -> [T, E]."""
        q, k, v = self.qkv_heads(x)  # [T, h, dh]
        return self.finish(x, attend(q, k, v, causal_mask(x.shape[0])))


class CausalTransformer(hk.Module):
    """L pre-LN GPT-2 blocks and a final LayerNorm; `step` uses a KV cache: per layer, keys and values [h, T, dh],
    written at position pos with `dynamic_update_slice`, positions > pos masked (static shapes, O(T·E) per step)."""

    def __init__(self, width: int, layers: int, heads: int, mlp_ratio: int, name: str | None = None):
        super().__init__(name=name)
        self.width, self.heads = width, heads
        self.blocks = [Block(width, heads, mlp_ratio, name=f"block_{i}") for i in range(layers)]
        self.ln_f = hk.LayerNorm(-1, create_scale=True, create_offset=True, name="ln_f")

    def __call__(self, tokens: Array) -> Array:
        x = tokens  # [T, E]
        for block in self.blocks:
            x = block(x)
        return self.ln_f(x)

    def initial(self, length: int, dtype) -> tuple[tuple[Array, Array], ...]:
        shape = (self.heads, length, self.width // self.heads)
        return tuple((jnp.zeros(shape, dtype), jnp.zeros(shape, dtype)) for _ in self.blocks)  # L × (k, v) [h, T, dh]

    def step(self, token: Array, cache, pos: Array, frozen=None):
        """token [E] at position pos, cache holding positions < pos -> (out [E], cache with pos written).

        frozen: optional final cache of an identical rollout (same structure); derivatives then read their keys and
        values from it instead of from this step's cache, so reverse mode stores no cache per step.
        """
        pos, zero = jnp.asarray(pos, jnp.int32), jnp.zeros((), jnp.int32)
        mask = jnp.arange(cache[0][0].shape[1]) <= pos  # [T]: O(T·E) per step with static shapes
        x, new_cache = token, []
        for i, (block, (keys, values)) in enumerate(zip(self.blocks, cache)):
            q, k, v = block.qkv_heads(x)  # [h, dh]
            keys = jax.lax.dynamic_update_slice(keys, k[:, None].astype(keys.dtype), (zero, pos, zero))
            values = jax.lax.dynamic_update_slice(values, v[:, None].astype(values.dtype), (zero, pos, zero))
            frozen_keys, frozen_values = (keys, values) if frozen is None else frozen[i]
            x = block.finish(x, attend_cached(q, keys, values, mask, frozen_keys, frozen_values))
            new_cache.append((keys, values))
        return self.ln_f(x), tuple(new_cache)


def _cached_weights(q: Array, keys: Array, mask: Array) -> Array:
    logits = jnp.einsum("hd,htd->ht", q, keys) / math.sqrt(q.shape[-1])  # [h, T]
    return jax.nn.softmax(jnp.where(mask, logits, jnp.finfo(logits.dtype).min), axis=-1)


@jax.custom_jvp
def attend_cached(q: Array, keys: Array, values: Array, mask: Array, frozen_keys: Array, frozen_values: Array):
    """One query q [h, dh] over a cache keys, values [h, T, dh] where mask [T] -> [h, dh].

    frozen_keys / frozen_values must equal keys / values wherever mask is True (elsewhere they are ignored). The value
    is computed from keys / values; the derivative's coefficients are read from the frozen arrays, so when those are
    constants of a scan (the final cache of a first pass) reverse mode saves no cache per step. Exact first
    derivatives in both modes; second derivatives through a constant frozen cache miss the key-query cross term.
    """
    return jnp.einsum("ht,htd->hd", _cached_weights(q, keys, mask), values)


@attend_cached.defjvp
def _attend_cached_jvp(primals, tangents):
    q, keys, values, mask, frozen_keys, frozen_values = primals
    dq, dkeys, dvalues = tangents[:3]  # the frozen arrays stand for keys / values: their tangents are not added
    weights = _cached_weights(q, keys, mask)  # [h, T]
    dlogits = (jnp.einsum("hd,htd->ht", dq, frozen_keys) + jnp.einsum("hd,htd->ht", q, dkeys)) / math.sqrt(q.shape[-1])
    dweights = weights * (dlogits - jnp.sum(weights * dlogits, axis=-1, keepdims=True))
    out = jnp.einsum("ht,htd->hd", weights, values)
    return out, jnp.einsum("ht,htd->hd", dweights, frozen_values) + jnp.einsum("ht,htd->hd", weights, dvalues)


class LSTMBackbone(hk.Module):
    """An LSTM of `width` units from a zero carry (Haiku's LSTM: forget-gate bias +1)."""

    def __init__(self, width: int, name: str | None = None):
        super().__init__(name=name)
        self.width = width
        self.lstm = hk.LSTM(width, name="lstm")

    def __call__(self, tokens: Array) -> Array:
        outs, _ = hk.dynamic_unroll(self.lstm, tokens, self.initial(tokens.shape[0], tokens.dtype))
        return outs  # [T, E]

    def initial(self, length: int, dtype) -> hk.LSTMState:
        return hk.LSTMState(hidden=jnp.zeros(self.width, dtype), cell=jnp.zeros(self.width, dtype))

    def step(self, token: Array, carry: hk.LSTMState, pos: Array, frozen=None) -> tuple[Array, hk.LSTMState]:
        return self.lstm(token, carry)  # O(1) memory: nothing to freeze
