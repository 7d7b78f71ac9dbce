"""The paper's one-bounce ball (PAPER.md §5.2): a hard wall makes the return non-smooth in the first action.

Glossary of shapes: D = 2 physical state (x position, v velocity), A = 1 action, H horizon, O = 3.

Episode (the paper's code, explicit Euler with step dt and linear drag k):
    t = 0:       the transition ignores x and sets x_1 = (0, 10 (a_1 - 2)): v ∈ [-30, -10], always towards the wall;
    t = 1 … H-1: with Δx = v dt,
                   if x + Δx <= wall:  x ← 2 wall - x - Δx (mirrored), v ← -v   (elastic bounce, no drag this step)
                   otherwise:          x ← x + Δx,                    v ← v - k v dt
                 actions a_2 … a_H are ignored (zero gradient);
    reward:      0, except r_{H-1} = -(x_{H-1} - goal)² on the pre-transition position (as in the paper's code).
The contact test is a `jnp.where`, so J(a_1) is differentiable on each side of every contact event and not across:
  * at the slowest launch that still reaches the wall before t = H-1 the position is continuous but its slope flips
    sign (a kink: dJ/da_1 jumps from -c to +c);
  * where the bounce moves from step n to step n+1 the drag-free bounce step shifts, so J jumps (a discontinuity).
Unbounced, the ball travels |v_1| (1 - (1 - k dt)^(H-2)) / k before t = H-1: with the defaults ≥ 0.99 for
a_1 <= 1, past goal = -0.5, so the goal is reached only after the bounce.
The paper's observation also carried the constant wall and goal positions; they are builder constants here (the
observation is (x, v, t)). Defaults follow PAPER.md §8 row 8: dt = 0.01, k = 10, wall = -1, goal = -0.5, H = 50.
"""
from __future__ import annotations

import math

import jax.numpy as jnp

from gradlens import validate
from gradlens.envs.base import System


def make_one_bounce(horizon: int = 50, noise_std: float = 0.0, dt: float = 0.01, friction: float = 10.0,
                    wall: float = -1.0, goal: float = -0.5) -> System:
    """One-bounce ball: a_1 sets the launch speed; reward -(x_{H-1} - goal)² at t = H - 1.

    Args: dt (s) per Euler step, `friction` k (1/s, with k dt < 1), `wall` position (< 0, the ball starts at 0),
    `goal` position (> wall).
    """
    validate.horizon(horizon, "one_bounce: horizon", low=2, why="launch step + terminal step")
    validate.positive(dt, "one_bounce: dt")
    if isinstance(friction, bool) or not isinstance(friction, (int, float)) or not 0 <= friction * dt < 1:
        raise ValueError(f"one_bounce: friction must be a number with 0 <= friction * dt < 1 (drag must not reverse "
                         f"the velocity), got friction={friction!r} with dt={dt!r}")
    if not (isinstance(wall, (int, float)) and -math.inf < wall < 0):
        raise ValueError(f"one_bounce: wall must be a finite number < 0 (the ball starts at x = 0), got {wall!r}")
    if not (isinstance(goal, (int, float)) and wall < goal < math.inf):
        raise ValueError(f"one_bounce: goal must be a finite number > wall = {wall}, got {goal!r}")

    def transition(x, a, t):
        pos, vel = x[0], x[1]
        launch = jnp.stack([jnp.zeros((), x.dtype), 10.0 * (a[0] - 2.0)])
        dx = vel * dt
        hits = pos + dx <= wall
        bounced = jnp.stack([2.0 * wall - pos - dx, -vel])
        rolled = jnp.stack([pos + dx, vel - friction * vel * dt])
        return jnp.where(t < 0.5, launch, jnp.where(hits, bounced, rolled))

    def reward_fn(x, a, t):
        return jnp.where(jnp.abs(t - (horizon - 1)) < 0.5, -(x[0] - goal) ** 2, jnp.zeros((), x.dtype))

    return System(
        name="one_bounce", state_dim=2, action_dim=1, horizon=horizon, dt=dt, x0=(0.0, 0.0),
        transition=transition, reward_fn=reward_fn, noise_std=noise_std, state_names=("x", "v"),
        description=f"One-bounce ball (paper §5.2): launch v = 10(a_1 - 2) at a wall at {wall:g}; "
                    f"reach x = {goal:g} at t = H-1",
    )
