"""The paper's chaotic double pendulum (PAPER.md §5.1): the first action sets the first angle, the rest is physics.

Glossary of shapes: D = 4 physical state (θ1, ω1, θ2, ω2) in rad and rad/s, A = 1 action, H horizon, O = 5.

Physics: two point masses m1, m2 on massless rods l1, l2 (the matplotlib double-pendulum equations, δ = θ2 - θ1):
    θ1' = ω1,   ω1' = [m2 l1 ω1² sinδ cosδ + m2 g sinθ2 cosδ + m2 l2 ω2² sinδ - (m1+m2) g sinθ1] / D1 - c ω1
    θ2' = ω2,   ω2' = [-m2 l2 ω2² sinδ cosδ + (m1+m2)(g sinθ1 cosδ - l1 ω1² sinδ - g sinθ2)] / D2 - c ω2
with D1 = (m1+m2) l1 - m2 l1 cos²δ, D2 = (l2/l1) D1 and viscous friction c ≥ 0 (1/s; 0 = the paper's frictionless
pendulum; c > 0 makes the energy decrease: dE/dt = -c ωᵀ M(θ) ω). Each step integrates dt with `substeps` RK4 steps
(the paper used adaptive Dormand-Prince; RK4 at dt / 20 keeps the energy within 1e-7 of (m1+m2) g l1 + m2 g l2
over 40 steps, and the state within 1e-9 of a tight `solve_ivp` over 30 steps at moderate angles).

Episode, in the paper's exact order (its code, not only its text):
    t = 0:       the transition ignores x and sets x_1 = [s · a_1, 0, s · g2, 0] (no integration on this step),
                 s = `angle_scale` (paper: 180, angles read as radians by sin/cos: extremely chaotic; a milder
                 option is s = π), (g1, g2) = `goal_action`;
    t = 1 … H-1: x_{t+1} = RK4 flow of x_t over dt; actions a_2 … a_H are ignored (zero gradient);
    reward:      0, except r_{H-1} = -mean over the 4 components of (x_{H-1} - x_goal)², on the pre-transition state
                 x_{H-1} (as in the paper's code), i.e. on the reset state integrated H-2 times.
x_goal is the state reached from the first action g1 (computed at build time in float64 NumPy with the same
equations, stored as a tuple), so J(g1) = 0 up to rounding: the optimum is attained and known. H ≥ 2.
The initial physical state x0 is zeros (both rods hanging at rest), the same at every H. The paper's reset put x0 at
x_goal, which moves with H; step 0 overwrites x0, so the true dynamics never read it, but a world model reads s_1,
and an H-dependent s_1 would make a model fitted at one horizon meet an unseen s_1 at every other. This departs
from the paper only in that never-read value.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from gradlens import validate
from gradlens.envs.base import System
from gradlens.envs.integrators import rk4_step


def _derivs(y, c, xp):
    """dy/dt of y = (θ1, ω1, θ2, ω2) [4]; c = (gravity, l1, l2, m1, m2, friction); xp = numpy or jax.numpy."""
    g, l1, l2, m1, m2, friction = c
    th1, w1, th2, w2 = y[0], y[1], y[2], y[3]
    delta = th2 - th1
    sin_d, cos_d = xp.sin(delta), xp.cos(delta)
    den1 = (m1 + m2) * l1 - m2 * l1 * cos_d * cos_d
    den2 = (l2 / l1) * den1
    dw1 = (m2 * l1 * w1 * w1 * sin_d * cos_d + m2 * g * xp.sin(th2) * cos_d + m2 * l2 * w2 * w2 * sin_d
           - (m1 + m2) * g * xp.sin(th1)) / den1 - friction * w1
    dw2 = (-m2 * l2 * w2 * w2 * sin_d * cos_d + (m1 + m2) * g * xp.sin(th1) * cos_d
           - (m1 + m2) * l1 * w1 * w1 * sin_d - (m1 + m2) * g * xp.sin(th2)) / den2 - friction * w2
    return xp.stack([w1, dw1, w2, dw2])


def _rk4(y, h, c, xp):
    """One RK4 step of size h of the pendulum ODE."""
    return rk4_step(lambda v: _derivs(v, c, xp), y, h)


def reach(first_action: float, *, horizon: int, dt: float, substeps: int, angle_scale: float, second_angle: float,
          constants: tuple[float, ...]) -> np.ndarray:
    """x_{H-1} [4] (float64 NumPy) after the reset [s · a_1, 0, s · g2, 0] and H-2 steps: where a_1 lands.

    `constants` = (gravity, l1, l2, m1, m2, friction); `second_angle` = g2 (action units).
    """
    y = np.array([angle_scale * first_action, 0.0, angle_scale * second_angle, 0.0], dtype=np.float64)
    h = dt / substeps
    for _ in range((horizon - 2) * substeps):
        y = _rk4(y, h, constants, np)
    return y


def make_double_pendulum(horizon: int = 10, noise_std: float = 0.0, dt: float = 0.05, substeps: int = 20,
                         angle_scale: float = 180.0, goal_action: tuple[float, float] = (0.5, 0.5),
                         friction: float = 0.0, gravity: float = 9.8, l1: float = 1.0, l2: float = 1.0,
                         m1: float = 1.0, m2: float = 1.0) -> System:
    """The chaotic double pendulum; only a_1 matters; reward -mean((x_{H-1} - x_goal)²) at t = H - 1.

    Args: dt (s) per step, `substeps` RK4 steps per dt, `angle_scale` (180 = paper, π = milder), `goal_action`
    (g1, g2) in [-1, 1]² (g1 reaches the goal exactly, g2 sets the second angle of every episode), `friction` (1/s),
    gravity (m/s²), rod lengths l1, l2 (m), masses m1, m2 (kg).
    """
    validate.horizon(horizon, "double_pendulum: horizon", low=2, why="reset step + terminal step")
    validate.positive(dt, "double_pendulum: dt")
    validate.positive_int(substeps, "double_pendulum: substeps")
    validate.positive(angle_scale, "double_pendulum: angle_scale")
    for value, what in ((gravity, "gravity"), (l1, "l1"), (l2, "l2"), (m1, "m1"), (m2, "m2")):
        validate.positive(value, f"double_pendulum: {what}")
    if isinstance(friction, bool) or not isinstance(friction, (int, float)) or not 0 <= friction < math.inf:
        raise ValueError(f"double_pendulum: friction must be a finite number >= 0, got {friction!r}")
    if (len(goal_action) != 2
            or not all(isinstance(g, (int, float)) and -1.0 <= g <= 1.0 for g in goal_action)):
        raise ValueError(f"double_pendulum: goal_action must be two numbers in [-1, 1], got {goal_action!r}")
    g1, g2 = (float(g) for g in goal_action)
    constants = tuple(float(v) for v in (gravity, l1, l2, m1, m2, friction))
    goal = reach(g1, horizon=horizon, dt=dt, substeps=substeps, angle_scale=angle_scale, second_angle=g2,
                 constants=constants)
    if not np.all(np.isfinite(goal)):
        raise ValueError(f"double_pendulum: the goal state is not finite ({goal}); reduce dt or raise substeps")
    goal_state = tuple(float(v) for v in goal)
    h = dt / substeps

    def transition(x, a, t):
        reset = jnp.stack([angle_scale * a[0], jnp.zeros((), x.dtype), jnp.asarray(angle_scale * g2, x.dtype),
                           jnp.zeros((), x.dtype)])
        flowed = jax.lax.fori_loop(0, substeps, lambda _, y: _rk4(y, h, constants, jnp), x)
        return jnp.where(t < 0.5, reset, flowed)

    def reward_fn(x, a, t):
        miss = -jnp.mean((x - jnp.asarray(goal_state, x.dtype)) ** 2)
        return jnp.where(jnp.abs(t - (horizon - 1)) < 0.5, miss, jnp.zeros((), x.dtype))

    return System(
        name="double_pendulum", state_dim=4, action_dim=1, horizon=horizon, dt=dt, x0=(0.0,) * 4,
        transition=transition, reward_fn=reward_fn, noise_std=noise_std,
        state_names=("theta1", "omega1", "theta2", "omega2"),
        description=f"Chaotic double pendulum (paper §5.1): a_1 sets θ1 = {angle_scale:g}·a_1; "
                    f"reach the state of a_1 = {g1:g} at t = H-1",
    )
