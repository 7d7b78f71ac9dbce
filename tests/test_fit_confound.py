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
