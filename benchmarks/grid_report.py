"""The Myriad grid's report (`grid.py`): compute, per-task outcome distributions, normalised rliable aggregates over
tasks, figures, and a verdict per claim of the paper. Everything is computed from the exported per-seed metrics.

Normalisation, per (task, H): score = (R - R_random) / (R_simulator - R_random), with R_random the mean return of
uniform-random actions (`gradlens.outcomes.random_policy_return`, 256 episodes) and R_simulator the median final
return of simulator BPO over its seeds; so 0 is a random policy and 1 the simulator's typical outcome.
"""
from __future__ import annotations

import datetime
from pathlib import Path

import jax
import numpy as np
import pandas as pd
import plotly.graph_objects as go

from gradlens import envs, outcome_plots, outcomes, plots, runs

# Left out of the aggregates (its per-task rows stay): PAPER.md §11, every constant action returns about -3206.
EXCLUDED = {"glucose": "nearly insensitive to the action (PAPER.md §11: every constant action returns about -3206), "
                       "so R_simulator - R_random is tiny and its normalised scores measure noise, not the methods"}
PAIRS = (("awm-transformer", "hwm-transformer"), ("awm-transformer", "markov"), ("awm-transformer", "simulator"),
         ("awm-transformer", "sac"), ("awm-rnn", "markov"))
MIN_SPAN = 0.01  # a task enters the aggregates only if R_simulator - R_random >= MIN_SPAN * abs(R_random)
HIGH_PERFORMANCE = 0.9  # "keeps high performance": normalised IQM above this at the largest H
RANDOM_EPISODES = 256


# ---------------------------------------------------------------------------------------------------- formatting
def md_table(header: list[str], rows: list[list]) -> str:
    """A Markdown table; floats with 4 significant digits."""
    cell = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows])


def ci(value: float, low: float, high: float) -> str:
    return f"{value:.3g} [{low:.3g}, {high:.3g}]"


# ---------------------------------------------------------------------------------------------------- outcomes
def seed_scores(metrics: pd.DataFrame) -> pd.DataFrame:
    """`outcomes.seed_outcomes` of every run (final = last evaluation; best-known: `BEST_KNOWN` at H = 100, else the
    best final over the methods run) with `auc`: the seed's mean return over all its evaluations."""
    metrics = metrics.drop(columns=["wall_time", "zeroed_policy_grads"], errors="ignore")
    found = outcomes.seed_outcomes(metrics)
    auc = metrics.groupby(["system", "method", "horizon", "seed"], as_index=False)["return"].mean()
    return found.merge(auc.rename(columns={"return": "auc"}), on=["system", "method", "horizon", "seed"])


def normalisers(found: pd.DataFrame) -> pd.DataFrame:
    """Per (system, horizon): R_random, R_simulator (NaN until the simulator has run), whether the cell enters the
    aggregates (`usable`) and why not (`note`)."""
    rows = []
    for (system, horizon), part in found.groupby(["system", "horizon"]):
        random = outcomes.random_policy_return(envs.make(system, horizon=int(horizon)), jax.random.PRNGKey(0),
                                               RANDOM_EPISODES)
        sim = part.loc[part["method"] == "simulator", "final"]
        high = float(sim.median()) if len(sim) else float("nan")
        note = ("excluded: " + EXCLUDED[system] if system in EXCLUDED else "simulator not run yet" if not len(sim)
                else "simulator median not above random: no scale" if not high > random
                else f"span below {MIN_SPAN:.0%} of abs(R_random): scores would magnify noise"
                if high - random < MIN_SPAN * abs(random) else "")
        rows.append({"system": system, "horizon": int(horizon), "random": random, "simulator": high,
                     "usable": note == "", "note": note})
    return pd.DataFrame(rows)


def normalised(found: pd.DataFrame, norms: pd.DataFrame) -> pd.DataFrame:
    """The usable cells' outcomes with `score` (normalised final) and `auc_score` (normalised mean over evaluations)."""
    cells = found.merge(norms[norms["usable"]], on=["system", "horizon"])
    span = cells["simulator"] - cells["random"]
    return cells.assign(score=(cells["final"] - cells["random"]) / span,
                        auc_score=(cells["auc"] - cells["random"]) / span)


def complete_methods(cells: pd.DataFrame, tasks) -> list[str]:
    """Methods with the same number of seeds on every one of `tasks` (what rliable's matrices need)."""
    counts = cells.groupby(["method", "system"])["seed"].nunique().unstack()
    return [m for m in counts.index if set(tasks) <= set(counts.columns[counts.loc[m].notna()])
            and counts.loc[m, list(tasks)].nunique() == 1]


def iqm_intervals(found: pd.DataFrame, value: str, reps: int) -> pd.DataFrame:
    """Per (system, horizon, method): the IQM of `value` over seeds with its stratified-bootstrap 95 % CI."""
    frames = []
    for (system, horizon), part in found.groupby(["system", "horizon"]):
        scores = {m: g.sort_values("seed")[value].to_numpy(float)[:, None] for m, g in part.groupby("method")}
        agg = outcomes.aggregates(scores, reps=reps)
        frames.append(agg[agg["metric"] == "iqm"].assign(system=system, horizon=horizon))
    return pd.concat(frames, ignore_index=True)


# ---------------------------------------------------------------------------------------------------- sections
def compute_section(grid, out: Path, metrics: pd.DataFrame, kept: pd.DataFrame) -> str:
    store, export = grid.folders(out)
    estimate = pd.read_csv(export / "estimate.csv").set_index("method") if (export / "estimate.csv").exists() \
        else pd.DataFrame()
    calibration = f"{estimate['calibration'].iloc[0]:.2f}" if "calibration" in estimate else "not estimated yet"
    finished = pd.concat([metrics, kept], ignore_index=True)
    main = finished[finished["horizon"] == grid.horizon]
    wall = main.groupby(["method", "system"])["wall_time"].max()
    done = {(s, m, int(h)) for s, m, h in finished[["system", "method", "horizon"]].drop_duplicates()
            .itertuples(index=False)}
    scanned = runs.scan(store)
    done |= {(s, m, int(h)) for s, m, h, st in zip(scanned["system"], scanned["method"], scanned["horizon"],
                                                   scanned["state"]) if st == "done"}
    cells = [(t, grid.horizon) for t in grid.tasks] + [(grid.horizon_task, h) for h in grid.horizons
                                                        if h != grid.horizon]
    rows, total_all, left_all = [], 0.0, 0.0
    for method in grid.methods:
        measured = wall[method] if method in wall.index.get_level_values(0) else None
        here = f"{measured.median():.0f} ({len(measured)})" if measured is not None else "–"
        if method in estimate.index:
            seconds, source = float(estimate.loc[method, "ten_seed_s"]), estimate.loc[method, "source"]
        elif measured is not None:
            seconds, source = float(measured.median()), "measured here"
        else:
            rows.append([method, "–", "not estimated", here, len(cells), "–", "–", "–"])
            continue
        weight = lambda h: h / grid.horizon  # cost taken proportional to H (same env steps, longer episodes)
        total = sum(seconds * weight(h) for _, h in cells)
        left = sum(seconds * weight(h) for t, h in cells if (t, method, h) not in done)
        n_done = sum((t, method, h) in done for t, h in cells)
        total_all, left_all = total_all + total, left_all + left
        rows.append([method, seconds, source, here, len(cells), f"{total / 3600:.2f} h", f"{n_done}/{len(cells)}",
                     f"{left / 3600:.2f} h"])
    rows.append(["all", "", "", "", len(cells) * len(grid.methods), f"{total_all / 3600:.2f} h", "",
                 f"{left_all / 3600:.2f} h"])
    return "\n\n".join([
        "## Compute",
        f"Seconds per {grid.seeds}-seed run at H = {grid.horizon}, the paper's schedule, one run at a time on the 2 "
        "CPU cores. The estimate (`grid.py --estimate`, `grid/estimate.csv`) is for a quiet machine: "
        "benchmarks/README.md's measured full runs where there is one, else one seed timed on a short schedule "
        "(warm-up 200, then 256 live env steps, chunk by chunk, compile apart), extrapolated to the full schedule, "
        "scaled by a calibration factor (README time / our timed estimate of the AWM-RNN and AWM-transformer, timed in "
        f"the same process beside other work: {calibration}) and by 9.5 for 10 vmapped seeds. "
        "'Measured here' is the median wall time of the finished grid runs (training loop with its first compile, "
        "not process start) at whatever load the machine had. Runs per method: "
        f"{len(grid.tasks)} tasks at H = {grid.horizon} plus {len(cells) - len(grid.tasks)} horizon-sweep runs on "
        f"{grid.horizon_task}, whose cost is taken as proportional to H.",
        md_table(["method", f"estimate: s per {grid.seeds}-seed run", "source", "measured here: median s (runs)",
                  "runs", "total", "done", "remaining"], rows),
        *[f"Failed runs of stage {f.stem.removesuffix('-failed')} (not in any table): "
          + "; ".join(f"{r['name']}: {r['error']}" for _, r in pd.read_csv(f).iterrows())
          for f in sorted(export.glob("*-failed.csv"))],
        zeroed_paragraph(metrics)])


def zeroed_paragraph(metrics: pd.DataFrame) -> str:
    """Which runs had non-finite policy gradients zeroed (the reference's handling, `nonfinite_policy_grad`)."""
    zeroed = metrics.groupby(["system", "method", "horizon", "seed"])["zeroed_policy_grads"].sum()
    zeroed = zeroed[zeroed > 0].reset_index()
    if zeroed.empty:
        return "No policy gradient was non-finite in the exported runs (none zeroed)."
    cells = []
    for (system, method, horizon), group in zeroed.groupby(["system", "method", "horizon"]):
        seeds = ", ".join(f"seed {r.seed} ({int(r.zeroed_policy_grads)})" for r in group.itertuples())
        cells.append(f"{system} {method} H = {horizon}: {seeds}")
    return ("Non-finite policy gradients were zeroed and training went on, as in the reference (`TrainConfig."
            "nonfinite_policy_grad='zero'`). Runs and seeds with any, with the number of zeroed updates: "
            + "; ".join(cells) + ".")


TASK_HEADER = ["task", "H", "method", "median", "IQM [95 % CI]", "converged", "best-known", "n seeds"]


def task_rows(found: pd.DataFrame, reps: int) -> list[list]:
    """Per (task, H, method) of `found` (`seed_scores`): median, IQM [CI], seeds converged, best-known, seeds."""
    summary = outcomes.summarize(found.drop(columns=["auc"]))
    intervals = iqm_intervals(found, "final", reps).set_index(["system", "horizon", "method"])
    rows = []
    for _, s in summary.iterrows():
        i = intervals.loc[(s["system"], s["horizon"], s["method"])]
        rows.append([s["system"], int(s["horizon"]), s["method"], s["median"], ci(i["value"], i["low"], i["high"]),
                     f"{s['n_converged']}/{s['n_seeds']}", f"{s['best']:.5g} ({s['best_source']})",
                     int(s["n_seeds"])])
    return rows


def task_section(grid, found: pd.DataFrame, reps: int) -> str:
    return "\n\n".join([
        "## Final return per task and method",
        "Final deterministic return (one episode in the true system at the last evaluation), per seed: the median, "
        "the IQM with its stratified-bootstrap 95 % CI, and the seeds converged: final >= best-known - "
        f"{outcomes.DEFAULT_RTOL:.0%} of |best-known|. Best-known: the reference code's simulator return where PAPER.md §11 gives one (cancer, "
        "mould_fungicide at H = 100, `outcomes.BEST_KNOWN`), else the best final return over the methods run so "
        "far, so that column moves as stages finish.",
        md_table(TASK_HEADER, task_rows(found, reps))])


def interim_section(metrics: pd.DataFrame, kept: pd.DataFrame, reps: int) -> str:
    """The runs kept so far by stages that have not finished (`grid.kept_runs`), in the per-task table's terms; they
    enter no normalisation, aggregate or claim until their stage is exported. Best-known is taken over the exported
    and the kept runs together."""
    found = seed_scores(pd.concat([metrics, kept], ignore_index=True))
    runs = kept[["system", "method", "horizon"]].drop_duplicates().astype({"horizon": int})
    found = found.merge(runs, on=["system", "method", "horizon"])
    return "\n\n".join([
        "## Runs of stages still running",
        "Each finished run of a stage that is still training, in the terms of the per-task table. These runs enter "
        "no normalisation, aggregate or claim until every run of their stage has finished: a claim rests on every "
        "task.",
        md_table(TASK_HEADER, task_rows(found, reps))])


def normalisation_section(norms: pd.DataFrame) -> str:
    rows = [[r["system"], r["horizon"], r["random"], r["simulator"] if np.isfinite(r["simulator"]) else "–",
             "yes" if r["usable"] else r["note"]] for _, r in norms.iterrows()]
    return "\n\n".join([
        "## Normalisation",
        "score = (R - R_random) / (R_simulator - R_random): R_random the mean return of uniform-random actions "
        f"({RANDOM_EPISODES} episodes from the fixed initial state), R_simulator the median final return of "
        "simulator BPO over its seeds, per task and H. A task enters the aggregates only if the simulator's median "
        f"beats random by at least {MIN_SPAN:.0%} of abs(R_random): below that, a normalised score multiplies return "
        "noise by over 100. Glucose is left out by name as well: " + EXCLUDED["glucose"] + ".",
        md_table(["task", "H", "R_random", "R_simulator (median)", "in aggregates"], rows)])


class Aggregates:
    """Normalised scores over the usable tasks at the grid's main horizon, and their rliable statistics."""

    def __init__(self, grid, cells: pd.DataFrame, reps: int):
        main = cells[cells["horizon"] == grid.horizon]
        self.tasks = sorted(main["system"].unique())
        self.methods = [m for m in grid.methods if m in complete_methods(main, self.tasks)] if self.tasks else []
        self.partial = sorted(set(main["method"]) - set(self.methods))  # run, but not on every task (failed runs)
        main = main[main["method"].isin(self.methods)]
        self.scores = outcomes.score_matrices(main, "score") if self.methods else {}
        self.auc = outcomes.score_matrices(main, "auc_score") if self.methods else {}
        self.table = outcomes.aggregates(self.scores, reps=reps) if self.scores else None
        self.reps = reps

    def improvement(self, pairs, which: str = "score") -> pd.DataFrame | None:
        """P(X > Y) with CIs for the pairs whose methods both have scores; None if none has."""
        pairs = [p for p in pairs if set(p) <= set(self.methods)]
        scores = self.scores if which == "score" else self.auc
        return outcomes.probability_of_improvement(scores, pairs, reps=self.reps) if pairs else None


def aggregate_section(agg: Aggregates, grid, figure) -> str:
    if agg.table is None:
        return "## Aggregates over tasks\n\nNone yet: no method has finished every usable task (the simulator " \
               "stage sets the scale)."
    t = agg.table.set_index(["method", "metric"])
    rows = [[m, *(ci(*t.loc[(m, k), ["value", "low", "high"]]) for k in outcomes.AGGREGATES)] for m in agg.methods]
    figs = [figure(outcome_plots.interval_estimates_figure(agg.table), "grid_aggregates")]
    parts = ["## Aggregates over tasks",
             f"Normalised final scores over {len(agg.tasks)} tasks ({', '.join(agg.tasks)}) at H = {grid.horizon}, "
             f"{grid.seeds} seeds each; 95 % stratified-bootstrap CIs ({agg.reps} replicates). Only methods that "
             "have finished every one of these tasks appear; optimality gap is 1 - mean(min(score, 1)) (lower is "
             "better).",
             md_table(["method", "IQM", "median", "mean", "optimality gap"], rows)]
    poi = agg.improvement(PAIRS)
    if poi is not None:
        figs.append(figure(outcome_plots.probability_of_improvement_figure(poi), "grid_improvement"))
        parts += ["### Probability of improvement",
                  md_table(["X", "Y", "P(X > Y) [95 % CI]", "verdict on X beats Y"],
                           [[r["x"], r["y"], ci(r["value"], r["low"], r["high"]),
                             outcomes.verdict(r["low"], r["high"])] for _, r in poi.iterrows()])]
    profiles = outcomes.performance_profiles(agg.scores, np.linspace(0, 1.5, 31), reps=agg.reps)
    figs.append(figure(outcome_plots.performance_profiles_figure(profiles), "grid_profiles"))
    parts.append("Figures: " + ", ".join(f"[{f}]({f})" for f in figs))
    return "\n\n".join(parts)


def horizon_section(grid, cells: pd.DataFrame, reps: int, figure) -> str:
    sweep = cells[cells["system"] == grid.horizon_task]
    horizons = sorted(sweep["horizon"].unique())
    if not horizons:
        return f"## Return versus horizon on {grid.horizon_task}\n\nNot yet run."
    intervals = iqm_intervals(sweep, "score", reps).set_index(["method", "horizon"])
    fig, rows = go.Figure(), []
    for method in [m for m in grid.methods if m in intervals.index.get_level_values(0)]:
        part = intervals.loc[method].reindex(horizons)
        rows.append([method, *("–" if pd.isna(r["value"]) else ci(r["value"], r["low"], r["high"])
                               for _, r in part.iterrows())])
        have = part.dropna()
        fig.add_trace(go.Scatter(x=list(have.index), y=list(have["value"]), name=method, mode="lines+markers",
                                 line={"color": plots.CLASS_COLORS.get(method)},
                                 error_y={"type": "data", "symmetric": False,
                                          "array": list(have["high"] - have["value"]),
                                          "arrayminus": list(have["value"] - have["low"])}))
    fig.update_layout(title=f"Normalised final return versus H on {grid.horizon_task} (IQM, 95 % CI)",
                      xaxis_title="H (Euler steps over the same duration)", yaxis_title="normalised score",
                      xaxis_type="log", template="simple_white")
    link = figure(fig, "grid_horizons")
    return "\n\n".join([f"## Return versus horizon on {grid.horizon_task}",
                        f"Normalised final score (per H: random -> 0, simulator median -> 1), IQM over seeds with "
                        f"95 % CI. Figure: [{link}]({link})",
                        md_table(["method", *[f"H = {h}" for h in horizons]], rows)])


# ---------------------------------------------------------------------------------------------------- claims
def _pair_claim(agg: Aggregates, claim: str, pairs, which: str = "score") -> list:
    """[claim, evidence, verdict] for "each X beats its Y" over `pairs`. Parts whose methods have not finished are
    listed as missing; a part already run that is not reproduced settles the claim (every part must hold), else the
    verdict waits for the missing parts."""
    missing = sorted({m for p in pairs for m in p} - set(agg.methods))
    poi = agg.improvement(pairs, which)
    rows = [] if poi is None else [r for _, r in poi.iterrows()]
    verdicts = [outcomes.verdict(r["low"], r["high"]) for r in rows]
    evidence = [f"P({r['x']} > {r['y']}) = {ci(r['value'], r['low'], r['high'])}" for r in rows]
    if not missing:
        return [claim, "; ".join(evidence), combine(verdicts)]
    evidence.append(missing_evidence(agg, missing))
    verdict = "not reproduced" if "not reproduced" in verdicts else \
        f"pending: {len(rows)} of {len(pairs)} parts run" if rows else "not yet run"
    return [claim, "; ".join(evidence), verdict]


def missing_evidence(agg: Aggregates, missing) -> str:
    """Which methods a claim lacks: not run yet, or run but not on every aggregated task (a failed run)."""
    partial = [m for m in missing if m in agg.partial]
    return "; ".join(part for part in (
        f"not yet run: {', '.join(m for m in missing if m not in partial)}" if len(partial) < len(missing) else "",
        f"not on every task (a run stopped, see Compute): {', '.join(partial)}" if partial else "") if part)


def combine(verdicts) -> str:
    """All parts of a claim must hold: reproduced if every part is, not reproduced if any part is not, else
    inconclusive."""
    return "reproduced" if all(v == "reproduced" for v in verdicts) else \
        "not reproduced" if "not reproduced" in verdicts else "inconclusive"


def claims_section(grid, agg: Aggregates, cells: pd.DataFrame, reps: int) -> str:
    n = len(agg.tasks)
    rows = [
        _pair_claim(agg, f"AWMs beat the model-based baselines: Markov and HWM (final score, {n} tasks)",
                    [("awm-transformer", "markov"), ("awm-transformer", "hwm-transformer"),
                     ("awm-transformer", "hwm-rnn"), ("awm-rnn", "markov")]),
        _pair_claim(agg, f"AWMs beat the model-free baselines SAC and ODT (final score, {n} tasks)",
                    [("awm-transformer", "sac"), ("awm-transformer", "odt")]),
        _pair_claim(agg, f"AWMs are more sample-efficient than SAC and ODT (mean normalised return over all "
                         f"evaluations, i.e. the area under the learning curve, {n} tasks)",
                    [("awm-transformer", "sac"), ("awm-transformer", "odt")], which="auc"),
        simulator_claim(agg, cells, reps, grid.horizon),
        *horizon_claims(grid, cells, reps)]
    return "\n\n".join([
        "## The paper's claims (PAPER.md §4 item 4)",
        "A claim \"X beats Y\" is reproduced when the 95 % CI of P(X > Y) lies above 0.5, not reproduced when it "
        "lies below, inconclusive when it contains 0.5; a claim of several parts is reproduced only if every part "
        "is, and not reproduced if any part is not, even before its other parts have run. "
        f"{grid.seeds} seeds per run, the paper's hyperparameters, our implementation; the paper's own numbers are "
        "not in PAPER.md, so this checks its claims, not its figures.",
        md_table(["claim", "our evidence (95 % CIs)", "verdict"], rows)])


def simulator_claim(agg: Aggregates, cells: pd.DataFrame, reps: int, horizon: int) -> list:
    """The claim per task, and on each task where it holds, which other methods beat the simulator there too: a win
    shared with every model is about the simulator's own optimisation on that task, not about the AWM."""
    claim = "AWM-transformer sometimes beats even the true simulator (per task: its IQM CI above the simulator's)"
    if not {"awm-transformer", "simulator"} <= set(agg.methods):
        return [claim, "not yet run: awm-transformer", "not yet run"]
    main = cells[(cells["horizon"] == horizon) & cells["method"].isin(agg.methods)]
    iv = iqm_intervals(main, "final", reps).set_index(["system", "method"])
    above = lambda t, m: outcomes.verdict_from_intervals(tuple(iv.loc[(t, m), ["low", "high"]]),
                                                         tuple(iv.loc[(t, "simulator"), ["low", "high"]]))
    per_task = {t: above(t, "awm-transformer") for t in agg.tasks}
    won = [t for t, v in per_task.items() if v == "reproduced"]
    open_ = [t for t, v in per_task.items() if v == "inconclusive"]
    verdict = "reproduced" if won else "inconclusive" if open_ else "not reproduced"
    others = [m for m in agg.methods if m not in ("awm-transformer", "simulator")]
    shared = {t: [m for m in others if above(t, m) == "reproduced"] for t in won}
    wins = [t + (f" (so do {', '.join(shared[t])})" if shared[t] else " (alone)") for t in won]
    poi = agg.improvement([("awm-transformer", "simulator")]).iloc[0]
    return [claim, f"above on {', '.join(wins) or 'no task'}; overlapping on {', '.join(open_) or 'no task'}; "
                   f"over tasks P(awm-transformer > simulator) = {ci(poi['value'], poi['low'], poi['high'])}", verdict]


def horizon_claims(grid, cells: pd.DataFrame, reps: int) -> list[list]:
    h_max = max(grid.horizons)
    claim = (f"Transformer AWMs keep high performance as H grows ({grid.horizon_task}: normalised IQM at H = {h_max} "
             f"above {HIGH_PERFORMANCE}, i.e. within {100 * (1 - HIGH_PERFORMANCE):.0f} % of the simulator's median)")
    claim_b = f"... where the HWM-transformer does not ({grid.horizon_task}, H = {h_max}: P(AWM-tr. > HWM-tr.))"
    sweep = cells[(cells["system"] == grid.horizon_task)]
    have = lambda m: set(grid.horizons) <= set(sweep.loc[sweep["method"] == m, "horizon"])
    if not have("awm-transformer"):
        return [[claim, "not yet run: awm-transformer over H", "not yet run"],
                [claim_b, "not yet run: awm-transformer, hwm-transformer over H", "not yet run"]]
    iv = iqm_intervals(sweep[sweep["method"] == "awm-transformer"], "score", reps).set_index("horizon")
    evidence = "; ".join(f"H = {h}: {ci(*iv.loc[h, ['value', 'low', 'high']])}" for h in sorted(grid.horizons))
    rows = [[claim, evidence, outcomes.verdict(iv.loc[h_max, "low"], iv.loc[h_max, "high"], HIGH_PERFORMANCE)]]
    if not have("hwm-transformer"):
        return rows + [[claim_b, "not yet run: hwm-transformer over H", "not yet run"]]
    last = sweep[sweep["horizon"] == h_max]
    scores = {m: last[last["method"] == m].sort_values("seed")["score"].to_numpy(float)[:, None]
              for m in ("awm-transformer", "hwm-transformer")}
    r = outcomes.probability_of_improvement(scores, [("awm-transformer", "hwm-transformer")], reps=reps).iloc[0]
    return rows + [[claim_b, f"P = {ci(r['value'], r['low'], r['high'])}", outcomes.verdict(r["low"], r["high"])]]


# ---------------------------------------------------------------------------------------------------- report
def write_report(grid, out: Path, metrics: pd.DataFrame, log=print, kept: pd.DataFrame | None = None) -> Path:
    """Write `<out>/<grid.name>.md` (and its figures) from the exported metrics, and `kept`: the finished runs of
    stages still running (`grid.kept_runs`, shown apart); returns the report's path."""
    kept = metrics.iloc[:0] if kept is None else kept
    start = datetime.datetime.now()

    def figure(fig, name: str) -> str:
        path = out / "figures" / f"{grid.name}_{name.removeprefix('grid_')}"
        if grid.png:
            written = plots.write_figure(fig, path.with_suffix(".html"), plotlyjs="directory")
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            fig.write_html(path.with_suffix(".html"), include_plotlyjs="directory")
            written = [str(path.with_suffix(".html"))]
        return Path(written[-1]).relative_to(out).as_posix()

    parts = [f"# The paper's Myriad grid ({start:%Y-%m-%d %H:%M})",
             f"Generated by `python benchmarks/grid.py{' --quick' if grid.name != 'grid' else ''} --report` from "
             f"the exported per-seed metrics in `{grid.name}/` (one file per finished stage). Grid: "
             f"{len(grid.tasks)} Myriad tasks at H = {grid.horizon}, {len(grid.methods)} methods, {grid.seeds} "
             f"vmapped seeds per run, TrainConfig defaults{' + ' + str(grid.overrides) if grid.overrides else ''}; "
             f"the return-versus-horizon sweep on {grid.horizon_task} at H in {list(grid.horizons)}. Every number "
             "comes from finished runs; missing methods are marked.",
             compute_section(grid, out, metrics, kept)]
    if metrics.empty:
        parts.append("No stage has finished yet.")
        if not kept.empty:
            parts.append(interim_section(metrics, kept, grid.reps))
    else:
        found = seed_scores(metrics)
        norms = normalisers(found)
        cells = normalised(found, norms)
        agg = Aggregates(grid, cells, grid.reps)
        parts += [task_section(grid, found, grid.reps),
                  *([interim_section(metrics, kept, grid.reps)] if not kept.empty else []),
                  normalisation_section(norms),
                  aggregate_section(agg, grid, figure), horizon_section(grid, cells, grid.reps, figure),
                  claims_section(grid, agg, cells, grid.reps)]
        main = metrics[(metrics["system"] == grid.horizon_task) & (metrics["horizon"] == grid.horizon)]
        curves = figure(plots.learning_curves_figure(main.drop(columns=["wall_time"])), "grid_curves")
        parts.append(f"Learning curves on {grid.horizon_task}, H = {grid.horizon} (each seed and the median): "
                     f"[{curves}]({curves})")
    path = out / f"{grid.name}.md"
    path.write_text("\n\n".join(parts) + "\n")
    log(f"report {path} ({(datetime.datetime.now() - start).total_seconds():.0f} s)")
    return path
