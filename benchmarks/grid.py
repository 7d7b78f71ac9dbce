"""The paper's Myriad grid at full size, run in resumable stages, with rliable aggregates and a claims table.

    python benchmarks/grid.py [--out benchmarks/results] [--stages simulator,sac,...]
    python benchmarks/grid.py --estimate     # time a short run per method, extrapolate, write the compute estimate
    python benchmarks/grid.py --report       # rebuild <out>/grid.md and its figures from the exported metrics only
    python benchmarks/grid.py --quick        # a toy grid (cancer, 2 methods, 2 seeds, 192 env steps at H = 10 and 6)

The grid: the 10 Myriad tasks at H = 100 with the paper's schedule and hyperparameters (TrainConfig defaults: 5000
env steps, warm-up 1500 for BPO, the baselines' own), 9 methods, 10 vmapped seeds per run; plus the
return-versus-horizon sweep on cancer (H in {25, 50, 200}; its H = 100 runs are the main grid's). One stage per
method over the 10 tasks, cheapest first (measured, `COST_ORDER`), then the horizon sweep (`horizons`).

Runs train one at a time into `<out>/runs/grid/` (git-ignored; an interrupted run resumes from its checkpoint).
Each finished run's per-seed metrics are kept at once in `<out>/grid/<stage>/` (small, committed: a later session,
even on a fresh clone, never trains a kept run again; `train_stage`). When every run of a stage has finished or
failed (NaN), they go to `<out>/grid/<stage>.parquet` (failed runs to `<stage>-failed.csv`), so that every table can
be rebuilt without the run folders; the report is `<out>/grid.md` with figures under `<out>/figures/grid_*`.
To run stages side by side, start one process per stage (`--stages`).
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import shutil
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from gradlens import runs
from gradlens.sweep import SweepSpec, run_sweep
from gradlens.training.loop import TrainConfig, make_trainer
from gradlens.training.train import run_name

TASKS = ("cancer", "bear_populations", "bioreactor", "hiv", "mould_fungicide", "bacteria", "predator_prey",
         "glucose", "harvest", "timber_harvest")
# cheapest first, by the seconds per 10-seed run of `--estimate` (benchmarks/README.md, "The full Myriad grid")
COST_ORDER = ("simulator", "markov", "sac", "hwm-rnn", "odt", "awm-rnn", "awm-ssm", "awm-transformer",
              "hwm-transformer")
EXPORT_COLUMNS = ("system", "method", "horizon", "seed", "env_steps", "return", "model_loss", "policy_grad_norm",
                  "cosine_to_simulator", "relative_error_to_simulator", "wall_time", "zeroed_policy_grads")
# The reference implementation zeroes non-finite policy gradients and goes on; the grid does the same, counted per
# seed (`zeroed_policy_grads`, reported in grid.md), so that one seed's NaN does not stop the other nine. It changes
# nothing where no gradient is non-finite: the simulator stage, run before this setting, had none.
PAPER = {"nonfinite_policy_grad": "zero"}
HORIZON_STAGE = "horizons"


@dataclasses.dataclass(frozen=True)
class Grid:
    """One grid: `name` names its run folder (`<out>/runs/<name>`), export folder (`<out>/<name>`) and report
    (`<out>/<name>.md`); `overrides` are TrainConfig fields shared by every run (none: the paper's)."""

    name: str
    tasks: tuple[str, ...]
    methods: tuple[str, ...]
    horizon: int
    horizon_task: str
    horizons: tuple[int, ...]  # the return-versus-horizon sweep on horizon_task, `horizon` included
    seeds: int
    overrides: dict = dataclasses.field(default_factory=dict)
    reps: int = 2000  # bootstrap replicates
    png: bool = True  # also write PNG figures (kaleido), not only HTML
    report_each: bool = True  # rebuild the report after every exported stage, not only at the end

    def stages(self) -> dict[str, SweepSpec]:
        """Stage name -> its sweep, in running order: one per method on every task, then the horizon sweep."""
        spec = lambda systems, methods, horizons: SweepSpec(systems=systems, methods=methods, horizons=horizons,
                                                            seeds=self.seeds, overrides=self.overrides)
        stages = {m: spec(self.tasks, (m,), (self.horizon,)) for m in self.methods}
        extra = tuple(h for h in self.horizons if h != self.horizon)
        if extra:
            stages[HORIZON_STAGE] = spec((self.horizon_task,), self.methods, extra)
        return stages

    def folders(self, out: Path) -> tuple[Path, Path]:
        """(run store, export folder)."""
        return out / "runs" / self.name, out / self.name


FULL = Grid("grid", TASKS, COST_ORDER, 100, "cancer", (25, 50, 100, 200), seeds=10, overrides=PAPER)
QUICK = Grid("grid-quick", ("cancer",), ("simulator", "sac"), 10, "cancer", (6, 10), seeds=2,
             overrides={**PAPER, "total_steps": 192, "warmup_steps": 64, "policy_every": 4, "policy_lr": 1e-2}, reps=200,
             png=False, report_each=False)


# ---------------------------------------------------------------------------------------------------- stages
def run_stage(grid: Grid, stage: str, out: Path, log=print) -> bool:
    """Train every run of `stage` not yet kept and export the stage when all are (`train_stage`); a stage already
    exported is skipped. True if this call exported it."""
    return train_stage([grid.stages()[stage]], *grid.folders(out), stage, EXPORT_COLUMNS, log)


def train_stage(specs: list[SweepSpec], store: Path, export: Path, stage: str, columns, log, **constant) -> bool:
    """Train the runs of `specs` one at a time into the run store `store` (git-ignored: an interrupted run resumes
    from its checkpoint) and keep each finished run's metrics at once as `<export>/<stage>/<run>.parquet`, a failed
    run's error as `<run>.failed.csv` (small, committed: a later session without the run folders never trains a kept
    run again). When every run is kept, `write_stage` exports the stage (`constant` columns added) and the per-run
    files go. A stage already exported is skipped. True if this call exported it."""
    target, kept = export / f"{stage}.parquet", export / stage
    if target.exists():  # the run folders may be gone (another session): never retrain
        log(f"stage {stage}: already exported to {target} (delete it to rerun failed runs)")
        return False
    cells = [dataclasses.replace(spec, systems=(c.system,), methods=(c.method,), horizons=(c.horizon,))
             for spec in specs for c in spec.configs()]
    kept.mkdir(parents=True, exist_ok=True)
    frames, failed = [], []
    for cell in cells:
        name = run_name(cell.configs()[0])
        done, error = kept / f"{name}.parquet", kept / f"{name}.failed.csv"
        if not (done.exists() or error.exists()):
            row = run_sweep(cell, store, jobs=1, progress=False, log=log).iloc[0]
            if row["state"] == "failed":
                failure = pd.DataFrame([[name, row["error"]]], columns=["name", "error"])
                write_atomically(error, lambda tmp: failure.to_csv(tmp, index=False))
            else:
                write_atomically(done, lambda tmp: runs.load(store / name).to_parquet(tmp, index=False))
        if done.exists():
            frames.append(pd.read_parquet(done))
        else:
            failed.append(tuple(pd.read_csv(error).iloc[0]))
            log(f"FAILED {failed[-1][0]}: {failed[-1][1]}")
    if not frames:
        return False
    write_stage(frames, failed, export, stage, columns, **constant)
    shutil.rmtree(kept)
    log(f"stage {stage}: {len(frames)}/{len(cells)} runs exported to {target}")
    return True


def write_atomically(path: Path, write) -> None:
    """`write(tmp)` then rename tmp to `path`: an interruption never leaves a half-written file at `path`."""
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    tmp.replace(path)


def write_stage(frames: list[pd.DataFrame], failed: list[tuple[str, str]], export: Path, stage: str, columns,
                **constant) -> None:
    """Write a finished stage: its runs' metrics (`constant` columns added) as `<export>/<stage>.parquet` with
    `columns`, and its failed runs, (name, error) pairs, as `<stage>-failed.csv`."""
    export.mkdir(parents=True, exist_ok=True)
    metrics = tidy(pd.concat(frames, ignore_index=True).assign(**constant))
    metrics[list(columns)].to_parquet(export / f"{stage}.parquet", index=False)
    if failed:
        pd.DataFrame(failed, columns=["name", "error"]).to_csv(export / f"{stage}-failed.csv", index=False)


def tidy(metrics: pd.DataFrame) -> pd.DataFrame:
    """`metrics` with an integer horizon and `zeroed_policy_grads` counts, 0 where a run logged none (the
    baselines have no such column)."""
    zeroed = metrics.get("zeroed_policy_grads", pd.Series(0, index=metrics.index))
    return metrics.assign(horizon=metrics["horizon"].astype(int), zeroed_policy_grads=zeroed.fillna(0).astype(int))


def read_exports(export: Path, columns) -> pd.DataFrame:
    """Every `<export>/*.parquet` (one per exported stage), concatenated; an empty frame with `columns` when none."""
    files = sorted(export.glob("*.parquet"))
    if not files:
        return pd.DataFrame(columns=list(columns))
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)


def chosen_stages(parser: argparse.ArgumentParser, given: str | None, valid: list[str]) -> list[str]:
    """The stages `--stages` names (comma-separated; default every one of `valid`, in order); a usage error naming
    the unknown ones."""
    stages = given.split(",") if given else valid
    unknown = [s for s in stages if s not in valid]
    if unknown:
        parser.error(f"unknown stage(s) {', '.join(map(repr, unknown))}; valid: {', '.join(valid)}")
    return stages


def run_stages(stages: list[str], run_one, rebuild, log) -> None:
    """`run_one(stage)` for each stage in order, its start and wall time logged; `rebuild()` (None: nothing) after
    each stage that `run_one` exported (returned True)."""
    for stage in stages:
        start = time.perf_counter()
        log(f"stage {stage} ... ({datetime.datetime.now():%H:%M})")
        if run_one(stage) and rebuild is not None:
            rebuild()
        log(f"stage {stage}: {time.perf_counter() - start:.0f} s ({datetime.datetime.now():%H:%M})")


def exported(grid: Grid, out: Path) -> pd.DataFrame:
    """Every exported stage's per-seed metrics, concatenated (empty frame with EXPORT_COLUMNS when none)."""
    return tidy(read_exports(grid.folders(out)[1], EXPORT_COLUMNS))


def kept_runs(grid: Grid, out: Path) -> pd.DataFrame:
    """The per-seed metrics of every run kept so far by a stage not yet exported (`train_stage` keeps each finished
    run at once in `<export>/<stage>/`), concatenated with EXPORT_COLUMNS; empty when there is none."""
    export = grid.folders(out)[1]
    running = [d for d in sorted(export.iterdir()) if d.is_dir() and not (export / f"{d.name}.parquet").exists()] \
        if export.is_dir() else []
    files = [f for folder in running for f in sorted(folder.glob("*.parquet"))]
    if not files:
        return pd.DataFrame(columns=list(EXPORT_COLUMNS))
    return tidy(pd.concat([pd.read_parquet(f) for f in files], ignore_index=True))[list(EXPORT_COLUMNS)]


def report(grid: Grid, out: Path, log) -> Path:
    """Rebuild `<out>/<grid.name>.md` from the exported stages and the runs kept by the others."""
    import grid_report  # only here: it imports plotting and rliable

    return grid_report.write_report(grid, out, exported(grid, out), log, kept_runs(grid, out))


# ---------------------------------------------------------------------------------------------------- estimate
# Seconds per full-schedule run on cancer, H = 100, measured by train_speed.py on a quiet machine (benchmarks/README.md,
# 2026-11-30): {method: (1 seed, 10 vmapped seeds)}. The methods with both serve to calibrate the timed estimates.
README_SECONDS = {"simulator": (0.5, 4.3), "awm-rnn": (24.7, 242.2), "awm-transformer": (69.1, 654.3)}
CALIBRATION_METHODS = ("awm-rnn", "awm-transformer")  # timed first; the simulator's run is too short to calibrate
SEED_FACTOR = 9.5  # 10 vmapped seeds cost 8.2-9.8x one seed on this CPU (benchmarks/README.md)
SHORT_WARMUP, SHORT_STEPS = 200, 480  # the timed schedule: chunks 0-5 warm-up, 6 mixed, 7-14 live


def time_method(method: str, horizon: int = 100, total_steps: int = 5000) -> dict:
    """One seed of `method` on cancer at `horizon`: every chunk of a short schedule timed (compile apart), then the
    full schedule's time extrapolated: median warm-up chunk x its warm-up chunks + median live chunk x its live
    chunks + the mixed chunk's excess over a live one (one-time work at the end of warm-up, e.g. ODT's
    pre-training)."""
    cfg = TrainConfig(system="cancer", method=method, horizon=horizon, total_steps=SHORT_STEPS,
                      warmup_steps=SHORT_WARMUP)
    trainer = make_trainer(cfg)
    state = jax.vmap(trainer.init)(jax.random.PRNGKey(0)[None])
    start = time.perf_counter()
    chunk = jax.jit(jax.vmap(trainer.chunk, in_axes=(0, None))).lower(state, jnp.int32(0)).compile()
    compile_s = time.perf_counter() - start
    times = []
    for c in range(trainer.n_chunks):
        start = time.perf_counter()
        state, _ = jax.block_until_ready(chunk(state, jnp.int32(c * cfg.eval_every)))
        times.append(time.perf_counter() - start)
    mixed = SHORT_WARMUP // cfg.eval_every
    warm, live = float(np.median(times[:mixed])), float(np.median(times[mixed + 1:]))
    full_warmup = TrainConfig(method=method).warmup_steps
    one_seed = (warm * full_warmup + live * (total_steps - full_warmup)) / cfg.eval_every \
        + max(times[mixed] - live, 0.0)
    return {"method": method, "compile_s": compile_s, "ms_per_warmup_step": 1e3 * warm / cfg.eval_every,
            "ms_per_live_step": 1e3 * live / cfg.eval_every, "one_seed_timed_s": one_seed}


def estimate(methods, log=print) -> pd.DataFrame:
    """Seconds per 10-seed full run per method. Timed here beside other work, so each timed one-seed estimate is
    scaled by the calibration factor (README time / timed estimate, median over CALIBRATION_METHODS) and by
    SEED_FACTOR; benchmarks/README.md's measured 10-seed time replaces it where there is one."""
    order = [m for m in CALIBRATION_METHODS if m in methods] + [m for m in methods if m not in CALIBRATION_METHODS]
    rows = {}
    for method in order:
        rows[method] = time_method(method)
        log(f"{method}: one seed timed {rows[method]['one_seed_timed_s']:.0f} s "
            f"(compile {rows[method]['compile_s']:.0f} s, {rows[method]['ms_per_live_step']:.2f} ms per live step)")
    factors = [README_SECONDS[m][0] / rows[m]["one_seed_timed_s"] for m in CALIBRATION_METHODS if m in rows]
    if not factors:
        raise ValueError(f"the estimate needs at least one of {', '.join(CALIBRATION_METHODS)} to calibrate against")
    calibration = float(np.median(factors))
    for method, row in rows.items():
        row.update(calibration=calibration, one_seed_s=row["one_seed_timed_s"] * calibration)
        if method in README_SECONDS:
            row.update(ten_seed_s=README_SECONDS[method][1], source="measured (benchmarks/README.md)")
        else:
            row.update(ten_seed_s=row["one_seed_s"] * SEED_FACTOR,
                       source=f"estimate: 1 seed timed x {calibration:.2f} (calibration) x {SEED_FACTOR}")
        log(f"{method}: {row['ten_seed_s']:.0f} s per 10-seed run ({row['source']})")
    return pd.DataFrame([rows[m] for m in methods])


# ---------------------------------------------------------------------------------------------------- CLI
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--stages", help="comma-separated stages to run, in order (default: all, cheapest first)")
    parser.add_argument("--quick", action="store_true", help="a toy grid: cancer, 2 methods, 2 seeds, H = 10 and 6")
    parser.add_argument("--estimate", action="store_true", help="time each method, write the compute estimate")
    parser.add_argument("--report", action="store_true", help="only rebuild the report from exported metrics")
    args = parser.parse_args(argv)
    grid = QUICK if args.quick else FULL
    out = Path(args.out)
    stages = chosen_stages(parser, args.stages, list(grid.stages()))
    log = lambda line: print(line, flush=True)
    if args.estimate:
        grid.folders(out)[1].mkdir(parents=True, exist_ok=True)
        estimate(grid.methods, log).to_csv(grid.folders(out)[1] / "estimate.csv", index=False, float_format="%.4g")
        return 0
    if args.report:
        report(grid, out, log)
        return 0
    rebuild = lambda: report(grid, out, log)
    run_stages(stages, lambda stage: run_stage(grid, stage, out, log), rebuild if grid.report_each else None,
               log)
    if not grid.report_each:
        report(grid, out, log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
