"""The open-questions study (benchmarks/open_questions.py and its report): which cells are read, who wins a duel on
synthetic rows with known answers, and a real stage that resumes from its saved audits."""
from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import open_questions as study_module  # noqa: E402
import open_questions_report as report  # noqa: E402
from gradlens.analysis.audit import AuditConfig  # noqa: E402

STUDY = study_module.Study(
    "oq-test", (study_module.Cell("noise", "linear", "noise_std", 0.0, (3,)),),
    ("markov",), seeds=2,
    config=AuditConfig(n_episodes=16, fit_epochs=2, fit_patience=2, n_samples=2, landscape_points=2,
                       landscape_2d_points=0),
    fit_bars={"noise": 0.5}, reps=200, png=False)


def _rows() -> pd.DataFrame:
    """10 seeds at one noise setting: the AWM's cosine is 0.9 + noise, the Markov model's 0.5 + noise, the HWM's
    overlaps the AWM's (0.88 … 0.92) but fits on only 5 of 10 seeds."""
    rng = np.random.default_rng(0)
    rows = []
    for seed in range(10):
        for method, cosine, ratio in (("awm-rnn", 0.9 + 0.01 * rng.standard_normal(), 0.1),
                                      ("markov", 0.5 + 0.01 * rng.standard_normal(), 0.2),
                                      ("hwm-rnn", 0.88 + 0.004 * seed, 0.2 if seed < 5 else 0.9)):
            rows.append({"question": "noise", "system": "cancer", "setting": 0.05, "horizon": 100, "seed": seed,
                         "method": method, "cosine": cosine, "rel_error": 1 - cosine, "grad_norm": 1.0,
                         "variance": 1.0, "snr": 1.0, "fit_ratio": ratio, "fit_passes": ratio <= 0.5,
                         "fit_ratio_linear": 0.5, "fit_converged": True, "fit_epochs": 10, "unpredictable": False,
                         "seconds": 1.0})
    return pd.DataFrame(rows)


def test_cells_read_only_models_that_fit_and_duels_have_their_known_answers(tmp_path):
    rows = _rows()
    table = report.cells(rows, reps=200).set_index("method")
    assert table.loc["hwm-rnn", "fits"] == 5 and not table.loc["hwm-rnn", "read"]
    assert table.loc["awm-rnn", "read"] and table.loc["markov", "read"]
    assert table.loc["awm-rnn", "cosine_low"] < 0.9 < table.loc["awm-rnn", "cosine_high"]
    assert table.loc["markov", "cosine_high"] < 0.52
    fights = report.duels(rows, table.reset_index(), reps=200)
    # the HWM does not fit: no duel with it, although its cosines are as high as the AWM's
    assert fights[["awm", "other", "outcome"]].values.tolist() == [["awm-rnn", "markov", "AWM better"]]
    assert fights["low"].iloc[0] > 0.5
    # the same HWM fitted on every seed duels, and its overlap with the AWM is called inconclusive
    fitted = rows.assign(fit_passes=True)
    fights = report.duels(fitted, report.cells(fitted, reps=200), reps=200).set_index("other")
    assert fights.loc["hwm-rnn", "outcome"] == "inconclusive" and fights.loc["markov", "outcome"] == "AWM better"
    study = study_module.Study("oq-report", (study_module.Cell("noise", "cancer", "noise_std", 0.05, (100,)),),
                               ("markov", "hwm-rnn", "awm-rnn"), seeds=10, config=AuditConfig(),
                               fit_bars={"noise": 0.5}, reps=200, png=False, see_also="**Tested further** elsewhere.")
    text = report.write_report(study, tmp_path, rows, log=lambda _: None).read_text()
    assert "hwm-rnn at σ = 0.05, H = 100 (5/10)" in text and "1 AWM better" in text
    assert text.index("1 AWM better") < text.index("\n**Tested further** elsewhere.\n") < text.index("## Figure")
    assert "| hwm-rnn | 0.898 [" in text and "(5/10) ✗" in text
    # a second setting where every cosine is 0.2 lower: the answer states the drop, for models read at both ends
    both = pd.concat([rows, rows.assign(setting=0.1, cosine=rows["cosine"] - 0.2, fit_passes=True)])
    trend = report._trend("noise", report.cells(both, reps=200))
    drops = {m: float(a) - float(b) for m, a, b in re.findall(r"(\S+) (\d\.\d+|\d) → (\d\.\d+|\d)", trend)}
    assert set(drops) == {"awm-rnn", "markov"} and drops == pytest.approx({"awm-rnn": 0.2, "markov": 0.2}, abs=0.01)
    assert "from σ = 0.05 to σ = 0.1 at H = 100" in trend


def test_the_fit_confound_is_measured_and_said_when_the_better_fitting_model_wins():
    # per seed: the AWM fits at 0.1 with cosine 0.9, the Markov model at 0.2 with 0.5, the HWM at 0.3 (seeds 0-4) or
    # 0.05 (seeds 5-9) with 0.7; the models' fit ranks against their gradient-error ranks give ρ = 1/2 in every seed
    fit = {"awm-rnn": lambda s: 0.1, "markov": lambda s: 0.2, "hwm-rnn": lambda s: 0.3 if s < 5 else 0.05}
    base = {"awm-rnn": 0.9, "markov": 0.5, "hwm-rnn": 0.7}
    rows = _rows().assign(fit_passes=True)
    rows = rows.assign(fit_ratio=[fit[m](s) for m, s in zip(rows["method"], rows["seed"])],
                       cosine=[base[m] + 0.001 * s for m, s in zip(rows["method"], rows["seed"])])
    exact = report.fit_confound(rows.assign(cosine=1 - rows["fit_ratio"]))  # gradient error ranked as the fits
    assert exact[["rho", "seeds", "capped", "fits"]].values.tolist() == [[1.0, 10, 0, 30]]
    confound = report.fit_confound(rows.assign(fit_converged=False))
    assert confound[["rho", "capped"]].values.tolist() == [[0.5, 30]]
    table = report.cells(rows, reps=200)
    fights = report.duels(rows, table, reps=200).set_index("other")
    assert (fights["outcome"] == "AWM better").all() and fights.loc["hwm-rnn", "other_fit"] == pytest.approx(0.175)
    text = " ".join(report.answers(table, fights.reset_index(), ["noise"], confound))
    assert "the winner of 2 of the 2 decisive duels also fits better; 30 of 30 fits stopped at the epoch cap" in text
    assert "ρ between fit ratio and 1 − cosine, 1 for the same ranking: 0.5 at σ = 0.05, H = 100" in text
    assert "may measure how well each class fits within the cap" in text
    converged = " ".join(report.answers(table, fights.reset_index(), ["noise"], report.fit_confound(rows)))
    assert "0 of 30 fits stopped" in converged and "stopped on its validation plateau" in converged  # no cap to blame
    worse = rows.assign(fit_ratio=np.where(rows["method"] == "awm-rnn", 0.4, rows["fit_ratio"]))  # wins, fits worse
    table = report.cells(worse, reps=200)
    text = " ".join(report.answers(table, report.duels(worse, table, reps=200), ["noise"], report.fit_confound(worse)))
    assert "the winner of 0 of the 2 decisive duels also fits better" in text and "may measure" not in text


def test_a_stage_exports_every_seed_and_resumes_from_its_kept_rows_on_a_fresh_clone(tmp_path, monkeypatch):
    logged, real_audit, calls = [], study_module.audit, []

    def interrupted(*args, **kwargs):  # seed 0 is audited, then the session ends during seed 1
        calls.append(kwargs["config"].seed)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_audit(*args, **kwargs)

    monkeypatch.setattr(study_module, "audit", interrupted)
    with pytest.raises(KeyboardInterrupt):
        study_module.run_stage(STUDY, "noise-0", tmp_path, logged.append)
    assert [p.name for p in (tmp_path / "oq-test" / "noise-0").iterdir()] == ["seed0.parquet"]
    shutil.rmtree(tmp_path / "runs")  # a fresh clone: the git-ignored audits are gone, the kept rows are not
    calls.clear()
    monkeypatch.setattr(study_module, "audit", lambda *a, **k: calls.append(k["config"].seed) or real_audit(*a, **k))
    assert study_module.run_stage(STUDY, "noise-0", tmp_path, logged.append)
    assert calls == [1]  # seed 0 is not audited again
    frame = pd.read_parquet(tmp_path / "oq-test" / "noise-0.parquet")
    assert not (tmp_path / "oq-test" / "noise-0").exists()  # the kept rows went into the export
    assert sorted(frame["seed"].unique()) == [0, 1] and set(frame["method"]) == set(STUDY.models)
    assert len(frame) == 2 * len(STUDY.models) and frame["cosine"].between(-1, 1).all()
    assert (frame["fit_passes"] == (frame["fit_ratio"] <= 0.5)).all()
    # the seeds differ (their own data, fits and policy): not one audit copied
    assert not np.allclose(*(frame[frame["seed"] == s].sort_values("method")["cosine"] for s in (0, 1)))
    assert not study_module.run_stage(STUDY, "noise-0", tmp_path, logged.append)  # exported: skipped
    assert "already exported" in logged[-1]
