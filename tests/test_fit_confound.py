"""The fit-or-gradient check (benchmarks/fit_confound.py): it refits exactly the open-questions cell with only the cap
changed, reads the seeds kept so far, and sets both caps side by side with their known answers."""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import fit_confound  # noqa: E402
import open_questions  # noqa: E402


def _rows(awm_cosine: float, awm_ratio: float, epochs: int, seeds=range(10)) -> pd.DataFrame:
    """lorenz96 N = 8: the Markov model's cosine 0.99 (+ small noise), the AWM-RNN's `awm_cosine` (+ the same noise)."""
    rng = np.random.default_rng(0)
    noise = 0.001 * rng.standard_normal(10)
    return pd.DataFrame([{"question": "dimension", "system": "lorenz96", "setting": 8.0, "horizon": 10, "seed": s,
                          "method": method, "cosine": cosine + noise[s], "rel_error": 0.1, "grad_norm": 1.0,
                          "variance": 1.0, "snr": 1.0, "fit_ratio": ratio, "fit_passes": True,
                          "fit_ratio_linear": 0.5, "fit_converged": epochs < fit_confound.CAP, "fit_epochs": epochs,
                          "unpredictable": False, "seconds": 1.0}
                         for s in seeds for method, cosine, ratio in (("markov", 0.99, 0.001),
                                                                      ("awm-rnn", awm_cosine, awm_ratio))])


def test_the_refit_changes_only_the_cap_of_the_open_questions_cell():
    study, full = fit_confound.STUDY, open_questions.FULL
    assert study.cells == (open_questions.DIMENSION[8],) and study.models == full.models
    assert study.config == dataclasses.replace(full.config, fit_epochs=fit_confound.CAP) and study.seeds == full.seeds
    assert study.folders(Path("x")) != full.folders(Path("x"))  # its own folders: nothing of the study is touched
    # the Markov ladder: the same audit with only the cap and the model list changed; Markov first in MODELS, so it
    # gets the same fit key (fold_in(k_fit, 0)) and each rung is the first epochs of the same fit
    assert full.models[0] == "markov" and len({m.folders(Path("x")) for m in (study, *fit_confound.MATCHED)}) == 5
    later = (open_questions.NOISE[0], open_questions.DIMENSION[16], open_questions.DIMENSION[32])
    assert fit_confound.MATCHED_CELLS == (study.cells[0], *later)
    for rung in fit_confound.MATCHED:
        assert rung.models == ("markov",) and rung.cells == fit_confound.MATCHED_CELLS and rung.seeds == study.seeds
        assert rung.config == dataclasses.replace(study.config, fit_epochs=rung.config.fit_epochs)
        assert rung.config.fit_epochs < 300


def test_both_caps_side_by_side_on_the_seeds_both_have(tmp_path):
    """Known answers: with the short cap the AWM-RNN fits 6x worse and its cosine is 0.02 below Markov's on every seed
    (AWM worse, P = 0); refitted, it fits like Markov with the same cosines (P = 0.5, inconclusive)."""
    kept = tmp_path / "fit_confound" / "dimension-8"
    kept.mkdir(parents=True)
    for seed in range(6):  # 6 of 10 seeds audited so far
        _rows(0.99, 0.001, 700, [seed]).assign(fit_passes=None).to_parquet(kept / f"seed{seed}.parquet")
    longer = fit_confound.audited(fit_confound.STUDY, tmp_path)
    assert sorted(longer["seed"].unique()) == list(range(6)) and longer["fit_passes"].all()
    lines = "\n".join(fit_confound.side_by_side(_rows(0.97, 0.006, 300), longer, reps=200))
    assert "## The two caps side by side (6 seeds)" in lines
    assert "| awm-rnn | 0.006 → 0.001 | 6/6 | 700 |" in lines
    duel = next(line for line in lines.splitlines() if line.startswith("| awm-rnn | markov |"))
    before, verdict_before, after, verdict_after = duel.split(" | ")[2:6]
    assert (before, verdict_before) == ("0 [0, 0]", "AWM worse")
    assert after.startswith("0.5 [") and verdict_after == "inconclusive"
    assert fit_confound.audited(fit_confound.STUDY, tmp_path / "elsewhere").empty


def test_each_awm_meets_the_best_markov_rung_that_fits_no_better_than_it(tmp_path):
    """Known answers: the AWM-RNN fits at 0.004 with cosine 0.97. The Markov ladder: 0.01 (cap 80, cosine 0.95), 0.005
    (cap 160, 0.97), 0.002 (cap 300, 0.99), 0.001 (plateau, 0.99). Matched to the cap-160 rung, which fits no better
    than it, the AWM-RNN ties (P = 0.5, inconclusive); against a cap-160 rung at 0.99 it is worse (P = 0)."""
    longer = _rows(0.97, 0.004, 700, range(6))
    capped = _rows(0.97, 0.006, 300).assign(fit_ratio=lambda f: f["fit_ratio"].where(f["method"] != "markov", 0.002))
    rung = lambda ratio, cosine: _rows(cosine, ratio, 80)[lambda f: f["method"] == "awm-rnn"].assign(method="markov")
    rungs = {80: rung(0.01, 0.95), 160: rung(0.005, 0.97)}
    parts = lambda: {**rungs, 300: capped, fit_confound.CAP: longer}
    markov = fit_confound.ladder(parts(), longer["seed"])
    assert sorted(markov["cap"].unique()) == [80, 160, 300, fit_confound.CAP] and markov["seed"].max() == 5
    rows, pairs = fit_confound.matched(longer, markov, reps=200)
    assert (pairs["cap"] == 160).all() and len(pairs) == 6 and (pairs["markov_fit"] >= pairs["awm_fit"]).all()
    (awm, seeds, awm_fit, markov_fit, caps, *_, p, outcome), = rows
    assert (awm, seeds, awm_fit, markov_fit, caps) == ("awm-rnn", 6, "0.004", "0.005", "160 ×6")
    assert p.startswith("0.5 [") and outcome == "inconclusive"
    rungs[160] = rung(0.005, 0.99)
    (*_, p, outcome), = fit_confound.matched(longer, fit_confound.ladder(parts(), range(6)), reps=200)[0]
    assert p == "0 [0, 0]" and outcome == "AWM worse"
    lines = "\n".join(fit_confound.matched_section("lorenz96", longer, parts(), 200, "At their plateau."))
    assert "| 160 | 6 | 0.005 |" in lines and "| awm-rnn | 6 | 0.004 | 0.005 | 160 ×6 |" in lines
