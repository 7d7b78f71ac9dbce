"""Policies: the open-loop tanh-Gaussian policy's samples, mode and entropy estimate."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradlens as gl


def test_open_loop_noise_is_a_tanh_gaussian_with_the_stated_entropy(x64):
    system = gl.envs.make("linear", horizon=4)
    policy = gl.policies.make_policy("open_loop", system, noise_std=0.4)
    theta = jnp.array([[0.3], [-1.0], [0.0], [2.0]])
    obs = system.initial_state().at[-1].set(1.0)  # time index 1 selects row 1: θ = -1
    keys = jax.random.split(jax.random.PRNGKey(0), 20000)
    actions = jax.vmap(lambda k: policy.sample(theta, obs, k))(keys)[:, 0]
    pre = np.arctanh(np.asarray(actions))
    assert pre.mean() == pytest.approx(-1.0, abs=0.01) and pre.std() == pytest.approx(0.4, rel=0.02)
    assert policy.mode(theta, obs)[0] == pytest.approx(math.tanh(-1.0))
    # H[tanh(u)], u ~ N(-1, 0.4²), by quadrature: H[u] + E[log(1 - tanh(u)²)]
    u = np.linspace(-1 - 10 * 0.4, -1 + 10 * 0.4, 200001)
    density = np.exp(-0.5 * ((u + 1) / 0.4) ** 2) / (0.4 * math.sqrt(2 * math.pi))
    exact = 0.5 * math.log(2 * math.pi * math.e * 0.4**2) + np.sum(density * np.log(1 - np.tanh(u) ** 2)) * (u[1] - u[0])
    estimate = jax.vmap(lambda a: policy.entropy(theta, obs, a[None]))(actions)
    assert float(estimate.mean()) == pytest.approx(exact, abs=0.01)


def test_open_loop_without_noise_is_deterministic_with_zero_entropy():
    system = gl.envs.make("linear", horizon=3)
    policy = gl.policies.make_policy("open_loop", system)
    theta = jnp.array([[0.5], [0.1], [-0.2]])
    obs = system.initial_state()
    a = policy.sample(theta, obs, jax.random.PRNGKey(1))
    assert a == pytest.approx(policy.sample(theta, obs, jax.random.PRNGKey(2)))
    assert float(policy.entropy(theta, obs, a)) == 0.0
    with pytest.raises(ValueError, match="noise_std must be a finite number >= 0"):
        gl.policies.make_policy("open_loop", system, noise_std=-0.1)


def test_unit_time_input_feeds_the_mlp_t_over_h():
    """policy_time_input "unit": the MLP at step t equals the raw-input MLP (same params) fed t / H."""
    system = gl.envs.make("cancer", horizon=50)
    raw = gl.policies.make_policy("mlp", system, (8, 8))
    unit = gl.policies.make_policy("mlp", system, (8, 8), time_input="unit")
    params = raw.init(jax.random.PRNGKey(0))
    obs = jnp.array([0.7, 30.0])
    loc, scale = unit.distribution(params, obs)
    ref_loc, ref_scale = raw.distribution(params, jnp.array([0.7, 30.0 / 50]))
    assert np.allclose(loc, ref_loc) and np.allclose(scale, ref_scale)
    assert not np.allclose(raw.distribution(params, obs)[0], loc)
    with pytest.raises(ValueError, match="time input must be one of raw, unit, got 'hours'"):
        gl.policies.make_policy("mlp", system, time_input="hours")


def test_raw_time_input_saturates_the_untrained_policy_and_unit_does_not():
    """The plateau's mechanism (docs/fidelity.md): at the paper's initialisation the raw step index drives tanh into
    saturation at late steps on most seeds (cancer, H = 100, the trainer's key derivation); t / H keeps every seed out."""
    system = gl.envs.make("cancer", horizon=100)
    last = system.initial_state().at[-1].set(99.0)
    shares = {}
    for time_input in ("raw", "unit"):
        policy = gl.policies.make_policy("mlp", system, time_input=time_input)
        keys = jnp.stack([jax.random.split(jax.random.PRNGKey(seed), 3)[1] for seed in range(10)])
        mode = jax.vmap(lambda k: policy.mode(policy.init(k), last))(keys)
        shares[time_input] = float(np.mean(np.abs(np.asarray(mode)) > 0.998))
    assert shares["raw"] >= 0.8 and shares["unit"] == 0.0
