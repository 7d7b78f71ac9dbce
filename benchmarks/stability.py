"""The gradient stability study (issue 21): does the AWM's polynomial gradient bound prevent optimisation failure in
practice, and do AWMs beat the stabilisers practitioners already use on long horizons?

    python benchmarks/stability.py [--out benchmarks/results] [--stages simulator-none,...]
    python benchmarks/stability.py --report    # rebuild <out>/stability.md and its figures from the exported metrics
    python benchmarks/stability.py --quick     # a toy study (cancer, H = 4, 6, 8, 2 stages, 2 seeds, 96 env steps)

The study: the double pendulum (chaotic), the one-bounce task (contact), cancer and mould_fungicide (Myriad), each
at horizons from short to long (`SYSTEMS`). Methods: the simulator and the Markov model, each without a stabiliser
(the paper's settings) and with each stabiliser of docs/stability.md (`STABILISERS`), against the AWM-RNN without
one. Every run: the paper's schedule (TrainConfig defaults: 5000 env steps, warm-up 1500), 10 vmapped seeds,
non-finite policy gradients zeroed and counted per seed, as in the grid (`benchmarks/grid.py`).

One stage per (method, stabiliser) over every system and horizon (`FULL`'s order). Runs train one at a time into
`<out>/runs/stability/` (git-ignored; an interrupted run resumes from its checkpoint); each finished run's per-seed
metrics are kept at once in `<out>/stability/<stage>/` (small, committed: a later session never trains it again).
When every run of a stage has finished or failed, they go to `<out>/stability/<stage>.parquet` and the report
`<out>/stability.md` (figures `<out>/figures/stability_*`) is rebuilt from every exported stage.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import pandas as pd

from gradlens.sweep import SweepSpec

from grid import chosen_stages, read_exports, run_stages, train_stage

SYSTEMS = {"double_pendulum": (10, 20, 40, 80), "one_bounce": (25, 50, 100), "cancer": (50, 100, 200),
           "mould_fungicide": (50, 100, 200)}
CLIP, TRUNCATE, DISCOUNT, NATURAL_KL = 1.0, 10, 0.95, 0.01
STABILISERS = ("none", "clip", "tbptt", "discount", "natural")
# the paper's: non-finite policy gradients zeroed and counted per seed, so that one seed's NaN does not stop nine
PAPER = {"nonfinite_policy_grad": "zero"}
EXPORT_COLUMNS = ("system", "method", "stabiliser", "horizon", "seed", "env_steps", "return", "model_loss",
                  "policy_grad_norm", "wall_time", "zeroed_policy_grads")


def stabiliser_overrides(method: str, stabiliser: str) -> dict:
    """TrainConfig fields of `stabiliser` for `method` ("none": the paper's settings, a clip of 100 through a model
    and none through the simulator)."""
    clip_field = "simulator_grad_clip" if method == "simulator" else "grad_clip"
    return {"none": {}, "clip": {clip_field: CLIP}, "tbptt": {"truncate": TRUNCATE},
            "discount": {"discount": DISCOUNT},
            "natural": {"update_rule": "natural", "natural_kl": NATURAL_KL}}[stabiliser]


@dataclasses.dataclass(frozen=True)
class Study:
    """One study: `name` names its run store (`<out>/runs/<name>`), export folder (`<out>/<name>`) and report
    (`<out>/<name>.md`); `stages` are (method, stabiliser) in running order; `overrides` are shared TrainConfig
    fields."""

    name: str
    systems: dict
    stages: tuple[tuple[str, str], ...]
    seeds: int
    overrides: dict = dataclasses.field(default_factory=dict)
    reps: int = 1000  # bootstrap replicates
    png: bool = True

    def specs(self, stage: str) -> list[SweepSpec]:
        """The sweeps of `stage` ("<method>-<stabiliser>"): one per system (each has its own horizons)."""
        method, stabiliser = dict((f"{m}-{s}", (m, s)) for m, s in self.stages)[stage]
        overrides = {**self.overrides, **stabiliser_overrides(method, stabiliser)}
        return [SweepSpec(systems=(system,), methods=(method,), horizons=horizons, seeds=self.seeds,
                          overrides=overrides) for system, horizons in self.systems.items()]

    def stage_names(self) -> list[str]:
        return [f"{m}-{s}" for m, s in self.stages]

    def folders(self, out: Path) -> tuple[Path, Path]:
        """(run store, export folder)."""
        return out / "runs" / self.name, out / self.name


# the simulator's runs take seconds, the Markov model's minutes, the AWM-RNN's about 4x the Markov's: the simulator's
# stages first, then the Markov model without a stabiliser and the AWM-RNN (both questions answerable for the
# simulator), then the Markov model's stabilisers
FULL = Study("stability", SYSTEMS, tuple(("simulator", s) for s in STABILISERS)
             + (("markov", "none"), ("awm-rnn", "none")) + tuple(("markov", s) for s in STABILISERS[1:]),
             seeds=10, overrides=PAPER)
QUICK = Study("stability-quick", {"cancer": (4, 6, 8)}, (("simulator", "none"), ("simulator", "discount")), seeds=2,
              overrides={**PAPER, "total_steps": 96, "warmup_steps": 32, "eval_every": 16, "policy_every": 4,
                         "policy_lr": 1e-2}, reps=200, png=False)


def run_stage(study: Study, stage: str, out: Path, log=print) -> bool:
    """Train every run of `stage` not yet kept and export the stage when all are (`grid.train_stage`); a stage
    already exported is skipped. True if this call exported it."""
    return train_stage(study.specs(stage), *study.folders(out), stage, EXPORT_COLUMNS, log,
                       stabiliser=stage.rsplit("-", 1)[1])


def exported(study: Study, out: Path) -> pd.DataFrame:
    """Every exported stage's per-seed metrics, concatenated (an empty frame with EXPORT_COLUMNS when none)."""
    return read_exports(study.folders(out)[1], EXPORT_COLUMNS)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--stages", help="comma-separated stages to run, in order (default: all, in FULL's order)")
    parser.add_argument("--quick", action="store_true", help="a toy study: cancer, 2 stages, 2 seeds")
    parser.add_argument("--report", action="store_true", help="only rebuild the report from exported metrics")
    args = parser.parse_args(argv)
    study = QUICK if args.quick else FULL
    out = Path(args.out)
    stages = chosen_stages(parser, args.stages, study.stage_names())
    log = lambda line: print(line, flush=True)
    import stability_report  # only here: it imports plotting and rliable

    rebuild = lambda: stability_report.write_report(study, out, exported(study, out), log)
    if not args.report:
        run_stages(stages, lambda stage: run_stage(study, stage, out, log), rebuild, log)
    rebuild()
    return 0


if __name__ == "__main__":
    sys.exit(main())
