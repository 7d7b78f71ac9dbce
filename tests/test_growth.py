"""Growth laws: known power laws and exponentials are recognised with their rates inside the intervals; the linear
system's Jacobian chain grows at log ρ(A) per step; bad input is one clear error."""
import jax.numpy as jnp
import numpy as np
import pytest

import gradlens as gl
from gradlens.analysis import jacobians
from gradlens.analysis.growth import GrowthFit, fit_growth


def _noisy(y, seed, sigma=0.05):
    return y * np.exp(np.random.default_rng(seed).normal(0.0, sigma, y.shape))


@pytest.mark.parametrize("seed", range(5))
def test_power_law_is_polynomial_with_its_degree_in_the_interval(seed):
    h = np.array([5, 10, 20, 40, 60, 80, 100], float)
    fit = fit_growth(h, _noisy(3.0 * h**2.5, seed), level=0.999)  # coverage at 95 %: its own test
    assert fit.verdict == "polynomial" and fit.delta_aic > 2
    assert fit.power.interval[0] < 2.5 < fit.power.interval[1]
    assert abs(fit.power.scale - 3.0) / 3.0 < 0.3
    assert fit.describe().startswith("polynomial, p = 2.")


@pytest.mark.parametrize("seed", range(5))
def test_exponential_is_exponential_with_its_rate_in_the_interval(seed):
    t = np.arange(1, 16, dtype=float)
    fit = fit_growth(t, _noisy(2.0 * np.exp(0.4 * t), seed), level=0.999)
    assert fit.verdict == "exponential" and fit.delta_aic < -2
    assert fit.exponential.interval[0] < 0.4 < fit.exponential.interval[1]
    assert fit.describe().startswith(f"exponential, λ = {fit.exponential.rate:.3g} [")


def test_the_interval_covers_the_true_rate_at_about_its_level():
    t = np.arange(1, 9, dtype=float)
    covered = [fit_growth(t, _noisy(np.exp(0.3 * t), seed, 0.2)).exponential.interval for seed in range(400)]
    rate = np.mean([low < 0.3 < high for low, high in covered])
    assert 0.92 < rate < 0.98  # 95 % nominal; 400 draws: standard error 1.1 %


def test_a_narrow_range_mostly_cannot_choose_and_a_wide_one_always_does():
    """Over x in 20 … 28, log x is nearly linear in x: both laws fit, and the verdict says so on most draws."""
    def verdicts(x):
        return [fit_growth(x, _noisy(x**2, seed)).verdict for seed in range(200)]

    narrow = verdicts(np.array([20.0, 22, 24, 26, 28]))
    assert narrow.count("indistinguishable") > 100
    assert verdicts(np.arange(5.0, 101.0, 5.0)).count("polynomial") == 200
    three = fit_growth([1.0, 2.0, 3.0], [1.0, 2.0, 3.1])
    assert three.n == 3 and three.power.interval[1] - three.power.interval[0] > 0.1  # one degree of freedom: wide


def test_linear_system_jacobians_grow_at_log_spectral_radius(x64):
    A = np.diag([1.2, 0.5, -0.3])
    system = gl.envs.make("linear", A=A, B=np.ones((3, 1)), horizon=30)
    chain = jacobians.jacobian_chain(system, jnp.zeros((30, 1)), system.initial_state())
    profile = jacobians.lag_profile(chain)
    fit = fit_growth(profile.lags, np.exp(profile.mean_log_norm))
    assert fit.verdict == "exponential"
    assert fit.exponential.rate == pytest.approx(np.log(1.2), abs=0.01)
    assert fit.exponential.interval[0] <= np.log(1.2) + 0.01 and fit.exponential.interval[1] >= np.log(1.2) - 0.01


def test_nonpositive_points_are_dropped_and_counted_and_round_trip():
    h = np.arange(1, 11, dtype=float)
    y = h**2
    y[[2, 7]] = [0.0, np.nan]
    fit = fit_growth(h, y)
    assert (fit.n, fit.n_dropped) == (8, 2) and fit.power.rate == pytest.approx(2.0)
    assert GrowthFit.from_dict(fit.as_dict()) == fit


@pytest.mark.parametrize("x, y, message", [
    ([1, 2, 3], [1, 2], "x and y must be 1-D of the same length, got shapes (3,) and (2,)"),
    ([0, 1, 2], [1, 2, 3], "x must be finite and > 0"),
    ([1, 2, 3, 4], [1, 0, -1, np.nan], "needs y > 0 and finite at 3 or more distinct x; got 1 of 4"),
])
def test_bad_input_is_one_clear_error(x, y, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        fit_growth(x, y)


def test_audit_growth_rows_name_each_law_and_say_why_when_there_is_none():
    from gradlens.analysis.audit import AuditReport, growth_rows

    horizons = [5, 10, 20, 40, 80]
    grads = [{"method": m, "estimator": "first-order", "horizon": h, "mean_norm": norm(h), "variance": var(h)}
             for m, norm, var in (("simulator", lambda h: 2.0 * 1.05**h, lambda h: 3.0 * 1.1**h),
                                  ("awm-rnn", lambda h: 0.5 * h**1.5, lambda h: 0.1 * h**3.0))
             for h in horizons]
    lags = np.arange(1, 10)
    jac = [{"method": "simulator", "horizon": 10, "lags": lags.tolist(), "mean_log_norm": (0.2 * lags).tolist()},
           {"method": "awm-rnn", "horizon": 10, "lags": [1, 2], "mean_log_norm": [0.0, 0.1]}]
    report = AuditReport(system={}, models=["awm-rnn"], horizons=horizons, config={}, gradients=grads, jacobians=jac)
    report.growth.extend(growth_rows(report))
    rows = {(r["method"], r["quantity"]): r for r in report.growth}
    assert rows["simulator", "gradient variance"]["verdict"] == "exponential"
    assert rows["simulator", "gradient variance"]["fit"]["exponential"]["rate"] == pytest.approx(np.log(1.1))
    assert rows["awm-rnn", "gradient variance"]["verdict"] == "polynomial"
    assert rows["awm-rnn", "gradient variance"]["fit"]["power"]["rate"] == pytest.approx(3.0)
    assert rows["simulator", "Jacobian norm"]["fit"]["exponential"]["rate"] == pytest.approx(0.2)
    assert rows["simulator", "Jacobian norm"]["description"].startswith("exponential, λ = 0.2 [")
    assert "per step" in rows["simulator", "Jacobian norm"]["description"]
    assert "per unit of H" in rows["simulator", "gradient norm"]["description"]
    no_fit = rows["awm-rnn", "Jacobian norm"]
    assert no_fit["verdict"] == "no fit" and no_fit["fit"] is None and "got 2 of 2 points usable" in no_fit["reason"]
    assert AuditReport.from_json(report.to_json()).growth == report.growth


def test_report_html_tabulates_the_growth_laws():
    from gradlens.analysis.audit import AuditReport, growth_rows
    from gradlens.report import growth_html

    horizons = [5, 10, 20]
    grads = [{"method": "simulator", "estimator": "first-order", "horizon": h, "mean_norm": 2.0 ** h,
              "variance": 4.0 ** h} for h in horizons]
    report = AuditReport(system={}, models=[], horizons=horizons, config={}, gradients=grads)
    assert growth_html(report) == ""  # a report from before growth laws: no section
    report.growth.extend(growth_rows(report))
    page = growth_html(report)
    assert "<h2 id='growth'>Growth laws</h2>" in page and page.count("<tr>") == 1 + 2
    assert f"<td>{report.growth[1]['description']}</td>" in page and "exponential, λ = 1.39 [" in page
