"""Fit or gradient? The open-questions study's lorenz96 duels refitted five times longer (issue 22, item 5).

At N = 8, H = 10 (`open_questions.py`, stage dimension-8) the Markov model's policy gradient is closer in direction to
the simulator's than every AWM's (P(AWM's cosine > Markov's) = 0.05-0.07), but it also fits 3-5x better, and every fit
stopped at the 300-epoch cap while still improving. This study audits the same cell and the same 10 seeds with the
same sizes, models and keys (so the same data, initialisations, policy and gradient samples, and the same first 300
epochs of each fit) with a cap of 1500 epochs: each fit runs to its validation plateau (no 1 % improvement in 100
epochs) or five times longer. Seed by seed, the two audits then differ only in how long the models were fitted.

    python benchmarks/fit_confound.py [--out benchmarks/results]   # resumable: each seed kept as it finishes
    python benchmarks/fit_confound.py --report                     # rebuild <out>/fit_confound.md

If the AWMs' fits and cosines close on the Markov model's, the first verdicts measured the cap; if their cosines stay
below while their fits catch up, they measured the gradient. The report (`<out>/fit_confound.md`) is the
open-questions report of the refitted cell, then both caps side by side on the seeds audited so far.

At its plateau the Markov model still fits 4-7x better than every AWM, so a second part matches fits: the Markov model
alone is audited again on the same seeds with caps of 20, 40, 80 and 160 epochs (`MATCHED`; the same key, so each is
the first epochs of the same fit: a ladder of ever better fits of one model). Per seed and AWM, its matched Markov
model is the best-fitting rung of the ladder (with the 300- and 1500-epoch fits) that fits no better than the AWM.
If the AWM's gradient is still further from the simulator's than that handicapped Markov model's, fit does not
explain the gap; if the duel turns inconclusive, fit does. The same ladder is built on the open-questions cells of
cancer without process noise (σ = 0, H = 100) and lorenz96 at N = 16 and 32, against the AWMs of those cells' audits
(300-epoch cap).
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from gradlens import compilation_cache, outcomes

import open_questions
from open_questions import DIMENSION, ROW_COLUMNS, Cell, Study, run_stage

CAP = 1500
CELL = DIMENSION[8]
STUDY = Study("fit_confound", (CELL,), open_questions.MODELS, seeds=10,
              config=dataclasses.replace(open_questions.CONFIG, fit_epochs=CAP), fit_bars=open_questions.FULL.fit_bars,
              title=f"Fit or gradient? lorenz96 at N = 8, H = 10, refitted with a {CAP}-epoch cap",
              script="benchmarks/fit_confound.py")
# the Markov model's ladder, on this cell and on the open-questions cells where AWMs are "worse" than it too: on
# lorenz96 its validation loss at epochs 20, 40, 80 and 160 is about 30, 15, 7 and 3.6x its plateau's (seeds 0-2), and
# the AWMs' plateaus are 4-7x its plateau, so the rungs bracket them. Markov is first in MODELS, so it gets the same fit
# key as in the six-model audits
MATCHED_CELLS = (CELL, open_questions.NOISE[0], DIMENSION[16], DIMENSION[32])
MATCHED = tuple(dataclasses.replace(STUDY, name=f"fit_confound/markov-{cap}", cells=MATCHED_CELLS, models=("markov",),
                                    config=dataclasses.replace(open_questions.CONFIG, fit_epochs=cap))
                for cap in (20, 40, 80, 160))


def audited(study: Study, out: Path, cell: Cell = CELL) -> pd.DataFrame:
    """`cell`'s rows: the exported stage, else the seeds kept so far (`fit_passes` against the study's bar)."""
    export = study.folders(out)[1]
    target = export / f"{cell.stage}.parquet"
    files = [target] if target.exists() else sorted((export / cell.stage).glob("seed*.parquet"))
    if not files:
        return pd.DataFrame(columns=list(ROW_COLUMNS))
    rows = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    rows["fit_passes"] = rows["fit_ratio"] <= study.fit_bars[cell.question]
    return rows


def side_by_side(capped: pd.DataFrame, longer: pd.DataFrame, reps: int) -> list[str]:
    """Markdown lines: on the seeds both audits have, per model the median fit ratio, fits converged, median epochs
    and IQM cosine [95 % CI] under each cap; then every AWM duel under each cap."""
    import open_questions_report as report

    from grid_report import ci, md_table

    seeds = sorted(set(longer["seed"]) & set(capped["seed"]))
    capped, longer = (f[f["seed"].isin(seeds)] for f in (capped, longer))
    before, after = (report.cells(f, reps).set_index("method") for f in (capped, longer))
    epochs = longer.groupby("method")["fit_epochs"].median()
    rows = [[m, f"{before.loc[m, 'fit_ratio']:.3g} → {after.loc[m, 'fit_ratio']:.3g}",
             f"{after.loc[m, 'converged']}/{after.loc[m, 'n']}", f"{epochs[m]:.0f}",
             ci(before.loc[m, "cosine_value"], before.loc[m, "cosine_low"], before.loc[m, "cosine_high"]),
             ci(after.loc[m, "cosine_value"], after.loc[m, "cosine_low"], after.loc[m, "cosine_high"])]
            for m in STUDY.models if m in after.index]
    fights = [report.duels(f, report.cells(f, reps), reps).set_index(["awm", "other"]) for f in (capped, longer)]
    duels = [[awm, other, ci(b["p"], b["low"], b["high"]), b["outcome"], ci(a["p"], a["low"], a["high"]),
              a["outcome"], f"{a['awm_fit']:.3g} / {a['other_fit']:.3g}"]
             for (awm, other), a in fights[1].iterrows() if (awm, other) in fights[0].index
             for b in [fights[0].loc[(awm, other)]]]
    return [f"## The two caps side by side ({len(seeds)} seeds)", "",
            f"The same seeds audited with the open-questions study's 300-epoch cap (`open_questions/"
            f"{CELL.stage}.parquet`) and with {CAP}. Fit: median open-loop error over the horizon relative to "
            "repeating the last state; converged: fits stopped by the validation plateau before the cap.", "",
            md_table(["model", f"fit ratio, 300 → {CAP}", f"converged ({CAP})", f"median epochs ({CAP})",
                      "IQM cosine (300)", f"IQM cosine ({CAP})"], rows), "",
            "P(AWM's cosine > the other's) over the seeds [95 % CI] under each cap; fit: the two models' median fit "
            f"ratios with the {CAP}-epoch cap.", "",
            md_table(["AWM", "against", "P (300)", "outcome (300)", f"P ({CAP})", f"outcome ({CAP})",
                      f"fit (AWM / it, {CAP})"], duels), ""]


def ladder(parts: dict[int, pd.DataFrame], seeds) -> pd.DataFrame:
    """The Markov model's rows of every cap (`parts`: cap -> audit rows), one column `cap` more, on `seeds`."""
    frame = pd.concat([f[f["method"] == "markov"].assign(cap=cap) for cap, f in sorted(parts.items()) if len(f)],
                      ignore_index=True)
    return frame[frame["seed"].isin(set(seeds))]


def iqm_ci(values: np.ndarray, reps: int) -> str:
    """'IQM [low, high]' of [seeds, 1] values (95 % stratified-bootstrap CI)."""
    from grid_report import ci

    row = outcomes.aggregates({"x": values}, reps=reps).set_index("metric").loc["iqm"]
    return ci(row["value"], row["low"], row["high"])


def matched(awms: pd.DataFrame, markov: pd.DataFrame, reps: int) -> tuple[list[list], pd.DataFrame]:
    """Per AWM of `awms`: on each seed, the rung of the Markov ladder (`markov`, from `ladder`) with the lowest fit
    ratio not below the AWM's (seeds where every rung fits better are left out). Returns the table rows [AWM, seeds,
    AWM's median fit ratio, the matched Markov's, caps used, IQM cosine of each, P(AWM's cosine > the matched
    Markov's) [95 % CI], outcome] and the matched pairs (awm, seed, cap, both cosines)."""
    import open_questions_report as report

    from grid_report import ci

    pairs = []
    for (awm, seed), row in awms[awms["method"].isin(report.AWMS)].groupby(["method", "seed"]):
        rungs = markov[(markov["seed"] == seed) & (markov["fit_ratio"] >= row["fit_ratio"].iloc[0])]
        if len(rungs):
            rung = rungs.loc[rungs["fit_ratio"].idxmin()]
            pairs.append({"awm": awm, "seed": seed, "cap": int(rung["cap"]), "awm_fit": row["fit_ratio"].iloc[0],
                          "markov_fit": rung["fit_ratio"], "awm_cosine": row["cosine"].iloc[0],
                          "markov_cosine": rung["cosine"]})
    pairs = pd.DataFrame(pairs, columns=["awm", "seed", "cap", "awm_fit", "markov_fit", "awm_cosine", "markov_cosine"])
    rows = []
    for awm, part in pairs.groupby("awm", sort=False):
        scores = {awm: part["awm_cosine"].to_numpy(float)[:, None],
                  "markov": part["markov_cosine"].to_numpy(float)[:, None]}
        p = outcomes.probability_of_improvement(scores, [(awm, "markov")], reps=reps).iloc[0]
        caps = part["cap"].value_counts().sort_index()
        rows.append([awm, len(part), f"{part['awm_fit'].median():.3g}", f"{part['markov_fit'].median():.3g}",
                     ", ".join(f"{c} ×{k}" for c, k in caps.items()), *map(iqm_ci, scores.values(), [reps] * 2),
                     ci(p["value"], p["low"], p["high"]), report.duel_outcome(p["low"], p["high"])])
    return rows, pairs


def matched_section(where: str, awms: pd.DataFrame, parts: dict[int, pd.DataFrame], reps: int, fits: str) -> list[str]:
    """Markdown lines for one cell (`where`): the Markov ladder of `parts` (cap -> audit rows; per cap: seeds, median
    fit ratio, IQM cosine) and the fit-matched duels of the AWMs of `awms`, whose fits `fits` describes."""
    from grid_report import md_table

    markov = ladder(parts, awms["seed"])
    steps = [[cap, part["seed"].nunique(), f"{part['fit_ratio'].median():.3g}",
              iqm_ci(part.sort_values("seed")["cosine"].to_numpy(float)[:, None], reps)]
             for cap, part in markov.groupby("cap")]
    rows, _ = matched(awms, markov, reps)
    worse = sum(r[-1] == "AWM worse" for r in rows)
    verdict = (f"{worse} of the {len(rows)} AWMs {'stays' if worse == 1 else 'stay'} \"AWM worse\" against a Markov "
               "model that fits no better: there the gap is not fit alone." if worse else
               f"none of the {len(rows)} AWMs stays \"AWM worse\" (outcomes below): fit explains the gap, and any "
               "difference due to the architecture is below what these seeds resolve.")
    return [f"## Fits matched on {where}: the AWMs against a Markov model that fits no better", "",
            f"With fits matched, {verdict}", "",
            "The Markov model audited again on the same seeds with shorter caps: each rung is the first epochs of the "
            f"same fit (same key). {fits}", "",
            md_table(["Markov cap (epochs)", "seeds", "median fit ratio", "IQM cosine [95 % CI]"], steps), "",
            "Per seed, each AWM against the best-fitting Markov rung that fits no better than it (seeds where every "
            "rung fits better are left out); P(AWM's cosine > the matched Markov's) [95 % CI].", "",
            md_table(["AWM", "seeds", "AWM fit ratio", "matched Markov fit ratio", "caps used (× seeds)",
                      "AWM IQM cosine", "matched Markov IQM cosine", "P(AWM > Markov)", "outcome"], rows), ""]


def write_report(out: Path, log=print) -> Path:
    """The open-questions report of the refitted cell (the seeds audited so far), both caps side by side, then the
    fit-matched duels of every cell of MATCHED_CELLS whose ladder and AWM audits exist."""
    import open_questions_report

    longer = audited(STUDY, out)
    seeds = f"{longer['seed'].nunique()} of {STUDY.seeds}"
    partial = not (STUDY.folders(out)[1] / f"{CELL.stage}.parquet").exists()  # the seeds kept so far
    path = open_questions_report.write_report(
        STUDY, out, longer, log=lambda _: None,
        status=f"Seeds audited so far: {seeds}; every table is over them (the stage is exported when all are)."
        if partial else None)
    first = open_questions.exported(open_questions.FULL, out)
    in_cell = lambda cell: first[(first["question"] == cell.question) & (first["setting"] == float(cell.setting))]
    capped = in_cell(CELL)
    lines = [f"Seeds audited with the {CAP}-epoch cap: {seeds}.", ""]
    if len(longer) and len(capped):
        lines += side_by_side(capped, longer, STUDY.reps)
    for cell in MATCHED_CELLS:  # the refitted cell's AWMs at their plateau, the others' from the open-questions audits
        rungs = {m.config.fit_epochs: audited(m, out, cell) for m in MATCHED}
        if cell == CELL:
            awms, parts = longer, {300: capped, CAP: longer}
            fits = f"The AWMs' fits: at their plateau (cap {CAP}); cap {CAP}: the Markov model's plateau."
        else:
            awms, parts = in_cell(cell), {300: in_cell(cell)}
            fits = "The AWMs' fits: the open-questions audit's, with its 300-epoch cap."
        if len(awms) and any(len(f) for f in rungs.values()):
            where = (f"{cell.system} ({open_questions_report._fmt_setting(cell.question, cell.setting)}, "
                     f"H = {cell.horizons[-1]})")
            lines += matched_section(where, awms, {**rungs, **parts}, STUDY.reps, fits)
    path.write_text(path.read_text() + "\n" + "\n".join(lines) + "\n")
    log(f"report: {path}")
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--report", action="store_true", help="only rebuild the report from the seeds kept")
    args = parser.parse_args(argv)
    out = Path(args.out)
    log = lambda line: print(line, flush=True)
    compilation_cache.enable()
    if not args.report:
        run_stage(STUDY, CELL.stage, out, log)
        for cell in MATCHED_CELLS:
            for study in MATCHED:
                run_stage(study, cell.stage, out, log)
    write_report(out, log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
