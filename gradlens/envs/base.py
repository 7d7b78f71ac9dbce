"""`System`: a differentiable, deterministic (optionally noisy) control task as pure JAX functions.

Glossary of shapes: D physical state dim, A action dim, O = D + 1 observation dim (the last component is the
integer time index t = 0 … H, stored as a float), H horizon (number of actions per episode).

A system is a frozen dataclass of constants and pure functions of the *physical* state x [D]:

    x_{t+1} = clip(transition(x_t, a_t, t) + noise_std · ε_t, state_low, state_high)
    r_t     = reward_fn(x_t, a_t, t)          (terminal terms included where t == H - 1)

and exposes the observation-level API that rollouts, world models and analyses use:
`initial_state() -> [O]`, `step(obs, a, key=None) -> [O]`, `reward(obs, a) -> scalar`.
Actions always live in [-1, 1]^A; each system maps them to its own control range.

The observation layout is owned here: `physical(obs)` [..., D], `time_index(obs)` [...] and `with_time(x, t)` [..., O]
are the only places that know the time index is the last channel.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp

from gradlens import validate
# the array checks under the names the rollouts, models and analyses import them by from here
from gradlens.validate import action_bounds as check_action_bounds  # noqa: F401
from gradlens.validate import finite_array as check_finite  # noqa: F401
from gradlens.validate import is_concrete  # noqa: F401
from gradlens.validate import positive as check_positive  # noqa: F401
from gradlens.validate import shape as check_shape  # noqa: F401

Array = jax.Array
Transition = Callable[[Array, Array, Array], Array]  # (x [D], a [A], t scalar) -> x_next [D]
RewardFn = Callable[[Array, Array, Array], Array]  # (x [D], a [A], t scalar) -> r scalar


def float_dtype():
    """float64 when JAX x64 is enabled, else float32."""
    return jnp.asarray(0.0, dtype=float).dtype


def physical(obs: Array) -> Array:
    """The physical state x [..., D] of observations obs [..., O]: every channel but the time index."""
    return obs[..., :-1]


def time_index(obs: Array) -> Array:
    """The time index t [...] of observations obs [..., O] (steps since the episode began, stored as a float)."""
    return obs[..., -1]


def with_time(x: Array, t: Array) -> Array:
    """The observations [..., O] of physical states x [..., D] at time indices t [...] (an array; the usual dtype
    promotion applies, so cast t first to keep x's dtype)."""
    return jnp.concatenate([x, jnp.expand_dims(t, -1)], -1)


@dataclasses.dataclass(frozen=True)
class System:
    """A control task: constants plus pure functions of the physical state.

    Fields:
      name: registry name.
      state_dim: D, physical state dimension (the observation adds the time index: obs_dim = D + 1).
      action_dim: A; actions are in [-1, 1]^A.
      horizon: H, number of actions per episode; the terminal reward is paid at t = H - 1.
      dt: physical duration of one step.
      x0: initial physical state, a tuple of D floats.
      transition: deterministic x_{t+1} = transition(x_t, a_t, t) before noise and clipping.
      reward_fn: r_t = reward_fn(x_t, a_t, t), terminal terms included at t = H - 1.
      state_low, state_high: clipping bounds per component (±inf for none).
      clip_states: apply the bounds after every step (the paper's Myriad wrapper does; zero gradient outside).
      noise_std: std of additive Gaussian process noise on x_{t+1} (0 = deterministic).
      state_names, description: for tables, plots and the CLI.
    """

    name: str
    state_dim: int
    action_dim: int
    horizon: int
    dt: float
    x0: tuple[float, ...]
    transition: Transition
    reward_fn: RewardFn
    state_low: tuple[float, ...] | None = None
    state_high: tuple[float, ...] | None = None
    clip_states: bool = False
    noise_std: float = 0.0
    state_names: tuple[str, ...] = ()
    description: str = ""

    def __post_init__(self):
        validate.positive_int(self.state_dim, "state_dim")
        validate.positive_int(self.action_dim, "action_dim")
        validate.horizon(self.horizon)
        validate.positive(self.dt, "dt")
        if len(self.x0) != self.state_dim:
            raise ValueError(f"x0 must have {self.state_dim} components, got {len(self.x0)}")
        validate.finite(self.noise_std, "noise_std", low=0)
        for bound in ("state_low", "state_high"):
            value = getattr(self, bound)
            if value is not None and len(value) != self.state_dim:
                raise ValueError(f"{bound} must have {self.state_dim} components, got {len(value)}")

    @property
    def obs_dim(self) -> int:
        """O = D + 1: the physical state plus the time index as the last component."""
        return self.state_dim + 1

    def initial_state(self) -> Array:
        """s_1 = [x0, 0]: [O]."""
        return with_time(jnp.asarray(self.x0, float_dtype()), jnp.zeros((), float_dtype()))

    def step(self, obs: Array, action: Array, key: Array | None = None) -> Array:
        """s_{t+1} from s_t [O] and a_t [A] in [-1, 1]; `key` is required iff noise_std > 0. Pure, jit/grad-able."""
        self._check_io(obs, action)
        x, t = physical(obs), time_index(obs)
        x_next = self.transition(x, action, t)
        if self.noise_std > 0:
            if key is None:
                raise ValueError(
                    f"system {self.name!r} has noise_std={self.noise_std}: pass a jax.random key to step()"
                )
            x_next = x_next + self.noise_std * jax.random.normal(key, x_next.shape, x_next.dtype)
        if self.clip_states and self.state_low is not None:
            x_next = jnp.clip(x_next, jnp.asarray(self.state_low, x_next.dtype), jnp.asarray(self.state_high, x_next.dtype))
        return with_time(x_next, t + 1.0)

    def reward(self, obs: Array, action: Array) -> Array:
        """Scalar reward of taking `action` [A] in `obs` [O] (terminal terms included at t = H - 1)."""
        self._check_io(obs, action)
        return self.reward_fn(physical(obs), action, time_index(obs))

    def is_terminal(self, t: Array) -> Array:
        """Boolean: is step index t (a float from the observation) the last one, H - 1?"""
        return jnp.abs(t - (self.horizon - 1)) < 0.5

    def _check_io(self, obs, action) -> None:
        validate.shape(obs, (self.obs_dim,), f"{self.name}: state (obs_dim = state_dim + 1 time index)")
        validate.shape(action, (self.action_dim,), f"{self.name}: action")
        validate.finite_array(action, f"{self.name}: action")
        validate.action_bounds(action, f"{self.name}: action")


def affine_to_bounds(a: Array, low, high) -> Array:
    """Map a ∈ [-1, 1]^A affinely onto [low, high]^A (the paper's action-to-control map)."""
    low, high = jnp.asarray(low, a.dtype), jnp.asarray(high, a.dtype)
    return low + (a + 1.0) * (high - low) / 2.0
