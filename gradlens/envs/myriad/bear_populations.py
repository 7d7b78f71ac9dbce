"""Black-bear metapopulation (Salinas, Lenhart & Gross 2005; Lenhart & Workman lab 9; Myriad BEARPOPULATIONS).

P' = rP - kP² + k m_f (1 - P/K) F² - u_p P,   F' = rF - kF² + k m_p (1 - F/K) P² - u_f F,
O' = k(1 - m_p) P² + k(1 - m_f) F² + k₂ m_f P F² + k₂ m_p P² F   (k = r/K, k₂ = r/K²),
cost O + c_p u_p² + c_f u_f²,   T = 25, x_0 = (0.4, 0.2, 0), x ∈ [0, 2]³, u ∈ [0, 0.2]².
"""
from __future__ import annotations

import jax.numpy as jnp

from gradlens.envs.myriad.base import myriad_system


def make_bear_populations(horizon: int = 100, noise_std: float = 0.0, clip_states: bool = True,
                          r: float = 0.1, K: float = 0.75, m_p: float = 0.5, m_f: float = 0.5,
                          c_p: float = 10000.0, c_f: float = 10.0, duration: float = 25.0):
    """Bear densities (park P, forest F, urban O) under harvest rates (u_p, u_f); minimise urban bears + harvests."""
    k, k2 = r / K, r / K**2

    def dynamics(x, u):
        p, f, _ = x
        return jnp.stack([
            r * p - k * p**2 + k * m_f * (1.0 - p / K) * f**2 - u[0] * p,
            r * f - k * f**2 + k * m_p * (1.0 - f / K) * p**2 - u[1] * f,
            k * (1.0 - m_p) * p**2 + k * (1.0 - m_f) * f**2 + k2 * m_f * p * f**2 + k2 * m_p * p**2 * f,
        ])

    def cost(x, u, time):
        return x[2] + c_p * u[0] ** 2 + c_f * u[1] ** 2

    return myriad_system(
        "bear_populations", duration=duration, x0=(0.4, 0.2, 0.0), state_bounds=((0.0, 2.0),) * 3,
        control_bounds=((0.0, 0.2),) * 2, dynamics=dynamics, cost=cost, horizon=horizon, noise_std=noise_std,
        clip_states=clip_states, state_names=("park bears", "forest bears", "urban bears"),
        description="Black-bear metapopulation (Salinas, Lenhart & Gross), Myriad",
    )
