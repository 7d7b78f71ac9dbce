"""Jacobian chains d ŝ_t / d a_k: closed forms on `linear`, finite differences (float64) for systems and every model
class, causality, growth rates (chaotic pendulum > 0, contracting linear < 0), step Jacobians, bad input."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradlens as gl
import gradlens.models as gm
from gradlens.analysis.jacobians import (
    growth_rate,
    has_state_edge,
    jacobian_chain,
    lag_profile,
    norms,
    step_jacobian_norms,
    step_jacobians,
)
from gradlens.envs.linear import matrices
from gradlens.rollout import as_dynamics

MODELS = ["markov", "hwm-rnn", "hwm-transformer", "awm-rnn", "awm-transformer", "awm-ssm"]
AWMS = ["awm-rnn", "awm-transformer", "awm-ssm"]
H = 5


def _actions(horizon, action_dim, seed=0):
    return jax.random.uniform(jax.random.PRNGKey(seed), (horizon, action_dim), minval=-0.9, maxval=0.9)


def _policy(obs_dim, action_dim, seed=1):
    """a = tanh(W x + b) of the physical state x: a small state-feedback policy."""
    k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
    W = 0.5 * jax.random.normal(k1, (action_dim, obs_dim - 1))
    b = 0.1 * jax.random.normal(k2, (action_dim,))
    return lambda obs, key: jnp.tanh(W @ obs[:-1] + b)


def _reference_states(dynamics, policy, s1, delta):
    """Naive Python-loop rollout with a_t = policy(ŝ_t) (or actions[t]) + δ_t: physical states [H+1, D]."""
    dyn = as_dynamics(dynamics)
    carry, obs, out = dyn.reset(s1, delta.shape[0]), s1, [s1]
    for t in range(delta.shape[0]):
        action = (policy(obs, None) if callable(policy) else policy[t]) + delta[t]
        carry, obs = dyn.transition(carry, obs, action, None)
        out.append(obs)
    return jnp.stack(out)[:, :-1]


def _central_differences(f, x, eps=1e-6):
    """d f(x) / d x [*out, *x.shape] by central differences, all perturbations in one vmapped, jitted call."""
    basis = jnp.eye(x.size, dtype=x.dtype).reshape(x.size, *x.shape) * eps
    plus, minus = jax.jit(jax.vmap(lambda e: (f(x + e), f(x - e))))(basis)
    fd = (plus - minus) / (2 * eps)  # [x.size, *out]
    return jnp.moveaxis(fd, 0, -1).reshape(*fd.shape[1:], *x.shape)


def _check_against_finite_differences(dynamics, system, horizon, s1):
    """Open loop, closed loop "stop" and "full": jac vs central differences (fwd and rev for "full"), causality."""
    actions, policy = _actions(horizon, system.action_dim), _policy(system.obs_dim, system.action_dim)
    zeros = jnp.zeros((horizon, system.action_dim))
    lags = np.subtract.outer(np.arange(horizon + 1), np.arange(horizon))  # [H+1, H]: t - k
    stop = jacobian_chain(dynamics, policy, s1, horizon, policy_input_grad="stop", mode="rev")
    cases = {  # "stop" holds the later actions fixed: the open-loop Jacobian at the closed loop's own actions
        "open": (actions, "stop", ("fwd",), lambda d: _reference_states(dynamics, actions, s1, d)),
        "stop": (policy, "stop", (), lambda d: _reference_states(dynamics, stop.trajectory.actions, s1, d)),
        "full": (policy, "full", ("fwd", "rev"), lambda d: _reference_states(dynamics, policy, s1, d)),
    }
    for name, (pol, grad_mode, jac_modes, reference) in cases.items():
        fd = _central_differences(reference, zeros)
        chains = [jacobian_chain(dynamics, pol, s1, horizon, policy_input_grad=grad_mode, mode=m) for m in jac_modes]
        for chain in chains or [stop]:
            assert chain.jac.shape == (horizon + 1, system.state_dim, horizon, system.action_dim)
            np.testing.assert_allclose(chain.jac, fd, rtol=1e-6, atol=1e-8, err_msg=name)
            n = np.asarray(norms(chain))
            assert np.all(n[lags <= 0] == 0), "causality: d ŝ_t / d a_k = 0 for k >= t"
            assert np.all(n[1:, 0] > 0)
    full = jacobian_chain(dynamics, policy, s1, horizon, policy_input_grad="full")
    # same rollout at δ = 0 (up to rounding: under "stop" an AWM replays its actions in one causal pass)
    np.testing.assert_allclose(full.trajectory.states, stop.trajectory.states, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name, overrides, horizon", [
    ("linear", dict(state_dim=3, action_dim=2, seed=3), H),
    ("cancer", {}, H),  # horizon 100 (dt = 0.2): roll out only the first H steps
    ("double_pendulum", dict(angle_scale=math.pi, substeps=4), H),
])
def test_system_chain_matches_finite_differences(name, overrides, horizon, x64):
    system = gl.envs.make(name, **overrides)
    _check_against_finite_differences(system, system, horizon, system.initial_state())


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_model_chain_matches_finite_differences(name, x64):
    system = gl.envs.make("linear", state_dim=2, action_dim=2, horizon=H, seed=1)
    model = gm.make(name, system)
    params = model.init(jax.random.PRNGKey(42))
    s1 = system.initial_state() + jnp.array([0.3, -0.2, 0.0])
    _check_against_finite_differences((model, params), system, H, s1)


def _powers(A, B, horizon):
    """[H+1, D, H, A] with block (t, k) = A^{t-1-k} B for k < t, 0 otherwise."""
    d, m = B.shape
    out = np.zeros((horizon + 1, d, horizon, m))
    for k in range(horizon):
        block = np.asarray(B)
        for t in range(k + 1, horizon + 1):
            out[t, :, k] = block
            block = np.asarray(A) @ block
    return out


def test_linear_chain_is_matrix_powers(x64):
    system = gl.envs.make("linear", state_dim=3, action_dim=2, horizon=12, seed=5, spectral_radius=1.1)
    A, B = map(np.asarray, matrices(system))
    s1, actions = system.initial_state(), _actions(12, 2)
    expected = _powers(A, B, 12)
    for mode in ("fwd", "rev", "auto"):
        np.testing.assert_allclose(jacobian_chain(system, actions, s1, mode=mode).jac, expected, rtol=1e-12,
                                   atol=1e-14)
    # closed loop, feedback stopped: the same matrix powers, whatever the policy
    policy = _policy(system.obs_dim, 2)
    np.testing.assert_allclose(jacobian_chain(system, policy, s1).jac, expected, rtol=1e-12, atol=1e-14)
    # closed loop a = K x + δ, full feedback: powers of the closed-loop matrix A + B K
    K = np.array([[0.2, -0.3, 0.1], [0.0, 0.4, -0.2]])
    chain = jacobian_chain(system, lambda obs, key: jnp.asarray(K) @ obs[:-1], s1, policy_input_grad="full")
    np.testing.assert_allclose(chain.jac, _powers(A + B @ K, B, 12), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(jax.jit(lambda s: jacobian_chain(system, actions, s).jac)(s1), expected, rtol=1e-12)
    noisy = gl.envs.make("linear", state_dim=3, action_dim=2, horizon=12, seed=5, spectral_radius=1.1, noise_std=0.1)
    chain_noisy = jacobian_chain(noisy, policy, s1, key=jax.random.PRNGKey(2), mode="rev")  # additive noise
    np.testing.assert_allclose(chain_noisy.jac, expected, rtol=1e-12, atol=1e-14)
    assert not np.allclose(chain_noisy.trajectory.states, jacobian_chain(system, policy, s1).trajectory.states)
    with pytest.raises(ValueError, match="process noise"):
        jacobian_chain(noisy, policy, s1)
    np.testing.assert_allclose(norms(chain, ord=2)[3, 1], np.linalg.norm((A + B @ K) @ B, 2), rtol=1e-12)


def test_contracting_linear_has_negative_growth_rate(x64):
    theta = 0.7  # A = 0.5 R(θ): ‖A^{d-1} B‖ = 0.5^{d-1} ‖B‖ exactly, slope log 0.5
    A = 0.5 * np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    B = np.array([[1.0], [0.5]])
    system = gl.envs.make("linear", A=A, B=B, horizon=15)
    chain = jacobian_chain(system, jnp.zeros((15, 1)), system.initial_state())
    assert growth_rate(chain) == pytest.approx(math.log(0.5), abs=1e-10)
    profile = lag_profile(chain)
    np.testing.assert_array_equal(profile.lags, np.arange(1, 16))
    np.testing.assert_array_equal(profile.pairs, np.arange(15, 0, -1))
    np.testing.assert_allclose(profile.mean_log_norm, (profile.lags - 1) * math.log(0.5) + math.log(np.linalg.norm(B)),
                               rtol=1e-10)
    for seed in range(3):  # random non-normal A with spectral radius 0.5: slope ≈ log ρ(A) = -0.69
        system = gl.envs.make("linear", spectral_radius=0.5, horizon=20, seed=seed)
        rate = growth_rate(jacobian_chain(system, jnp.zeros((20, 1)), system.initial_state()))
        assert rate == pytest.approx(math.log(0.5), abs=0.05)


@pytest.mark.parametrize("angle_scale", [math.pi, 180.0])
def test_double_pendulum_gradient_grows_with_horizon(angle_scale, x64):
    """Chaos: ‖d s_H / d a_1‖ grows with H and the growth rate is positive, on average over first actions.

    One trajectory's finite-time rate fluctuates (at scale π one a_1 of nine gives -0.02 over H = 40), so the test
    pools nine a_1 in [-0.95, 0.95]. Later actions are ignored by the pendulum: only k = 0 enters the fit.
    """
    horizon = 40
    system = gl.envs.make("double_pendulum", horizon=horizon, angle_scale=angle_scale)
    first = jnp.linspace(-0.95, 0.95, 9)
    chains = jax.jit(jax.vmap(lambda a1: jacobian_chain(
        system, jnp.zeros((horizon, 1)).at[0, 0].set(a1), system.initial_state())))(first)
    n = np.asarray(norms(chains))  # [9, H+1, H]
    assert np.all(n[:, :, 1:] == 0)  # a_2 … a_H are ignored
    # mean over a_1 of log ‖d s_t / d a_1‖, [H] (row t - 1); s_t does not depend on the horizon: ‖d s_H / d a_1‖
    mean_log = np.log(n[:, 1:, 0]).mean(axis=0)
    np.testing.assert_allclose(n[:, 1, 0], angle_scale)
    assert mean_log[0] + 1.0 < mean_log[9] < mean_log[39] - 0.5
    rates = [growth_rate(jax.tree_util.tree_map(lambda x, i=i: x[i], chains)) for i in range(9)]
    assert sum(r > 0 for r in rates) >= 7 and np.mean(rates) > 0.03
    assert growth_rate(chains) > 0.03  # pooled over the batch


def test_step_jacobians(x64):
    system = gl.envs.make("linear", state_dim=3, horizon=8, seed=2, spectral_radius=0.8)
    A, _ = matrices(system)
    policy = _policy(system.obs_dim, 1)
    np.testing.assert_allclose(step_jacobian_norms(system, policy, system.initial_state()),
                               np.full(8, np.linalg.norm(A, 2)), rtol=1e-12)
    np.testing.assert_allclose(step_jacobians(system, _actions(8, 1), system.initial_state()),
                               np.broadcast_to(A, (8, 3, 3)), rtol=1e-12)
    pendulum = gl.envs.make("double_pendulum", horizon=6, angle_scale=math.pi)
    steps = step_jacobian_norms(pendulum, _actions(6, 1), pendulum.initial_state())
    assert steps[0] == 0 and np.all(steps[1:] > 1)  # step 0 resets the state; then the flow's Jacobian


@pytest.mark.parametrize("name", ["cancer", "markov", "hwm-rnn",
                                  pytest.param("hwm-transformer", marks=pytest.mark.slow)])
def test_step_jacobians_match_finite_differences(name, x64):
    """d ŝ_{t+1} / d ŝ_t at fixed memory and action, against central differences of the replayed transitions."""
    if name == "cancer":
        system = gl.envs.make("cancer")
        dynamics = system
    else:
        system = gl.envs.make("linear", state_dim=2, action_dim=2, horizon=H, seed=1)
        model = gm.make(name, system)
        dynamics = (model, model.init(jax.random.PRNGKey(7)))
    s1, policy = system.initial_state(), _policy(system.obs_dim, system.action_dim)
    steps = step_jacobians(dynamics, policy, s1, H)  # [H, D, D]
    traj = gl.rollout(dynamics, policy, s1, H)
    dyn = as_dynamics(dynamics)
    carries = [dyn.reset(s1, H)]  # the memory before each step, replayed along the trajectory
    for t in range(H - 1):
        carries.append(dyn.transition(carries[-1], traj.states[t], traj.actions[t], None)[0])
    carries = jax.tree_util.tree_map(lambda *c: jnp.stack(c), *carries)
    times = traj.states[:-1, -1:]

    def next_states(xs):  # [H, D] fed states -> [H, D] predictions, each from its own memory and action
        obs = jnp.concatenate([xs, times], axis=1)
        return jax.vmap(lambda c, o, a: dyn.transition(c, o, a, None)[1][:-1])(carries, obs, traj.actions)

    fd = _central_differences(next_states, traj.states[:-1, :-1])  # [H, D, H, D]
    np.testing.assert_allclose(steps, np.stack([fd[t, :, t] for t in range(H)]), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(step_jacobian_norms(dynamics, policy, s1, H), np.linalg.norm(steps, 2, axis=(1, 2)),
                               rtol=1e-12)


def test_markov_chain_factorises_into_step_jacobians_and_hwm_does_not(x64):
    """Markov: d ŝ_t / d a_k = J_{t-1} ⋯ J_{k+1} d ŝ_{k+1} / d a_k (one path). An HWM adds circuitous paths."""
    system = gl.envs.make("linear", state_dim=2, action_dim=2, horizon=H, seed=1)
    actions, s1 = _actions(H, 2), system.initial_state()
    gaps = {}
    for name in ("markov", "hwm-rnn"):
        model = gm.make(name, system)
        dynamics = (model, model.init(jax.random.PRNGKey(3)))
        jac, steps = jacobian_chain(dynamics, actions, s1).jac, step_jacobians(dynamics, actions, s1)
        chained = jac[1, :, 0]
        for t in range(2, H + 1):
            chained = steps[t - 1] @ chained
        gaps[name] = float(jnp.max(jnp.abs(chained - jac[H, :, 0])) / jnp.max(jnp.abs(jac[H, :, 0])))
    assert gaps["markov"] < 1e-12 and gaps["hwm-rnn"] > 1e-3


def test_awms_have_no_state_edge():
    system = gl.envs.make("linear", horizon=H)
    for name in AWMS:  # structural: decided from the model, before any parameter is read
        model, params = gm.make(name, system), None
        assert not has_state_edge((model, params)) and not has_state_edge(model.bind(params))
        assert step_jacobians((model, params), _actions(H, 1), system.initial_state()) is None
        assert step_jacobian_norms(model.bind(params), _actions(H, 1), system.initial_state()) is None
    assert has_state_edge(system) and has_state_edge(as_dynamics(system))
    assert has_state_edge((gm.make("hwm-rnn", system), None)) and has_state_edge((gm.make("markov", system), None))


def test_bad_input_raises_clear_errors():
    system = gl.envs.make("linear", horizon=6)
    s1, actions = system.initial_state(), _actions(6, 1)
    with pytest.raises(ValueError, match="horizon must be an integer in \\[1, 6\\]"):
        jacobian_chain(system, _policy(4, 1), s1, horizon=7)
    with pytest.raises(ValueError, match="horizon must be an integer in \\[1, 6\\]"):
        step_jacobian_norms(system, _policy(4, 1), s1, horizon=0)
    with pytest.raises(ValueError, match="mode must be one of"):
        jacobian_chain(system, actions, s1, mode="forward")
    with pytest.raises(ValueError, match="open-loop actions"):
        jacobian_chain(system, actions, s1, horizon=4)
    with pytest.raises(ValueError, match="open-loop actions"):
        jacobian_chain(system, jnp.zeros((6, 2)), s1)
    with pytest.raises(ValueError, match="open-loop actions must be finite"):
        jacobian_chain(system, actions.at[2, 0].set(jnp.nan), s1)
    with pytest.raises(ValueError, match="s1"):
        jacobian_chain(system, actions, s1[:-1])
    with pytest.raises(ValueError, match="policy_input_grad"):
        jacobian_chain(system, _policy(4, 1), s1, policy_input_grad="detach")
    chain = jacobian_chain(system, actions, s1)
    with pytest.raises(ValueError, match="ord must be"):
        norms(chain, ord=1)
    with pytest.raises(ValueError, match="two or more lags"):
        growth_rate(jacobian_chain(system, actions[:1], s1))
    assert isinstance(chain.as_numpy().jac, np.ndarray) and chain.horizon == 6
