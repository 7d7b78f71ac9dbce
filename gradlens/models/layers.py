"""Shared Haiku layers: MLPs, the learned time-step embedding, a KV-cached causal transformer, an LSTM backbone.

Glossary of shapes: T token positions (H + 1: position 0 holds s_1), E embedding width, h heads, dh = E / h head
width, L layers.

A *backbone* maps tokens to features causally and offers the same computation one token at a time:

    __call__(tokens [T, E]) -> [T, E]                 whole sequence (output t depends on tokens[:t + 1] only)
    initial(length, dtype) -> carry                   empty memory for `length` positions
    step(token [E], carry, pos) -> (out [E], carry)   the token at position pos (int32) given positions < pos
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

    def step(self, token: Array, cache, pos: Array):
        """token [E] at position pos, cache holding positions < pos -> (out [E], cache with pos written)."""
        pos, zero = jnp.asarray(pos, jnp.int32), jnp.zeros((), jnp.int32)
        mask = jnp.arange(cache[0][0].shape[1]) <= pos  # [T]: O(T·E) per step with static shapes
        x, new_cache = token, []
        for block, (keys, values) in zip(self.blocks, cache):
            q, k, v = block.qkv_heads(x)  # [h, dh]
            keys = jax.lax.dynamic_update_slice(keys, k[:, None].astype(keys.dtype), (zero, pos, zero))
            values = jax.lax.dynamic_update_slice(values, v[:, None].astype(values.dtype), (zero, pos, zero))
            x = block.finish(x, attend_cached(q, keys, values, mask)[0])
            new_cache.append((keys, values))
        return self.ln_f(x), tuple(new_cache)

    def step_probed(self, token: Array, frozen, pos: Array, probes):
        """`step` at position pos recomputed against `frozen`, the final cache of the same rollout (reverse pass of
        `gradlens.models.kv_reverse`): keys / values at positions < pos are constants, this token's own are live.

        probes: per layer (z [h, T], u [h, dh]), zeros added to the attention logits and output, so that their
        cotangents are the logits' (G) and output's (dO) cotangents, from which the caller accumulates the earlier
        keys' and values' cotangents in blocks. Returns (out [E], per layer (k, v) [h, dh] written at pos, per layer
        (q [h, dh], weights [h, T])).
        """
        pos, zero = jnp.asarray(pos, jnp.int32), jnp.zeros((), jnp.int32)
        mask = jnp.arange(frozen[0][0].shape[1]) <= pos  # [T]
        x, entries, aux = token, [], []
        for block, (keys, values), (z, u) in zip(self.blocks, frozen, probes):
            q, k, v = block.qkv_heads(x)  # [h, dh]
            keys = jax.lax.dynamic_update_slice(jax.lax.stop_gradient(keys), k[:, None].astype(keys.dtype),
                                                (zero, pos, zero))
            values = jax.lax.dynamic_update_slice(jax.lax.stop_gradient(values), v[:, None].astype(values.dtype),
                                                  (zero, pos, zero))
            att, weights = attend_cached(q, keys, values, mask, z)
            x = block.finish(x, att + u)
            entries.append((k, v))
            aux.append((q, weights))
        return self.ln_f(x), tuple(entries), tuple(aux)


def attend_cached(q: Array, keys: Array, values: Array, mask: Array, logit_offset=0.0) -> tuple[Array, Array]:
    """One query q [h, dh] over a cache keys, values [h, T, dh] where mask [T] (+ logit_offset [h, T]) ->
    (output [h, dh], weights [h, T])."""
    logits = jnp.einsum("hd,htd->ht", q, keys) / math.sqrt(q.shape[-1]) + logit_offset  # [h, T]
    weights = jax.nn.softmax(jnp.where(mask, logits, jnp.finfo(logits.dtype).min), axis=-1)
    return jnp.einsum("ht,htd->hd", weights, values), weights


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

    def step(self, token: Array, carry: hk.LSTMState, pos: Array) -> tuple[Array, hk.LSTMState]:
        return self.lstm(token, carry)
