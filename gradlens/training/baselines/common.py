"""What the model-free baselines share: the tanh-Gaussian action head, non-finite flags, the metrics row, and the
checks of their config dataclasses.

Glossary of shapes: A action dim. Every `loc` / `scale` / `action` below is [A]; log-probabilities sum over A.

A tanh-Gaussian action is a = tanh(u), u ~ N(loc, scale²), so
    log π(a) = Σ_A [log N(u; loc, scale²) - log(1 - tanh(u)²)],   log(1 - tanh(u)²) = 2 (log 2 - u - softplus(-2u)).
"""
from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from gradlens.envs.base import check_positive
from gradlens.training.loop import NONFINITE, ChunkStats

Array = jax.Array
ACTION_LIMIT = 1.0 - 1e-5  # actions read back from data are clipped to ±this before atanh


def _tanh_log_det(u: Array) -> Array:
    """log(1 - tanh(u)²) [A], stable for large |u|."""
    return 2.0 * (math.log(2.0) - u - jax.nn.softplus(-2.0 * u))


def _gaussian_log_prob(u: Array, loc: Array, scale: Array) -> Array:
    return -0.5 * ((u - loc) / scale) ** 2 - jnp.log(scale) - 0.5 * math.log(2.0 * math.pi)  # [A]


def tanh_gaussian_sample(loc: Array, scale: Array, key: Array) -> tuple[Array, Array]:
    """A reparameterised sample a [A] in (-1, 1) and its log-probability (scalar)."""
    u = loc + scale * jax.random.normal(key, loc.shape, loc.dtype)
    return jnp.tanh(u), jnp.sum(_gaussian_log_prob(u, loc, scale) - _tanh_log_det(u))


def tanh_gaussian_log_prob(loc: Array, scale: Array, action: Array) -> Array:
    """log π(action) (scalar) of a given action [A] in [-1, 1], clipped to ±ACTION_LIMIT first."""
    u = jnp.arctanh(jnp.clip(action, -ACTION_LIMIT, ACTION_LIMIT))
    return jnp.sum(_gaussian_log_prob(u, loc, scale) - _tanh_log_det(u))


def nonfinite_code(what: str) -> int:
    """Index of `what` in `loop.NONFINITE` (the name `train` prints when that quantity goes NaN/Inf)."""
    return NONFINITE.index(what)


def flag(state, i: Array, finite: Array, what: int):
    """Record iteration i as the first non-finite one (quantity `what`) unless one is recorded already.

    `state` is any NamedTuple with int32 fields `first_nonfinite` and `nonfinite_what`.
    """
    new = (state.first_nonfinite < 0) & ~finite
    return state._replace(first_nonfinite=jnp.where(new, i, state.first_nonfinite).astype(jnp.int32),
                          nonfinite_what=jnp.where(new, what, state.nonfinite_what).astype(jnp.int32))


def chunk_stats(eval_return: Array, sums: Array, state) -> ChunkStats:
    """The metrics row: sums [4] = (loss total, #loss updates, grad-norm total, #gradient updates).

    Means are NaN when nothing was updated; there is no simulator gradient to compare to, so cosine and relative
    error are NaN.
    """
    mean = lambda total, count: jnp.where(count > 0, total / jnp.maximum(count, 1.0), jnp.nan)
    nan = jnp.full((), jnp.nan, sums.dtype)
    return ChunkStats(eval_return, mean(sums[0], sums[1]), mean(sums[2], sums[3]), nan, nan,
                      state.first_nonfinite, state.nonfinite_what, jnp.zeros((), jnp.int32))


def config_from_dict(cls, data: dict, method: str):
    """`cls(**data)` for a baseline config dataclass; lists become tuples; unknown keys raise listing the valid ones."""
    if not isinstance(data, dict):
        raise ValueError(f"{method} settings must be a dict or a {cls.__name__}, got {type(data).__name__}")
    fields = sorted(f.name for f in dataclasses.fields(cls))
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"unknown {method} setting(s) {', '.join(map(repr, unknown))}; valid: {', '.join(fields)}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def check_settings(config, method: str, integers: tuple[str, ...], positives: tuple[str, ...]) -> None:
    """ValueError naming the field and value unless `integers` are positive integers and `positives` positive floats."""
    for name in integers:
        check_positive(getattr(config, name), f"{method} {name}", integer=True)
    for name in positives:
        check_positive(getattr(config, name), f"{method} {name}")
