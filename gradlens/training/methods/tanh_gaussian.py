"""The tanh-Gaussian action head of the model-free baselines (SAC's actor, ODT's policy).

Glossary of shapes: A action dim. Every `loc` / `scale` / `action` below is [A]; log-probabilities sum over A.

A tanh-Gaussian action is a = tanh(u), u ~ N(loc, scale²), so
    log π(a) = Σ_A [log N(u; loc, scale²) - log(1 - tanh(u)²)],   log(1 - tanh(u)²) = 2 (log 2 - u - softplus(-2u)).
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

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
