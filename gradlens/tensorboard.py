"""Training runs as TensorBoard event files (`gradlens runs export --tensorboard`), written with tensorboardX.

One log directory per run and seed, `<out>/<run>/seed<k>`, so TensorBoard draws one line per seed and filters runs by
name. Every numeric metric of the run (`gradlens.training.train`: return, model loss, policy-gradient norm, cosine and
relative error to the simulator, zeroed updates, wall time) is a scalar `train/<metric>` against the environment step;
the event times are the run's creation time plus its `wall_time`, so TensorBoard's relative axis is the training time.
The run's configuration is written as text (`config`). Missing values (a method without a world model has no model
loss) are left out, never written as NaN.
"""
from __future__ import annotations

import datetime
import json
import math
from pathlib import Path

from gradlens import runs

EXTRA = "pip install tensorboardX  (or: pip install -e \".[tensorboard]\")"
KEYS = ("run", "system", "method", "horizon", "setting", "env_steps", "seed")  # identifiers, not scalars


def _writer_class():
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        raise ValueError(f"TensorBoard export needs tensorboardX, which is not installed: {EXTRA}") from None
    return SummaryWriter


def _train_runs(path: Path) -> list[Path]:
    """The healthy training run folders at `path`: the run folder itself, or those of a run store."""
    if (path / runs.CONFIG).is_file():
        return [path]
    if not path.is_dir():
        raise ValueError(f"no run folder or run store at {path}")
    table = runs.scan(path)
    table = table[(table["kind"] == "train") & (table["state"] != "corrupt")]
    return [Path(p) for p in table["path"]]


def _created(run: Path) -> float:
    try:
        return datetime.datetime.fromisoformat(str(runs.status(run).get("created"))).timestamp()
    except ValueError:
        return 0.0


def export_run(run: Path, out: Path, writer_class=None) -> list[Path]:
    """Write one training run's metrics under `out/<run name>/seed<k>`; returns the log directories written."""
    writer_class = writer_class or _writer_class()
    frame = runs.load(run)
    if frame.empty:
        return []
    start = _created(run)
    scalars = [c for c in frame.columns if c not in KEYS and frame[c].dtype.kind in "fiub"]
    config = json.dumps(runs.load_config(run), indent=1, default=str)
    written = []
    for seed, rows in frame.groupby("seed", sort=True):
        logdir = out / run.name / f"seed{int(seed)}"
        with writer_class(logdir=str(logdir)) as writer:
            writer.add_text("config", f"```\n{config}\n```", 0)
            for row in rows.sort_values("env_steps").to_dict("records"):
                wall = row.get("wall_time")
                when = start + wall if isinstance(wall, (int, float)) and math.isfinite(wall) else None
                for name in scalars:
                    value = float(row[name])
                    if math.isfinite(value):
                        writer.add_scalar(f"train/{name}", value, int(row["env_steps"]), walltime=when)
        written.append(logdir)
    return written


def export(paths, out) -> list[Path]:
    """Export every training run in `paths` (run folders or run stores) to TensorBoard event files under `out`;
    returns the log directories written. ValueError when tensorboardX is missing or a path holds no run."""
    writer_class = _writer_class()
    out = Path(out)
    found = [run for path in paths for run in _train_runs(Path(path))]
    if not found:
        raise ValueError(f"no training run in {', '.join(map(str, paths))}")
    return [logdir for run in found for logdir in export_run(run, out, writer_class)]
