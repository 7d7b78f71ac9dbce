"""Pest and predator under pesticide (Goh, Leitmann & Vincent 1974; Lenhart & Workman lab 13; Myriad PREDATORPREY).

x0' = (1 - x1) x0 - d1 x0 u,   x1' = (x0 - 1) x1 - d2 x1 u,   z' = u (cumulative pesticide);
cost (A/2) u², terminal cost x0 (at the last pre-transition state x_{H-1}, as the paper's wrapper);
x_0 = (10, 1, 0), x ∈ [0, 11] × [0, 11] × [0, 5], u ∈ [0, M]. T = 100 as in the paper's copy (Myriad: T = 10, pass
duration=10.0). Myriad's hard terminal constraint z(T) = B = 5 is dropped, as the paper's RL wrapper does.
"""
from __future__ import annotations

import jax.numpy as jnp

from gradlens.envs.myriad.base import myriad_system


def make_predator_prey(horizon: int = 100, noise_std: float = 0.0, clip_states: bool = True,
                       d1: float = 0.1, d2: float = 0.1, A: float = 1.0, M: float = 1.0, duration: float = 100.0):
    """Pest x0, predator x1 and cumulative pesticide z under pesticide rate u; minimise x0(T) + (A/2)∫u²."""

    def dynamics(x, u):
        x0, x1, _ = x
        return jnp.stack([(1.0 - x1) * x0 - d1 * x0 * u[0], (x0 - 1.0) * x1 - d2 * x1 * u[0], u[0]])

    def cost(x, u, time):
        return 0.5 * A * u[0] ** 2

    def terminal_cost(x, u):
        return x[0]

    return myriad_system(
        "predator_prey", duration=duration, x0=(10.0, 1.0, 0.0), state_bounds=((0.0, 11.0), (0.0, 11.0), (0.0, 5.0)),
        control_bounds=((0.0, M),), dynamics=dynamics, cost=cost, terminal_cost=terminal_cost, horizon=horizon,
        noise_std=noise_std, clip_states=clip_states, state_names=("pest", "predator", "cumulative pesticide"),
        description="Pest and predator under pesticide (Goh, Leitmann & Vincent), Myriad",
    )
