"""Loss landscapes (gradlens.analysis.landscape).

Roughness numbers in closed form (a parabola's total variation and discrete Lipschitz constant, in 1-D and 2-D),
NaN reporting, Li et al.'s filter normalisation, slices against direct evaluation and a quadratic's closed form, 2-D
slices against 1-D slices along the axes, the double pendulum's first step in closed form, its roughness growing with
the horizon, and the one-bounce jump (a local Lipschitz estimate that doubles when the grid step halves, located
where the bounce moves to another step).
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradlens as gl
from gradlens.analysis.landscape import (action_slice, action_slice_2d, along, plane_grid, policy_return_fn,
                                         random_direction, roughness, slice_1d, slice_2d)

# ---------------------------------------------------------------------------------------------------------------
# 1. Roughness numbers: closed forms and non-finite values.


def test_roughness_of_a_parabola_in_closed_form():
    """J = -α² on [-1, 1]: TV = 2 · max|J| = 2, discrete Lipschitz (1 - (1-h)²) / h = 2 - h at the ends, TV per
    unit length 1, normalized TV 2 (one bump)."""
    grid = np.linspace(-1.0, 1.0, 201)
    h = grid[1] - grid[0]
    r = roughness(-grid**2, grid)
    assert r["total_variation"] == pytest.approx(2.0, rel=1e-12)
    assert r["lipschitz"] == pytest.approx(2.0 - h, rel=1e-9)
    assert abs(r["lipschitz_at"]) == pytest.approx(1.0 - h / 2, rel=1e-9)
    assert r["mean_slope"] == pytest.approx(1.0, rel=1e-12)
    assert r["normalized_tv"] == pytest.approx(2.0, rel=1e-12)
    assert r["n_nonfinite"] == 0 and r["nonfinite_at"] == []
    assert roughness(grid, grid)["normalized_tv"] == pytest.approx(1.0)  # monotone
    assert roughness(np.zeros(5), np.arange(5.0))["normalized_tv"] == 0.0  # flat


def test_roughness_2d_in_closed_form():
    """J = -(α² + β²) on [-1, 1]²: every one of the G2 + G1 grid lines has TV 2, so TV = 2 (G1 + G2); range 2."""
    a, b = np.linspace(-1.0, 1.0, 11), np.linspace(-1.0, 1.0, 21)
    values = -(a[:, None] ** 2 + b[None, :] ** 2)
    r = roughness(values, (a, b))
    assert r["total_variation"] == pytest.approx(2.0 * (11 + 21), rel=1e-12)
    assert r["normalized_tv"] == pytest.approx(1.0, rel=1e-12)
    h = b[1] - b[0]  # the finer β axis gets closest to the true max slope 2: 2 - h
    assert r["lipschitz"] == pytest.approx(2.0 - h, rel=1e-9)
    assert abs(r["lipschitz_at"][1]) == pytest.approx(1.0 - h / 2, rel=1e-9)


def test_nonfinite_values_are_kept_counted_and_located():
    grid = np.linspace(-1.0, 1.0, 201)
    clean = -grid**2
    values = clean.copy()
    values[50], values[120] = np.nan, np.inf
    r = roughness(values, grid)
    assert r["n_nonfinite"] == 2 and r["nonfinite_at"] == pytest.approx([grid[50], grid[120]])
    lost = sum(abs(clean[i + 1] - clean[i]) for i in (49, 50, 119, 120))
    assert r["total_variation"] == pytest.approx(2.0 - lost, rel=1e-12)
    values2d = np.zeros((3, 4))
    values2d[1, 2] = np.nan
    r2 = roughness(values2d, (np.arange(3.0), np.arange(4.0)))
    assert r2["n_nonfinite"] == 1 and r2["nonfinite_at"] == [(1.0, 2.0)] and r2["total_variation"] == 0.0
    empty = roughness(np.full(4, np.nan), np.arange(4.0))
    assert empty["n_nonfinite"] == 4 and np.isnan(empty["total_variation"]) and np.isnan(empty["lipschitz"])


def test_roughness_rejects_bad_grids():
    with pytest.raises(ValueError, match="strictly increasing"):
        roughness(np.zeros(3), np.array([0.0, 2.0, 1.0]))
    with pytest.raises(ValueError, match="grid axis 0"):
        roughness(np.zeros(3), np.arange(4.0))
    with pytest.raises(ValueError, match="2-D slice"):
        roughness(np.zeros((2, 2, 2)), np.arange(2.0))


# ---------------------------------------------------------------------------------------------------------------
# 2. Directions and parameter-space slices.


def _mlp(system):
    policy = gl.policies.make_policy("mlp", system, hidden=(8, 8))
    return policy, policy.init(jax.random.PRNGKey(0))


def test_filter_normalised_direction_matches_filter_norms():
    """Every output unit's column of d has the norm of the same column of w; biases zero (or one filter)."""
    _, params = _mlp(gl.envs.make("linear", horizon=4))
    d = random_direction(params, jax.random.PRNGKey(1))
    for layer in params:
        w, dw = np.asarray(params[layer]["w"]), np.asarray(d[layer]["w"])
        np.testing.assert_allclose(np.linalg.norm(dw, axis=0), np.linalg.norm(w, axis=0), rtol=1e-5)
        assert not np.allclose(dw, w)  # a random direction, not the weights
        assert np.all(np.asarray(d[layer]["b"]) == 0)
    kept = random_direction(params, jax.random.PRNGKey(1), ignore_biases=False)
    raw = random_direction(params, jax.random.PRNGKey(1), filter_normalize=False)
    for layer in params:
        b = np.asarray(params[layer]["b"])
        assert np.linalg.norm(kept[layer]["b"]) == pytest.approx(np.linalg.norm(b), rel=1e-5, abs=1e-7)
    w0 = np.asarray(params["policy/~/linear_0"]["w"])
    assert not np.allclose(np.linalg.norm(raw["policy/~/linear_0"]["w"], axis=0), np.linalg.norm(w0, axis=0))
    same = random_direction(params, jax.random.PRNGKey(1))
    jax.tree.map(lambda x, y: np.testing.assert_array_equal(x, y), d, same)  # determinism


def test_slices_of_a_quadratic_and_their_consistency():
    """objective -‖p‖²: slice_1d = -(‖θ‖² + 2α θ·d + α²‖d‖²); slice_2d's β = 0 column and α = 0 row are 1-D slices."""
    params = {"w": jnp.array([[1.0, -2.0], [0.5, 0.0]]), "b": jnp.array([0.3, -0.1])}
    d1 = random_direction(params, jax.random.PRNGKey(0), filter_normalize=False)
    d2 = random_direction(params, jax.random.PRNGKey(1), filter_normalize=False)

    def objective(p):
        return -sum(jnp.sum(x**2) for x in jax.tree.leaves(p))

    flat = lambda t: np.concatenate([np.asarray(x).reshape(-1) for x in jax.tree.leaves(t)])
    theta, u = flat(params), flat(d1)
    alphas, betas = jnp.linspace(-1.0, 1.0, 21), jnp.linspace(-0.5, 0.5, 11)
    line = slice_1d(objective, params, d1, alphas, batch_size=8)
    np.testing.assert_allclose(line, -(theta @ theta + 2 * alphas * (theta @ u) + alphas**2 * (u @ u)), rtol=1e-5)
    plane = slice_2d(objective, params, d1, d2, alphas, betas)
    assert plane.shape == (21, 11)
    np.testing.assert_allclose(plane[:, 5], line, rtol=1e-6)
    np.testing.assert_allclose(plane[10, :], slice_1d(objective, params, d2, betas), rtol=1e-6)
    with pytest.raises(ValueError, match="structure"):
        slice_1d(objective, params, {"w": d1["w"]}, alphas)
    # the audit's one program for both: the line's rows (α, 0) stacked over the plane's rows give both slices
    rows = jnp.concatenate([jnp.stack([alphas, jnp.zeros_like(alphas)], axis=1), plane_grid(alphas, betas)])
    both = along(objective, params, (d1, d2), rows)
    np.testing.assert_allclose(both[:21], line, rtol=1e-6)
    np.testing.assert_allclose(both[21:].reshape(21, 11), plane, rtol=1e-6)
    with pytest.raises(ValueError, match=r"coefficients must be \[N >= 1, 2\]"):
        along(objective, params, (d1, d2), alphas[:, None])


def test_policy_slice_matches_direct_rollouts():
    system = gl.envs.make("linear", horizon=6)
    policy, params = _mlp(system)
    fn = policy_return_fn(system, policy, system.initial_state(), 6)
    d = random_direction(params, jax.random.PRNGKey(2))
    alphas = jnp.array([-1.0, 0.0, 0.5])
    values = slice_1d(fn, params, d, alphas)
    for alpha, value in zip(alphas, values):
        shifted = jax.tree.map(lambda w, v: w + alpha * v, params, d)
        direct = gl.rollout(system, policy.bind(shifted, deterministic=True), system.initial_state(), 6).ret
        assert value == pytest.approx(float(direct), rel=1e-5)


# ---------------------------------------------------------------------------------------------------------------
# 3. Action slices of the toy tasks.


def test_pendulum_first_step_slice_in_closed_form():
    """H = 2: x_1 = [180 a, 0, 90, 0] against the goal [90, 0, 90, 0]: J(a) = -(180 a - 90)² / 4, TV on [0.4, 0.6]
    = 2 · 81."""
    system = gl.envs.make("double_pendulum", horizon=2)
    a = jnp.linspace(0.4, 0.6, 201)
    values = action_slice(system, system.initial_state(), 2, a)
    np.testing.assert_allclose(values, -((180 * a - 90) ** 2) / 4, rtol=1e-4, atol=1e-3)
    assert roughness(values, a)["total_variation"] == pytest.approx(162.0, rel=1e-4)


def test_pendulum_landscape_roughens_with_horizon():
    """Near the goal a_1 = 0.5, the H = 20 slice oscillates (normalized TV > 2× the parabola's 2) and is steeper per
    unit length than the H = 2 slice, and rougher than the linear system's."""
    a = jnp.linspace(0.4, 0.6, 201)
    rough = {}
    for horizon in (2, 20):
        system = gl.envs.make("double_pendulum", horizon=horizon)
        rough[horizon] = roughness(action_slice(system, system.initial_state(), horizon, a), a)
    linear = gl.envs.make("linear", horizon=20)
    rough_linear = roughness(action_slice(linear, linear.initial_state(), 20, a), a)
    assert rough[2]["normalized_tv"] == pytest.approx(2.0, rel=1e-3)
    assert rough[20]["normalized_tv"] > 2 * rough[2]["normalized_tv"]
    assert rough[20]["normalized_tv"] > 2 * rough_linear["normalized_tv"]
    assert rough[20]["mean_slope"] > 3 * rough[2]["mean_slope"]
    assert rough[20]["lipschitz"] > 10 * rough[2]["lipschitz"]


def _bounce_step(system, a1, horizon):
    """The step index at which the ball's velocity turns positive (the bounce), or -1."""
    actions = jnp.zeros((horizon, 1)).at[0, 0].set(a1)
    v = np.asarray(gl.rollout(system, actions, system.initial_state(), horizon).states[1:, 1])
    return int(np.argmax(v > 0)) if np.any(v > 0) else -1


def test_one_bounce_slice_has_a_jump_where_the_bounce_changes_step():
    """A jump: the steepest pair's slope ~doubles when the grid step halves (a kink or smooth slope would not), it sits
    at the same a_1, and the bounce happens at different steps on its two sides."""
    horizon = 20
    system = gl.envs.make("one_bounce", horizon=horizon)
    coarse_grid, fine_grid = jnp.linspace(-1.0, 1.0, 201), jnp.linspace(-1.0, 1.0, 401)
    coarse = roughness(action_slice(system, system.initial_state(), horizon, coarse_grid), coarse_grid)
    fine = roughness(action_slice(system, system.initial_state(), horizon, fine_grid), fine_grid)
    assert fine["lipschitz"] > 1.5 * coarse["lipschitz"]
    assert fine["lipschitz_at"] == pytest.approx(coarse["lipschitz_at"], abs=0.01)
    assert coarse["lipschitz"] > 5 * coarse["mean_slope"]
    h = 2.0 / 400
    at = fine["lipschitz_at"]
    assert _bounce_step(system, at - h / 2, horizon) != _bounce_step(system, at + h / 2, horizon)
    smooth = gl.envs.make("linear", horizon=horizon)
    smooth_coarse = roughness(action_slice(smooth, smooth.initial_state(), horizon, coarse_grid), coarse_grid)
    smooth_fine = roughness(action_slice(smooth, smooth.initial_state(), horizon, fine_grid), fine_grid)
    assert smooth_fine["lipschitz"] == pytest.approx(smooth_coarse["lipschitz"], rel=0.02)


def test_action_slice_2d_matches_1d_slices_along_its_axes():
    """Linear system with A = 2: default coordinates are a_1's two components; A = 1: a_1 and a_2."""
    system = gl.envs.make("linear", horizon=5, action_dim=2)
    v1, v2 = jnp.linspace(-1.0, 1.0, 9), jnp.linspace(-0.5, 0.5, 5)
    base = jnp.full((5, 2), 0.1)
    plane = action_slice_2d(system, system.initial_state(), 5, v1, v2, other_actions=base)
    assert plane.shape == (9, 5)
    at_v2 = jnp.asarray(base).at[0, 1].set(v2[3])
    np.testing.assert_allclose(plane[:, 3], action_slice(system, system.initial_state(), 5, v1, other_actions=at_v2),
                               rtol=1e-6)
    at_v1 = jnp.asarray(base).at[0, 0].set(v1[2])
    np.testing.assert_allclose(plane[2, :], action_slice(system, system.initial_state(), 5, v2, other_actions=at_v1,
                                                         coordinate=(0, 1)), rtol=1e-6)
    one = gl.envs.make("linear", horizon=5)
    plane1 = action_slice_2d(one, one.initial_state(), 5, v1, v2)
    np.testing.assert_allclose(plane1[:, 2], action_slice(one, one.initial_state(), 5, v1), rtol=1e-6)  # v2[2] = 0
    with pytest.raises(ValueError, match="must differ"):
        action_slice_2d(one, one.initial_state(), 5, v1, v2, coordinates=((0, 0), (0, 0)))
    with pytest.raises(ValueError, match="outside"):
        action_slice(one, one.initial_state(), 5, v1, coordinate=(5, 0))
    with pytest.raises(ValueError, match="other_actions"):
        action_slice(one, one.initial_state(), 5, v1, other_actions=jnp.zeros((4, 1)))


def test_action_slice_of_a_world_model_matches_its_rollouts():
    system = gl.envs.make("one_bounce", horizon=8)
    model = gl.models.make("markov", system)
    pair = (model, model.init(jax.random.PRNGKey(0)))
    values = action_slice(pair, system.initial_state(), 8, jnp.array([-0.5, 0.5]))
    for a1, value in zip((-0.5, 0.5), values):
        direct = gl.rollout(pair, jnp.zeros((8, 1)).at[0, 0].set(a1), system.initial_state(), 8).ret
        assert value == pytest.approx(float(direct), rel=1e-5, abs=1e-6)
