"""Bootstrap intervals of the gradient statistics (gradlens.analysis.uncertainty) on samples with known answers:
coverage of a known mean norm and covariance trace, paired resampling against the simulator's samples, non-finite
samples left out, and the intervals carried into the audit's rows and figures."""
import math

import numpy as np
import pytest

from gradlens.analysis import gradients
from gradlens.analysis.uncertainty import gradient_intervals


def test_intervals_cover_the_true_norm_and_variance_about_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    mu, sd, n, trials = np.full(20, 0.5), 0.4, 32, 200  # ‖μ‖ = 2.24, tr Σ = 20 · 0.16 = 3.2
    hits = np.zeros(2)
    for t in range(trials):
        g = mu + sd * rng.standard_normal((n, mu.size))
        ci = gradient_intervals(g, n_boot=400, seed=t)
        hits += [ci["mean_norm_ci"][0] <= np.linalg.norm(mu) <= ci["mean_norm_ci"][1],
                 ci["variance_ci"][0] <= mu.size * sd ** 2 <= ci["variance_ci"][1]]
    coverage = hits / trials
    assert np.all(coverage > 0.85) and np.all(coverage < 0.995), coverage


def test_resampling_is_paired_with_the_simulators_samples():
    """A model whose every sample is twice the simulator's (same noise, same key): in every resample its mean is
    twice the simulator's mean, so the cosine is exactly 1 and the relative error exactly 1. Resampling the two
    independently would spread both."""
    sim = np.random.default_rng(1).standard_normal((16, 5)) + 1.0
    ci = gradient_intervals(2 * sim, sim)
    np.testing.assert_allclose(ci["cosine_ci"], [1.0, 1.0], atol=1e-12)
    np.testing.assert_allclose(ci["relative_error_ci"], [1.0, 1.0], atol=1e-12)
    assert ci["mean_norm_ci"][0] < ci["mean_norm_ci"][1]  # the norm itself does vary
    noisy = gradient_intervals(2 * sim + np.random.default_rng(2).standard_normal(sim.shape), sim)
    assert noisy["cosine_ci"][0] < 1.0 and noisy["cosine_ci"][1] <= 1.0


def test_non_finite_samples_are_left_out_and_too_few_give_nan():
    g = np.random.default_rng(3).standard_normal((8, 3))
    poisoned = g.copy()
    poisoned[2, 1] = np.nan
    assert gradient_intervals(poisoned) == gradient_intervals(np.delete(g, 2, axis=0))
    one = gradient_intervals(g[:1], g[:1])
    assert set(one) == {"mean_norm_ci", "variance_ci", "snr_ci", "cosine_ci", "relative_error_ci"}
    assert all(math.isnan(v) for pair in one.values() for v in pair)
    with pytest.raises(ValueError, match="level must be in"):
        gradient_intervals(g, level=1.5)
    with pytest.raises(ValueError, match="reference_samples must have the samples' shape"):
        gradient_intervals(g, g[:4])


def test_pytree_samples_are_flattened_like_gradient_stats():
    rng = np.random.default_rng(4)
    tree = {"w": rng.standard_normal((10, 2, 3)), "b": rng.standard_normal((10, 3))}
    flat = np.concatenate([tree["b"], tree["w"].reshape(10, -1)], axis=1)  # jax.tree leaves: sorted keys
    assert gradient_intervals(tree) == gradient_intervals(flat)
    stats, ci = gradients.gradient_stats(tree), gradient_intervals(tree)
    for name in ("mean_norm", "variance", "snr"):  # each point estimate inside its own interval
        assert ci[f"{name}_ci"][0] < getattr(stats, name) < ci[f"{name}_ci"][1], name
