"""The toy systems: double pendulum, one-bounce ball, Lorenz-96.

Gradients vs central finite differences (float64), the one-bounce kink and jump in closed form, energy conservation,
positive finite-time Lyapunov exponents (with non-chaotic contrasts), the reachable pendulum goal, parity with SciPy
`solve_ivp` on independently written equations, dtypes and bad input.
"""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import solve_ivp

import gradlens as gl


def _returns(system):
    """jit(vmap) of the return over a batch of open-loop action sequences [B, H, A] -> [B]."""
    return jax.jit(jax.vmap(lambda a: gl.rollout(system, a, system.initial_state()).ret))


def _states(system):
    """jit(vmap) of the rollout states over a batch of open-loop action sequences [B, H, A] -> [B, H+1, O]."""
    return jax.jit(jax.vmap(lambda a: gl.rollout(system, a, system.initial_state()).states))


def _first_action(system, a1):
    """Open-loop sequences [B, H, 1] whose first actions are a1 [B] and later actions 0."""
    a1 = jnp.asarray(a1)
    return jnp.zeros((a1.shape[0], system.horizon, 1)).at[:, 0, 0].set(a1)


def _central_differences(returns, actions, eps):
    """Central FD of the return w.r.t. every entry of actions [H, A] (one batched call)."""
    basis = jnp.eye(actions.size).reshape((actions.size,) + actions.shape) * eps
    plus, minus = returns(actions + basis), returns(actions - basis)
    return ((plus - minus) / (2 * eps)).reshape(actions.shape)


def _grad(system):
    return jax.jit(jax.grad(lambda a: gl.rollout(system, a, system.initial_state()).ret))


def _pendulum_energy(x, gravity=9.8, l1=1.0, l2=1.0, m1=1.0, m2=1.0):
    """E = T + V [...] of point masses on massless rods, from x [..., 4] = (θ1, ω1, θ2, ω2)."""
    th1, w1, th2, w2 = (np.asarray(x)[..., i] for i in range(4))
    kinetic = 0.5 * (m1 + m2) * l1**2 * w1**2 + 0.5 * m2 * l2**2 * w2**2 + m2 * l1 * l2 * w1 * w2 * np.cos(th1 - th2)
    potential = -(m1 + m2) * gravity * l1 * np.cos(th1) - m2 * gravity * l2 * np.cos(th2)
    return kinetic + potential


# ---------------------------------------------------------------------------------------------------------------
# 1. Gradients vs central finite differences (float64).


@pytest.mark.parametrize("angle_scale, horizon", [(math.pi, 8), (180.0, 4)])
def test_pendulum_gradient_matches_finite_differences(x64, angle_scale, horizon):
    """rtol 1e-6: the whole sequence gradient (a_1 and the ignored later actions) at 3 random points."""
    system = gl.envs.make("double_pendulum", horizon=horizon, angle_scale=angle_scale)
    returns, grad = _returns(system), _grad(system)
    for key in jax.random.split(jax.random.PRNGKey(0), 3):
        actions = jax.random.uniform(key, (horizon, 1), minval=-1, maxval=1)
        fd = _central_differences(returns, actions, eps=1e-7)
        g = grad(actions)
        assert abs(g[0, 0]) > 1e-3  # a non-trivial gradient is checked
        np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-8 * abs(g[0, 0]))


def test_lorenz96_gradient_matches_finite_differences(x64):
    """rtol 1e-6 (atol 1e-9) over all A x H actions of a 10-step episode, N = 8, control on components (0, 3, 5)."""
    system = gl.envs.make("lorenz96", horizon=10, actuated=(0, 3, 5), action_cost=0.1)
    actions = jax.random.uniform(jax.random.PRNGKey(1), (10, 3), minval=-1, maxval=1)
    fd = _central_differences(_returns(system), actions, eps=1e-6)
    g = _grad(system)(actions)
    assert np.max(np.abs(g)) > 1e-2
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-9)


def test_one_bounce_gradient_matches_finite_differences_away_from_contacts(x64):
    """rtol 1e-7 for a_1 at random points whose a_1 ± eps trajectories have the same contact pattern; 0 for a_{t>1}."""
    system = gl.envs.make("one_bounce")
    returns, states, grad = _returns(system), _states(system), _grad(system)
    eps = 1e-7
    a1 = jax.random.uniform(jax.random.PRNGKey(2), (40,), minval=-1, maxval=1)
    contacts = lambda a: np.asarray(states(_first_action(system, a))[:, 1:, 1] > 0)  # v > 0 after a bounce
    same = np.all(contacts(a1 - eps) == contacts(a1 + eps), axis=1)
    assert same.sum() >= 30  # contacts change on a set of measure zero
    for a in np.asarray(a1)[same][:10]:
        actions = _first_action(system, [a])[0]
        g = grad(actions)
        fd = (returns(_first_action(system, [a + eps])) - returns(_first_action(system, [a - eps])))[0] / (2 * eps)
        np.testing.assert_allclose(g[0, 0], fd, rtol=1e-7)
        assert np.all(g[1:] == 0)


# ---------------------------------------------------------------------------------------------------------------
# 2. One-bounce: the kink where the ball first reaches the wall, the jump where the bounce changes step.


def _bisect(predicate, lo, hi, iters=60):
    """The boundary of a monotone predicate on [lo, hi] (predicate(lo) True, predicate(hi) False)."""
    assert predicate(lo) and not predicate(hi)
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if predicate(mid) else (lo, mid)
    return lo, hi


def test_one_bounce_kink_at_first_contact(x64):
    """At the slowest launch that bounces before t = H-1, J is continuous but dJ/da_1 flips from -c to +c.

    Without a bounce x_{H-1} = 10 (a_1 - 2)(1 - q^(H-2)) / k with q = 1 - k dt; at the boundary x_{H-1} = wall, so
    c = -2 (wall - goal) (1 - q^(H-2)) = 0.99363 with the defaults (a bounce on the last step mirrors the slope).
    """
    system = gl.envs.make("one_bounce")
    states, returns, grad = _states(system), _returns(system), _grad(system)
    bounces = lambda a: bool(np.any(states(_first_action(system, [a]))[0, 1:-1, 1] > 0))  # before t = H-1
    lo, hi = _bisect(bounces, 0.9, 1.0)
    c = -2 * (-1.0 + 0.5) * (1 - (1 - 10 * 0.01) ** (system.horizon - 2))
    np.testing.assert_allclose(hi, 2 - 1 / (1 - 0.9 ** 48), rtol=1e-12)  # 10 (2 - a)(1 - q^48) / k = 1
    delta = 1e-9
    left, right = _first_action(system, [lo - delta])[0], _first_action(system, [hi + delta])[0]
    np.testing.assert_allclose(grad(left)[0, 0], -c, rtol=1e-6)
    np.testing.assert_allclose(grad(right)[0, 0], c, rtol=1e-6)
    j_left, j_right = returns(jnp.stack([left, right]))
    np.testing.assert_allclose([j_left, j_right], -(-1.0 + 0.5) ** 2, atol=1e-8)  # continuous: both at the wall


def test_one_bounce_jump_where_the_bounce_moves_a_step(x64):
    """Where the bounce moves from step n to n+1, x_{H-1} jumps by |v_n| k dt² (the bounce step has no drag)."""
    system = gl.envs.make("one_bounce")
    states, returns = _states(system), _returns(system)
    first_bounce = lambda a: int(np.argmax(np.asarray(states(_first_action(system, [a]))[0, 1:, 1]) > 0))
    n = first_bounce(-0.45)
    lo, hi = _bisect(lambda a: first_bounce(a) <= n, -0.45, -0.4)
    assert first_bounce(hi) == n + 1
    x_lo, x_hi = (states(_first_action(system, [a]))[0] for a in (lo, hi))
    v_n = x_lo[n, 1]  # velocity entering the bouncing step (states[0] is the pre-launch state)
    jump = abs(v_n) * 10.0 * 0.01**2
    assert jump > 1e-3
    np.testing.assert_allclose(x_lo[-2, 0] - x_hi[-2, 0], jump, rtol=1e-6)
    j_lo, j_hi = returns(_first_action(system, [lo, hi]))
    expected = (x_hi[-2, 0] + 0.5) ** 2 - (x_lo[-2, 0] + 0.5) ** 2
    np.testing.assert_allclose(j_lo - j_hi, expected, rtol=1e-9)
    assert abs(j_lo - j_hi) > 1e-2 and hi - lo < 1e-12  # a finite jump (0.035) across an interval of width < 1e-12


# ---------------------------------------------------------------------------------------------------------------
# 3. Energy: conserved without friction, dissipated with it.


@pytest.mark.parametrize("angle_scale", [180.0, math.pi])
def test_pendulum_energy(x64, angle_scale):
    """Frictionless: |E_t - E_1| <= 1e-7 x the energy scale (m1+m2) g l1 + m2 g l2 over 40 steps (2 s), and the
    drift falls > 10x from 20 to 40 substeps (RK4: 16x). With friction 0.5/s: E strictly decreases every step and
    loses > 5% of the energy scale."""
    scale = 2 * 9.8 + 9.8
    actions = jnp.zeros((1, 40, 1)).at[0, 0, 0].set(0.3)  # a_1 = 0.3
    drift = {}
    for substeps in (20, 40):
        free = gl.envs.make("double_pendulum", horizon=40, angle_scale=angle_scale, substeps=substeps)
        x = np.asarray(_states(free)(actions)[0, 1:, :4])  # after the t = 0 reset
        assert np.max(np.abs(x[:, [1, 3]])) > 1.0  # it actually swings
        energy = _pendulum_energy(x)
        drift[substeps] = np.max(np.abs(energy - energy[0]))
    assert drift[20] <= 1e-7 * scale and drift[20] > 10 * drift[40]
    damped = gl.envs.make("double_pendulum", horizon=40, angle_scale=angle_scale, friction=0.5)
    energy = _pendulum_energy(np.asarray(_states(damped)(actions)[0, 1:, :4]))
    assert np.all(np.diff(energy) < 0)
    assert energy[0] - energy[-1] > 0.05 * scale


# ---------------------------------------------------------------------------------------------------------------
# 4. Chaos: positive finite-time Lyapunov exponents, with non-chaotic contrasts.


def _ftle(system, actions_a, actions_b, separation):
    """log(|δx_T| / separation) / T between two pendulum rollouts; T = (H - 1) dt after the t = 0 reset."""
    x = _states(system)(jnp.stack([actions_a, actions_b]))[:, :, :-1]
    return float(np.log(np.linalg.norm(x[0, -1] - x[1, -1]) / separation) / ((system.horizon - 1) * system.dt))


def test_pendulum_is_chaotic(x64):
    """θ1 differing by 1e-8 rad, over 6 s: FTLE > 1 / s at the paper's scale (a_1 = 0.3); < 0.4 / s for a small swing
    near the bottom (linear regime: the separation stays bounded, only rotating between angles and velocities)."""
    chaotic = gl.envs.make("double_pendulum", horizon=121)
    a = _first_action(chaotic, [0.3, 0.3 + 1e-8 / 180.0])
    assert _ftle(chaotic, a[0], a[1], 1e-8) > 1.0
    calm = gl.envs.make("double_pendulum", horizon=121, angle_scale=math.pi, goal_action=(0.5, 0.01))
    a = _first_action(calm, [0.01, 0.01 + 1e-8 / math.pi])
    assert abs(_ftle(calm, a[0], a[1], 1e-8)) < 0.4


def test_lorenz96_is_chaotic(x64):
    """x_0 differing by 1e-8 (no control): FTLE > 1 per time unit over 10 units for F = 8 (measured 1.9); < 0 for
    F = 0.5, where the equilibrium x = F is stable (its linear rates F (cos k - cos 2k) - 1 <= 1.125 F - 1 < 0)."""
    for forcing, check in ((8.0, lambda l: l > 1.0), (0.5, lambda l: l < 0.0)):
        base = gl.envs.make("lorenz96", horizon=201, forcing=forcing, perturbation=0.5)
        nudged = gl.envs.make("lorenz96", horizon=201, forcing=forcing, perturbation=0.5 + 1e-8)
        zeros = jnp.zeros((201, 8))
        x = [np.asarray(gl.rollout(s, zeros, s.initial_state()).states[-1, :-1]) for s in (base, nudged)]
        ftle = np.log(np.linalg.norm(x[0] - x[1]) / 1e-8) / (201 * 0.05)
        assert check(ftle), (forcing, ftle)


# ---------------------------------------------------------------------------------------------------------------
# 5. The pendulum task: a reachable goal, J <= 0, only a_1 matters, both scalings, float32 too.


@pytest.mark.parametrize("angle_scale", [180.0, math.pi])
def test_pendulum_goal_is_reached_exactly(x64, angle_scale):
    system = gl.envs.make("double_pendulum", angle_scale=angle_scale)
    grid = jnp.linspace(-1, 1, 801)  # contains 0.5 = g1
    j = np.asarray(_returns(system)(_first_action(system, grid)))
    assert np.all(j <= 0)
    i = int(np.argmax(j))
    assert grid[i] == 0.5 and j[i] > -1e-20  # the maximum J = 0 is attained at g1
    assert np.median(j) < -1e-2
    actions = _first_action(system, [0.5])[0].at[1:, 0].set(0.7)
    g = _grad(system)(actions)
    assert np.all(g[1:] == 0) and abs(g[0, 0]) < 1e-9  # later actions are ignored; a_1 = g1 is stationary
    traj = gl.rollout(system, actions, system.initial_state())
    np.testing.assert_allclose(traj.states[1, :4], [angle_scale * 0.5, 0, angle_scale * 0.5, 0])
    np.testing.assert_array_equal(traj.states[:, -1], np.arange(system.horizon + 1))
    assert np.all(traj.rewards[:-1] == 0)


def test_pendulum_float32_default():
    """float32 by default; the goal is still reached to 1e-7 relative to the typical miss."""
    system = gl.envs.make("double_pendulum")
    j = _returns(system)(_first_action(system, [0.5, -0.5]))
    assert j.dtype == jnp.float32
    assert -j[0] < 1e-7 * -j[1]


@pytest.mark.parametrize("name", ["double_pendulum", "one_bounce", "lorenz96"])
def test_dtypes_follow_x64(name):
    system = gl.envs.make(name, horizon=5)
    actions = jnp.zeros((5, system.action_dim))
    assert gl.rollout(system, actions, system.initial_state()).states.dtype == jnp.float32
    with jax.enable_x64(True):
        system = gl.envs.make(name, horizon=5)
        actions = jnp.zeros((5, system.action_dim))
        traj = gl.rollout(system, actions, system.initial_state())
        assert traj.states.dtype == jnp.float64 and traj.rewards.dtype == jnp.float64


# ---------------------------------------------------------------------------------------------------------------
# 6. Parity with SciPy solve_ivp (rtol 1e-10) on independently written equations.


def _pendulum_lagrange(t, y, gravity=9.8, l1=1.0, l2=1.0, m1=1.0, m2=1.0, friction=0.0):
    """Mass-matrix form M(θ) ω' = f(θ, ω) of the Euler-Lagrange equations, friction -c ω on the accelerations."""
    th1, w1, th2, w2 = y
    c, s = np.cos(th1 - th2), np.sin(th1 - th2)
    mass = np.array([[(m1 + m2) * l1**2, m2 * l1 * l2 * c], [m2 * l1 * l2 * c, m2 * l2**2]])
    force = np.array([-m2 * l1 * l2 * w2**2 * s - (m1 + m2) * gravity * l1 * np.sin(th1),
                      m2 * l1 * l2 * w1**2 * s - m2 * gravity * l2 * np.sin(th2)])
    dw1, dw2 = np.linalg.solve(mass, force) - friction * np.array([w1, w2])
    return [w1, dw1, w2, dw2]


@pytest.mark.parametrize("friction", [0.0, 0.3])
def test_pendulum_matches_solve_ivp(x64, friction):
    """θ1 = 0.3 π, θ2 = 0.5 π, 30 steps (1.5 s): every state within 1e-9 of solve_ivp (rtol 1e-10, atol 1e-12)."""
    system = gl.envs.make("double_pendulum", horizon=30, angle_scale=math.pi, friction=friction)
    x = np.asarray(_states(system)(_first_action(system, [0.3]))[0, 1:, :4])  # reset state, then 29 steps
    times = np.arange(30) * 0.05
    ref = solve_ivp(_pendulum_lagrange, (0, times[-1]), [0.3 * math.pi, 0, 0.5 * math.pi, 0], t_eval=times,
                    method="DOP853", rtol=1e-10, atol=1e-12, args=(9.8, 1.0, 1.0, 1.0, 1.0, friction))
    np.testing.assert_allclose(x, ref.y.T, atol=1e-9)


def _lorenz96_loops(t, x, forcing, u):
    n = len(x)
    return [(x[(i + 1) % n] - x[i - 2]) * x[i - 1] - x[i] + forcing + u[i] for i in range(n)]


def test_lorenz96_matches_solve_ivp(x64):
    """N = 6, constant control on components (1, 4), 20 steps (1 time unit) vs solve_ivp (rtol 1e-10, atol 1e-12):
    within 3e-3 with the default 5 substeps, 1e-5 with 20, and the error falls ~16x from 10 to 20 (RK4 is 4th order)."""
    a = jnp.array([0.4, -0.7])
    u = np.zeros(6)
    u[[1, 4]] = 8.0 * np.asarray(a)
    x0 = np.full(6, 8.0)
    x0[0] += 0.5
    times = np.arange(21) * 0.05
    ref = solve_ivp(_lorenz96_loops, (0, 1.0), x0, t_eval=times, method="DOP853", rtol=1e-10, atol=1e-12,
                    args=(8.0, u)).y.T
    errors = {}
    for substeps in (5, 10, 20):
        system = gl.envs.make("lorenz96", horizon=20, state_dim=6, actuated=(1, 4), substeps=substeps,
                              perturbation=0.5)
        x = gl.rollout(system, jnp.tile(a, (20, 1)), system.initial_state()).states[:, :-1]
        errors[substeps] = float(np.max(np.abs(np.asarray(x) - ref)))
    assert errors[5] < 3e-3 and errors[20] < 1e-5
    assert 10 < errors[10] / errors[20] < 22


def test_lorenz96_fixed_point_and_reward(x64):
    """x = F is an equilibrium (zero cost); the reward is -dt (mean (x - target)² + c mean a²); every 3rd actuated."""
    system = gl.envs.make("lorenz96", perturbation=0.0, actuated=3, action_cost=0.5)
    assert system.action_dim == 3  # components 0, 3, 6
    traj = gl.rollout(system, jnp.zeros((50, 3)), system.initial_state())
    np.testing.assert_allclose(traj.states[:, :-1], 8.0, atol=1e-12)
    assert np.all(traj.rewards == 0)
    zero_target = gl.envs.make("lorenz96", target=0.0, action_cost=0.5, actuated=(2,))
    r = zero_target.reward(zero_target.initial_state(), jnp.array([0.6]))
    np.testing.assert_allclose(r, -0.05 * ((8.01**2 + 7 * 64.0) / 8 + 0.5 * 0.36), rtol=1e-12)
    jac = jax.jit(jax.jacobian(zero_target.step, 1))(zero_target.initial_state(), jnp.array([0.6]))[:-1, 0]  # [N]
    assert int(np.argmax(np.abs(jac))) == 2  # the control enters at component 2 (and spreads at O(dt²))
    np.testing.assert_allclose(jac[2], 8.0 * 0.05, rtol=0.05)


# ---------------------------------------------------------------------------------------------------------------
# 7. Bad input.


@pytest.mark.parametrize("name, kwargs, match", [
    ("lorenz96", {"state_dim": 3}, "state_dim must be an integer >= 4.*got 3"),
    ("lorenz96", {"dt": 0.0}, "dt must be a positive.*got 0.0"),
    ("lorenz96", {"substeps": 0}, "substeps must be a positive integer, got 0"),
    ("lorenz96", {"actuated": (0, 8)}, r"actuated must be.*\[0, 8\), got \(0, 8\)"),
    ("lorenz96", {"actuated": ()}, r"actuated must be.*got \(\)"),
    ("lorenz96", {"forcing": float("nan")}, "forcing must be a finite number, got nan"),
    ("double_pendulum", {"dt": -0.05}, "dt must be a positive.*got -0.05"),
    ("double_pendulum", {"substeps": 0}, "substeps must be a positive integer, got 0"),
    ("double_pendulum", {"substeps": 2.5}, "substeps must be a positive integer, got 2.5"),
    ("double_pendulum", {"horizon": 1}, "horizon must be an integer >= 2.*got 1"),
    ("double_pendulum", {"friction": -1.0}, "friction must be a finite number >= 0, got -1.0"),
    ("double_pendulum", {"goal_action": (0.5, 2.0)}, r"goal_action must be two numbers in \[-1, 1\], got \(0.5, 2.0\)"),
    ("double_pendulum", {"angle_scale": 0.0}, "angle_scale must be a positive.*got 0.0"),
    ("one_bounce", {"dt": 0.0}, "dt must be a positive.*got 0.0"),
    ("one_bounce", {"friction": 100.0}, "friction \\* dt < 1.*got friction=100.0"),
    ("one_bounce", {"wall": 0.5}, "wall must be a finite number < 0.*got 0.5"),
    ("one_bounce", {"goal": -2.0}, "goal must be a finite number > wall = -1.0, got -2.0"),
])
def test_bad_input(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        gl.envs.make(name, **kwargs)


def test_registry_builds_all_three():
    for name, obs_dim in (("double_pendulum", 5), ("one_bounce", 3), ("lorenz96", 9)):
        system = gl.envs.make(name)
        assert system.name == name and system.obs_dim == obs_dim
        np.testing.assert_array_equal(system.initial_state()[-1], 0.0)
