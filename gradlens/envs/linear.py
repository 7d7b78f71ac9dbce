"""Linear system s_{t+1} = A s_t + B a_t with quadratic cost: every Jacobian is known in closed form.

d s_t / d a_k = A^{t-1-k} B (0-indexed actions), which the analysis tests use as ground truth.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from gradlens import validate
from gradlens.envs.base import System


def random_matrices(state_dim: int, action_dim: int, spectral_radius: float, seed: int):
    """Random A [D, D] scaled to the given spectral radius and B [D, A] with unit-variance entries / sqrt(A)."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(state_dim, state_dim))
    a *= spectral_radius / max(np.max(np.abs(np.linalg.eigvals(a))), 1e-12)
    b = rng.normal(size=(state_dim, action_dim)) / np.sqrt(action_dim)
    return a, b


def make_linear(horizon: int = 20, noise_std: float = 0.0, state_dim: int = 3, action_dim: int = 1,
                A=None, B=None, spectral_radius: float = 0.9, seed: int = 0, x0=None,
                state_cost: float = 1.0, action_cost: float = 0.1, dt: float = 1.0) -> System:
    """Linear dynamics with reward -(state_cost |x|² + action_cost |a|²).

    A [D, D] and B [D, A] are given, or drawn with `seed` (A rescaled to `spectral_radius`); x0 defaults to ones.
    """
    validate.positive_int(state_dim, "linear: state_dim")
    validate.positive_int(action_dim, "linear: action_dim")
    if A is None or B is None:
        a_rand, b_rand = random_matrices(state_dim, action_dim, spectral_radius, seed)
        A = a_rand if A is None else A
        B = b_rand if B is None else B
    A, B = np.asarray(A, dtype=np.float64), np.asarray(B, dtype=np.float64)
    if A.ndim != 2 or A.shape[0] != A.shape[1] or B.ndim != 2 or B.shape[0] != A.shape[0]:
        raise ValueError(f"linear: A must be [D, D] and B [D, A] with the same D, got A {A.shape} and B {B.shape}")
    if not (np.all(np.isfinite(A)) and np.all(np.isfinite(B))):
        raise ValueError("linear: A and B must be finite")
    d, m = B.shape
    x0 = np.ones(d) if x0 is None else np.asarray(x0, dtype=np.float64)
    a_const, b_const = tuple(map(tuple, A)), tuple(map(tuple, B))

    def transition(x, a, t):
        return jnp.asarray(a_const, x.dtype) @ x + jnp.asarray(b_const, x.dtype) @ a

    def reward_fn(x, a, t):
        return -(state_cost * jnp.sum(x**2) + action_cost * jnp.sum(a**2))

    return System(
        name="linear", state_dim=d, action_dim=m, horizon=horizon, dt=dt, x0=tuple(map(float, x0)),
        transition=transition, reward_fn=reward_fn, noise_std=noise_std,
        state_names=tuple(f"x{i}" for i in range(d)),
        description="Linear system s' = A s + B a (known Jacobians)",
    )


def matrices(system: System) -> tuple[jax.Array, jax.Array]:
    """Recover (A [D, D], B [D, A]) of a linear system from its transition function (exact: it is linear)."""
    x = jnp.zeros(system.state_dim)
    a = jnp.zeros(system.action_dim)
    t = jnp.zeros(())
    return (jax.jacobian(system.transition, 0)(x, a, t), jax.jacobian(system.transition, 1)(x, a, t))
