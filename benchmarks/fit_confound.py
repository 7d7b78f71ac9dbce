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
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import pandas as pd

from gradlens import compilation_cache

import open_questions
from open_questions import DIMENSION, ROW_COLUMNS, Study, run_stage

CAP = 1500
CELL = DIMENSION[8]
STUDY = Study("fit_confound", (CELL,), open_questions.MODELS, seeds=10,
              config=dataclasses.replace(open_questions.CONFIG, fit_epochs=CAP), fit_bars=open_questions.FULL.fit_bars,
              title=f"Fit or gradient? lorenz96 at N = 8, H = 10, refitted with a {CAP}-epoch cap",
              script="benchmarks/fit_confound.py")


def audited(study: Study, out: Path) -> pd.DataFrame:
    """The cell's rows: the exported stage, else the seeds kept so far (`fit_passes` against the study's bar)."""
    export = study.folders(out)[1]
    target = export / f"{CELL.stage}.parquet"
    files = [target] if target.exists() else sorted((export / CELL.stage).glob("seed*.parquet"))
    if not files:
        return pd.DataFrame(columns=list(ROW_COLUMNS))
    rows = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    rows["fit_passes"] = rows["fit_ratio"] <= study.fit_bars[CELL.question]
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


def write_report(out: Path, log=print) -> Path:
    """The open-questions report of the refitted cell (the seeds audited so far), then both caps side by side."""
    import open_questions_report

    longer = audited(STUDY, out)
    seeds = f"{longer['seed'].nunique()} of {STUDY.seeds}"
    partial = not (STUDY.folders(out)[1] / f"{CELL.stage}.parquet").exists()  # the seeds kept so far
    path = open_questions_report.write_report(
        STUDY, out, longer, log=lambda _: None,
        status=f"Seeds audited so far: {seeds}; every table is over them (the stage is exported when all are)."
        if partial else None)
    capped = open_questions.exported(open_questions.FULL, out)
    capped = capped[(capped["question"] == CELL.question) & (capped["setting"] == float(CELL.setting))]
    lines = [f"Seeds audited with the {CAP}-epoch cap: {seeds}.", ""]
    if len(longer) and len(capped):
        lines += side_by_side(capped, longer, STUDY.reps)
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
    write_report(out, log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
