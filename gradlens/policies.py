"""Policies: the paper's tanh-Gaussian state-feedback MLP and an open-loop (time-indexed) action sequence.

Glossary of shapes: O observation dim (physical state + time index), A action dim, H horizon.

Every policy is a frozen dataclass with
    init(key) -> params
    sample(params, obs [O], key) -> action [A]     reparameterised, differentiable in params
    mode(params, obs [O]) -> action [A]            deterministic action used for evaluation
    entropy(params, obs [O], action [A]) -> scalar single-sample entropy estimate of the action distribution
`policy.bind(params)` gives the `(obs, key) -> action` callable that `gradlens.rollout` takes.
"""
from __future__ import annotations

import dataclasses
import functools
import math

import haiku as hk
import jax
import jax.numpy as jnp

from gradlens import validate
from gradlens.envs.base import System, physical, time_index, with_time

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class GaussianMLPPolicy:
    """a = tanh(μ(s) + σ(s) ⊙ ε), ε ~ N(0, I); MLP `hidden` with swish, σ = softplus(·) + min_scale (PAPER.md §2.3).

    The input is the whole observation with its time channel (the last component) multiplied by `time_scale`:
    1 feeds the raw step index 0 … H-1, as the paper does; 1/H feeds t/H ∈ [0, 1). At the paper's initialisation the
    raw index drives μ at the last steps to |μ| of 5–100 on most seeds, so tanh saturates there and passes almost
    no gradient: the BPO plateau that `docs/fidelity.md` measures.
    """

    obs_dim: int
    action_dim: int
    hidden: tuple[int, ...] = (64, 64)
    min_scale: float = 1e-3
    time_scale: float = 1.0

    @functools.cached_property
    def _net(self) -> hk.Transformed:
        def forward(obs):
            out = hk.nets.MLP(
                (*self.hidden, 2 * self.action_dim), activation=jax.nn.swish,
                w_init=hk.initializers.VarianceScaling(1.0, "fan_in", "uniform"), name="policy",
            )(obs if self.time_scale == 1.0 else with_time(physical(obs), time_index(obs) * self.time_scale))
            loc, raw_scale = jnp.split(out, 2, axis=-1)
            return loc, jax.nn.softplus(raw_scale) + self.min_scale

        return hk.without_apply_rng(hk.transform(forward))

    def init(self, key: Array):
        return self._net.init(key, jnp.zeros((self.obs_dim,)))

    def distribution(self, params, obs: Array) -> tuple[Array, Array]:
        """(loc [A], scale [A]) of the pre-tanh Gaussian."""
        return self._net.apply(params, obs)

    def sample(self, params, obs: Array, key: Array) -> Array:
        loc, scale = self.distribution(params, obs)
        return jnp.tanh(loc + scale * jax.random.normal(key, loc.shape, loc.dtype))

    def mode(self, params, obs: Array) -> Array:
        return jnp.tanh(self.distribution(params, obs)[0])

    def entropy(self, params, obs: Array, action: Array) -> Array:
        """H[tanh(u)] = H[u] + E[Σ log(1 - tanh(u)²)], the expectation estimated at the sampled action."""
        _, scale = self.distribution(params, obs)
        gaussian = jnp.sum(jnp.log(scale) + 0.5 * math.log(2 * math.pi * math.e))
        return gaussian + jnp.sum(jnp.log(1.0 - action**2 + 1e-6))

    def bind(self, params, deterministic: bool = False):
        """The `(obs, key) -> action` callable for `gradlens.rollout`."""
        if deterministic:
            return lambda obs, key: self.mode(params, obs)
        return lambda obs, key: self.sample(params, obs, key)


@dataclasses.dataclass(frozen=True)
class OpenLoopPolicy:
    """a_t = tanh(θ_t + σ ε_t), ε_t ~ N(0, I): one free action per step, indexed by the observation's time channel.

    θ: [H, A]. `noise_std` σ = 0 (default) is the deterministic a_t = tanh(θ_t); σ > 0 makes it a tanh-Gaussian
    open-loop policy (the samples whose spread gradient statistics measure). `init_scale` = 0 starts from zero
    actions; the time index selects the row, so the same policy drives a true system and a world model (whose time
    channel is exact).
    """

    horizon: int
    action_dim: int
    init_scale: float = 0.0
    noise_std: float = 0.0

    def init(self, key: Array) -> Array:
        return self.init_scale * jax.random.normal(key, (self.horizon, self.action_dim))

    def _row(self, params: Array, obs: Array) -> Array:
        t = jnp.clip(jnp.round(time_index(obs)).astype(jnp.int32), 0, self.horizon - 1)
        return params[t]

    def sample(self, params, obs: Array, key: Array) -> Array:
        loc = self._row(params, obs)
        if self.noise_std == 0:
            return jnp.tanh(loc)
        return jnp.tanh(loc + self.noise_std * jax.random.normal(key, loc.shape, loc.dtype))

    def mode(self, params, obs: Array) -> Array:
        return jnp.tanh(self._row(params, obs))

    def entropy(self, params, obs: Array, action: Array) -> Array:
        """Zero when deterministic (an entropy bonus leaves it unchanged); else the tanh-Gaussian estimate
        H[u] + Σ log(1 - tanh(u)²) at the sampled action, as `GaussianMLPPolicy.entropy`."""
        if self.noise_std == 0:
            return jnp.zeros((), action.dtype)
        gaussian = self.action_dim * (math.log(self.noise_std) + 0.5 * math.log(2 * math.pi * math.e))
        return gaussian + jnp.sum(jnp.log(1.0 - action**2 + 1e-6))

    def bind(self, params, deterministic: bool = False):
        if deterministic:
            return lambda obs, key: self.mode(params, obs)
        return lambda obs, key: self.sample(params, obs, key)


POLICIES = ("mlp", "open_loop")
TIME_INPUTS = ("raw", "unit")  # the MLP's time channel: step index 0 … H-1 (the paper's), or t / H


def check_time_input(time_input: str) -> None:
    validate.one_of(time_input, TIME_INPUTS, "policy time input")


def make_policy(kind: str, system: System, hidden: tuple[int, ...] = (64, 64), horizon: int | None = None,
                noise_std: float = 0.0, time_input: str = "raw"):
    """`"mlp"`: tanh-Gaussian state-feedback MLP reading the time channel as `time_input` ("raw" step index, the
    paper's, or "unit": t / H with H = `horizon`, default the system's); `"open_loop"`: a free action per step of
    `horizon` (default H), deterministic unless `noise_std` > 0 (then tanh-Gaussian with that std before the tanh)."""
    horizon = system.horizon if horizon is None else horizon
    if kind == "mlp":
        if not hidden or any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in hidden):
            raise ValueError(f"policy hidden sizes must be positive integers, got {hidden!r}")
        check_time_input(time_input)
        validate.horizon(horizon, "policy horizon")
        time_scale = 1.0 if time_input == "raw" else 1.0 / horizon
        return GaussianMLPPolicy(system.obs_dim, system.action_dim, tuple(hidden), time_scale=time_scale)
    if kind == "open_loop":
        validate.horizon(horizon, "open-loop policy horizon")
        validate.finite(noise_std, "open-loop policy noise_std", low=0)
        return OpenLoopPolicy(horizon, system.action_dim, noise_std=float(noise_std))
    raise ValueError(f"unknown policy {kind!r}; valid policies: {', '.join(POLICIES)}")
