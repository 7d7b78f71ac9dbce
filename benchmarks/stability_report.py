"""The stability study's report (`stability.py`), computed from the exported per-seed metrics only.

Per run configuration (system, method, stabiliser, H) and seed: the initial return (the first evaluation: BPO does
not update the policy during warm-up), the final return (the last evaluation), the gain (final - initial), and the
gradient norm at the start of policy learning (the first logged finite `policy_grad_norm`, before any clipping).

- Failure: a configuration fails at H when the stratified-bootstrap 95 % CI of its IQM gain over the seeds does not
  lie above 0 (the return is no better than the initial policy's). Its failure horizon is the smallest H that fails.
- Growth law: `gradlens.analysis.growth.fit_growth` of the median initial gradient norm over the seeds versus H (at
  least 3 horizons), polynomial or exponential by AIC. On the Myriad tasks a larger H is a finer time grid over the
  same duration (the task's `duration` is fixed); on the double pendulum and one-bounce a longer episode (fixed dt).
- AWM against stabilisers: P(AWM-RNN's final return > the other's) with its 95 % CI (rliable), per (system, H):
  "AWM wins" if the CI lies above 0.5, "AWM loses" if below, "tie (inconclusive)" if it contains 0.5.
"""
from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from gradlens import outcomes, plots
from gradlens.analysis.growth import MIN_POINTS, fit_growth

from grid_report import ci, md_table

AWM = "awm-rnn"
KEY = ["system", "method", "stabiliser", "horizon"]
COLOURS = {"none": "#1f77b4", "clip": "#ff7f0e", "tbptt": "#2ca02c", "discount": "#d62728", "natural": "#9467bd"}
SYMBOLS = {"none": "circle", "clip": "x", "tbptt": "triangle-up", "discount": "diamond", "natural": "star"}
DASHES = {"simulator": "solid", "markov": "dash", AWM: "dot"}  # method: dash; stabiliser: colour and marker


def label(method: str, stabiliser: str) -> str:
    return method if stabiliser == "none" else f"{method} + {stabiliser}"


# ---------------------------------------------------------------------------------------------------- numbers
def seed_rows(metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per (configuration, seed): initial, final, gain, grad0 (NaN when no finite norm was logged),
    zeroed (non-finite policy gradients zeroed over the run)."""
    rows = []
    for key, curve in metrics.sort_values("env_steps").groupby([*KEY, "seed"], sort=True):
        ret = curve["return"].to_numpy(float)
        norms = curve["policy_grad_norm"].to_numpy(float)
        finite = norms[np.isfinite(norms)]
        rows.append({**dict(zip([*KEY, "seed"], key)), "initial": ret[0], "final": ret[-1], "gain": ret[-1] - ret[0],
                     "grad0": finite[0] if finite.size else np.nan,
                     "zeroed": int(curve["zeroed_policy_grads"].max())})
    return pd.DataFrame(rows)


def cells(seeds: pd.DataFrame, reps: int) -> pd.DataFrame:
    """One row per configuration: IQM final and IQM gain with 95 % CIs, fails, median grad0, zeroed gradients."""
    rows = []
    for key, part in seeds.groupby(KEY, sort=True):
        part = part.sort_values("seed")
        agg = outcomes.aggregates({"final": part["final"].to_numpy(float)[:, None],
                                   "gain": part["gain"].to_numpy(float)[:, None]}, reps=reps)
        iqm = agg[agg["metric"] == "iqm"].set_index("method")
        rows.append({**dict(zip(KEY, key)), "n": len(part),
                     **{f"{q}_{c}": float(iqm.loc[q, c]) for q in ("final", "gain") for c in ("value", "low", "high")},
                     "initial": float(part["initial"].median()), "fails": not iqm.loc["gain", "low"] > 0,
                     "grad0": float(np.nanmedian(part["grad0"])) if part["grad0"].notna().any() else np.nan,
                     "zeroed": int(part["zeroed"].sum())})
    return pd.DataFrame(rows)


GROWTH = ("exponential growth", "power-law growth", "growth, law undecided", "no clear trend", "decrease")


def growth_class(fit) -> str:
    """One of GROWTH: the law AIC prefers when its rate's CI lies above 0; growth (both rates' CIs above 0) or
    decrease (both below) when AIC cannot choose or the preferred rate is not above 0; else no clear trend."""
    if fit.verdict == "exponential" and fit.exponential.interval[0] > 0:
        return GROWTH[0]
    if fit.verdict == "polynomial" and fit.power.interval[0] > 0:
        return GROWTH[1]
    lows, highs = zip(fit.power.interval, fit.exponential.interval)
    return GROWTH[2] if min(lows) > 0 else GROWTH[4] if max(highs) < 0 else GROWTH[3]


def laws(table: pd.DataFrame) -> pd.DataFrame:
    """Per (system, method, stabiliser): the growth law of grad0 versus H (verdict, `growth_class`, description, the
    chosen law's rate and its CI), the failure horizon (None: never in the range run), the horizons run."""
    rows = []
    for (system, method, stabiliser), part in table.groupby(["system", "method", "stabiliser"], sort=True):
        part = part.sort_values("horizon")
        usable = part[np.isfinite(part["grad0"]) & (part["grad0"] > 0)]
        fit = fit_growth(usable["horizon"], usable["grad0"]) if len(usable) >= MIN_POINTS else None
        failing = part.loc[part["fails"], "horizon"]
        chosen = (fit.power if fit.verdict == "polynomial" else fit.exponential) if fit else None
        rows.append({"system": system, "method": method, "stabiliser": stabiliser,
                     "horizons": ", ".join(str(h) for h in part["horizon"]),
                     "verdict": fit.verdict if fit else "too few horizons",
                     "growth": growth_class(fit) if fit else "too few horizons",
                     "law": fit.describe() if fit else "–",
                     "rate": chosen.rate if chosen else np.nan,  # p, or λ per step ("indistinguishable": λ)
                     "rate_interval": chosen.interval if chosen else (np.nan, np.nan),
                     "fails_from": int(failing.min()) if len(failing) else None})
    return pd.DataFrame(rows)


def awm_duels(seeds: pd.DataFrame, reps: int) -> pd.DataFrame:
    """Per (system, H) and every other configuration there: P(AWM-RNN > it) with its 95 % CI and the outcome."""
    rows = []
    for (system, horizon), part in seeds.groupby(["system", "horizon"], sort=True):
        scores = {label(m, s): g.sort_values("seed")["final"].to_numpy(float)[:, None]
                  for (m, s), g in part.groupby(["method", "stabiliser"])}
        if AWM not in scores or len(scores) < 2:
            continue
        n = {k: v.shape[0] for k, v in scores.items()}
        others = [k for k in scores if k != AWM and n[k] == n[AWM]]
        if not others:
            continue
        found = outcomes.probability_of_improvement(scores, [(AWM, k) for k in others], reps=reps)
        for _, r in found.iterrows():
            outcome = "AWM wins" if r["low"] > 0.5 else "AWM loses" if r["high"] < 0.5 else "tie (inconclusive)"
            rows.append({"system": system, "horizon": int(horizon), "other": r["y"], "p": r["value"],
                         "low": r["low"], "high": r["high"], "outcome": outcome})
    return pd.DataFrame(rows, columns=["system", "horizon", "other", "p", "low", "high", "outcome"])


# ---------------------------------------------------------------------------------------------------- figures
def _panels(study, table: pd.DataFrame, y: str, title: str, ytitle: str, log_y: bool, band=None) -> go.Figure:
    systems = [s for s in study.systems if s in set(table["system"])]
    fig = make_subplots(rows=1, cols=max(len(systems), 1), subplot_titles=systems, horizontal_spacing=0.06)
    for col, system in enumerate(systems, start=1):
        here = table[table["system"] == system]
        for method, stabiliser in [ms for ms in study.stages if ms in set(zip(here["method"], here["stabiliser"]))]:
            part = here[(here["method"] == method) & (here["stabiliser"] == stabiliser)].sort_values("horizon")
            error = None
            if band:
                low, high = part[f"{band}_low"], part[f"{band}_high"]
                error = dict(type="data", symmetric=False, array=high - part[y], arrayminus=part[y] - low)
            plain = stabiliser == "none"  # drawn first and wider: a stabiliser's line on top of it stays visible
            fig.add_trace(go.Scatter(
                x=part["horizon"], y=part[y], error_y=error, name=label(method, stabiliser),
                legendgroup=label(method, stabiliser), showlegend=col == 1, mode="lines+markers",
                line=dict(color=COLOURS[stabiliser], dash=DASHES[method], width=4 if plain else 2),
                marker=dict(symbol=SYMBOLS[stabiliser], size=11 if plain else 8)), row=1, col=col)
        if band:  # the untrained policy's return: a run at or below it has failed
            start = here.groupby("horizon")["initial"].median()
            fig.add_trace(go.Scatter(x=start.index, y=start.values, name="initial policy", legendgroup="initial",
                                     showlegend=col == 1, mode="lines", line=dict(color="#7f7f7f", dash="dot")),
                          row=1, col=col)
        fig.update_xaxes(type="log", title_text="H", tickvals=study.systems[system], row=1, col=col)
        fig.update_yaxes(type="log" if log_y else "linear", row=1, col=col)
    fig.update_yaxes(title_text=ytitle, row=1, col=1)
    fig.update_layout(title=title, template="plotly_white", width=330 * max(len(systems), 1) + 200, height=430)
    return fig


def figures(study, table: pd.DataFrame) -> dict[str, go.Figure]:
    return {
        "returns": _panels(study, table, "final_value", "Final return (IQM over seeds, 95 % CI) versus H",
                                     "final return", False, band="final"),
        "gradients": _panels(study, table[table["grad0"] > 0], "grad0",
                                       "Policy-gradient norm at the start of policy learning (median over seeds)",
                                       "‖∇θ J‖", True)}


# ---------------------------------------------------------------------------------------------------- report
def _answers(law_table: pd.DataFrame, duels: pd.DataFrame) -> list[str]:
    """The two questions, answered from what has run (sentences with their counts)."""
    lines = ["## Answers so far", ""]
    if len(law_table):
        parts = []
        for growth in GROWTH:
            group = law_table[law_table["growth"] == growth]
            if len(group):
                parts.append(f"{growth}: {group['fails_from'].notna().sum()} of {len(group)} fail")
        lines.append("**(a) Does the growth law predict failure?** Configurations (one system, method and stabiliser "
                     "over its horizons) by how their gradient norm changes with H, and how many of them fail at "
                     f"some horizon: {'; '.join(parts)}.")
    lines.append("")
    if len(duels):
        counts = duels.groupby("other")["outcome"].value_counts().unstack(fill_value=0)
        summary = "; ".join(f"against {other}: " + ", ".join(f"{int(counts.loc[other].get(o, 0))} {o}" for o in
                                                             ("AWM wins", "tie (inconclusive)", "AWM loses"))
                            for other in counts.index)
        lines.append(f"**(b) AWM-RNN against the stabilisers**, over the (system, H) cells run so far: {summary}.")
    else:
        lines.append("**(b) AWM-RNN against the stabilisers:** not yet answerable: the AWM-RNN stage has not run.")
    return lines + [""]


def write_report(study, out: Path, metrics: pd.DataFrame, log=print) -> Path:
    """Write `<out>/<study.name>.md` and its figures from the exported metrics; returns the report's path."""
    path = out / f"{study.name}.md"
    done = sorted(set(zip(metrics["method"], metrics["stabiliser"]))) if len(metrics) else []
    remaining = [f"{m}-{s}" for m, s in study.stages if (m, s) not in done]
    lines = ["# Gradient stability study", "",
             f"Written by `python benchmarks/stability.py{' --quick' if study.name.endswith('quick') else ''}` on "
             f"{datetime.date.today()} from the exported stages in `{study.name}/` (design and definitions: the "
             "docstrings of `benchmarks/stability.py` and `benchmarks/stability_report.py`, stabilisers: "
             "`docs/stability.md`).", "",
             f"Stages exported: {', '.join(f'{m}-{s}' for m, s in study.stages if (m, s) in done) or 'none'}. "
             f"Remaining: {', '.join(remaining) or 'none'}.", ""]
    if not len(metrics):
        path.write_text("\n".join(lines))
        return path
    seeds = seed_rows(metrics)
    table = cells(seeds, study.reps)
    order = {ms: i for i, ms in enumerate(study.stages)}
    law_table = laws(table)
    law_table = law_table.iloc[sorted(range(len(law_table)), key=lambda i: (
        list(study.systems).index(law_table["system"].iloc[i]),
        order[(law_table["method"].iloc[i], law_table["stabiliser"].iloc[i])]))]
    duels = awm_duels(seeds, study.reps)
    lines += _answers(law_table, duels)
    pages = {out / "figures" / f"{study.name}_{name}.html": fig for name, fig in figures(study, table).items()}
    if study.png:  # the pages and a PNG beside each
        written = [p for p in plots.write_figures(pages, plotlyjs="directory") if p.endswith(".png")] or list(pages)
    else:
        for page, fig in pages.items():
            page.parent.mkdir(parents=True, exist_ok=True)
            fig.write_html(page, include_plotlyjs="directory")
        written = list(pages)
    shown = [Path(p).relative_to(out).as_posix() for p in written]
    lines += ["## Figures", ""] + [f"![{Path(p).stem}]({p})" for p in shown] + [""]
    lines += ["## Final return and failure", "",
              "IQM of the final return over the seeds [95 % CI]; ✗: fails at this H (the IQM gain's CI does not lie "
              "above 0); above each table, the initial policy's median return.", ""]
    for system in [s for s in study.systems if s in set(table["system"])]:
        part = table[table["system"] == system]
        horizons = sorted(part["horizon"].unique())
        initial = part.groupby("horizon")["initial"].median()
        lines += [f"### {system}", "",
                  "initial policy: " + ", ".join(f"H = {h}: {initial[h]:.4g}" for h in horizons), ""]
        rows = []
        for method, stabiliser in [ms for ms in study.stages if ms in set(zip(part["method"], part["stabiliser"]))]:
            g = part[(part["method"] == method) & (part["stabiliser"] == stabiliser)].set_index("horizon")
            rows.append([label(method, stabiliser)] + [
                (ci(g.loc[h, "final_value"], g.loc[h, "final_low"], g.loc[h, "final_high"])
                 + (" ✗" if g.loc[h, "fails"] else "") + (f" ({g.loc[h, 'zeroed']} NaN grads zeroed)"
                                                          if g.loc[h, "zeroed"] else "")) if h in g.index else "–"
                for h in horizons])
        lines += [md_table(["method", *[f"H = {h}" for h in horizons]], rows), ""]
    lines += ["## Growth laws and failure horizons", "",
              "Growth of the median initial gradient norm versus H (`fit_growth`, AIC; rate with 95 % CI) and the "
              "smallest H that fails.", "",
              md_table(["system", "method", "horizons", "‖∇θ J‖ in H", "fitted laws", "fails from H"],
                       [[r["system"], label(r["method"], r["stabiliser"]), r["horizons"], r["growth"], r["law"],
                         r["fails_from"] if r["fails_from"] is not None and r["fails_from"] == r["fails_from"]
                         else "never (in this range)"] for _, r in law_table.iterrows()]), ""]
    if len(duels):
        lines += ["## AWM-RNN against each configuration", "",
                  "P(AWM-RNN's final return > the other's) [95 % CI], per system and H.", "",
                  md_table(["system", "H", "against", "P(AWM > it)", "outcome"],
                           [[r["system"], r["horizon"], r["other"], ci(r["p"], r["low"], r["high"]), r["outcome"]]
                            for _, r in duels.iterrows()]), ""]
    path.write_text("\n".join(lines))
    log(f"report: {path}")
    return path
