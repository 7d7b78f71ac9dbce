"""Sweeps: a grid of training runs (system × method × horizon, seeds vmapped in each) written into the run store.

    spec = SweepSpec(systems=("cancer",), methods=("simulator", "awm-rnn"), horizons=(25, 50), seeds=10)
    table = run_sweep(spec, "runs")                 # local: at most one process per core
    table = run_sweep(spec, "runs", backend="ray")  # Ray tasks on an existing cluster (pip install 'gradlens[ray]')

Each cell is one `gradlens.train` run, its folder named by `train.run_name`. A cell whose run is already "done" is
skipped; any other existing run is resumed from its last checkpoint (so an interrupted sweep continues where it
stopped, with no row written twice). A failed cell is reported in the returned table and does not stop the others.
"""
from __future__ import annotations

import dataclasses
import os
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Mapping

import pandas as pd
from tqdm.auto import tqdm

from gradlens import envs, runs, validate
from gradlens.training.loop import TrainConfig, methods as train_methods
from gradlens.training.train import run_name

BACKENDS = ("local", "ray")
RESULT_COLUMNS = ("name", "system", "method", "horizon", "state", "seconds", "final_return", "error")


@dataclasses.dataclass(frozen=True)
class SweepSpec:
    """The grid: every (system, method, horizon) is one run of `seeds` vmapped seeds; `overrides` are further
    TrainConfig fields shared by every cell (e.g. {"total_steps": 2000})."""

    systems: tuple[str, ...]
    methods: tuple[str, ...]
    horizons: tuple[int, ...]
    seeds: int = 1
    overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        for field, valid in (("systems", envs.names()), ("methods", train_methods())):
            values = tuple(getattr(self, field))
            if not values:
                raise ValueError(f"{field} must be a non-empty list; valid {field}: {', '.join(valid)}")
            unknown = [v for v in values if not (envs.known(v) if field == "systems" else v in valid)]
            if unknown:
                raise ValueError(f"unknown {field[:-1]}(s) {', '.join(map(repr, unknown))}; valid {field}: "
                                 f"{', '.join(valid)}")
            object.__setattr__(self, field, values)
        object.__setattr__(self, "horizons", validate.positive_ints(list(self.horizons), "horizons"))
        validate.seed_count(self.seeds)
        clash = sorted({"system", "method", "horizon", "seeds"} & set(self.overrides))
        if clash:
            raise ValueError(f"overrides cannot set {', '.join(clash)}: they are the grid's axes")
        self.configs()  # every cell's TrainConfig is valid (unknown override keys, bad values) before anything runs

    def configs(self) -> list[TrainConfig]:
        """One TrainConfig per cell, in grid order (systems, then methods, then horizons)."""
        return [TrainConfig.from_dict({**self.overrides, "system": s, "method": m, "horizon": h,
                                       "seeds": self.seeds})
                for s in self.systems for m in self.methods for h in self.horizons]


def run_cell(config: dict, out: str) -> dict:
    """Train one cell (resuming its run if one exists) and return its result row; never raises for a failed run."""
    import numpy as np

    from gradlens.training.train import train

    cfg = TrainConfig.from_dict(config)
    row = {"name": run_name(cfg), "system": cfg.system, "method": cfg.method, "horizon": cfg.horizon,
           "state": "done", "seconds": 0.0, "final_return": None, "error": None}
    start = time.perf_counter()
    try:
        metrics = train(cfg, out, resume=True, progress=False)
        last = metrics[metrics["env_steps"] == metrics["env_steps"].max()]
        row["final_return"] = float(np.mean(last["return"]))
    except Exception as err:  # a failed cell is reported, the others go on
        row.update(state="failed", error=f"{type(err).__name__}: {err}")
    row["seconds"] = time.perf_counter() - start
    return row


def _done(out: Path, config: TrainConfig) -> dict | None:
    """The result row of a cell whose run is already done, else None."""
    folder = out / run_name(config)
    try:
        if runs.status(folder)["state"] != "done":
            return None
        metrics = runs.load(folder)
    except ValueError:
        return None
    last = metrics[metrics["env_steps"] == metrics["env_steps"].max()]
    return {"name": folder.name, "system": config.system, "method": config.method, "horizon": config.horizon,
            "state": "skipped (done)", "seconds": 0.0, "final_return": float(last["return"].mean()), "error": None}


def check_options(backend: str, jobs: int | None) -> None:
    """ValueError for a backend not in BACKENDS or a `jobs` that is not a positive integer (None: one per core)."""
    validate.one_of(backend, BACKENDS, "backend")
    if jobs is not None:
        validate.positive_int(jobs, "jobs")


def run_sweep(spec: SweepSpec, out, *, backend: str = "local", jobs: int | None = None,
              ray_address: str | None = None, progress: bool = True, log=None) -> pd.DataFrame:
    """Run every cell of `spec` not yet done into the run store `out`; one result row per cell (RESULT_COLUMNS).

    backend "local": a pool of `jobs` processes (default: one per core, at most one per pending cell), each running
    whole cells; "ray": one Ray task per cell (`ray.init(address=ray_address)`, None = a local Ray). `log` is called
    with one line per finished cell.
    """
    check_options(backend, jobs)
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"cannot create the run store {out}: {err.strerror or err}") from None
    configs = spec.configs()
    results = {i: row for i, row in ((i, _done(out, c)) for i, c in enumerate(configs)) if row is not None}
    pending = [(i, c.to_dict()) for i, c in enumerate(configs) if i not in results]
    bar = tqdm(total=len(configs), initial=len(results), desc="sweep", unit="run", disable=not progress)

    def finished(i, row):
        results[i] = row
        bar.update(1)
        if log is not None:
            outcome = (f"return {row['final_return']:.5g}" if row["state"] == "done" else f"FAILED: {row['error']}")
            log(f"{row['name']}: {outcome} ({row['seconds']:.0f} s)")

    try:
        if pending:
            run = _run_ray if backend == "ray" else _run_local
            run(pending, str(out), finished, jobs, ray_address)
    finally:
        bar.close()
    return pd.DataFrame([results[i] for i in sorted(results)], columns=list(RESULT_COLUMNS))


def _run_local(pending, out: str, finished, jobs, _address) -> None:
    workers = min(jobs or os.cpu_count() or 1, len(pending))
    # spawn, not fork: JAX's runtime is multithreaded and must not be forked
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(run_cell, config, out): i for i, config in pending}
        while futures:
            done, _ = wait(futures, return_when=FIRST_COMPLETED)
            for future in done:
                finished(futures.pop(future), future.result())


def _run_ray(pending, out: str, finished, _jobs, address) -> None:
    try:
        import ray
    except ImportError:
        raise ValueError("the ray backend needs Ray: pip install 'gradlens[ray]'") from None
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    task = ray.remote(num_cpus=1)(run_cell)
    refs = {task.remote(config, os.path.abspath(out)): i for i, config in pending}
    while refs:
        ready, _ = ray.wait(list(refs), num_returns=1)
        for ref in ready:
            finished(refs.pop(ref), ray.get(ref))
