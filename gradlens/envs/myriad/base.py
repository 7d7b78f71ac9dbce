"""Shared wrapper turning a Myriad ODE task into a `System`, as the paper's RL wrapper does.

Per step (dt = T / H, explicit Euler):
    u       = lo + (a + 1)(hi - lo) / 2                      control from the action a ∈ [-1, 1]^A
    x_{t+1} = clip(x_t + dt · f(x_t, u), state bounds)       (clipping optional; noise added by `System.step`)
    r_t     = -g(x_t, u, t · dt) · dt  - [t = H - 1] · g_T(x_t, u)
The terminal cost is evaluated at the last pre-transition state x_{H-1}, as in the paper's code.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from gradlens import validate
from gradlens.envs.base import System, affine_to_bounds

Array = jax.Array


def myriad_system(
    name: str,
    *,
    duration: float,
    x0: tuple[float, ...],
    state_bounds: tuple[tuple[float, float], ...],
    control_bounds: tuple[tuple[float, float], ...],
    dynamics: Callable[[Array, Array], Array],
    cost: Callable[[Array, Array, Array], Array],
    terminal_cost: Callable[[Array, Array], Array] | None = None,
    horizon: int,
    noise_std: float,
    clip_states: bool,
    state_names: tuple[str, ...],
    description: str,
) -> System:
    """Build a `System` from a continuous-time task.

    Args:
      duration: T, the physical duration of an episode; dt = T / horizon.
      dynamics: f(x [D], u [A]) -> dx/dt [D], u in physical control units.
      cost: running cost g(x [D], u [A], time) -> scalar, minimised; time in physical units.
      terminal_cost: g_T(x [D], u [A]) -> scalar, paid at the last step, or None.
    """
    validate.horizon(horizon, f"{name}: horizon")
    validate.positive(duration, f"{name}: duration T")
    dt = duration / horizon
    low = tuple(b[0] for b in control_bounds)
    high = tuple(b[1] for b in control_bounds)

    def transition(x, a, t):
        return x + dt * dynamics(x, affine_to_bounds(a, low, high))

    def reward_fn(x, a, t):
        u = affine_to_bounds(a, low, high)
        r = -cost(x, u, t * dt) * dt
        if terminal_cost is not None:
            r = r - jnp.where(jnp.abs(t - (horizon - 1)) < 0.5, terminal_cost(x, u), 0.0)
        return r

    return System(
        name=name,
        state_dim=len(x0),
        action_dim=len(control_bounds),
        horizon=horizon,
        dt=dt,
        x0=tuple(float(v) for v in x0),
        transition=transition,
        reward_fn=reward_fn,
        state_low=tuple(float(b[0]) for b in state_bounds),
        state_high=tuple(float(b[1]) for b in state_bounds),
        clip_states=clip_states,
        noise_std=noise_std,
        state_names=state_names,
        description=description,
    )
