"""`gradlens.conclusions` on synthetic audit reports with known answers, and where its sentences are shown."""
import dataclasses
import re

import numpy as np
import pytest

from gradlens.analysis.audit import AuditReport
from gradlens.analysis.growth import fit_growth
from gradlens.app import reading
from gradlens.conclusions import conclusions
from gradlens.report import format_summary, report_html

H = [5, 10, 20]


def _row(method, h, cos, rel, var, n=32, bad=0):
    return {"method": method, "estimator": "first-order", "horizon": h, "n": n, "n_nonfinite": bad, "mean_norm": 1.0,
            "variance": var, "snr": 1.0, "cosine": cos, "relative_error": rel}


def _series(method, cosines, rels, variances):
    return [_row(method, h, c, r, v) for h, c, r, v in zip(H, cosines, rels, variances)]


def _land(method, tv):
    return {"method": method, "horizon": 20, "kind": "direction", "grid": [0.0, 1.0], "values": [0.0, 1.0],
            "roughness": {"normalized_tv": tv}}


def _fit(ratios):
    return {"ratio_to_repeat": ratios, "passes_fit_bar": [r <= 0.5 for r in ratios], "converged": True}


def _edit(report: AuditReport, method: str, h: int, **changes) -> None:
    """Replace fields of `method`'s first-order gradient row at H (rows are frozen)."""
    i = next(i for i, r in enumerate(report.gradients)
             if (r.method, r.horizon, r.estimator) == (method, h, "first-order"))
    report.gradients[i] = dataclasses.replace(report.gradients[i], **changes)


def _report(**changes) -> AuditReport:
    """hwm-transformer: cosine 0.99 at H = 20, fits; awm-transformer: smoothest landscape, but relative error 3.1-16
    and 400x the simulator's variance; markov: the fastest-growing variance, failing the fit bar at H = 10, 20."""
    fields = dict(
        system={"name": "toy", "policy": "mlp", "horizon_mode": "rebuilt"},
        models=["markov", "hwm-transformer", "awm-transformer"],
        horizons=H, config={},
        fits={"markov": _fit([0.2, 0.7, 1.3]), "hwm-transformer": _fit([0.01, 0.02, 0.05]),
              "awm-transformer": _fit([0.1, 0.2, 0.3])},
        gradients=(_series("simulator", [1.0] * 3, [0.0] * 3, [1, 10, 100])
                   + _series("markov", [0.9, 0.8, 0.7], [0.3, 0.6, 0.9], [1, 1e4, 1e9])
                   + _series("hwm-transformer", [0.999, 0.995, 0.99], [0.05, 0.08, 0.12], [1, 12, 150])
                   + _series("awm-transformer", [0.5, 0.3, 0.2], [3.1, 8.0, 16.0], [2, 400, 4e4])
                   + [{**_row("simulator", 20, 0.3, 2.0, 1e6), "estimator": "zeroth-order"}]),
        landscapes=[_land("simulator", 3.0), _land("awm-transformer", 1.0), _land("hwm-transformer", 2.5),
                    _land("markov", 4.0)])
    return AuditReport(**{**fields, **changes})


def _numbers(text: str) -> list[float]:
    return [float(x) for x in re.findall(r"(?<![\w.])-?\d+(?:\.\d+)?(?:e[+-]?\d+)?", text)]


def test_the_closest_model_is_named_with_its_cosine_relative_error_and_reach():
    first = conclusions(_report()).findings[0]
    assert first.startswith("hwm-transformer's gradient is the closest to the simulator's at the largest horizon, "
                            "H = 20: cosine 0.99, relative error 0.12 (cosine markov 0.7, awm-transformer 0.2)")
    assert "its cosine stays >= 0.9 at every audited horizon up to H = 20" in first and "fit bar" not in first
    report = _report()
    _edit(report, "hwm-transformer", 10, cosine=0.85)
    _edit(report, "hwm-transformer", 20, cosine=0.8)
    assert "its cosine stays >= 0.9 up to H = 5 and is 0.85 at H = 10" in conclusions(report).findings[0]
    _edit(report, "hwm-transformer", 5, relative_error=0.9)  # right direction, wrong size, 30x the variance
    _edit(report, "hwm-transformer", 20, variance=3000.0)
    assert conclusions(report).findings[0].endswith(
        "; but its relative error is 0.08-0.9 over H = 5, 10, 20; its gradient variance is ×30 the simulator's at "
        "H = 20: it is close in direction, not in size or noise.")


def test_the_closest_models_interval_is_given_and_an_overlap_is_called_inconclusive():
    report = _report()
    for method, interval in (("hwm-transformer", [0.97, 0.995]), ("markov", [0.4, 0.85]),
                             ("awm-transformer", [-0.1, 0.5])):
        _edit(report, method, 20, cosine_ci=interval)
    first = conclusions(report).findings[0]
    assert "H = 20: cosine 0.99 (95 % CI [0.97, 0.995]), relative error 0.12" in first and "inconclusive" not in first
    _edit(report, "markov", 20, cosine_ci=[0.4, 0.975])  # reaches into hwm-transformer's interval
    assert ("; but its cosine's 95 % interval overlaps markov's, so which is closer is inconclusive at 32 samples"
            in conclusions(report).findings[0])


def test_the_numbers_in_the_sentences_are_the_reports():
    report = _report()
    found = conclusions(report)
    closest, growth, smooth = found.findings
    assert _numbers(closest)[:4] == [20, 0.99, 0.12, 0.7]  # H, cosine, relative error, next model's cosine
    assert "Gradient variance grows fastest for markov: from 1 at H = 5 to 1e+09 at H = 20 (×1e+09)" in growth
    assert "at H = 20 it is ×1e+07 the simulator's, which grows ×100 from H = 5 to 20" in growth
    assert f"growth law over 3 horizons: {fit_growth(H, [1, 1e4, 1e9]).describe('per unit of H')}" in growth
    assert smooth.startswith("awm-transformer's return landscape along a random policy direction is the smoothest at "
                             "H = 20: normalised total variation 1 (simulator 3, hwm-transformer 2.5, markov 4")


def test_a_smooth_but_wrong_model_is_weighed_on_both_sides():
    smooth = conclusions(_report()).findings[2]
    for cost in ("its relative error is 3.1-16 over H = 5, 10, 20", "its gradient variance is ×400 the simulator's "
                 "at H = 20", "cosine to the simulator's is 0.2 at H = 20", "smoother than the true landscape"):
        assert cost in smooth
    good = _report(landscapes=[_land("simulator", 3.0), _land("hwm-transformer", 2.5), _land("awm-transformer", 4)])
    assert "but" not in conclusions(good).findings[2]  # hwm-transformer: smooth and accurate
    tie = _report(landscapes=[_land("simulator", 3.0), _land("hwm-transformer", 2.0), _land("markov", 2.05)])
    assert conclusions(tie).findings[2] == ("No model's return landscape along a random policy direction is clearly "
                                            "the smoothest at H = 20: normalised total variation 2-2.05 (simulator "
                                            "3; 1 is a monotone slice).")


def test_every_unfit_model_is_named_in_the_caveats_and_its_findings_are_qualified():
    report = _report()
    report.fits["markov"].update(converged=False, max_epochs=300)
    found = conclusions(report)
    assert found.caveats[0] == ("Do not read markov's gradients at H = 10, 20 as a property of its architecture: it "
                                "does not beat repeating the last state 2x there (its open-loop error is 0.7x, 1.3x "
                                "that baseline's); they measure its fit quality.")
    assert "markov's fit did not converge: it ran to the cap of 300 epochs" in found.caveats[1]
    assert found.findings[1].endswith("(but markov fails the fit bar at H = 10, 20: there its gradient measures its "
                                      "fit, not its architecture).")
    assert found.caveats[-1].startswith("Every gradient statistic comes from 32 samples per method and horizon")
    assert "sampling noise of one seed only" in found.caveats[-1] and "audit several seeds" in found.caveats[-1]
    report.config["seed"] = 7
    assert "sampling noise of one seed only (seed 7): its data, fits and policy" in conclusions(report).caveats[-1]
    # the closest model fails the bar at the largest H: qualified, and the closest fit model is named beside it
    report.fits["hwm-transformer"] = _fit([0.01, 0.02, 0.9])
    first = conclusions(report).findings[0]
    assert "(but hwm-transformer fails the fit bar at H = 20: there its gradient measures its fit" in first
    assert first.endswith("of the models that pass the fit bar at H = 20, awm-transformer's is the closest (cosine "
                          "0.2, relative error 16).")


def test_old_reports_unpredictable_horizons_and_nonfinite_gradients_are_caveats():
    report = _report(fits={"markov": {"open_loop_mse": 3.0, "baseline_mse": 2.0}},
                     system={"name": "toy", "unpredictable_horizons": [20], "divergence_delta": 1e-6,
                             "divergence_by_horizon": [0.0] * 19 + [0.25]})
    _edit(report, "markov", 5, n_nonfinite=4, n=28)
    caveats = conclusions(report).caveats
    assert caveats[0].startswith("Do not read markov's gradients at H = 5, 10, 20 as a property of its architecture: "
                                 "its open-loop MSE, 3, is no better than holding s_1 throughout (2)")
    assert any(c.startswith("At H = 20 the system itself is unpredictable: two simulator starts 1e-06 apart end "
                            "0.5 apart (RMS)") for c in caveats)
    assert "markov's gradient is not finite in 4 of 32 samples at H = 5" in " ".join(caveats)


def test_a_simulator_only_or_empty_report_says_what_it_can():
    sim = _report(models=[], fits={}, gradients=_series("simulator", [1.0] * 3, [0.0] * 3, [1, 10, 100]),
                  landscapes=[])
    found = conclusions(sim)
    law = fit_growth(H, [1, 10, 100])
    assert law.verdict == "polynomial" and law.power.rate == pytest.approx(np.log(100) / np.log(4))
    assert found.findings == ["Gradient variance grows fastest for the simulator: from 1 at H = 5 to 100 at H = 20 "
                              f"(×100), growth law over 3 horizons: {law.describe('per unit of H')}."]
    assert conclusions(_report(gradients=[], landscapes=[])).findings == []


def test_two_horizons_cannot_choose_a_growth_law():
    two = _report(models=[], fits={}, gradients=[_row("simulator", 5, 1.0, 0.0, 1), _row("simulator", 20, 1.0, 0.0, 4)],
                  landscapes=[])
    assert "two horizons fit exponential growth ×1.1 per step and a power law ∝ H^1 equally well" in \
        conclusions(two).findings[0]


def test_the_report_opens_on_the_conclusion_and_the_app_reads_the_same_sentences():
    report = _report()
    report.fits = {m: {**f, "source": "fitted", "open_loop_mse": 1.0, "baseline_mse": 2.0, "seconds": 1.0}
                   for m, f in report.fits.items()}
    found = conclusions(report)
    page = report_html(report, {})
    assert page.index("<h2 id='conclusions'>Conclusions</h2>") < page.index("<h2 id='problems'>")
    assert "What not to conclude" in page and "markov&#x27;s gradients at H = 10, 20" in page
    text = reading.markdown(report)
    assert text.startswith("- hwm-transformer's gradient is the closest") and "**What not to conclude**" in text
    assert text.count("\n- ") == len(found.findings) + len(found.caveats) - 1
    assert "holding s\\_1" in reading.markdown(_report(fits={"markov": {"open_loop_mse": 3.0, "baseline_mse": 2.0}}))


def test_the_console_summary_ends_with_the_conclusions_wrapped():
    report = _report(fits={})
    text = format_summary(report)
    tail = text.split("\n\nConclusions:\n", 1)[1]
    assert tail.startswith("- hwm-transformer's gradient is the closest") and "\nWhat not to conclude:\n- " in tail
    assert max(map(len, tail.splitlines())) <= 120
    assert " ".join(line[2:] for line in tail.splitlines() if line[:2] in ("- ", "  ")).startswith(
        conclusions(report).findings[0])
