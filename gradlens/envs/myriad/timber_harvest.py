"""Timber harvest with reinvestment (Kamien & Schwartz 1991; Lenhart & Workman lab 11; Myriad TIMBERHARVEST).

x' = k x u,   maximise ∫e^{-r t} x (1 - u), stored as the time-dependent cost -e^{-r t} x (1 - u) (t the physical
time),   T = 5, x_0 = 100, x ∈ [0, 20000], u ∈ [0, 1].
"""
from __future__ import annotations

import jax.numpy as jnp

from gradlens.envs.myriad.base import myriad_system


def make_timber_harvest(horizon: int = 100, noise_std: float = 0.0, clip_states: bool = True,
                        r: float = 0.0, k: float = 1.0, duration: float = 5.0):
    """Timber production rate x, a fraction u of which is reinvested; maximise the discounted harvested rest."""

    def dynamics(x, u):
        return k * x * u

    def cost(x, u, time):
        return -jnp.exp(-r * time) * x[0] * (1.0 - u[0])

    return myriad_system(
        "timber_harvest", duration=duration, x0=(100.0,), state_bounds=((0.0, 20000.0),),
        control_bounds=((0.0, 1.0),), dynamics=dynamics, cost=cost, horizon=horizon, noise_std=noise_std,
        clip_states=clip_states, state_names=("timber production rate",),
        description="Timber harvest (Kamien & Schwartz), Myriad",
    )
