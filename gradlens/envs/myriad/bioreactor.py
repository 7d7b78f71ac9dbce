"""Bioreactor (Heinricher, Lenhart & Solomon 1995; Lenhart & Workman lab 12; Myriad BIOREACTOR).

x' = G u x - D x²,   maximise ∫(K x - u), stored as cost -K x + u,   T = 2, x_0 = 0.5, x ∈ [0, 1], u ∈ [0, M].
"""
from __future__ import annotations

from gradlens.envs.myriad.base import myriad_system


def make_bioreactor(horizon: int = 100, noise_std: float = 0.0, clip_states: bool = True,
                    K: float = 2.0, G: float = 1.0, D: float = 1.0, M: float = 1.0, duration: float = 2.0):
    """Bacteria concentration x fed nutrient u (the contaminant is not simulated); minimise -K x + u."""

    def dynamics(x, u):
        return G * u * x - D * x**2

    def cost(x, u, time):
        return -K * x[0] + u[0]

    return myriad_system(
        "bioreactor", duration=duration, x0=(0.5,), state_bounds=((0.0, 1.0),), control_bounds=((0.0, M),),
        dynamics=dynamics, cost=cost, horizon=horizon, noise_std=noise_std, clip_states=clip_states,
        state_names=("bacteria concentration",), description="Bioreactor (Heinricher, Lenhart & Solomon), Myriad",
    )
