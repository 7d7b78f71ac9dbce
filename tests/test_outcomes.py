"""Outcomes over seeds: IQM, convergence per seed, bootstrap CIs (rliable), normalisation, verdicts, figures, CLI."""
import jax
import numpy as np
import pandas as pd
import pytest

from gradlens import cli, envs, outcome_plots, outcomes, plots
from gradlens.rollout import rollout

REPS = 60  # bootstrap replications: enough for the properties below, fast


def _metrics(curves: dict, system="cancer", method="simulator", horizon=100, every=100) -> pd.DataFrame:
    """A metrics frame as the run store gives it: {seed: returns at env steps every, 2·every, ...}."""
    return pd.DataFrame([{"run": f"{method}-run", "system": system, "method": method, "horizon": horizon,
                          "env_steps": every * (i + 1), "seed": seed, "return": float(r), "wall_time": 1.0}
                         for seed, returns in curves.items() for i, r in enumerate(returns)])


# best-known -20.67 (cancer, H = 100) with rtol 2 %: converged means return >= -21.0834
STAYS = [-50.0, -30.0, -21.0, -20.7, -20.68]  # inside the band from step 300 on
LEAVES = [-50.0, -21.0, -40.0, -45.0, -50.0]  # touches the band at step 200, then leaves it
NEVER = [-60.0, -55.0, -54.0, -53.0, -53.0]


def test_iqm_is_the_mean_of_the_middle_half():
    assert outcomes.iqm(np.arange(1, 9)) == pytest.approx(np.mean([3, 4, 5, 6]))
    assert outcomes.iqm([[1.0, 100.0], [2.0, 3.0]]) == pytest.approx(2.5)  # flattened; outliers trimmed
    with pytest.raises(ValueError, match="empty"):
        outcomes.iqm([])


def test_convergence_per_seed_and_group_summary():
    found = outcomes.seed_outcomes(_metrics({0: STAYS, 1: LEAVES, 2: NEVER}))
    assert list(found["seed"]) == [0, 1, 2]
    assert list(found["final"]) == [-20.68, -50.0, -53.0]
    assert list(found["converged"]) == [True, False, False]
    assert found["converged_step"].iloc[0] == 300 and found["converged_step"].iloc[1:].isna().all()
    assert set(found["best_source"]) == {"BEST_KNOWN"} and found["tolerance"].iloc[0] == pytest.approx(0.02 * 20.67)
    s = outcomes.summarize(found).iloc[0]
    assert (s["n_seeds"], s["n_converged"], s["median"], s["min"], s["max"]) == (3, 1, -50.0, -53.0, -20.68)
    assert s["frac_converged"] == pytest.approx(1 / 3) and s["median_converged_step"] == 300
    # 3 seeds: a 25 % trim cuts int(0.75) = 0 values per end, so the IQM is the mean
    assert s["iqm"] == pytest.approx(np.mean([-20.68, -50.0, -53.0])) == s["mean"]


def test_best_known_sources_and_tolerance_options():
    frame = _metrics({0: STAYS, 1: NEVER}, horizon=20)  # BEST_KNOWN holds H = 100 only
    unknown = outcomes.seed_outcomes(frame, fallback=False)
    assert unknown["converged"].isna().all() and set(unknown["best_source"]) == {"unknown"}
    assert np.isnan(outcomes.summarize(unknown)["frac_converged"].iloc[0])
    both = pd.concat([frame, _metrics({0: [-30.0, -25.0]}, method="markov", horizon=20)])
    peer = outcomes.seed_outcomes(both)  # best final across the methods of (cancer, H=20): seed 0's -20.68
    assert set(peer["best_source"]) == {"best final across methods"} and set(peer["best"]) == {-20.68}
    given = outcomes.seed_outcomes(frame, best={"cancer": -53.0}, atol=0.5)
    assert list(given["converged"]) == [True, True] and list(given["converged_step"]) == [100, 400]
    last3 = outcomes.seed_outcomes(frame, best=-20.0, atol=1.0, last_k=3)
    assert last3["final"].iloc[0] == pytest.approx(np.mean(STAYS[-3:]))
    with pytest.raises(ValueError, match="rtol must be a finite number > 0"):
        outcomes.seed_outcomes(frame, rtol=0.0)
    with pytest.raises(ValueError, match="atol must be a finite number > 0"):
        outcomes.seed_outcomes(frame, atol=-1.0)
    with pytest.raises(ValueError, match="pass an absolute tolerance atol"):
        outcomes.seed_outcomes(frame, best=0.0)
    with pytest.raises(ValueError, match="lacks column"):
        outcomes.seed_outcomes(frame.drop(columns="return"))
    with pytest.raises(ValueError, match="empty"):
        outcomes.seed_outcomes(frame.iloc[:0])
    with pytest.raises(ValueError, match="two runs share a seed"):
        outcomes.seed_outcomes(pd.concat([frame, frame]))


def test_outcome_line_reports_seeds_median_iqm_and_convergence():
    line = outcomes.outcome_line(outcomes.seed_outcomes(_metrics({0: STAYS, 1: LEAVES, 2: NEVER})))
    assert "{0: -20.68, 1: -50, 2: -53}" in line and "median -50" in line and "converged 1/3" in line
    assert "-20.67 - 0.413 (best-known from BEST_KNOWN)" in line
    unknown = outcomes.outcome_line(outcomes.seed_outcomes(_metrics({0: STAYS}, horizon=20), fallback=False))
    assert unknown.endswith("converged: best-known unknown")


def test_constant_scores_give_zero_width_intervals_containing_the_value():
    table = outcomes.aggregates({"a": np.full((5, 2), 0.7)}, reps=REPS)
    assert list(table["metric"]) == list(outcomes.AGGREGATES)
    want = {"iqm": 0.7, "median": 0.7, "mean": 0.7, "optimality_gap": 0.3}
    for _, r in table.iterrows():
        assert r["low"] == pytest.approx(want[r["metric"]]) == r["high"] and r["value"] == pytest.approx(r["low"])


def test_bootstrap_is_deterministic_given_the_seed_and_leaves_numpy_global_rng_alone():
    scores = {"a": np.random.default_rng(0).normal(size=(6, 2)), "b": np.random.default_rng(1).normal(size=(6, 2))}
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    first = outcomes.aggregates(scores, reps=REPS, seed=3)
    assert np.array_equal(np.random.get_state()[1], before)
    pd.testing.assert_frame_equal(first, outcomes.aggregates(scores, reps=REPS, seed=3))
    assert not first.equals(outcomes.aggregates(scores, reps=REPS, seed=4))
    assert (first["low"] <= first["value"] + 1e-12).all() and (first["value"] <= first["high"] + 1e-12).all()


def test_probability_of_improvement_dominance_and_identity():
    y = np.random.default_rng(0).normal(size=(5, 2))
    table = outcomes.probability_of_improvement({"x": y + 10.0, "y": y, "z": y.copy()}, reps=REPS)
    rows = {(r["x"], r["y"]): r for _, r in table.iterrows()}
    assert list(rows) == [("x", "y"), ("x", "z"), ("y", "z")]
    assert (rows["x", "y"]["value"], rows["x", "y"]["low"], rows["x", "y"]["high"]) == (1.0, 1.0, 1.0)
    assert rows["y", "z"]["value"] == 0.5
    back = outcomes.probability_of_improvement({"x": y + 10.0, "y": y}, pairs=[("y", "x")], reps=REPS)
    assert back["value"].item() == 0.0 and back["high"].item() == 0.0
    with pytest.raises(ValueError, match="unknown: w"):
        outcomes.probability_of_improvement({"x": y, "y": y}, pairs=[("x", "w")], reps=REPS)


def test_an_interval_does_not_change_when_other_methods_or_pairs_are_added():
    """A report that adds a configuration must not move the intervals of the ones it had (borderline duels would
    flip with the bootstrap's random stream)."""
    rng = np.random.default_rng(0)
    a, b, c = (rng.normal(loc, 1.0, size=(10, 1)) for loc in (0.0, 0.3, 1.0))
    alone = outcomes.probability_of_improvement({"a": a, "b": b}, pairs=[("a", "b")], reps=REPS)
    among = outcomes.probability_of_improvement({"c": c, "a": a, "b": b}, pairs=[("c", "a"), ("a", "b")], reps=REPS)
    pd.testing.assert_frame_equal(alone, among.iloc[[1]].reset_index(drop=True))
    one = outcomes.aggregates({"a": a}, reps=REPS)
    pd.testing.assert_frame_equal(one, outcomes.aggregates({"c": c, "a": a}, reps=REPS).iloc[4:].reset_index(drop=True))


def test_performance_profile_is_the_fraction_of_runs_above_tau():
    scores = {"a": np.array([[0.0], [0.25], [0.5], [1.0]])}
    table = outcomes.performance_profiles(scores, taus=[-1.0, 0.3, 1.0], reps=REPS)
    assert list(table["value"]) == [1.0, 0.5, 0.0]
    assert (table["low"] <= table["value"]).all() and (table["value"] <= table["high"]).all()
    assert table["low"].iloc[0] == table["high"].iloc[0] == 1.0  # every resample is above τ = -1


def test_score_matrices_stack_seeds_by_task():
    found = outcomes.seed_outcomes(pd.concat([_metrics({0: STAYS, 1: NEVER}), _metrics({0: NEVER, 1: STAYS},
                                                                                        system="mould_fungicide")]))
    scores = outcomes.score_matrices(found)
    assert list(scores) == ["simulator"] and scores["simulator"].tolist() == [[-20.68, -53.0], [-53.0, -20.68]]
    with pytest.raises(ValueError, match="same number of seeds"):
        outcomes.score_matrices(found.iloc[:3])
    with pytest.raises(ValueError, match="the outcomes also differ in horizon; filter them or add them to task"):
        outcomes.score_matrices(pd.concat([found, found.assign(horizon=50)]))
    assert outcomes.score_matrices(pd.concat([found, found.assign(horizon=50)]),
                                   task=("system", "horizon"))["simulator"].shape == (2, 4)
    with pytest.raises(ValueError, match="non-finite"):
        outcomes.aggregates({"a": np.array([[np.nan]])})


def test_normalize_maps_random_to_zero_and_simulator_to_one():
    assert outcomes.normalize([-80.0, -20.0, -50.0], low=-80.0, high=-20.0).tolist() == [0.0, 1.0, 0.5]
    with pytest.raises(ValueError, match="low < high"):
        outcomes.normalize([1.0], low=2.0, high=2.0)


def test_random_policy_return_is_the_mean_over_uniform_random_episodes():
    system = envs.make("linear", horizon=5)
    key = jax.random.PRNGKey(7)
    got = outcomes.random_policy_return(system, key, episodes=4)
    by_hand = []
    for k in jax.random.split(key, 4):  # the same draws, one episode at a time
        k_actions, k_noise = jax.random.split(k)
        actions = jax.random.uniform(k_actions, (5, system.action_dim), minval=-1.0, maxval=1.0)
        by_hand.append(float(rollout(system, actions, system.initial_state(), key=k_noise).ret))
    assert got == pytest.approx(np.mean(by_hand), rel=1e-5) and np.ptp(by_hand) > 0
    with pytest.raises(ValueError, match="episodes must be an integer >= 1"):
        outcomes.random_policy_return(system, key, episodes=0)


@pytest.mark.parametrize("low, high, want", [(0.55, 0.9, "reproduced"), (0.1, 0.45, "not reproduced"),
                                             (0.4, 0.6, "inconclusive"), (0.5, 0.5, "inconclusive")])
def test_verdict_rule_on_a_probability_of_improvement_ci(low, high, want):
    assert outcomes.verdict(low, high) == want


def test_verdict_from_two_methods_intervals():
    assert outcomes.verdict_from_intervals((0.8, 0.9), (0.5, 0.7)) == "reproduced"
    assert outcomes.verdict_from_intervals((0.1, 0.2), (0.5, 0.7)) == "not reproduced"
    assert outcomes.verdict_from_intervals((0.6, 0.9), (0.5, 0.7)) == "inconclusive"
    with pytest.raises(ValueError, match="low <= high"):
        outcomes.verdict(0.9, 0.1)


def test_learning_curves_figure_has_one_line_per_seed_plus_the_median():
    frame = pd.concat([_metrics({0: STAYS, 1: LEAVES, 2: NEVER}), _metrics({4: STAYS}, method="awm-rnn")])
    fig = plots.learning_curves_figure(frame)
    names = [t.name for t in fig.data]
    assert names == ["awm-rnn, seed 4", "awm-rnn (1 seed, 1/1 converged, median final -20.68)",
                     "simulator, seed 0", "simulator, seed 1", "simulator, seed 2",
                     "simulator (3 seeds, 1/3 converged, median final -50)"]
    median = fig.data[-1]
    assert list(median.y) == [-50.0, -30.0, -40.0, -45.0, -50.0] and median.line.width > fig.data[2].line.width
    assert [t.showlegend for t in fig.data[2:]] == [False, False, False, None]
    other = plots.learning_curves_figure(frame.assign(wall_time=frame["seed"] * 1.0), y="wall_time")
    assert other.data[-1].name == "simulator (3 seeds)" and list(other.data[-1].y) == [1.0] * 5


def test_outcome_figures_draw_every_method_and_pair():
    scores = {"simulator": np.linspace(0.8, 1.0, 6)[:, None], "markov": np.linspace(0.0, 0.9, 6)[:, None]}
    fig = outcome_plots.interval_estimates_figure(outcomes.aggregates(scores, reps=REPS))
    assert len(fig.data) == 2 * len(outcomes.AGGREGATES) and fig.data[0].y == ("simulator",)
    assert fig.data[0].error_x.arrayminus[0] >= 0 and fig.data[0].error_x.array[0] >= 0
    pair = outcome_plots.probability_of_improvement_figure(outcomes.probability_of_improvement(scores, reps=REPS))
    assert pair.data[0].y == ("P(simulator > markov)",)
    prof = outcome_plots.performance_profiles_figure(outcomes.performance_profiles(scores, reps=REPS))
    assert [t.name for t in prof.data if t.showlegend is None] == ["simulator", "markov"]
    with pytest.raises(ValueError, match="missing tau"):
        outcome_plots.performance_profiles_figure(pd.DataFrame({"method": ["a"], "value": [1.0]}))


def test_train_cli_ends_with_the_per_seed_summary(tmp_path, monkeypatch, capsys):
    from gradlens.training import train as train_module

    fake = _metrics({0: STAYS, 1: LEAVES, 2: NEVER}).drop(columns=["run", "system", "method", "horizon"])
    fake.attrs.update(env_steps_trained=5000, seconds=10.0)  # what train reports of its own speed
    monkeypatch.setattr(train_module, "train", lambda *args, **kwargs: fake)
    assert cli.main(["train", "--system", "cancer", "--method", "simulator", "--seeds", "3", "--quiet",
                     "--out", str(tmp_path)]) == 0
    done = capsys.readouterr().out.splitlines()[-2]
    assert done.startswith("done: final return per seed {0: -20.68, 1: -50, 2: -53}") and "converged 1/3" in done
    assert "±" not in done
