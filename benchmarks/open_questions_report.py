"""The open-questions report (`benchmarks/open_questions.py`): per-seed gradient quality aggregated with rliable.

Definitions (docstring of `open_questions.py` for the design):
  fits         a model fits at (cell, H) on a seed when its open-loop error over steps 1 … H is at most the study's bar
               times the repeat-last-state error (0.3 on lorenz96, 0.5 on cancer); a cell is *read* for a model when
               it fits on at least `READ_SEEDS` of the seeds. Gradients through a model that does not fit measure the
               fit, not the architecture, and are shown but never compared.
  quality      the cosine of the model's mean policy gradient to the simulator's (1: same direction), per seed; its
               interquartile mean over seeds with a 95 % stratified-bootstrap CI (`outcomes.aggregates`).
  duel         an AWM class against a state-based class (Markov, HWM) in one cell where both are read:
               P(AWM's cosine > the other's) over seeds with its 95 % CI (`outcomes.probability_of_improvement`):
               "AWM better" when the CI lies above 0.5, "AWM worse" when below, else "inconclusive".
  fit confound within each seed, the Spearman ρ between the models' fit ratios and their 1 − cosine (ρ = 1: the
               better a model fits, the closer its gradient's direction, in that seed), its median over seeds per
               cell, and whether the winner of each decisive duel also fits better (lower median fit ratio). When
               both hold, a duel may measure how well each class fits (within the epoch cap), not its gradient.
"""
from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from gradlens import outcomes, plots

from grid_report import ci, md_table

READ_SEEDS = 8  # of 10: a model class must fit on this many seeds for its gradients to be read in a cell
AWMS = ("awm-rnn", "awm-transformer", "awm-ssm")
STATE_BASED = ("markov", "hwm-rnn", "hwm-transformer")
DODGE = 0.04  # sideways offset between models: a fraction of an octave (N) or of the smallest step (σ)
QUESTIONS = {"dimension": ("State dimension", "lorenz96", "N"), "noise": ("Process noise", "cancer", "σ"),
             "physics": ("Rigid-body physics", "Brax", "D")}
STYLE = {"markov": ("#1f77b4", "solid", "circle"), "hwm-rnn": ("#ff7f0e", "dash", "square"),
         "hwm-transformer": ("#d62728", "dot", "diamond"), "awm-rnn": ("#2ca02c", "solid", "triangle-up"),
         "awm-transformer": ("#9467bd", "dash", "star"), "awm-ssm": ("#8c564b", "dashdot", "x")}
KEY = ["question", "setting", "horizon", "method"]


def cells(rows: pd.DataFrame, reps: int) -> pd.DataFrame:
    """One row per (question, setting, horizon, method): n seeds, how many fit, read or not, IQM cosine and IQM
    relative error with 95 % CIs, median fit ratio, fits converged."""
    out = []
    for key, part in rows.groupby(KEY, sort=True):
        part = part.sort_values("seed")
        agg = outcomes.aggregates({"cosine": part["cosine"].to_numpy(float)[:, None],
                                   "rel_error": part["rel_error"].to_numpy(float)[:, None]}, reps=reps)
        iqm = agg[agg["metric"] == "iqm"].set_index("method")
        fitted = int(part["fit_passes"].sum())
        out.append({**dict(zip(KEY, key)), "n": len(part), "fits": fitted,
                    "read": fitted >= min(READ_SEEDS, len(part)),
                    **{f"{q}_{c}": float(iqm.loc[q, c]) for q in ("cosine", "rel_error")
                       for c in ("value", "low", "high")},
                    "fit_ratio": float(part["fit_ratio"].median()),
                    "fit_ratio_linear": float(part["fit_ratio_linear"].median()),
                    "converged": int(part["fit_converged"].sum()),
                    "unpredictable": bool(part["unpredictable"].any())})
    return pd.DataFrame(out)


def duel_outcome(low: float, high: float) -> str:
    """"AWM better", "AWM worse" or "inconclusive" from the 95 % CI of P(AWM > the other) (`outcomes.verdict`)."""
    return dict(zip(outcomes.VERDICTS, ("AWM better", "AWM worse", "inconclusive")))[outcomes.verdict(low, high)]


def duels(rows: pd.DataFrame, table: pd.DataFrame, reps: int) -> pd.DataFrame:
    """Per (question, setting, horizon): every AWM class against every state-based class, both read there:
    P(AWM cosine > other's) with its 95 % CI and the outcome."""
    read = set(map(tuple, table.loc[table["read"], KEY].to_numpy().tolist()))
    found = []
    for (question, setting, horizon), part in rows.groupby(["question", "setting", "horizon"], sort=True):
        scores = {m: g.sort_values("seed")["cosine"].to_numpy(float)[:, None] for m, g in part.groupby("method")
                  if (question, setting, horizon, m) in read}
        pairs = [(a, b) for a in AWMS for b in STATE_BASED if a in scores and b in scores]
        if not pairs:
            continue
        for _, r in outcomes.probability_of_improvement(scores, pairs, reps=reps).iterrows():
            outcome = duel_outcome(r["low"], r["high"])
            found.append({"question": question, "setting": setting, "horizon": horizon, "awm": r["x"],
                          "other": r["y"], "p": r["value"], "low": r["low"], "high": r["high"], "outcome": outcome})
    columns = ["question", "setting", "horizon", "awm", "other", "p", "low", "high", "outcome"]
    fits = table.set_index(KEY)["fit_ratio"]
    frame = pd.DataFrame(found, columns=columns)
    for side, name in (("awm", "awm_fit"), ("other", "other_fit")):
        frame[name] = [float(fits.loc[(r["question"], r["setting"], r["horizon"], r[side])])
                       for _, r in frame.iterrows()]
    return frame


def fit_confound(rows: pd.DataFrame) -> pd.DataFrame:
    """Per (question, setting, horizon): the median over seeds of the within-seed Spearman ρ between the models' fit
    ratios and their 1 − cosine (seeds with fewer than 3 models or tied ranks left out), and the fits stopped by the
    epoch cap (not converged) of all fits."""
    out = []
    for (question, setting, horizon), part in rows.groupby(["question", "setting", "horizon"], sort=True):
        rhos = []
        for _, seed in part.groupby("seed"):
            a, b = seed["fit_ratio"].rank().to_numpy(), (1 - seed["cosine"]).rank().to_numpy()
            if len(seed) >= 3 and a.std() > 0 and b.std() > 0:
                rhos.append(float(np.corrcoef(a, b)[0, 1]))
        out.append({"question": question, "setting": setting, "horizon": horizon,
                    "rho": float(np.median(rhos)) if rhos else float("nan"), "seeds": len(rhos),
                    "capped": int((~part["fit_converged"].astype(bool)).sum()), "fits": len(part)})
    return pd.DataFrame(out, columns=["question", "setting", "horizon", "rho", "seeds", "capped", "fits"])


def _confound_note(question: str, confound: pd.DataFrame, fights: pd.DataFrame) -> str:
    """" Fit quality ...": ρ per cell, the decisive duels whose winner also fits better, the capped fits (or "")."""
    decisive = fights[fights["outcome"] != "inconclusive"]
    measured = confound[(confound["question"] == question) & (confound["seeds"] > 0)]
    if not len(decisive) or not len(measured):
        return ""
    winner_fits_better = int(sum((r["awm_fit"] < r["other_fit"]) == (r["outcome"] == "AWM better")
                                 for _, r in decisive.iterrows()))
    rhos = ", ".join(f"{r['rho']:.2g} at {_fmt_setting(question, r['setting'])}, H = {r['horizon']}"
                     for _, r in measured.iterrows())
    note = (f" Fit quality: within a seed, the models' gradient errors rank like their fit errors (median "
            f"Spearman ρ between fit ratio and 1 − cosine, 1 for the same ranking: {rhos}); the winner of "
            f"{winner_fits_better} of the "
            f"{len(decisive)} decisive duels also fits better; {int(measured['capped'].sum())} of "
            f"{int(measured['fits'].sum())} fits stopped at the epoch cap.")
    if winner_fits_better == len(decisive) and (measured["rho"] > 0).all():
        note += (" So these verdicts may measure how well each class fits within the cap, not its gradient."
                 if measured["capped"].sum() else
                 " Every fit stopped on its validation plateau, so the cap is not the cause; these verdicts "
                 "may still measure how well each class fits at its plateau, not its gradient.")
    return note


def figure(study, table: pd.DataFrame) -> go.Figure:
    """IQM cosine to the simulator [95 % CI] versus the swept setting, one panel per (question, H); hollow markers:
    the model does not fit there. The models' markers are dodged sideways (by DODGE of a tick step) so that equal
    cosines stay visible; every panel shares one cosine range, fitted to the intervals shown (never beyond [-1, 1])."""
    panels = [(q, h) for q in QUESTIONS for h in sorted(table.loc[table["question"] == q, "horizon"].unique())]
    fig = make_subplots(rows=1, cols=max(len(panels), 1), horizontal_spacing=0.08, subplot_titles=[
        f"{QUESTIONS[q][1]}, H = {h}: {QUESTIONS[q][2]} swept" for q, h in panels])
    models = [m for m in study.models if m in set(table["method"])]
    for col, (question, horizon) in enumerate(panels, start=1):
        here = table[(table["question"] == question) & (table["horizon"] == horizon)]
        settings = np.sort(here["setting"].unique())
        log = question in ("dimension", "physics")
        for i, method in enumerate(models):
            part = here[here["method"] == method].sort_values("setting")
            if part.empty:
                continue
            offset = DODGE * (i - (len(models) - 1) / 2)
            step = float(np.diff(settings).min()) if len(settings) > 1 else max(abs(float(settings[0])), 1.0)
            x = part["setting"] * 2 ** offset if log else part["setting"] + offset * step
            colour, dash, symbol = STYLE.get(method, ("#7f7f7f", "solid", "circle"))
            fig.add_trace(go.Scatter(
                x=x, y=part["cosine_value"], name=method, legendgroup=method, showlegend=col == 1,
                customdata=part["setting"], hovertemplate=f"{method}: %{{y:.4f}} at {QUESTIONS[question][2]} = "
                                                          "%{customdata}<extra></extra>",
                mode="lines+markers", line=dict(color=colour, dash=dash, width=2),
                marker=dict(symbol=[symbol if r else f"{symbol}-open" for r in part["read"]], size=9),
                error_y=dict(type="data", symmetric=False, array=part["cosine_high"] - part["cosine_value"],
                             arrayminus=part["cosine_value"] - part["cosine_low"])), row=1, col=col)
        fig.update_xaxes(title_text=QUESTIONS[question][2], type="log" if log else "linear", tickvals=settings,
                         ticktext=[f"{v:g}" for v in settings], row=1, col=col)
    low = float(np.nanmin(table["cosine_low"])) if len(table) else -1.0
    fig.update_yaxes(range=[max(-1.02, low - 0.1 * (1 - low) - 0.005), 1.005])
    fig.update_yaxes(title_text="cosine to the simulator's gradient", row=1, col=1)
    fig.update_layout(title="Policy-gradient direction through each model<br><sup>IQM over seeds with its 95 % CI; "
                            "hollow: the model does not fit on 8 of 10 seeds; markers dodged sideways</sup>",
                      template="plotly_white", width=420 * max(len(panels), 1) + 220, height=480)
    return fig


def _fmt_setting(question: str, setting: float) -> str:
    return {"dimension": f"N = {int(setting)}", "physics": f"D = {int(setting)}"}.get(question, f"σ = {setting:g}")


def _trend(question: str, part: pd.DataFrame) -> str:
    """" IQM cosine from the lowest to the highest setting, per H, for the models read at both: ..." (or "")."""
    out = []
    for horizon, here in part.groupby("horizon", sort=True):
        low, high = here["setting"].min(), here["setting"].max()
        if low == high:
            continue
        ends = here[here["setting"].isin([low, high]) & here["read"]].set_index(["method", "setting"])
        both = [m for m in dict.fromkeys(here["method"]) if (m, low) in ends.index and (m, high) in ends.index]
        if both:
            out.append(f"IQM cosine from {_fmt_setting(question, low)} to {_fmt_setting(question, high)} at "
                       f"H = {horizon}: " + ", ".join(f"{m} {ends.loc[(m, low), 'cosine_value']:.3g} → "
                                                      f"{ends.loc[(m, high), 'cosine_value']:.3g}" for m in both))
    return "".join(f" {t}." for t in out)


def answers(table: pd.DataFrame, fights: pd.DataFrame, questions, confound: pd.DataFrame | None = None) -> list[str]:
    """Per question of `questions`, the counts the verdict rests on and, with `confound` (`fit_confound`), how far
    the fits explain them (sentences written from the tables)."""
    lines = ["## Answers so far", ""]
    for question in questions:
        title, system, knob = QUESTIONS[question]
        part = table[table["question"] == question]
        if not len(part):
            lines += [f"**{title}** ({system}): no stage exported yet.", ""]
            continue
        unread = part[~part["read"]]
        fit_note = (f"{len(unread)} of {len(part)} (model, {knob}, H) cells are not read because the model fits on "
                    f"fewer than {READ_SEEDS} seeds: " + ", ".join(
                        f"{r['method']} at {_fmt_setting(question, r['setting'])}, H = {r['horizon']} "
                        f"({r['fits']}/{r['n']})" for _, r in unread.iterrows()) + ".") if len(unread) else \
            f"every model fits on at least {READ_SEEDS} seeds in every cell."
        here = fights[fights["question"] == question]
        counts = here["outcome"].value_counts()
        tally = (", ".join(f"{int(counts.get(o, 0))} {o}" for o in ("AWM better", "inconclusive", "AWM worse"))
                 + f" (of {len(here)} duels)") if len(here) else "no duel between read models"
        lines += [f"**{title}** ({system}): {fit_note} AWM against Markov/HWM on the gradient's direction: {tally}."
                  + _trend(question, part)
                  + ("" if confound is None else _confound_note(question, confound, here)), ""]
    ssm = fights[fights["awm"] == "awm-ssm"]
    if len(ssm):
        counts = ssm["outcome"].value_counts()
        lines += ["**SSM AWMs**, over every cell: " + ", ".join(
            f"{int(counts.get(o, 0))} {o}" for o in ("AWM better", "inconclusive", "AWM worse"))
            + f" (of {len(ssm)} duels against Markov/HWM).", ""]
    return lines


def write_report(study, out: Path, rows: pd.DataFrame, log=print, status: str | None = None) -> Path:
    """Write `<out>/<study.name>.md` and its figure from the exported rows; returns the report's path. `status`
    replaces the line naming the stages exported (for rows that are not a whole exported stage)."""
    path = out / f"{study.name}.md"
    done = [c.stage for c in study.cells if len(rows) and
            ((rows["question"] == c.question) & (rows["setting"] == float(c.setting))).any()]
    remaining = [c.stage for c in study.cells if c.stage not in done]
    systems = [f"{_fmt_setting(c.question, c.setting)}: {c.system}" for c in study.cells if c.knob is None]
    lines = [f"# {study.title}", "",
             f"Written by `python {study.script}{' --quick' if study.name.endswith('quick') else ''}` "
             f"on {datetime.date.today()} from the exported stages in `{study.name}/` (design and definitions: the "
             f"docstrings of `{study.script}` and `benchmarks/open_questions_report.py`). "
             f"{study.seeds} seeds per cell; models: {', '.join(study.models)}"
             + (f"; systems by state dimension D: {', '.join(systems)}" if systems else "") + ".", "",
             status or f"Stages exported: {', '.join(done) or 'none'}. Remaining: {', '.join(remaining) or 'none'}.",
             ""]
    if not len(rows):
        path.write_text("\n".join(lines))
        return path
    table = cells(rows, study.reps)
    fights = duels(rows, table, study.reps)
    lines += answers(table, fights, list(dict.fromkeys(c.question for c in study.cells)), fit_confound(rows))
    if study.see_also:
        lines += [study.see_also, ""]
    page = out / "figures" / f"{study.name}_cosine.html"
    if study.png:
        written = [p for p in plots.write_figures({page: figure(study, table)}, plotlyjs="directory")
                   if p.endswith(".png")] or [page]
    else:
        page.parent.mkdir(parents=True, exist_ok=True)
        figure(study, table).write_html(page, include_plotlyjs="directory")
        written = [page]
    lines += ["## Figure", ""] + [f"![cosine]({Path(p).relative_to(out).as_posix()})" for p in written] + [""]
    for question, (title, system, knob) in QUESTIONS.items():
        part = table[table["question"] == question]
        if not len(part):
            continue
        columns = sorted(set(zip(part["setting"], part["horizon"])), key=lambda sh: (sh[1], sh[0]))
        head = [f"{_fmt_setting(question, s)}, H = {h}" for s, h in columns]
        by = part.set_index(["setting", "horizon", "method"])

        def grid(fmt):
            return [[m] + [fmt(by.loc[(s, h, m)]) if (s, h, m) in by.index else "–" for s, h in columns]
                    for m in study.models if m in set(part["method"])]

        lines += [f"## {title}: {system}", "",
                  "Cosine of the model's mean policy gradient to the simulator's: IQM over seeds [95 % CI]; "
                  "(k/n): seeds on which the model fits; ✗: not read (fits on fewer than "
                  f"{READ_SEEDS}).", "",
                  md_table(["model", *head], grid(lambda r: f"{ci(r['cosine_value'], r['cosine_low'], r['cosine_high'])}"
                                                            f" ({r['fits']}/{r['n']}){'' if r['read'] else ' ✗'}")),
                  "", "Relative error ‖ĝ − g‖ / ‖g‖ to the simulator's mean gradient: IQM [95 % CI].", "",
                  md_table(["model", *head], grid(lambda r: ci(r["rel_error_value"], r["rel_error_low"],
                                                               r["rel_error_high"]))),
                  "", "Fit: median open-loop error over the horizon relative to repeating the last state (bar: "
                  f"{study.fit_bars[question]}) / relative to a least-squares linear model; fits stopped by the "
                  "validation plateau (of n).", "",
                  md_table(["model", *head], grid(lambda r: f"{r['fit_ratio']:.3g} / {r['fit_ratio_linear']:.3g} "
                                                            f"({r['converged']}/{r['n']})")), ""]
        chaotic = part.loc[part["unpredictable"], ["setting", "horizon"]].drop_duplicates()
        if len(chaotic):
            lines += ["Unpredictable for any model (the simulator's own divergence from starts 1e-6 apart exceeds "
                      "half the repeat baseline's error): " + ", ".join(
                          f"{_fmt_setting(question, s)}, H = {h}" for s, h in chaotic.to_numpy()), ""]
    if len(fights):
        lines += ["## AWMs against Markov and HWM models", "",
                  "P(AWM's cosine > the other's) over seeds [95 % CI], in cells where both fit; fit: the two "
                  "models' median fit ratios (lower fits better).", "",
                  md_table(["question", "setting", "H", "AWM", "against", "P(AWM > it)", "outcome", "fit (AWM / it)"],
                           [[r["question"], _fmt_setting(r["question"], r["setting"]), r["horizon"], r["awm"],
                             r["other"], ci(r["p"], r["low"], r["high"]), r["outcome"],
                             f"{r['awm_fit']:.3g} / {r['other_fit']:.3g}"]
                            for _, r in fights.iterrows()]), ""]
    path.write_text("\n".join(lines))
    log(f"report: {path}")
    return path
