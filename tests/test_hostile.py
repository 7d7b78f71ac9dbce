"""Hostile use (issue 17): bad inputs to every sub-command, unwritable outputs, damaged and absent runs.

Every refusal is one line on stderr naming the bad value, a non-zero exit, no traceback and nothing left in --out.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import jax.numpy as jnp
import pytest

import gradlens as gl
from gradlens import cli, runs
from gradlens.analysis.audit import AuditConfig
from gradlens.sweep import SweepSpec, run_sweep
from gradlens.training.loop import TrainConfig
from gradlens.training.train import run_name, train

TINY = dict(system="linear", method="simulator", horizon=8, total_steps=64, warmup_steps=16, eval_every=32,
            policy="open_loop")
SWEEP = ["sweep", "--systems", "linear", "--methods", "simulator", "--horizons", "8"]
AUDIT = ["audit", "--system", "cancer", "--models", "markov", "--horizons", "5"]
ROOT = Path(__file__).resolve().parents[1]  # subprocesses import this checkout's gradlens
UNWRITABLE = "/sys/gradlens-no-such-dir/sub"  # even root cannot create it: "Operation not permitted"


@pytest.fixture(scope="module")
def done_run(tmp_path_factory) -> Path:
    """A finished TINY run (trained once per module; copy it before changing it)."""
    root = tmp_path_factory.mktemp("store")
    train(TrainConfig(**TINY), root, progress=False)
    return root / run_name(TrainConfig(**TINY))


def _copy(run: Path, root: Path, name: str | None = None) -> Path:
    return Path(shutil.copytree(run, root / (name or run.name)))


def _fail(argv, capsys) -> str:
    """Run the CLI in-process; assert a non-zero exit and one line on stderr without a traceback; return it."""
    try:
        code = cli.main([str(a) for a in argv])
    except SystemExit as exit_:  # argparse's usage errors
        code = exit_.code
    err = capsys.readouterr().err
    assert code not in (0, None), err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def _files(tmp_path: Path) -> dict:
    """Helper files the bad inputs point at: a plain file, bad JSON, a JSON list, an empty folder."""
    (tmp_path / "file").write_text("")
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "latin1.json").write_bytes(b'{"system": "\xff"}')
    (tmp_path / "empty").mkdir()
    return {"FILE": tmp_path / "file", "BADJSON": tmp_path / "bad.json", "LIST": tmp_path / "list.json",
            "LATIN1": tmp_path / "latin1.json", "EMPTY": tmp_path / "empty", "OUT": tmp_path / "out",
            "UNDERFILE": tmp_path / "file" / "sub"}


def _substitute(arg: str, files: dict) -> str:
    """`arg` with a leading placeholder (FILE, EMPTY/x, ...) replaced by its path."""
    head, slash, tail = arg.partition("/")
    return str(files[head]) + slash + tail if head in files else arg


def _config(tmp_path: Path, values: dict) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(values))
    return path


TRAIN_CONFIGS = [  # (config file fields, what the message names)
    ({"learning_rate": 1.0}, "'learning_rate'"),
    ({"policy_input_grad": 2.0}, "got 2.0"),
    ({"policy_input_grad": "half"}, "'half'"),
    ({"noise_std": -1.0}, "got -1.0"),
    ({"policy": "rnn"}, "'rnn'"),
    ({"policy_hidden": 64}, "got 64"),
    ({"policy_hidden": [0, 8]}, "(0, 8)"),
    ({"model_lr": "fast"}, "'fast'"),
    ({"remat": "yes"}, "'yes'"),
    ({"horizon": True}, "got True"),
    ({"method": ["simulator"]}, "['simulator']"),
    ({"method": "sac", "baseline": {"warp": 1}}, "'warp'"),
    ({"simulator_grad_clip": 0}, "got 0"),
    ({"entropy_coef": "inf"}, "'inf'"),
    ({"total_steps": 900, "warmup_steps": 1000}, "total_steps (900) must exceed warmup_steps (1000)"),
]

CASES = [  # (argv with placeholders from `_files`, what the message must name)
    (["systems", "--horizon", "0"], "got 0"),
    (["systems", "--horizon", "-3"], "got -3"),
    (["systems", "--horizon", "abc"], "'abc'"),
    (["systems", "--horizon", "1.5"], "'1.5'"),
    (["train", "--system", "pendulum"], "'pendulum'"),
    (["train", "--method", "ppo"], "'ppo'"),
    (["train", "--horizon", "0"], "horizon must be a positive integer, got 0"),
    (["train", "--horizon", "-1"], "got -1"),
    (["train", "--horizon", "x"], "'x'"),
    (["train", "--seeds", "0"], "seeds must be a positive integer, got 0"),
    (["train", "--seeds", "-2"], "got -2"),
    (["train", "--steps", "0"], "got 0"),
    (["train", "--steps", "-5"], "got -5"),
    (["train", "--steps", "1000"], "total_steps (1000) must exceed warmup_steps (1500)"),
    (["train", "--steps", "100", "--warmup", "100"], "total_steps (100) must exceed warmup_steps (100)"),
    (["train", "--warmup", "-1"], "got -1"),
    (["train", "--seed", "-1"], "seed must be an integer >= 0, got -1"),
    (["train", "--policy-time", "hours"], "'hours'"),
    (["train", "--policy-lr", "0"], "got 0.0"),
    (["train", "--policy-lr", "nan"], "got nan"),
    (["train", "--policy-lr=-1e-3"], "got -0.001"),
    (["train", "--nonfinite-policy-grad", "skip"], "'skip'"),
    (["train", "--config", "BADJSON"], "bad.json"),
    (["train", "--config", "LIST"], "list.json"),
    (["train", "--config", "LATIN1"], "latin1.json"),
    (["train", "--config", "EMPTY/none.json"], "none.json"),
    (["train", "--resume"], "cancer-awm-transformer-H100-seed0 is not a run folder"),
    (["train", "--resume", "EMPTY/gone"], "gone is not a run folder"),
    (["train", "--out", "UNDERFILE"], "file/sub: Not a directory"),
    (["train", "--out", "FILE"], "file: File exists"),
    (["train", "--out", UNWRITABLE], f"{UNWRITABLE}: Operation not permitted"),
    ([*AUDIT[:2], "nope", *AUDIT[3:]], "'nope'"),
    ([*AUDIT[:4], "magic", *AUDIT[5:]], "'magic'"),
    ([*AUDIT[:4], ",", *AUDIT[5:]], "--models must be a comma-separated list, got ','"),
    ([*AUDIT[:6], "0"], "got 0"),
    ([*AUDIT[:6], "a,b"], "'a,b'"),
    ([*AUDIT[:6], "5,-1"], "-1"),
    ([*AUDIT, "--samples", "1"], "got 1"),
    ([*AUDIT, "--episodes", "0"], "got 0"),
    ([*AUDIT, "--epochs", "-1"], "got -1"),
    ([*AUDIT, "--policy", "rnn"], "'rnn'"),
    ([*AUDIT, "--seed", "x"], "'x'"),
    (AUDIT[:5], "--horizons"),
    ([*AUDIT, "--out", "UNDERFILE"], "file/sub: Not a directory"),
    (["demo", "--seed", "abc"], "'abc'"),
    (["demo", "--quick", "--seed", "1.5"], "'1.5'"),
    (["demo", "--quick", "--out", "UNDERFILE"], "file/sub: Not a directory"),
    ([*SWEEP[:2], "nope", *SWEEP[3:]], "'nope'"),
    ([*SWEEP[:4], "magic", *SWEEP[5:]], "'magic'"),
    ([*SWEEP[:6], "0"], "got [0]"),
    ([*SWEEP[:6], "x,y"], "'x,y'"),
    ([*SWEEP, "--seeds", "0"], "got 0"),
    ([*SWEEP, "--steps", "10"], "total_steps (10) must exceed warmup_steps (1500)"),
    ([*SWEEP, "--warmup", "-1"], "got -1"),
    ([*SWEEP, "--jobs", "0"], "jobs must be a positive integer, got 0"),
    ([*SWEEP, "--backend", "spark"], "'spark'"),
    ([*SWEEP, "--policy-lr", "0"], "got 0.0"),
    ([*SWEEP, "--nonfinite-policy-grad", "skip"], "'skip'"),
    ([*SWEEP, "--out", "UNDERFILE"], "file/sub: Not a directory"),
    ([*SWEEP, "--out", UNWRITABLE], f"{UNWRITABLE}: Operation not permitted"),
    (["plot", "curves", "EMPTY/nope", "--out", "OUT/c.html"], "nope is neither a run folder"),
    (["plot", "curves", "EMPTY", "--out", "OUT/c.html"], "no metrics found in"),
    (["plot", "curves", "FILE", "--out", "OUT/c.html"], "file is neither a run folder"),
    (["plot", "bars", "EMPTY"], "'bars'"),
    (["plot", "curves", "EMPTY"], "--out"),
    (["runs", "FILE"], "file is a file, not a folder"),
    (["runs", "EMPTY/nope"], "no run store at"),
    (["runs", "EMPTY", "extra"], "unrecognized arguments: extra"),
    (["app", "--port", "abc"], "'abc'"),
    (["app", "--port", "0"], "got 0"),
    (["app", "--port", "70000"], "got 70000"),
    (["app", "--runs", "FILE"], "file is a file, not a folder"),
    (["bogus"], "'bogus'"),
    ([], "command"),
]


@pytest.mark.parametrize("argv, message", CASES, ids=[" ".join(argv)[:60] for argv, _ in CASES])
def test_bad_input_is_one_line_and_writes_nothing(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # commands without --out write to ./gradlens-runs: it must not appear either
    files = _files(tmp_path)
    argv = [_substitute(a, files) for a in argv]
    uses_out = "--out" in argv or argv[:1] in (["train"], ["audit"], ["demo"], ["sweep"])
    if uses_out and "--out" not in argv:
        argv += ["--out", str(files["OUT"])]
    err = _fail(argv, capsys)
    assert message in err
    assert not files["OUT"].exists() and not (tmp_path / "gradlens-runs").exists()
    assert not any(files["EMPTY"].iterdir())


@pytest.mark.parametrize("values, message", TRAIN_CONFIGS, ids=[next(iter(v)) for v, _ in TRAIN_CONFIGS])
def test_bad_config_file_is_refused_before_the_run_folder_exists(values, message, tmp_path, capsys):
    out = tmp_path / "out"
    err = _fail(["train", "--config", _config(tmp_path, values), "--out", out, "--quiet"], capsys)
    assert message in err and not out.exists()


def test_errors_from_a_real_process_have_no_traceback(tmp_path):
    for argv in (["train", "--steps", "64"], ["plot", "curves", "nope", "--out", "x.html"], ["train", "--resume"]):
        proc = subprocess.run([sys.executable, "-m", "gradlens.cli", *argv], capture_output=True, text=True,
                              cwd=tmp_path, env={**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)},
                              timeout=120)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
        assert not any(tmp_path.iterdir())


# ------------------------------------------------------------------------------------------- item 4: validation
@pytest.mark.parametrize("values", [
    {"policy_input_grad": 1.5}, {"noise_std": -0.1}, {"policy": "rnn"}, {"horizon": 0}, {"total_steps": 16},
    {"total_steps": 64, "warmup_steps": 64}, {"seed": -1}, {"policy_hidden": 8},
])
def test_train_config_validates_everything_up_front(values):
    with pytest.raises(ValueError):
        TrainConfig(**{**TINY, **values})


def test_warmup_just_below_the_steps_is_allowed():
    assert TrainConfig(**{**TINY, "total_steps": 17, "warmup_steps": 16}).total_steps == 17


def test_audit_config_checks_the_collection_scheme():
    with pytest.raises(ValueError, match="unknown collection scheme 'bogus'"):
        AuditConfig(data="bogus")


@pytest.mark.parametrize("call", ["step", "reward", "rollout"])
def test_actions_outside_the_bounds_are_refused(call):
    system = gl.envs.make("cancer", horizon=4)
    s1 = system.initial_state()
    run = {"step": lambda: system.step(s1, jnp.array([1.5])), "reward": lambda: system.reward(s1, jnp.array([-2.0])),
           "rollout": lambda: gl.rollout(system, jnp.full((4, 1), 3.0), s1, 4)}[call]
    with pytest.raises(ValueError, match=r"must lie in \[-1, 1\].*got (1.5|-2.0|3.0)"):
        run()
    assert system.step(s1, jnp.array([1.0])).shape == s1.shape  # the bounds themselves are fine


# ------------------------------------------------------------------------------------------- item 6: unwritable outputs
@pytest.mark.parametrize("out, reason", [(f"{UNWRITABLE}/c.html", "Operation not permitted"),
                                         ("FILE/c.html", "File exists"), ("EMPTY/c.html", "Is a directory")])
def test_unwritable_figure_is_one_line_naming_the_path_and_reason(out, reason, done_run, tmp_path, capsys):
    files = _files(tmp_path)
    (files["EMPTY"] / "c.html").mkdir()
    out = _substitute(out, files)
    err = _fail(["plot", "curves", done_run, "--out", out], capsys)
    assert f"cannot write figure {out}: {reason}" in err


def test_unwritable_sweep_store_through_the_api(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    spec = SweepSpec(("linear",), ("simulator",), (8,), overrides={"total_steps": 64, "warmup_steps": 16})
    with pytest.raises(ValueError, match=f"cannot create the run store {blocker / 'store'}: Not a directory"):
        run_sweep(spec, blocker / "store", progress=False)


def test_a_failed_report_write_is_one_line(tmp_path, capsys, monkeypatch):
    """A write the command could not foresee (here: the disk filling up under the report) is one line too."""
    import gradlens.report

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device", str(tmp_path / "out" / "report.html"))

    monkeypatch.setattr(gradlens.report, "run_audit", full)
    err = _fail([*AUDIT, "--out", tmp_path / "out", "--quiet"], capsys)
    assert f"{tmp_path / 'out' / 'report.html'}: No space left on device" in err


# ------------------------------------------------------------------------------------------- item 3: honest resume
def _resume(run: Path, capsys, *extra) -> str:
    return _fail(["train", "--resume", run, "--quiet", *extra], capsys)


def test_resume_of_a_finished_run_is_refused_and_changes_nothing(done_run, tmp_path, capsys):
    run = _copy(done_run, tmp_path)
    before = runs.status(run)
    assert "already finished (state done)" in _resume(run, capsys)
    assert runs.status(run) == before


def test_resume_of_a_run_folder_given_as_out_creates_no_nested_run(done_run, tmp_path, capsys):
    """The old failure: `--resume --out RUN` started a fresh default run inside RUN and flipped its status."""
    run = _copy(done_run, tmp_path)
    before = runs.status(run)
    err = _fail(["train", "--resume", "--out", run, "--quiet"], capsys)
    assert "already finished" in err and runs.status(run) == before
    assert sorted(p.name for p in run.iterdir() if p.is_dir()) == []


@pytest.mark.parametrize("damage, message", [
    ("checkpoint", "no readable checkpoint"),
    ("config", "config.json is corrupt"),
    ("status", "status.json is corrupt"),
    ("marker", "checkpoint.json is corrupt"),
])
def test_resume_of_a_damaged_run_fails_and_keeps_its_status(damage, message, done_run, tmp_path, capsys):
    run = _copy(done_run, tmp_path)
    runs.set_status(run, "failed", reason="interrupted after env step 32; resume with --resume")
    before = (run / runs.STATUS).read_bytes()
    if damage == "checkpoint":
        for name in (runs.CHECKPOINT, runs.PREVIOUS):
            (run / name).write_bytes(b"PK\x03\x04 truncated")
    else:
        path = run / {"config": runs.CONFIG, "status": runs.STATUS, "marker": runs.MARKER}[damage]
        path.write_text(path.read_text()[:20])
        before = (run / runs.STATUS).read_bytes()
    err = _resume(run, capsys)
    assert message in err and str(run) in err
    assert (run / runs.STATUS).read_bytes() == before  # not flipped to "running"
    assert [p.name for p in run.iterdir() if p.is_dir()] == []


def test_resume_takes_the_stored_configuration_and_refuses_other_flags(done_run, tmp_path, capsys):
    run = _copy(done_run, tmp_path)
    runs.set_status(run, "failed", reason="interrupted after env step 64; resume with --resume")
    assert "drop --horizon" in _resume(run, capsys, "--horizon", "12")
    assert cli.main(["train", "--resume", str(run), "--quiet"]) == 0  # the last checkpoint is the end: nothing to run
    assert runs.status(run)["state"] == "done"
    assert [p.name for p in tmp_path.iterdir()] == [run.name]


def test_resume_of_a_renamed_run_is_refused(done_run, tmp_path, capsys):
    run = _copy(done_run, tmp_path, "renamed")
    runs.set_status(run, "failed", reason="interrupted")
    assert "its config names the run 'linear-simulator-H8-seed0', not 'renamed'" in _resume(run, capsys)
    assert [p.name for p in tmp_path.iterdir()] == ["renamed"]


# ------------------------------------------------------------------------------------------- item 2: damaged folders
def test_scan_lists_a_non_utf8_folder_as_unreadable_and_reads_the_others(done_run, tmp_path):
    _copy(done_run, tmp_path)
    bad = _copy(done_run, tmp_path, os.fsdecode(b"bad\xff"))
    found = runs.scan(tmp_path).set_index("name")
    assert found.loc[done_run.name, "state"] == "done"
    row = found.loc["bad\ufffd"]
    assert row["state"] == "corrupt" and "folder name is not valid UTF-8 (b'bad\\xff')" in row["error"]
    metrics = runs.scan_metrics(tmp_path)
    assert set(metrics["run"]) == {done_run.name} and len(metrics.attrs["problems"]) == 1
    with pytest.raises(ValueError, match="not valid UTF-8"):
        runs.load(bad)


@pytest.mark.parametrize("file, content", [
    ("report.json", "{\"system\": {\"name\""), (runs.STATUS, "{\"state\": \"do"), (runs.METRICS, "PAR1 not parquet"),
    (runs.CONFIG, "[]"),
])
def test_scan_flags_a_truncated_or_foreign_file(file, content, done_run, tmp_path):
    healthy = _copy(done_run, tmp_path, "a")
    damaged = _copy(done_run, tmp_path, "b")
    (damaged / file).write_text(content)
    found = runs.scan(tmp_path).set_index("name")
    assert found.loc["a", "state"] == "done" and found.loc["b", "state"] == "corrupt"
    assert file in found.loc["b", "error"]
    assert set(runs.scan_metrics(tmp_path)["run"]) == {healthy.name}


def test_plot_curves_plots_the_healthy_runs_and_names_the_damaged_one(done_run, tmp_path, capsys):
    healthy = _copy(done_run, tmp_path, "a")
    truncated = _copy(done_run, tmp_path, "b")
    (truncated / runs.METRICS).write_bytes((truncated / runs.METRICS).read_bytes()[:100])
    unnamed = _copy(done_run, tmp_path, os.fsdecode(b"c\xff"))
    out = tmp_path / "fig" / "curves.html"
    assert cli.main(["plot", "curves", str(healthy), str(truncated), str(unnamed), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert f"skipped a damaged run: {truncated / runs.METRICS} is unreadable" in err
    assert "c\ufffd is unreadable: its folder name is not valid UTF-8" in err
    assert "linear" in out.read_text()


# ------------------------------------------------------------------------------------------- item 5: liveness
def test_a_run_whose_process_was_killed_is_interrupted_with_the_resume_command(done_run, tmp_path, capsys):
    run = _copy(done_run, tmp_path)
    writer = subprocess.Popen(
        [sys.executable, "-c", "import signal, sys; from gradlens import runs; runs.set_status(sys.argv[1], "
         "'running'); print('ready', flush=True); signal.pause()", str(run)],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"})
    assert writer.stdout.readline() == "ready\n"
    st = runs.status(run)
    assert (st["state"], st["pid"], st["host"]) == ("running", writer.pid, socket.gethostname())
    assert runs.scan(tmp_path).loc[0, "state"] == "running"  # alive
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    row = runs.scan(tmp_path).iloc[0]
    command = f"gradlens train --resume {run}"
    assert row["state"] == "interrupted" and f"its process {writer.pid} is gone" in row["reason"]
    assert command in row["reason"]
    assert cli.main(["runs", str(tmp_path)]) == 0
    table = capsys.readouterr().out
    assert f"{run.name}  interrupted  linear  simulator  8  64     1      100%" in table and command in table
    assert cli.main(["train", "--resume", str(run), "--quiet"]) == 0
    assert runs.scan(tmp_path).loc[0, "state"] == "done"


@pytest.mark.parametrize("minutes, state", [(1, "running"), (60, "interrupted")])
def test_a_run_of_another_host_is_interrupted_when_its_heartbeat_is_stale(minutes, state, done_run, tmp_path):
    import datetime

    run = _copy(done_run, tmp_path)
    st = runs.set_status(run, "running")
    beat = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=minutes)
    (run / runs.STATUS).write_text(json.dumps({**st, "host": "elsewhere", "updated": beat.isoformat()}))
    row = runs.scan(tmp_path).iloc[0]
    assert row["state"] == state
    if state == "interrupted":
        assert row["reason"].startswith("no heartbeat from elsewhere for 60 min")


def test_heartbeat_renews_a_running_status_and_keeps_its_state(done_run, tmp_path):
    run = _copy(done_run, tmp_path)
    first = runs.set_status(run, "running")
    beat = runs.heartbeat(run, env_steps=32)
    assert (beat["state"], beat["env_steps"], beat["pid"]) == ("running", 32, os.getpid())
    assert beat["updated"] >= first["updated"] and beat["created"] == first["created"]
    with pytest.raises(ValueError, match="managed by the run store"):
        runs.set_status(run, "done", pid=1)


def test_resume_of_a_run_that_is_still_running_is_refused(done_run, tmp_path, capsys):
    run = _copy(done_run, tmp_path)
    before = runs.set_status(run, "running")  # this process: alive
    assert f"it is still running (process {os.getpid()} on {socket.gethostname()})" in _resume(run, capsys)
    assert runs.status(run) == before


def test_training_renews_its_heartbeat(tmp_path, monkeypatch):
    from gradlens.training import train as train_module

    beats = []
    monkeypatch.setattr(train_module, "HEARTBEAT_S", -1.0)  # renew after every evaluation
    monkeypatch.setattr(runs, "heartbeat", lambda run, **extra: beats.append((Path(run).name, extra)))
    config = TrainConfig(**TINY)
    train(config, tmp_path, progress=False)
    assert beats == [(run_name(config), {"env_steps": 32}), (run_name(config), {"env_steps": 64})]


# ------------------------------------------------------------------------------- kill -9 during sweep and report writes
_CELL = dict(system="cancer", method="simulator", horizon=5, total_steps=400, warmup_steps=100, eval_every=2,
             policy="open_loop", seeds=2)  # 200 evaluations: a checkpoint every 10, the kill lands among them
_SWEEP_CELL = "import json, sys; from gradlens.sweep import run_cell; run_cell(json.loads(sys.argv[1]), sys.argv[2])"


def _visible(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


def test_sweep_cell_killed_while_writing_leaves_a_readable_store_that_resumes(tmp_path):
    """A sweep's worker killed (SIGKILL) mid-run, with its checkpoint writes in flight: the store still scans, the
    finished cell is untouched, and the killed cell resumes (what a rerun of the sweep does) to every evaluation once
    (tests/test_sweep.py checks a resumed cell's metrics equal an uninterrupted run's)."""
    import random
    import time

    from gradlens.sweep import run_cell

    done = TrainConfig(**{**_CELL, "horizon": 4, "total_steps": 200})
    train(done, tmp_path, progress=False)
    done_bytes = (tmp_path / run_name(done) / "metrics.parquet").read_bytes()
    config = TrainConfig(**_CELL)
    run, rng = tmp_path / run_name(config), random.Random(1)
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", _SWEEP_CELL, json.dumps(config.to_dict()), str(tmp_path)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (run / "checkpoint.json").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    time.sleep(rng.uniform(0.02, 0.1))
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the cell finished before it was killed"
    table = runs.scan(tmp_path).set_index("name")
    assert table.loc[run_name(done), "state"] == "done" and table["error"].isna().all()
    assert table.loc[run.name, "state"] == "interrupted" and 0 < table.loc[run.name, "step"] < config.total_steps
    assert (tmp_path / run_name(done) / "metrics.parquet").read_bytes() == done_bytes
    assert run_cell(config.to_dict(), str(tmp_path))["state"] == "done"
    resumed = runs.load(run)
    assert not resumed.duplicated(["seed", "env_steps"]).any()
    assert sorted(resumed["env_steps"].unique()) == list(range(2, config.total_steps + 1, 2))


_REPORT_WRITER = textwrap.dedent("""
    import sys
    from gradlens.analysis.audit import AuditReport

    n = 0
    while True:
        n += 1
        problems = [{"diagnostic": "gradients", "method": "markov", "horizon": 5, "message": f"{n}:" + "x" * k}
                    for k in range(0, 40000 * (1 + n % 3), 4000)]  # 0.2-0.6 MB: writes take a while
        AuditReport(system={"name": "cancer"}, models=["markov"], horizons=[5], config={}, problems=problems,
                    meta={"n": n}).save(sys.argv[1])
        if n == 1:
            print("ready", flush=True)
""")


def test_audit_report_killed_while_writing_keeps_a_whole_report(tmp_path):
    """AuditReport.save (runs.write_bytes_atomic) killed at random moments: report.json is always a whole report,
    the last one saved or the one before, never a truncated file."""
    import random
    import time

    from gradlens.analysis.audit import AuditReport

    rng, last = random.Random(0), 0
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)}
    for _ in range(3):
        proc = subprocess.Popen([sys.executable, "-c", _REPORT_WRITER, str(tmp_path)], env=env,
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.02, 0.3))
        proc.send_signal(signal.SIGKILL)
        assert proc.wait() == -signal.SIGKILL  # still writing when killed
        proc.stdout.close()
        report = AuditReport.load(tmp_path)
        n = report.meta["n"]
        assert n >= 1 and len(report.problems) == 10 * (1 + n % 3)
        assert all(p["message"].startswith(f"{n}:") for p in report.problems)
        assert _visible(tmp_path) == ["report.json"]
        last = max(last, n)
    assert last > 1
