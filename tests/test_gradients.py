"""Gradient statistics (gradlens.analysis.gradients).

Closed forms on a linear-Gaussian case (policy a_t = θ_t + σ ε_t on s' = A s + B a + σ_w w, quadratic reward: the
per-sample gradient is affine in the noise, so its mean and covariance are exact NumPy expressions), parity of the
statistics with NumPy, per-sample gradients against a loop of single gradients, the zeroth-order estimator's
unbiasedness and larger variance, NaN reporting, and the horizon sweep's table.
"""
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradlens as gl
from gradlens.analysis.gradients import (GradientStats, gradient_stats, horizon_sweep, mean_gradient,
                                         per_sample_gradients, zeroth_order_gradients)

A_MAT = np.array([[0.9, 0.2], [-0.1, 0.8]])
B_MAT = np.array([[0.5], [1.0]])
X0 = np.array([1.0, -0.5])
STATE_COST, ACTION_COST = 1.0, 0.1


@dataclasses.dataclass(frozen=True)
class GaussianOpenLoop:
    """a_t = θ_t + std · ε_t (no squashing): with a linear system and quadratic reward, J is quadratic in θ."""

    horizon: int
    action_dim: int
    std: float

    def sample(self, params, obs, key):
        t = jnp.clip(jnp.round(obs[-1]).astype(jnp.int32), 0, self.horizon - 1)
        return params[t] + self.std * jax.random.normal(key, (self.action_dim,), params.dtype)

    def entropy(self, params, obs, action):
        return jnp.zeros((), action.dtype)

    def bind(self, params, deterministic=False):
        return lambda obs, key: self.sample(params, obs, key)


@functools.lru_cache
def _linear(horizon, noise_std=0.0):
    """One System object per (horizon, noise): equal systems reuse the estimators' compiled functions."""
    return gl.envs.make("linear", horizon=horizon, noise_std=noise_std, A=A_MAT, B=B_MAT, x0=X0,
                        state_cost=STATE_COST, action_cost=ACTION_COST)


def _closed_form(theta, horizon, policy_std, process_std, s1_std):
    """(mean [H·A], covariance [H·A, H·A]) of ∇θ J, J = -Σ_{t<H} (c|x_t|² + ρ|a_t|²), derived by hand.

    X = [x_0 … x_{H-1}] = Φ x_0' + G a + σ_w G_w w with Φ_t = A^t, G[t, k] = A^{t-1-k} B, G_w[t, k] = A^{t-1-k}
    (k < t); a = θ + σ ε, x_0' = x0 + σ_0 η; ∇θ J = ∇a J = -2c Gᵀ X - 2ρ a: affine in (ε, w, η).
    """
    d, m = B_MAT.shape
    power = [np.linalg.matrix_power(A_MAT, t) for t in range(horizon)]
    phi = np.concatenate(power, axis=0)  # [H·D, D]
    g = np.zeros((horizon * d, horizon * m))
    g_w = np.zeros((horizon * d, horizon * d))
    for t in range(horizon):
        for k in range(t):
            g[t * d:(t + 1) * d, k * m:(k + 1) * m] = power[t - 1 - k] @ B_MAT
            g_w[t * d:(t + 1) * d, k * d:(k + 1) * d] = power[t - 1 - k]
    c, rho = STATE_COST, ACTION_COST
    theta = np.asarray(theta).reshape(-1)
    mean = -2 * c * g.T @ (phi @ X0 + g @ theta) - 2 * rho * theta
    m_eps = -policy_std * (2 * c * g.T @ g + 2 * rho * np.eye(horizon * m))
    m_w = -2 * c * process_std * g.T @ g_w
    m_eta = -2 * c * s1_std * g.T @ phi
    return mean, m_eps @ m_eps.T + m_w @ m_w.T + m_eta @ m_eta.T


# ---------------------------------------------------------------------------------------------------------------
# 1. Closed forms: the must-show (variance estimator vs the closed-form variance) and the mean.


@pytest.mark.parametrize("policy_std, process_std, s1_std", [(0.5, 0.0, 0.0), (0.0, 0.3, 0.0), (0.0, 0.0, 0.4),
                                                             (0.5, 0.3, 0.4)])
def test_variance_matches_linear_gaussian_closed_form(x64, policy_std, process_std, s1_std):
    """tr Σ̂ within 4 standard deviations of tr Σ (sd = sqrt(2 tr Σ² / (N-1)) for Gaussian g); mean within 4 SE."""
    horizon, n = 6, 4000
    system = _linear(horizon, process_std)
    policy = GaussianOpenLoop(horizon, 1, policy_std)
    theta = jnp.linspace(-0.3, 0.4, horizon)[:, None]
    samples = per_sample_gradients(system, policy, theta, system.initial_state(), horizon, jax.random.PRNGKey(3),
                                   n, s1_noise=s1_std)
    assert samples.shape == (n, horizon, 1) and samples.dtype == jnp.float64
    mean, cov = _closed_form(theta, horizon, policy_std, process_std, s1_std)
    stats = gradient_stats(samples)
    sd = np.sqrt(2 * np.trace(cov @ cov) / (n - 1))
    assert abs(stats.variance - np.trace(cov)) < 4 * sd, (stats.variance, np.trace(cov), sd)
    assert abs(stats.variance - np.trace(cov)) < 0.1 * np.trace(cov)
    se = np.sqrt(np.diag(cov) / n)
    np.testing.assert_array_less(np.abs(np.asarray(samples).mean(0).reshape(-1) - mean), 4 * se + 1e-12)
    assert stats.mean_norm == pytest.approx(np.linalg.norm(mean), rel=0.05)


def test_deterministic_case_has_zero_variance_and_exact_gradient(x64):
    """No noise at all: every sample is the closed-form gradient, variance 0, SNR infinite."""
    horizon = 5
    system = _linear(horizon)
    theta = jnp.full((horizon, 1), 0.2)
    samples = per_sample_gradients(system, GaussianOpenLoop(horizon, 1, 0.0), theta, system.initial_state(),
                                   horizon, jax.random.PRNGKey(0), 8)
    mean, _ = _closed_form(theta, horizon, 0.0, 0.0, 0.0)
    np.testing.assert_allclose(np.asarray(samples).reshape(8, -1), np.tile(mean, (8, 1)), rtol=1e-12)
    stats = gradient_stats(samples)
    assert stats.variance == pytest.approx(0.0, abs=1e-20) and stats.snr > 1e8


# ---------------------------------------------------------------------------------------------------------------
# 2. Parity: statistics vs NumPy, per-sample gradients vs a loop of single gradients.


def test_stats_match_numpy():
    """variance = trace of np.cov (unbiased), snr = ‖ḡ‖ / sqrt(variance), norms, cosine and relative error."""
    rng = np.random.default_rng(0)
    samples = {"w": rng.normal(1.0, 2.0, (50, 3, 2)), "b": rng.normal(-1.0, 0.5, (50, 2))}
    flat = np.concatenate([samples["b"].reshape(50, -1), samples["w"].reshape(50, -1)], axis=1)  # dict keys sorted
    ref = {"w": rng.normal(size=(3, 2)), "b": rng.normal(size=2)}
    ref_flat = np.concatenate([ref["b"], ref["w"].reshape(-1)])
    stats = gradient_stats(samples, ref)
    mean = flat.mean(0)
    assert stats.n == 50 and stats.n_nonfinite == 0 and stats.nonfinite_samples == ()
    assert stats.variance == pytest.approx(np.trace(np.cov(flat.T)), rel=1e-12)
    assert stats.mean_norm == pytest.approx(np.linalg.norm(mean), rel=1e-12)
    assert stats.sample_norm == pytest.approx(np.linalg.norm(flat, axis=1).mean(), rel=1e-12)
    assert stats.snr == pytest.approx(np.linalg.norm(mean) / np.sqrt(np.trace(np.cov(flat.T))), rel=1e-12)
    assert stats.cosine == pytest.approx(mean @ ref_flat / np.linalg.norm(mean) / np.linalg.norm(ref_flat), rel=1e-12)
    assert stats.relative_error == pytest.approx(np.linalg.norm(mean - ref_flat) / np.linalg.norm(ref_flat), rel=1e-12)
    mean_tree = mean_gradient(samples)
    np.testing.assert_allclose(mean_tree["w"], samples["w"].mean(0), rtol=1e-6)


def test_cosine_one_against_itself():
    samples = {"w": np.random.default_rng(1).normal(size=(20, 4))}
    stats = gradient_stats(samples, mean_gradient(samples))
    assert stats.cosine == pytest.approx(1.0, abs=1e-6) and stats.relative_error == pytest.approx(0.0, abs=1e-6)
    assert gradient_stats(samples).cosine is None


def test_per_sample_gradients_match_a_loop_of_single_gradients():
    """MLP policy on a noisy system with perturbed initial states: sample i == grad of rollout i (documented keys)."""
    system = gl.envs.make("linear", horizon=6, noise_std=0.1)
    policy = gl.policies.make_policy("mlp", system, hidden=(8,))
    params = policy.init(jax.random.PRNGKey(0))
    key, n, s1_noise = jax.random.PRNGKey(5), 4, 0.3
    samples = per_sample_gradients(system, policy, params, system.initial_state(), 6, key, n, s1_noise=s1_noise,
                                   entropy_coef=0.1)

    def single(p, k):
        k_s1, k_roll, _ = jax.random.split(k, 3)
        s1 = system.initial_state().at[:-1].add(s1_noise * jax.random.normal(k_s1, (system.state_dim,)))
        traj = gl.rollout(system, policy.bind(p), s1, 6, jax.random.split(k_roll, 1)[0])
        obs = jax.lax.stop_gradient(traj.states[:-1])  # the policy's input is stopped, its entropy's too
        entropy = jnp.mean(jax.vmap(lambda o, a: policy.entropy(p, o, a))(obs, traj.actions))
        return traj.ret + 0.1 * entropy

    grad = jax.jit(jax.grad(single))
    for i, k in enumerate(jax.random.split(key, n)):
        expected = grad(params, k)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a[i], b, rtol=2e-4, atol=1e-6), samples, expected)
    leaf = jax.tree.leaves(samples)[0]
    assert not np.allclose(leaf[0], leaf[1])  # the samples do differ


def test_batch_of_initial_states_and_world_model_pair():
    """s1 [N, O] gives one start per sample; a (model, params) pair is accepted; a wrong s1 shape is refused."""
    system = _linear(5, 0.1)
    policy, params = GaussianOpenLoop(5, 1, 0.3), jnp.zeros((5, 1))
    starts = jnp.stack([system.initial_state(), system.initial_state().at[0].set(3.0)])
    samples = per_sample_gradients(system, policy, params, starts, 5, jax.random.PRNGKey(1), 2)
    one = per_sample_gradients(system, policy, params, starts[1], 5, jax.random.PRNGKey(1), 2)
    np.testing.assert_allclose(samples[1], one[1], rtol=1e-5)
    assert not np.allclose(samples[0], one[0])
    model = gl.models.make("markov", system)
    model_samples = per_sample_gradients((model, model.init(jax.random.PRNGKey(2))), policy, params,
                                         system.initial_state(), 5, jax.random.PRNGKey(1), 3)
    assert jax.tree.leaves(model_samples)[0].shape[0] == 3
    with pytest.raises(ValueError, match="one per sample"):
        per_sample_gradients(system, policy, params, starts, 5, jax.random.PRNGKey(1), 3)
    with pytest.raises(ValueError, match="s1_noise"):
        per_sample_gradients(system, policy, params, starts, 5, jax.random.PRNGKey(1), 2, s1_noise=-1.0)


# ---------------------------------------------------------------------------------------------------------------
# 3. Zeroth order: unbiased on a quadratic, noisier than first order.


@pytest.mark.parametrize("antithetic", [True, False])
def test_zeroth_order_is_unbiased_on_a_quadratic_and_noisier(x64, antithetic):
    horizon, n = 5, 4000
    system = _linear(horizon)
    policy = GaussianOpenLoop(horizon, 1, 0.3)
    theta = jnp.linspace(0.5, -0.5, horizon)[:, None]
    key = jax.random.PRNGKey(7)
    zo = zeroth_order_gradients(system, policy, theta, system.initial_state(), horizon, key, n, sigma=0.1,
                                antithetic=antithetic)
    fo = per_sample_gradients(system, policy, theta, system.initial_state(), horizon, key, n)
    assert zo.shape == fo.shape
    mean, _ = _closed_form(theta, horizon, 0.3, 0.0, 0.0)
    zo_flat = np.asarray(zo).reshape(n, -1)
    se = zo_flat.std(0, ddof=1) / np.sqrt(n)
    np.testing.assert_array_less(np.abs(zo_flat.mean(0) - mean), 4 * se)
    zo_stats, fo_stats = gradient_stats(zo, mean_gradient(fo)), gradient_stats(fo)
    assert zo_stats.variance > 2 * fo_stats.variance
    assert zo_stats.cosine > 0.9


def test_zeroth_order_rejects_bad_sigma():
    system = _linear(3)
    with pytest.raises(ValueError, match="sigma"):
        zeroth_order_gradients(system, GaussianOpenLoop(3, 1, 0.1), jnp.zeros((3, 1)), system.initial_state(), 3,
                               jax.random.PRNGKey(0), 4, sigma=0.0)


# ---------------------------------------------------------------------------------------------------------------
# 4. Non-finite samples: counted, located, excluded — never dropped silently.


def test_nonfinite_samples_are_counted_and_located():
    rng = np.random.default_rng(2)
    samples = {"layer": {"b": rng.normal(size=(10, 2)), "w": rng.normal(size=(10, 3))}}
    clean = gradient_stats(jax.tree.map(lambda x: np.delete(x, [3, 7], axis=0), samples))
    samples["layer"]["w"][3, 1] = np.nan
    samples["layer"]["w"][7, 0] = np.inf
    stats = gradient_stats(samples)
    assert stats.n == 8 and stats.n_nonfinite == 2 and stats.nonfinite_samples == (3, 7)
    assert stats.nonfinite_leaves == ("['layer']['w']",)
    assert stats.variance == pytest.approx(clean.variance) and stats.mean_norm == pytest.approx(clean.mean_norm)
    assert stats.as_dict()["nonfinite_samples"] == [3, 7]


def test_all_nonfinite_gives_nan_fields():
    stats = gradient_stats({"w": np.full((4, 2), np.nan)}, {"w": np.ones(2)})
    assert stats.n == 0 and stats.n_nonfinite == 4
    assert all(np.isnan(v) for v in (stats.mean_norm, stats.sample_norm, stats.variance, stats.snr, stats.cosine,
                                       stats.relative_error))
    assert isinstance(stats, GradientStats)


# ---------------------------------------------------------------------------------------------------------------
# 5. Horizon sweep.


@pytest.mark.slow
def test_horizon_sweep_rows_and_reference():
    """An exact copy of the simulator agrees perfectly; a perturbed linear model does not; one row per estimate."""
    system = _linear(8)
    wrong = gl.envs.make("linear", horizon=8, A=A_MAT * 1.1, B=B_MAT, x0=X0)
    policy, params = GaussianOpenLoop(8, 1, 0.3), jnp.full((8, 1), 0.1)
    rows = horizon_sweep(system, {"exact": system, "wrong": wrong}, policy, params, [2, 6], jax.random.PRNGKey(1), 16,
                         zeroth_order="none")
    assert [(r["method"], r["estimator"], r["horizon"]) for r in rows] == [
        (m, "first-order", h) for h in (2, 6) for m in ("simulator", "exact", "wrong")]
    for r in rows:
        if r["method"] in ("simulator", "exact"):
            assert r["cosine"] == pytest.approx(1.0, abs=1e-6) and r["relative_error"] < 1e-6
    wrong_rows = [r for r in rows if r["method"] == "wrong"]
    assert all(r["relative_error"] > 1e-3 for r in wrong_rows)
    short, long = (r["variance"] for r in rows if r["method"] == "simulator" and r["estimator"] == "first-order")
    assert long > short > 0  # more noisy actions reach the return
    assert all(r["n_nonfinite"] == 0 and r["n"] == 16 for r in rows)
    for r in rows:  # 95 % bootstrap intervals, paired with the simulator's samples: an exact copy's are exact
        for name in ("mean_norm", "variance", "snr", "relative_error"):
            low, high = r[f"{name}_ci"]
            slack = 1e-6 * (1 + abs(r[name]))  # the row's reference mean is float32
            assert low - slack <= r[name] <= high + slack, (r["method"], name, low, r[name], high)
        if r["method"] in ("simulator", "exact"):
            np.testing.assert_allclose(r["cosine_ci"], [1.0, 1.0], atol=1e-6)
            np.testing.assert_allclose(r["relative_error_ci"], [0.0, 0.0], atol=1e-6)
        else:
            assert r["relative_error_ci"][0] > 1e-3


@pytest.mark.slow
def test_horizon_sweep_factories_and_errors():
    """Per-horizon factories rebuild the system; the zeroth-order reference row; horizons beyond a model's
    max_horizon raise a clear ValueError before anything is computed."""
    policy = gl.policies.make_policy("open_loop", _linear(6), horizon=6)
    params = jnp.zeros((6, 1))
    built = []
    rows = horizon_sweep(lambda h: built.append(h) or _linear(h), {}, policy, params, [3, 6], jax.random.PRNGKey(0),
                         8)
    assert built == [3, 6]
    assert [(r["horizon"], r["estimator"]) for r in rows] == [(3, "first-order"), (3, "zeroth-order"),
                                                             (6, "first-order"), (6, "zeroth-order")]
    assert rows[0]["variance"] == pytest.approx(0.0, abs=1e-10)  # deterministic policy and system
    assert rows[1]["variance"] > 0 and rows[1]["cosine"] > 0.5
    system = _linear(6)
    model = gl.models.make("markov", system, max_horizon=4)
    pair = (model, model.init(jax.random.PRNGKey(0)))
    with pytest.raises(ValueError, match="max_horizon 4"):
        horizon_sweep(system, {"markov": pair}, policy, params, [3, 5], jax.random.PRNGKey(0), 4)
    with pytest.raises(ValueError, match="reserved"):
        horizon_sweep(system, {"simulator": pair}, policy, params, [3], jax.random.PRNGKey(0), 4)
    with pytest.raises(ValueError, match="zeroth_order"):
        horizon_sweep(system, {}, policy, params, [3], jax.random.PRNGKey(0), 4, zeroth_order="maybe")
