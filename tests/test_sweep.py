"""`gradlens sweep`: grid validation, resume after a kill without re-running or duplicating, Ray equals local."""
import os
import signal
import subprocess
import sys
import time

import pytest

import gradlens as gl
from gradlens import cli
from gradlens.sweep import SweepSpec, run_sweep
from gradlens.training.train import run_name

TINY = {"total_steps": 60, "warmup_steps": 20, "eval_every": 20, "policy": "open_loop"}


@pytest.mark.parametrize("argv, message", [
    (["--systems", "nope", "--methods", "simulator", "--horizons", "5"], "unknown system(s) 'nope'; valid systems:"),
    (["--systems", "cancer", "--methods", "simulator,magic", "--horizons", "5"], "unknown method(s) 'magic'"),
    (["--systems", "", "--methods", "simulator", "--horizons", "5"], "--systems must be a comma-separated list"),
    (["--systems", "cancer", "--methods", "simulator", "--horizons", "5", "--seeds", "0"],
     "seeds must be a positive integer, got 0"),
    (["--systems", "cancer", "--methods", "simulator", "--horizons", "5,-1"], "positive integers"),
])
def test_bad_grid_is_one_line_without_traceback(argv, message, tmp_path, capsys):
    assert cli.main(["sweep", *argv, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1
    assert not any(tmp_path.iterdir())


def test_spec_checks_overrides_before_running():
    with pytest.raises(ValueError, match="unknown config key.*'nonsense'"):
        SweepSpec(("cancer",), ("simulator",), (5,), overrides={"nonsense": 1})
    with pytest.raises(ValueError, match="cannot set horizon"):
        SweepSpec(("cancer",), ("simulator",), (5,), overrides={"horizon": 3})


def _metrics(root):
    frame = gl.runs.scan_metrics(root)
    return frame.sort_values(["run", "seed", "env_steps"]).reset_index(drop=True)


@pytest.mark.slow
def test_killed_sweep_resumes_without_rerunning_finished_cells(tmp_path):
    root = tmp_path / "runs"
    argv = [sys.executable, "-m", "gradlens.cli", "sweep", "--systems", "cancer", "--methods", "simulator",
            "--horizons", "5,8", "--seeds", "2", "--steps", "400", "--warmup", "100", "--jobs", "1", "--quiet",
            "--out", str(root)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    first, second = root / "cancer-simulator-H5-seeds0-1", root / "cancer-simulator-H8-seeds0-1"
    while time.time() < deadline and proc.poll() is None:
        if (first / "status.json").exists() and gl.runs.status(first)["state"] == "done":
            break
        time.sleep(0.1)
    assert proc.poll() is None, "the sweep finished before it could be interrupted"
    os.killpg(proc.pid, signal.SIGKILL)  # the sweep and its worker process, mid-grid
    proc.wait()
    assert not (second / "status.json").exists() or gl.runs.status(second)["state"] != "done"
    stamp = (first / "metrics.parquet").stat().st_mtime_ns
    assert cli.main(argv[3:]) == 0  # resume
    assert (first / "metrics.parquet").stat().st_mtime_ns == stamp  # the finished cell was skipped, not re-run
    table = gl.runs.scan(root)
    assert len(table) == 2 and set(table["state"]) == {"done"}
    metrics = _metrics(root)
    assert not metrics.duplicated(["run", "seed", "env_steps"]).any()
    assert len(metrics) == 2 * 2 * -(-400 // 32)  # every evaluation of every seed of every run, once
    # the interrupted cell, resumed, equals the same run trained without interruption
    config = gl.TrainConfig(system="cancer", method="simulator", horizon=8, seeds=2, total_steps=400,
                            warmup_steps=100)
    clean = gl.train(config, progress=False).sort_values(["seed", "env_steps"]).reset_index(drop=True)
    resumed = metrics[metrics["run"] == second.name].reset_index(drop=True)
    assert resumed[clean.columns].drop(columns="wall_time").equals(clean.drop(columns="wall_time"))


@pytest.mark.slow
def test_ray_backend_gives_the_same_metrics_as_local(tmp_path):
    ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'gradlens[ray]')")
    spec = SweepSpec(("cancer",), ("simulator",), (4,), seeds=2, overrides=TINY)
    local = run_sweep(spec, tmp_path / "local", backend="local", jobs=1, progress=False)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        remote = run_sweep(spec, tmp_path / "ray", backend="ray", progress=False)
    finally:
        ray.shutdown()
    assert list(local["state"]) == list(remote["state"]) == ["done"]
    a = _metrics(tmp_path / "local").drop(columns=["wall_time"])
    b = _metrics(tmp_path / "ray").drop(columns=["wall_time"])
    assert len(a) == 2 * 3 and a.equals(b)  # 2 seeds x 3 evaluations
    again = run_sweep(spec, tmp_path / "ray", backend="ray", progress=False)  # complete: nothing to run
    assert set(again["state"]) == {"skipped (done)"}


def test_failed_cell_is_reported_and_the_others_finish(tmp_path):
    spec = SweepSpec(("cancer", "bacteria"), ("simulator",), (4,), overrides=TINY)
    blocker = run_name(spec.configs()[0])  # a run folder of another config where the cancer cell's run must go
    gl.runs.create(tmp_path, {"system": "cancer", "method": "something else"}, name=blocker)
    table = run_sweep(spec, tmp_path, jobs=1, progress=False)
    assert list(table["state"]) == ["failed", "done"]
    assert "exists with a different config" in table.loc[0, "error"]
    assert gl.runs.status(tmp_path / table.loc[1, "name"])["state"] == "done"
