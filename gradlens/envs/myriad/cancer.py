"""Cancer treatment (Fister & Panetta 2003; Lenhart & Workman lab 5): Gompertzian growth with log-kill.

x' = r x ln(1/x) - u δ x,   cost a x² + u²,   T = 20, x_0 = 0.975, x ∈ [1e-3, 1], u ∈ [0, 2].
"""
from __future__ import annotations

import jax.numpy as jnp

from gradlens.envs.myriad.base import myriad_system


def make_cancer(horizon: int = 100, noise_std: float = 0.0, clip_states: bool = True,
                r: float = 0.3, a: float = 3.0, delta: float = 0.45, duration: float = 20.0):
    """Normalised tumour density x under drug strength u (minimise a x² + u²)."""

    def dynamics(x, u):
        return r * x * jnp.log(1.0 / x) - u * delta * x

    def cost(x, u, time):
        return a * x[0] ** 2 + u[0] ** 2

    return myriad_system(
        "cancer", duration=duration, x0=(0.975,), state_bounds=((1e-3, 1.0),), control_bounds=((0.0, 2.0),),
        dynamics=dynamics, cost=cost, horizon=horizon, noise_std=noise_std, clip_states=clip_states,
        state_names=("tumour density",), description="Cancer treatment (Fister & Panetta), Myriad",
    )
