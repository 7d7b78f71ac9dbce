"""Harvest of a population with growing individual mass (Getz 1984; Lenhart & Workman lab 6; Myriad HARVEST).

x' = -(m + u) x,   maximise ∫(A (k t/(t+1)) x u - u²), stored as the time-dependent cost -A k t/(t+1) x u + u²
(t the physical time),   T = 10, x_0 = 0.4, x unbounded, u ∈ [0, M].
"""
from __future__ import annotations

import math

from gradlens.envs.myriad.base import myriad_system


def make_harvest(horizon: int = 100, noise_std: float = 0.0, clip_states: bool = True,
                 A: float = 5.0, k: float = 10.0, m: float = 0.2, M: float = 1.0, duration: float = 10.0):
    """Population x under harvest rate u, worth k t/(t+1) per individual at time t (clipping is a no-op)."""

    def dynamics(x, u):
        return -(m + u) * x

    def cost(x, u, time):
        return -A * (k * time / (time + 1.0)) * x[0] * u[0] + u[0] ** 2

    return myriad_system(
        "harvest", duration=duration, x0=(0.4,), state_bounds=((-math.inf, math.inf),), control_bounds=((0.0, M),),
        dynamics=dynamics, cost=cost, horizon=horizon, noise_std=noise_std, clip_states=clip_states,
        state_names=("population",), description="Harvest with growing mass (Getz), Myriad",
    )
