"""The physics study (benchmarks/physics.py): its gradient-cost measurement counts what it should, its cost stage
resumes from the rows it kept, and the report carries the cost table beside the audits' (none here: the Brax audits
take hours; their machinery is the open-questions study's, tested in tests/test_open_questions_study.py)."""
from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import physics  # noqa: E402


def test_gradient_cost_counts_the_actions_and_grows_with_the_samples():
    small, large = (physics.gradient_cost("linear", horizon=5, samples=s) for s in (4, 64))
    actions_mb = lambda s: s * 5 * 1 * 4 / 2**20  # [S, H, A] float32, once in and once out (the gradient)
    assert small["memory_mb"] >= 2 * actions_mb(4) and large["memory_mb"] >= 2 * actions_mb(64)
    assert large["memory_mb"] > small["memory_mb"]
    assert small["compile_s"] > 0 and small["run_s"] > 0 and (small["state_dim"], small["action_dim"]) == (3, 1)


def test_the_cost_stage_keeps_each_system_and_the_report_shows_it(tmp_path, monkeypatch):
    measured, interrupt = [], [True]

    def fake_cost(name, horizon):
        measured.append(name)
        if len(measured) == 2 and interrupt:
            interrupt.clear()
            raise KeyboardInterrupt  # the session ends while the second system compiles
        return {"system": name, "state_dim": physics.SYSTEMS[name], "action_dim": 1, "horizon": horizon,
                "samples": 32, "compile_s": 60.0, "run_s": 0.5, "memory_mb": 3.0, "peak_rss_mb": 900.0}

    monkeypatch.setattr(physics, "gradient_cost", fake_cost)
    with pytest.raises(KeyboardInterrupt):
        physics.run_cost(physics.FULL, tmp_path, log=lambda _: None)
    assert measured == ["brax_inverted_double_pendulum", "brax_reacher"]
    measured.clear()
    assert physics.run_cost(physics.FULL, tmp_path, log=lambda _: None)
    assert measured == ["brax_reacher", "brax_hopper"]  # the kept pendulum is not measured again
    table = pd.read_csv(tmp_path / "physics" / "cost.csv")
    assert list(table["system"]) == list(physics.SYSTEMS) and not (tmp_path / "physics" / "cost").exists()
    assert not physics.run_cost(physics.FULL, tmp_path, log=lambda _: None)  # exported: skipped
    text = physics.write_report(physics.FULL, tmp_path, log=lambda _: None).read_text()
    assert text.startswith("# Rigid-body physics")
    assert "| brax_reacher | 8 | 1 | 60.0 | 0.5 | 15.6 | 3.0 |" in text  # 15.6 ms per gradient: 0.5 s / 32
    assert "systems by state dimension D: D = 6: brax_inverted_double_pendulum" in text
    assert "Remaining: physics-brax_inverted_double_pendulum, physics-brax_reacher, physics-brax_hopper" in text


def test_bpo_tables_report_failure_and_duels_with_their_known_answers():
    """Synthetic runs on one system: the simulator and the AWM-RNN improve from -50 to -10 (equal, seed by seed), the
    Markov model's final return is noise around its initial one (it fails, and the AWM beats it)."""
    rows = []
    for method in ("simulator", "markov", "awm-rnn"):
        for seed in range(10):
            final = -50.0 + (seed - 4.5) * 0.1 if method == "markov" else -10.0 + 0.01 * seed
            for step, ret in ((16, -50.0), (32, final)):
                rows.append({"system": "brax_reacher", "method": method, "stabiliser": "none", "horizon": 25,
                             "seed": seed, "env_steps": step, "return": ret, "model_loss": 0.0,
                             "policy_grad_norm": 1.0, "wall_time": 1.0, "zeroed_policy_grads": 0})
    text = "\n".join(physics.bpo_tables(pd.DataFrame(rows), reps=200))
    assert text.count(" ✗ |") == 1 and "| brax_reacher | 25 | markov | -50" in text
    assert "| brax_reacher | awm-rnn | markov | 1 [1, 1] | AWM better |" in text
    assert "| brax_reacher | awm-rnn | simulator | 0.5 [" in text and text.endswith("| inconclusive |\n")


def test_a_bpo_stage_trains_every_system_of_the_study_at_its_horizon(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(physics, "train_stage", lambda *args, **kwargs: calls.append((args, kwargs)) or True)
    assert physics.bpo_stage(physics.FULL, "bpo-awm-rnn", tmp_path, log=print)
    (specs, store, export, stage, columns, _), constant = calls[0]
    (spec,) = specs
    assert spec.systems == tuple(physics.SYSTEMS) and spec.methods == ("awm-rnn",) and spec.horizons == (25,)
    assert spec.seeds == 10 and spec.overrides == physics.PAPER and constant == {"stabiliser": "none"}
    assert (store, export, stage) == (tmp_path / "runs" / "physics", tmp_path / "physics" / "bpo", "bpo-awm-rnn")


def test_on_a_smooth_system_the_zeroth_order_estimates_agree_with_the_first_order_gradient():
    """The simulator stage's rows on the linear system (smooth: the first-order gradient is the gradient of the
    smoothed return up to O(σ²)): cos(ZO, FO) ≈ sqrt(cos(ZO, ZO')), and more zeroth-order samples raise the
    ceiling."""
    rows = pd.DataFrame([r for seed in range(3) for r in physics.simulator_rows("linear", seed, horizons=(5,))])
    assert list(rows.columns) == list(physics.SIM_COLUMNS) and (rows["nonfinite"] == 0).all()
    agreement = rows["zo_cosine"].median() / rows["zo_self_cosine"].median() ** 0.5
    assert 0.93 < agreement < 1.07 and (rows["fo_snr"] > 0).all()
    few = pd.DataFrame([r for seed in range(3) for r in physics.simulator_rows("linear", seed, horizons=(5,),
                                                                               zo_samples=8)])
    assert few["zo_self_cosine"].median() < rows["zo_self_cosine"].median() - 0.2


def test_the_simulator_stage_keeps_each_system_and_seed_and_the_report_shows_its_table(tmp_path, monkeypatch):
    measured = []

    def fake_rows(name, seed):
        measured.append((name, seed))
        if len(measured) == 3 and seed == 2:
            raise KeyboardInterrupt  # the session ends during the pendulum's third seed
        return [{"system": name, "state_dim": physics.SYSTEMS[name], "horizon": h, "seed": seed, "fo_norm": 2.0,
                 "fo_variance": 1.0, "fo_snr": 2.0, "zo_norm": 2.5, "zo_cosine": 0.8, "zo_self_cosine": 0.64,
                 "nonfinite": 0, "seconds": 1.0} for h in physics.SIM_HORIZONS]

    monkeypatch.setattr(physics, "simulator_rows", fake_rows)
    with pytest.raises(KeyboardInterrupt):
        physics.run_simulator(physics.FULL, tmp_path, log=lambda _: None)
    measured.clear()
    assert physics.run_simulator(physics.FULL, tmp_path, log=lambda _: None)
    assert measured[0] == ("brax_inverted_double_pendulum", 2) and len(measured) == 3 * physics.FULL.seeds - 2
    rows = pd.read_parquet(tmp_path / "physics" / "simulator" / "simulator.parquet")
    assert len(rows) == 3 * physics.FULL.seeds * len(physics.SIM_HORIZONS)
    assert not (tmp_path / "physics" / "simulator" / "seeds").exists()
    assert not physics.run_simulator(physics.FULL, tmp_path, log=lambda _: None)  # exported: skipped
    text = physics.write_report(physics.FULL, tmp_path, log=lambda _: None).read_text()
    assert "| brax_reacher | 8 | 25 | 2 [2, 2] | 2 [2, 2] | 0.8 [0.8, 0.8] | 0.64 [0.64, 0.64] | 1.00 |" in text


def test_the_simulator_table_reads_no_agreement_where_the_zeroth_order_estimates_agree_on_no_direction():
    rows = pd.DataFrame([{"system": "brax_reacher", "state_dim": 8, "horizon": 25, "seed": seed, "fo_norm": 1.0,
                          "fo_variance": 9.0, "fo_snr": 0.3, "zo_norm": 3.0, "zo_cosine": 0.05 * (-1) ** seed,
                          "zo_self_cosine": 0.1 * (-1) ** seed, "nonfinite": 0, "seconds": 1.0} for seed in range(10)])
    table = physics.simulator_table(rows, reps=200)[-1]  # the Markdown table, its one row last
    assert table.splitlines()[-1].endswith("| – (no signal) |")


def test_fits_matched_on_the_hopper_have_their_known_answers(tmp_path):
    """Synthetic audits of the hopper: the Markov model fits 0.05 at cosine 0.8 + seed/1000, both AWMs 0.005 at 0.95.
    The AWMs' 10-epoch rung fits worse than the Markov model (0.08; the AWM-RNN's 0.01 on seed 9, so that seed has
    no match), the 20-epoch rung better (0.03). Matched, the AWM-RNN's cosine equals the Markov model's seed by seed
    (a tie: inconclusive) and the AWM-transformer's stays 0.95 (AWM better); the Markov model refitted longer fits
    0.01 at 0.97 and beats both 300-epoch AWMs."""
    from open_questions import ROW_COLUMNS

    def rows(method, fit, cosine, converged=False):
        return [{**{c: None for c in ROW_COLUMNS}, "question": "physics", "system": "brax_hopper", "setting": 12.0,
                 "horizon": 25, "seed": seed, "method": method, "fit_ratio": fit(seed), "cosine": cosine(seed),
                 "fit_converged": converged, "fit_epochs": 300} for seed in range(10)]

    markov_cosine = lambda seed: 0.8 + seed / 1000
    base = pd.DataFrame(rows("markov", lambda s: 0.05, markov_cosine)
                        + [r for awm in physics.AWMS for r in rows(awm, lambda s: 0.005, lambda s: 0.95)])
    (tmp_path / "physics").mkdir()
    base.to_parquet(tmp_path / "physics" / "physics-brax_hopper.parquet", index=False)
    rungs = {10: [*rows("awm-rnn", lambda s: 0.01 if s == 9 else 0.08, markov_cosine),
                  *rows("awm-transformer", lambda s: 0.08, lambda s: 0.95)],
             20: [r for awm in physics.AWMS for r in rows(awm, lambda s: 0.03, lambda s: 0.9)]}
    assert set(physics.MATCH_STUDIES) >= {"match-markov", "match-awms-10", "match-awms-20"}
    for stage, found in (*((f"match-awms-{cap}", r) for cap, r in rungs.items()),
                         ("match-markov", rows("markov", lambda s: 0.01, lambda s: 0.97, converged=True))):
        kept = physics.MATCH_STUDIES[stage].folders(tmp_path)[1] / physics.MATCH_CELL.stage
        kept.mkdir(parents=True)
        for seed, part in pd.DataFrame(found).groupby("seed"):
            part.to_parquet(kept / f"seed{seed}.parquet", index=False)

    ladder = pd.concat([base[base["method"] != "markov"].assign(cap=300)]
                       + [pd.DataFrame(r).assign(cap=cap) for cap, r in rungs.items()], ignore_index=True)
    pairs = physics.match_pairs(base, ladder)
    assert (pairs["cap"] == 10).all() and sorted(pairs.groupby("awm").size().items()) == [
        ("awm-rnn", 9), ("awm-transformer", 10)]
    text = "\n".join(physics.match_section(tmp_path, reps=200))
    assert "| 300 | 10 | 0.05 | 0/10 | 300 |" in text and "| 1500 | 10 | 0.01 | 10/10 | 300 |" in text
    assert text.count("| AWM worse |") == 2  # both 300-epoch AWMs against the Markov model fitted longer
    assert "| awm-rnn | 9 | 0.08 | 0.05 | 10 ×9 |" in text and "| 0.5 [" in text and "| inconclusive |" in text
    assert "| awm-transformer | 10 | 0.08 | 0.05 | 10 ×10 |" in text and text.rstrip().endswith("| AWM better |")
    assert "1 of the 2 AWMs still beats a Markov model that fits no worse" in text
    assert physics.match_section(tmp_path / "nothing", reps=200)[-1] == "Not run yet."
    kept = physics.MATCH_STUDIES["match-awms-10"].folders(tmp_path)[1] / physics.MATCH_CELL.stage
    for seed in range(3, 10):  # only 3 seeds of the rung that matches: no verdict on 3 pairs
        (kept / f"seed{seed}.parquet").unlink()
    assert "no verdict yet: too few seeds are matched (awm-rnn on 3, awm-transformer on 3" in "\n".join(
        physics.match_section(tmp_path, reps=200))
