"""Bacteria and nutrient (Lenhart & Workman lab 3; Myriad BACTERIA).

x' = r x + A u x - B u² e^{-x},   maximise C x(T) - ∫u², stored as running cost u² and terminal cost -C x,
T = 1, x_0 = 1, x ∈ [0, 10], u ∈ [0, 2]. The terminal cost is paid at the last pre-transition state x_{H-1}.
"""
from __future__ import annotations

import jax.numpy as jnp

from gradlens.envs.myriad.base import myriad_system


def make_bacteria(horizon: int = 100, noise_std: float = 0.0, clip_states: bool = True,
                  r: float = 1.0, A: float = 1.0, B: float = 12.0, C: float = 1.0, duration: float = 1.0):
    """Bacteria concentration x fed chemical nutrient u; minimise ∫u² - C x(T)."""

    def dynamics(x, u):
        return r * x + A * u * x - B * u**2 * jnp.exp(-x)

    def cost(x, u, time):
        return u[0] ** 2

    def terminal_cost(x, u):
        return -C * x[0]

    return myriad_system(
        "bacteria", duration=duration, x0=(1.0,), state_bounds=((0.0, 10.0),), control_bounds=((0.0, 2.0),),
        dynamics=dynamics, cost=cost, terminal_cost=terminal_cost, horizon=horizon, noise_std=noise_std,
        clip_states=clip_states, state_names=("bacteria concentration",),
        description="Bacteria and nutrient (Lenhart & Workman), Myriad",
    )
