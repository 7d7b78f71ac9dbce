"""Offline data: collection matches the true system, schemes have the stated statistics, determinism, bad input."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import gradlens as gl
from gradlens.fitting import data as gd


def _linear(horizon=8, **kw):
    return gl.envs.make("linear", state_dim=2, horizon=horizon, **kw)


@pytest.mark.parametrize("scheme", ["uniform", "random_walk", "toy", lambda obs, key: jnp.tanh(obs[:1])])
def test_collected_episodes_are_true_rollouts(scheme):
    system = _linear()
    d = gd.collect(system, scheme, 6, jax.random.PRNGKey(0))
    assert d.states.shape == (6, 9, 3) and d.actions.shape == (6, 8, 1) and d.rewards.shape == (6, 8)
    assert d.n_episodes == 6 and d.horizon == 8
    np.testing.assert_array_equal(d.states[:, 0], np.broadcast_to(system.initial_state(), (6, 3)))
    np.testing.assert_array_equal(d.states[..., -1], np.broadcast_to(np.arange(9.0), (6, 9)))
    assert np.all(np.abs(d.actions) <= 1.0)
    next_states = jax.vmap(jax.vmap(system.step))(d.states[:, :-1], d.actions)
    np.testing.assert_allclose(d.states[:, 1:], next_states, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(d.rewards, jax.vmap(jax.vmap(system.reward))(d.states[:, :-1], d.actions), rtol=1e-6)


def test_uniform_scheme_statistics():
    a = np.asarray(gd.collect(_linear(), "uniform", 1000, jax.random.PRNGKey(1)).actions).ravel()
    assert stats.kstest(a, stats.uniform(-1, 2).cdf).pvalue > 1e-3
    assert len(np.unique(a)) > 0.99 * a.size  # i.i.d., not repeated across episodes or steps


@pytest.mark.parametrize("step_std", [0.1, 0.3])
def test_random_walk_starts_uniform_and_steps_with_the_stated_std(step_std):
    d = gd.collect(_linear(horizon=20), gd.RandomWalk(step_std), 500, jax.random.PRNGKey(2))
    a = np.asarray(d.actions[..., 0])
    assert stats.kstest(a[:, 0], stats.uniform(-1, 2).cdf).pvalue > 1e-3
    steps = np.diff(a, axis=1)
    interior = (np.abs(a[:, :-1]) < 1) & (np.abs(a[:, 1:]) < 1)  # neither end clipped
    assert abs(np.std(steps[interior]) / step_std - 1) < 0.1
    assert abs(np.mean(steps[interior])) < 0.1 * step_std
    assert np.all(np.abs(a) <= 1) and np.any(np.abs(a) == 1)  # clipped, and the clip is reached


def test_toy_scheme_matches_the_paper_reading():
    d = gd.collect(_linear(horizon=6), "toy", 2000, jax.random.PRNGKey(3))
    a = np.asarray(d.actions[..., 0])  # [N, H]
    assert np.all(np.abs(a) <= 1)
    unsmeared = np.all(a[:, 1:] == 0, axis=1)
    assert 0.45 < unsmeared.mean() < 0.55  # smearing level drawn from {0, 0.5} per episode
    # unsmeared: a_1 ~ U[-1, 1], later actions exactly 0
    assert stats.kstest(a[unsmeared, 0], stats.uniform(-1, 2).cdf).pvalue > 1e-3
    # smeared: a_{t>1} = 0.5 ε, ε standard normal truncated to [-2, 2] (so that 0 + 0.5 ε stays in [-1, 1])
    later = a[~unsmeared, 1:].ravel()
    assert stats.kstest(later, stats.truncnorm(-2, 2, scale=0.5).cdf).pvalue > 1e-3
    # and a_1 = u + 0.5 ε stays inside [-1, 1] with no mass piled on the bounds
    assert np.all(np.abs(a[~unsmeared, 0]) < 1)
    only_clean = np.asarray(gd.collect(_linear(), gd.Toy(smearing=(0.0,)), 50, jax.random.PRNGKey(3)).actions)
    assert np.all(only_clean[:, 1:] == 0) and np.all(only_clean[:, 0] != 0)


def test_noisy_policy_adds_clipped_gaussian_noise():
    system = _linear()
    policy = lambda obs, key: 0.5 * jnp.tanh(obs[:1])
    clean = gd.collect(system, policy, 3, jax.random.PRNGKey(4))
    np.testing.assert_allclose(clean.actions, jax.vmap(jax.vmap(policy))(clean.states[:, :-1], clean.actions),
                               rtol=1e-6)
    noisy = gd.collect(system, gd.NoisyPolicy(policy, action_noise=0.05), 400, jax.random.PRNGKey(4))
    residual = noisy.actions - jax.vmap(jax.vmap(policy))(noisy.states[:, :-1], noisy.actions)
    assert abs(np.std(residual) / 0.05 - 1) < 0.05 and abs(np.mean(residual)) < 0.005
    wild = gd.collect(system, gd.NoisyPolicy(policy, action_noise=10.0), 5, jax.random.PRNGKey(4))
    assert np.all(np.abs(wild.actions) <= 1) and np.any(np.abs(wild.actions) == 1)


def test_policy_params_in_a_partial_are_traced_not_recompiled():
    system = _linear()
    apply = lambda K, obs, key: jnp.tanh(K @ obs[:-1])
    K1, K2 = jnp.array([[0.3, -0.2]]), jnp.array([[-0.5, 0.1]])
    first = gd.collect(system, jax.tree_util.Partial(apply, K1), 4, jax.random.PRNGKey(0))
    compiled = gd._collect._cache_size()
    second = gd.collect(system, gd.NoisyPolicy(jax.tree_util.Partial(apply, K2)), 4, jax.random.PRNGKey(0))
    assert gd._collect._cache_size() == compiled
    for d, K in ((first, K1), (second, K2)):  # and each run used its own params
        np.testing.assert_allclose(d.actions, jnp.tanh(d.states[:, :-1, :-1] @ K.T), rtol=1e-6)


def test_start_noise_and_given_initial_states():
    system = _linear()
    d = gd.collect(system, "uniform", 2000, jax.random.PRNGKey(5), start_noise=0.1)
    x1 = np.asarray(d.states[:, 0, :-1]) - np.asarray(system.x0)
    assert abs(np.std(x1) / 0.1 - 1) < 0.05 and np.all(d.states[:, 0, -1] == 0)
    s1 = jnp.array([[0.5, -0.5, 0.0], [2.0, 1.0, 0.0]])
    np.testing.assert_array_equal(gd.collect(system, "uniform", 2, jax.random.PRNGKey(5), s1=s1).states[:, 0], s1)
    with pytest.raises(ValueError, match=r"s1 must be \[O\]"):
        gd.collect(system, "uniform", 3, jax.random.PRNGKey(5), s1=s1)


@pytest.mark.parametrize("scheme", ["uniform", "random_walk", "toy",
                                    gd.NoisyPolicy(lambda obs, key: jnp.tanh(obs[:1]), action_noise=0.2)])
def test_collection_is_deterministic_given_the_key(scheme):
    system = _linear(noise_std=0.05)
    first, again = (gd.collect(system, scheme, 8, jax.random.PRNGKey(6), start_noise=0.1) for _ in range(2))
    other = gd.collect(system, scheme, 8, jax.random.PRNGKey(7), start_noise=0.1)
    for x, y in zip(first, again):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(first.states, other.states)


def test_collect_short_horizon_and_pendulum_toy_data():
    system = gl.envs.make("double_pendulum", horizon=6, angle_scale=float(np.pi))
    d = gd.collect(system, "toy", 16, jax.random.PRNGKey(8), horizon=4)
    assert d.states.shape == (16, 5, 5)
    np.testing.assert_allclose(d.states[:, 1, 0], np.pi * d.actions[:, 0, 0], rtol=1e-6)  # step 0 sets θ1 = s·a_1


def test_bad_collection_input():
    system, key = _linear(), jax.random.PRNGKey(0)
    for n in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="n_episodes"):
            gd.collect(system, "uniform", n, key)
    with pytest.raises(ValueError, match=r"unknown collection scheme 'gaussian'.*'uniform', 'random_walk', 'toy'"):
        gd.collect(system, "gaussian", 4, key)
    with pytest.raises(ValueError, match="unknown collection scheme"):
        gd.collect(system, gd.Uniform, 4, key)  # the class, not an instance
    with pytest.raises(ValueError, match=r"horizon must be an integer in \[1, 8\]"):
        gd.collect(system, "uniform", 4, key, horizon=9)
    with pytest.raises(ValueError, match="step_std"):
        gd.RandomWalk(step_std=0.0)
    with pytest.raises(ValueError, match="smearing"):
        gd.Toy(smearing=(0.5, -1.0))
    with pytest.raises(ValueError, match="action_noise"):
        gd.NoisyPolicy(lambda o, k: o[:1], action_noise=float("nan"))
    with pytest.raises(ValueError, match="start_noise"):
        gd.collect(system, "uniform", 4, key, start_noise=-0.1)


def test_diverging_system_raises_instead_of_returning_nan():
    system = gl.envs.make("linear", state_dim=2, horizon=40, spectral_radius=1e20)
    with pytest.raises(ValueError, match=r"states contains .* NaN/Inf"):
        gd.collect(system, "uniform", 3, jax.random.PRNGKey(0))


def test_trajectories_validation():
    s, a = np.zeros((3, 5, 2)), np.zeros((3, 4, 1))
    d = gd.trajectories(s, a)
    assert d.rewards.shape == (3, 4) and np.all(d.rewards == 0)
    assert gd.trajectories(list(s), list(a), list(np.ones((3, 4)))).states.shape == (3, 5, 2)
    with pytest.raises(ValueError, match="states is empty"):
        gd.trajectories([], [])
    with pytest.raises(ValueError, match="empty or degenerate"):
        gd.trajectories(np.zeros((0, 5, 2)), np.zeros((0, 4, 1)))
    with pytest.raises(ValueError, match="states is ragged: episode 1 has shape"):
        gd.trajectories([np.zeros((5, 2)), np.zeros((4, 2))], list(a[:2]))
    with pytest.raises(ValueError, match=r"states must be \[N, H\+1, O\] = \[3, 5, O\]"):
        gd.trajectories(np.zeros((3, 4, 2)), a)
    with pytest.raises(ValueError, match=r"rewards must be \[N, H\]"):
        gd.trajectories(s, a, np.zeros((3, 5)))
    with pytest.raises(ValueError, match=r"states must be \[N, H\+1, O\] and actions"):
        gd.trajectories(s[0], a[0])
    bad = s.copy()
    bad[2, 3, 1] = np.nan
    with pytest.raises(ValueError, match=r"states contains 1 NaN/Inf value\(s\), in episode\(s\) \[2\]"):
        gd.trajectories(bad, a)
    with pytest.raises(ValueError, match="actions contains"):
        gd.trajectories(s, np.full((3, 4, 1), np.inf))
    with pytest.raises(ValueError, match="numeric"):
        gd.trajectories(np.array([["a"]]), a)


def test_split_concatenate_and_state_stats():
    d = gd.collect(_linear(), "uniform", 20, jax.random.PRNGKey(9))
    train, val = gd.split(d, 0.25, jax.random.PRNGKey(1))
    assert (train.n_episodes, val.n_episodes) == (15, 5)
    together = gd.concatenate([train, val])
    order = lambda x: np.asarray(x)[np.lexsort(np.asarray(x).reshape(len(x), -1).T)]
    np.testing.assert_array_equal(order(together.actions), order(d.actions))  # a partition of the episodes
    assert gd.split(gd.trajectories(d.states[:2], d.actions[:2]), 0.01, jax.random.PRNGKey(0))[1].n_episodes == 1
    for fraction in (0.0, 1.0, -0.1, "0.5"):
        with pytest.raises(ValueError, match="fraction"):
            gd.split(d, fraction, jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="at least one training and one validation"):
        gd.split(gd.trajectories(d.states[:1], d.actions[:1]), 0.5, jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="different"):
        gd.concatenate([d, gd.trajectories(d.states[:, :5], d.actions[:, :4])])
    mean, std = gd.state_stats(d)
    x = np.asarray(d.states[..., :-1]).reshape(-1, 2)
    np.testing.assert_allclose(mean, x.mean(0), rtol=1e-5)
    np.testing.assert_allclose(std, x.std(0), rtol=1e-5)
    const = gd.trajectories(np.ones((2, 3, 3)), np.zeros((2, 2, 1)))
    np.testing.assert_array_equal(gd.state_stats(const)[1], [1.0, 1.0])  # zero spread -> 1, never a division by 0
