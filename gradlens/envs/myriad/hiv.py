"""HIV chemotherapy (Butler, Kirschner & Lenhart 1997; Lenhart & Workman lab 8; Myriad HIVTREATMENT).

x0' = s/(1 + x2) - m1 x0 + r x0 (1 - (x0 + x1)/T_max) - u k x0 x2,   x1' = u k x0 x2 - m2 x1,   x2' = N m2 x1 - m3 x2;
maximise ∫(A x0 - (1 - u)²), stored as cost -A x0 + (1 - u)²;   T = 20, x_0 = (800, 0.04, 1.5),
x ∈ [0, 1600] × [0, 100] × [0, 100], u ∈ [0, 1] (u = 1 is no therapy: u multiplies the infectivity k).
"""
from __future__ import annotations

import jax.numpy as jnp

from gradlens.envs.myriad.base import myriad_system


def make_hiv(horizon: int = 100, noise_std: float = 0.0, clip_states: bool = True,
             s: float = 10.0, m1: float = 0.02, m2: float = 0.5, m3: float = 4.4, r: float = 0.03,
             T_max: float = 1500.0, k: float = 0.000024, N: float = 300.0, A: float = 0.05,
             duration: float = 20.0):
    """Uninfected T cells x0, infected x1, free virus x2 under infectivity factor u; minimise -A x0 + (1 - u)²."""

    def dynamics(x, u):
        x0, x1, x2 = x
        infection = u[0] * k * x0 * x2
        return jnp.stack([
            s / (1.0 + x2) - m1 * x0 + r * x0 * (1.0 - (x0 + x1) / T_max) - infection,
            infection - m2 * x1,
            N * m2 * x1 - m3 * x2,
        ])

    def cost(x, u, time):
        return -A * x[0] + (1.0 - u[0]) ** 2

    return myriad_system(
        "hiv", duration=duration, x0=(800.0, 0.04, 1.5), state_bounds=((0.0, 1600.0), (0.0, 100.0), (0.0, 100.0)),
        control_bounds=((0.0, 1.0),), dynamics=dynamics, cost=cost, horizon=horizon, noise_std=noise_std,
        clip_states=clip_states, state_names=("uninfected T cells", "infected T cells", "free virus"),
        description="HIV chemotherapy (Butler, Kirschner & Lenhart), Myriad",
    )
