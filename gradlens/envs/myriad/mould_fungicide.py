"""Mould and fungicide (Lenhart & Workman lab 2; Myriad MOULDFUNGICIDE).

x' = r (M - x) - u x,   cost A x² + u²,   T = 5, x_0 = 1, x ∈ [0, 5], u ∈ [0, 5].
"""
from __future__ import annotations

from gradlens.envs.myriad.base import myriad_system


def make_mould_fungicide(horizon: int = 100, noise_std: float = 0.0, clip_states: bool = True,
                         r: float = 0.3, M: float = 10.0, A: float = 10.0, duration: float = 5.0):
    """Mould concentration x under fungicide u (minimise A x² + u²)."""

    def dynamics(x, u):
        return r * (M - x) - u * x

    def cost(x, u, time):
        return A * x[0] ** 2 + u[0] ** 2

    return myriad_system(
        "mould_fungicide", duration=duration, x0=(1.0,), state_bounds=((0.0, 5.0),), control_bounds=((0.0, 5.0),),
        dynamics=dynamics, cost=cost, horizon=horizon, noise_std=noise_std, clip_states=clip_states,
        state_names=("mould concentration",), description="Mould and fungicide (Lenhart & Workman), Myriad",
    )
