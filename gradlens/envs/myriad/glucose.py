"""Blood glucose and insulin (Eisen 1988; Lenhart & Workman lab 10; Myriad GLUCOSE).

x0' = -a x0 - b x1,   x1' = -c x1 + u,   cost 1e5 · (A (x0 - l)² + u²),   T = 0.2, x_0 = (0.75, 0), x ∈ [0, 1]²,
u ∈ [0, 0.01]. l = 0.4 as in the paper's copy (Myriad: l = 0.5, pass l=0.5).
"""
from __future__ import annotations

import jax.numpy as jnp

from gradlens.envs.myriad.base import myriad_system


def make_glucose(horizon: int = 100, noise_std: float = 0.0, clip_states: bool = True,
                 a: float = 1.0, b: float = 1.0, c: float = 1.0, A: float = 2.0, l: float = 0.4,
                 duration: float = 0.2):
    """Blood glucose x0 and net hormonal concentration x1 under insulin u; keep x0 near the target l."""

    def dynamics(x, u):
        return jnp.stack([-a * x[0] - b * x[1], -c * x[1] + u[0]])

    def cost(x, u, time):
        return 100000.0 * (A * (x[0] - l) ** 2 + u[0] ** 2)

    return myriad_system(
        "glucose", duration=duration, x0=(0.75, 0.0), state_bounds=((0.0, 1.0),) * 2, control_bounds=((0.0, 0.01),),
        dynamics=dynamics, cost=cost, horizon=horizon, noise_std=noise_std, clip_states=clip_states,
        state_names=("blood glucose", "net hormonal concentration"), description="Blood glucose (Eisen), Myriad",
    )
