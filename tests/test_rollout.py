"""`gradlens.rollout` on true systems: closed forms, gradients, jit/vmap, policy-input gradient modes, bad input."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradlens as gl
from gradlens.envs.linear import matrices


def test_linear_rollout_equals_closed_form(x64):
    system = gl.envs.make("linear", state_dim=3, action_dim=2, horizon=12, seed=3)
    A, B = map(np.asarray, matrices(system))
    actions = jax.random.uniform(jax.random.PRNGKey(0), (12, 2), minval=-1, maxval=1)
    traj = gl.rollout(system, actions, system.initial_state())
    x1 = np.asarray(system.x0)
    for t in range(13):  # s_{t+1} (0-indexed states[t]) = A^t s_1 + sum_k A^{t-1-k} B a_k
        expected = np.linalg.matrix_power(A, t) @ x1 + sum(
            np.linalg.matrix_power(A, t - 1 - k) @ B @ np.asarray(actions[k]) for k in range(t))
        np.testing.assert_allclose(traj.states[t, :-1], expected, rtol=1e-12, atol=1e-12)
        assert traj.states[t, -1] == t
    x = np.asarray(traj.states[:-1, :-1])
    np.testing.assert_allclose(traj.rewards, -(np.sum(x**2, 1) + 0.1 * np.sum(np.asarray(actions) ** 2, 1)),
                               rtol=1e-12)
    np.testing.assert_allclose(traj.ret, np.sum(traj.rewards))


def test_linear_action_gradient_matches_finite_differences(x64):
    system = gl.envs.make("linear", horizon=10, seed=1)
    actions = jax.random.uniform(jax.random.PRNGKey(4), (10, 1), minval=-1, maxval=1)
    ret = lambda a: gl.rollout(system, a, system.initial_state()).ret
    grad = jax.grad(ret)(actions)
    eps = 1e-6
    for k in range(10):
        e = jnp.zeros_like(actions).at[k, 0].set(eps)
        fd = (ret(actions + e) - ret(actions - e)) / (2 * eps)
        np.testing.assert_allclose(grad[k, 0], fd, rtol=1e-7, atol=1e-9)


def _linear_policy(K):
    return lambda obs, key: jnp.tanh(K @ obs[:-1])


def test_policy_input_grad_modes(x64):
    """full = the total derivative (finite differences); stop = only action -> future-state paths; λ interpolates."""
    system = gl.envs.make("linear", state_dim=2, horizon=8, seed=2)
    s1 = system.initial_state()
    K = jnp.array([[0.3, -0.2]])

    def ret(K, mode):
        return gl.rollout(system, _linear_policy(K), s1, policy_input_grad=mode).ret

    g_full, g_stop = jax.grad(ret)(K, "full"), jax.grad(ret)(K, "stop")
    eps = 1e-6
    fd = np.array([[(ret(K.at[0, j].add(eps), "full") - ret(K.at[0, j].add(-eps), "full")) / (2 * eps)
                    for j in range(2)]])
    np.testing.assert_allclose(g_full, fd, rtol=1e-6)
    # stop: dJ/dK = sum_t (dJ/da_t at fixed actions) * d tanh(K s_t)/dK with s_t held fixed
    traj = gl.rollout(system, _linear_policy(K), s1)
    g_actions = jax.grad(lambda a: gl.rollout(system, a, s1).ret)(traj.actions)
    x = traj.states[:-1, :-1]
    expected = np.sum(np.asarray(g_actions) * (1 - np.asarray(traj.actions) ** 2) * np.asarray(x), axis=0)[None]
    np.testing.assert_allclose(g_stop, expected, rtol=1e-9)
    assert not np.allclose(g_stop, g_full, rtol=1e-2)
    np.testing.assert_allclose(jax.grad(ret)(K, 1.0), g_full, rtol=1e-12)
    np.testing.assert_allclose(jax.grad(ret)(K, 0.0), g_stop, rtol=1e-12)
    g_half = jax.grad(ret)(K, 0.5)
    assert not np.allclose(g_half, g_full) and not np.allclose(g_half, g_stop)


def test_jit_and_vmap_over_initial_states_keys_and_policy_params():
    system = gl.envs.make("linear", noise_std=0.05, horizon=6)
    s1 = system.initial_state()
    key = jax.random.PRNGKey(0)

    def ret(K, s, k):
        return gl.rollout(system, _linear_policy(K), s, key=k).ret

    Ks = jax.random.normal(jax.random.PRNGKey(1), (4, 1, 3))
    s1s = s1 + jnp.concatenate([jax.random.normal(jax.random.PRNGKey(2), (4, 3)), jnp.zeros((4, 1))], 1)
    keys = jax.random.split(key, 4)
    batched = jax.jit(jax.vmap(ret))(Ks, s1s, keys)
    one_by_one = np.array([ret(Ks[i], s1s[i], keys[i]) for i in range(4)])
    np.testing.assert_allclose(batched, one_by_one, rtol=1e-5)
    # different keys -> different noise; same key -> same result
    assert ret(Ks[0], s1, keys[0]) != ret(Ks[0], s1, keys[1])
    assert ret(Ks[0], s1, keys[0]) == ret(Ks[0], s1, keys[0])


def test_stochastic_policy_uses_the_key():
    system = gl.envs.make("cancer", horizon=5)
    policy = lambda obs, key: jnp.tanh(0.1 + 0.5 * jax.random.normal(key, (1,)))
    s1 = system.initial_state()
    a = gl.rollout(system, policy, s1, key=jax.random.PRNGKey(0)).actions
    b = gl.rollout(system, policy, s1, key=jax.random.PRNGKey(1)).actions
    assert not np.allclose(a, b)
    np.testing.assert_array_equal(a, gl.rollout(system, policy, s1, key=jax.random.PRNGKey(0)).actions)


def test_horizon_defaults_and_partial_rollouts():
    system = gl.envs.make("cancer", horizon=10)
    s1 = system.initial_state()
    assert gl.rollout(system, lambda o, k: jnp.zeros(1), s1).actions.shape == (10, 1)
    traj = gl.rollout(system, jnp.zeros((4, 1)), s1)
    assert traj.states.shape == (5, 2) and traj.rewards.shape == (4,)


@pytest.mark.parametrize("horizon", [0, -1, 11, 2.0])
def test_bad_horizon(horizon):
    system = gl.envs.make("cancer", horizon=10)
    with pytest.raises(ValueError, match=r"horizon must be an integer in \[1, 10\]"):
        gl.rollout(system, lambda o, k: jnp.zeros(1), system.initial_state(), horizon)


def test_bad_actions_and_states():
    system = gl.envs.make("cancer", horizon=10)
    s1 = system.initial_state()
    with pytest.raises(ValueError, match=r"open-loop actions \[horizon, action_dim\] must have shape \(10, 1\)"):
        gl.rollout(system, jnp.zeros((10, 2)), s1, 10)
    with pytest.raises(ValueError, match="open-loop actions must be finite"):
        gl.rollout(system, jnp.full((10, 1), jnp.inf), s1)
    with pytest.raises(ValueError, match=r"s1 .* must have shape \(2,\), got \(1,\)"):
        gl.rollout(system, jnp.zeros((10, 1)), s1[:1])
    with pytest.raises(ValueError, match="policy_input_grad must be 'stop', 'full' or a float"):
        gl.rollout(system, lambda o, k: jnp.zeros(1), s1, policy_input_grad="half")
    with pytest.raises(ValueError, match="dynamics must be a gradlens System"):
        gl.rollout("cancer", jnp.zeros((10, 1)), s1)
    noisy = gl.envs.make("cancer", horizon=10, noise_std=0.1)
    with pytest.raises(ValueError, match="process noise"):
        gl.rollout(noisy, jnp.zeros((10, 1)), s1)


@pytest.mark.parametrize("dynamics", ["cancer", "markov", "hwm-rnn", "hwm-transformer"])
def test_reverse_modes_give_the_same_values_and_gradients(dynamics):
    system = gl.envs.make("cancer", horizon=12, noise_std=0.01)
    if dynamics != "cancer":
        model = gl.models.make(dynamics, system)
        system_or_model = (model, model.init(jax.random.PRNGKey(3)))
    else:
        system_or_model = system
    policy = gl.policies.make_policy("mlp", system, (16, 16))
    theta = policy.init(jax.random.PRNGKey(0))
    key = jax.random.PRNGKey(1)

    def ret(th, reverse):
        return gl.rollout(system_or_model, policy.bind(th), system.initial_state(), key=key, reverse=reverse,
                          policy_input_grad="full").ret

    plain, stored = jax.value_and_grad(ret)(theta, "store")
    again, recomputed = jax.value_and_grad(ret)(theta, "recompute")
    np.testing.assert_allclose(again, plain, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(recomputed), jax.tree.leaves(stored)):  # float32: rounding differs
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * float(jnp.abs(b).max()))
    assert any(float(jnp.abs(g).max()) > 0 for g in jax.tree.leaves(stored))
    with pytest.raises(ValueError, match="reverse must be one of 'store', 'recompute', got True"):
        gl.rollout(system, policy.bind(theta), system.initial_state(), key=key, reverse=True)
