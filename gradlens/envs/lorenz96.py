"""Lorenz-96: a chaotic system whose state dimension is a knob (the paper's open question on high-dim states).

Glossary of shapes: N = D state dimension (≥ 4), A number of actuated components, H horizon, O = N + 1.

    dx_i/dt = (x_{i+1} - x_{i-2}) x_{i-1} - x_i + F + u_i          (indices mod N)
with forcing F (8 = the classic chaotic regime: states 1e-8 apart separate at ≈ 1.5-2 e-folds per time unit over 10
units, N = 8 or 40) and control u_i = `action_scale` · a_j on the j-th actuated component (0 elsewhere), held
constant over a step and integrated with `substeps` RK4 steps per dt. Defaults dt = 0.05 (Lorenz's 1996 step) and
substeps = 5: a single RK4 step of 0.05 is off the true flow by ~1e-3 at F = 8 (fastest linear rate ≈ 2F + 1),
5 substeps by ~1e-6.

Task: hold the state at the uniform equilibrium x* = F (every x_i = F; unstable for F = 8: its linearisation grows
at up to F (cos k - cos 2k) - 1 ≈ 7 per time unit for N = 8), or at a constant `target` if given (e.g. 0). Reward
    r_t = -dt · [mean_i (x_{t,i} - x*)² + action_cost · mean_j a_{t,j}²]
on the pre-transition state x_t (as the Myriad tasks), no terminal term. x_0 = F + `perturbation` on component 0,
so without control the state leaves the equilibrium within ~1 time unit and wanders on the attractor.
`actuated` picks the controlled components: None = all (A = N), an int k = every k-th (0, k, 2k, …), or a tuple of
distinct indices in [0, N).
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from gradlens import validate
from gradlens.envs.base import System
from gradlens.envs.integrators import rk4_step


def _finite(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"lorenz96: {what} must be a finite number, got {value!r}")
    return float(value)


def actuated_indices(state_dim: int, actuated) -> tuple[int, ...]:
    """The controlled components: None -> all, int k -> every k-th, tuple -> itself (validated)."""
    if actuated is None:
        return tuple(range(state_dim))
    if isinstance(actuated, int) and not isinstance(actuated, bool):
        validate.positive_int(actuated, "lorenz96: actuated (every k-th component)")
        return tuple(range(0, state_dim, actuated))
    idx = tuple(actuated) if isinstance(actuated, (tuple, list)) else None
    if (not idx or len(set(idx)) != len(idx)
            or not all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < state_dim for i in idx)):
        raise ValueError(f"lorenz96: actuated must be None (all), a positive int k (every k-th) or a non-empty tuple "
                         f"of distinct indices in [0, {state_dim}), got {actuated!r}")
    return idx


def make_lorenz96(horizon: int = 50, noise_std: float = 0.0, state_dim: int = 8, forcing: float = 8.0,
                  dt: float = 0.05, substeps: int = 5, actuated=None, action_scale: float = 8.0,
                  action_cost: float = 0.0, target: float | None = None, perturbation: float = 0.01) -> System:
    """Lorenz-96 with additive control on the actuated components; track x* = F (or `target`).

    Args: `state_dim` N ≥ 4, `forcing` F, dt (time units) per step, `substeps` RK4 steps per dt, `actuated` (see the
    module docstring), `action_scale` (control per unit action), `action_cost` ≥ 0, `target` (None = F),
    `perturbation` added to x_0 at component 0.
    """
    validate.horizon(horizon, "lorenz96: horizon")
    if isinstance(state_dim, bool) or not isinstance(state_dim, int) or state_dim < 4:
        raise ValueError(f"lorenz96: state_dim must be an integer >= 4 (the stencil reaches i-2 … i+1), "
                         f"got {state_dim!r}")
    validate.positive(dt, "lorenz96: dt")
    validate.positive_int(substeps, "lorenz96: substeps")
    validate.positive(action_scale, "lorenz96: action_scale")
    forcing = _finite(forcing, "forcing")
    perturbation = _finite(perturbation, "perturbation")
    goal = forcing if target is None else _finite(target, "target")
    if _finite(action_cost, "action_cost") < 0:
        raise ValueError(f"lorenz96: action_cost must be >= 0, got {action_cost!r}")
    idx = actuated_indices(state_dim, actuated)
    h = dt / substeps

    def derivs(x, u):
        return (jnp.roll(x, -1) - jnp.roll(x, 2)) * jnp.roll(x, 1) - x + forcing + u

    def transition(x, a, t):
        u = jnp.zeros_like(x).at[jnp.asarray(idx)].set(action_scale * a.astype(x.dtype))  # [N]
        return jax.lax.fori_loop(0, substeps, lambda _, y: rk4_step(lambda v: derivs(v, u), y, h), x)

    def reward_fn(x, a, t):
        return -dt * (jnp.mean((x - goal) ** 2) + action_cost * jnp.mean(a**2))

    x0 = [forcing] * state_dim
    x0[0] += perturbation
    return System(
        name="lorenz96", state_dim=state_dim, action_dim=len(idx), horizon=horizon, dt=dt, x0=tuple(x0),
        transition=transition, reward_fn=reward_fn, noise_std=noise_std,
        state_names=tuple(f"x{i}" for i in range(state_dim)),
        description=f"Lorenz-96 (N = {state_dim}, F = {forcing:g}), control on {len(idx)} components; "
                    f"track x = {goal:g}",
    )
