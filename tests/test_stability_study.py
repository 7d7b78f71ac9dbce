"""The stability study's report (benchmarks/stability_report.py) on synthetic metrics with known answers: which runs
fail, which growth law each gradient follows, and who wins the AWM duels."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import stability  # noqa: E402
import stability_report as report  # noqa: E402

HORIZONS = (5, 10, 20, 40, 80)
STUDY = stability.Study("stability-test", {"cancer": HORIZONS},
                        (("simulator", "none"), ("markov", "none"), ("awm-rnn", "none")), seeds=10, reps=200,
                        png=False)
WIGGLE = np.array([1.0, 1.01, 0.99, 1.02, 0.98])  # per horizon: keeps each law's residuals away from exactly zero


def _metrics() -> pd.DataFrame:
    """Three evaluations per seed. The simulator improves from -50 to -20 with ‖∇J‖ = e^(0.1 H); the Markov model
    improves to -30 with ‖∇J‖ = H², except at H = 80, where its gain is noise around 0; the AWM reaches -10."""
    rows = []
    for i, h in enumerate(HORIZONS):
        for method, final, norm in (("simulator", -20.0, np.exp(0.1 * h)), ("markov", -30.0, float(h) ** 2),
                                    ("awm-rnn", -10.0, 3.0)):
            for seed in range(10):
                end = -50.0 + (seed - 4.5) * 0.1 if (method, h) == ("markov", 80) else final + 0.01 * seed
                for step, (ret, grad) in enumerate(((-50.0, np.nan), (-40.0, norm * WIGGLE[i]), (end, norm))):
                    rows.append({"system": "cancer", "method": method, "stabiliser": "none", "horizon": h,
                                 "seed": seed, "env_steps": 32 * (step + 1), "return": ret, "model_loss": np.nan,
                                 "policy_grad_norm": grad, "wall_time": 1.0, "zeroed_policy_grads": 0})
    return pd.DataFrame(rows)


def test_failures_growth_laws_and_duels_have_their_known_answers(tmp_path):
    seeds = report.seed_rows(_metrics())
    assert np.allclose(seeds["initial"], -50.0)  # the first evaluation, before any policy update
    first = seeds.set_index(["method", "horizon", "seed"])["grad0"]
    assert first[("markov", 20, 0)] == pytest.approx(400 * WIGGLE[2])  # the first finite norm logged, not the last
    table = report.cells(seeds, reps=200)
    failing = sorted(map(tuple, table.loc[table["fails"], ["method", "horizon"]].to_numpy()))
    assert failing == [("markov", 80)]
    laws = report.laws(table).set_index("method")
    assert laws.loc["simulator", "verdict"] == "exponential" and laws.loc["markov", "verdict"] == "polynomial"
    assert list(laws["growth"]) == ["no clear trend", "power-law growth", "exponential growth"]  # awm, markov, sim
    for method, rate in (("simulator", 0.1), ("markov", 2.0)):  # λ per step, p
        low, high = laws.loc[method, "rate_interval"]
        assert low <= rate <= high and laws.loc[method, "rate"] == pytest.approx(rate, rel=0.05)
    assert laws.loc["markov", "fails_from"] == 80 and pd.isna(laws.loc["simulator", "fails_from"])
    duels = report.awm_duels(seeds, reps=200)
    assert len(duels) == 2 * len(HORIZONS) and set(duels["outcome"]) == {"AWM wins"}
    path = report.write_report(STUDY, tmp_path, _metrics(), log=lambda line: None)
    text = path.read_text()
    assert "exponential growth: 0 of 1 fail; power-law growth: 1 of 1 fail; no clear trend: 0 of 1 fail." in text
    assert "against markov: 5 AWM wins, 0 tie (inconclusive), 0 AWM loses" in text
    assert text.count("] ✗") == 1 and (tmp_path / "figures" / "stability-test_returns.html").exists()


def test_a_tie_is_called_inconclusive():
    metrics = _metrics()
    awm = metrics["method"] == "awm-rnn"
    markov = metrics[metrics["method"] == "markov"].reset_index(drop=True)
    metrics.loc[awm, "return"] = markov["return"].to_numpy()  # the AWM's runs are the Markov model's, seed by seed
    duels = report.awm_duels(report.seed_rows(metrics), reps=200)
    assert set(duels.loc[duels["other"] == "markov", "outcome"]) == {"tie (inconclusive)"}


def test_every_run_of_the_full_study_has_its_own_name_and_stabiliser():
    """Distinct run names: a stage whose runs shared a name with another's would skip training and reuse them."""
    from gradlens.training.train import run_name

    configs = {stage: [c for spec in stability.FULL.specs(stage) for c in spec.configs()]
               for stage in stability.FULL.stage_names()}
    names = [run_name(c) for found in configs.values() for c in found]
    assert len(names) == len(set(names)) == 11 * sum(map(len, stability.SYSTEMS.values()))
    for stage, found in configs.items():
        method, stabiliser = stage.rsplit("-", 1)
        for c in found:
            assert c.method == method and c.seeds == 10 and c.nonfinite_policy_grad == "zero"
            clip = c.bpo.simulator_grad_clip if method == "simulator" else c.bpo.grad_clip
            assert (clip == stability.CLIP) == (stabiliser == "clip")
            assert (c.bpo.truncate == stability.TRUNCATE) == (stabiliser == "tbptt")
            assert (c.bpo.discount == stability.DISCOUNT) == (stabiliser == "discount")
            assert (c.bpo.update_rule == "natural") == (stabiliser == "natural")


def test_growth_classes_follow_the_rates_confidence_intervals():
    from gradlens.analysis.growth import fit_growth

    h = np.array(HORIZONS, float)
    assert report.growth_class(fit_growth(h, np.exp(0.1 * h) * WIGGLE)) == "exponential growth"
    assert report.growth_class(fit_growth(h, h ** 2 * WIGGLE)) == "power-law growth"
    assert report.growth_class(fit_growth(h, np.exp(-0.05 * h) * WIGGLE)) == "decrease"  # an exponential, not growth
    assert report.growth_class(fit_growth(h, 3.0 * WIGGLE)) == "no clear trend"
