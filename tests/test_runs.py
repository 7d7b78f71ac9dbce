"""Run store: atomic writes, checkpoint commit protocol (crash at any instant), scan of damaged folders."""
import dataclasses
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from gradlens import runs

CONFIG = {"system": "cancer", "method": "markov", "horizon": 10, "seeds": 2, "hidden": (8, 8)}


class State(NamedTuple):
    params: dict
    key: jax.Array
    count: jax.Array


def _state(step: int) -> State:
    return State({"w": jnp.full((3, 2), float(step), jnp.float32), "b": jnp.arange(4) + step},
                 jax.random.PRNGKey(step), jnp.asarray(step, jnp.int32))


def _rows(n: int, seeds=(0,)) -> list[dict]:
    return [{"env_steps": k, "seed": s, "return": float(10 * k + s), "model_loss": 1.0 / k}
            for k in range(1, n + 1) for s in seeds]


def _visible(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


def _leaves_equal_bitwise(a, b) -> None:
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
    for x, y in zip(la, lb):
        x, y = np.asarray(x), np.asarray(y)
        assert x.dtype == y.dtype and x.shape == y.shape
        assert x.tobytes() == y.tobytes()


# ---------------------------------------------------------------------------------------------------- atomic files
def test_atomic_write_keeps_old_content_when_rename_fails(tmp_path, monkeypatch):
    target = tmp_path / "report.json"
    runs.write_json_atomic(target, {"a": (1, 2), "b": np.float32(0.5), "c": np.arange(2), "p": tmp_path})
    old = target.read_text()
    assert '"a": [\n    1,\n    2\n  ]' in old and '"b": 0.5' in old and str(tmp_path) in old

    def crash(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(ValueError, match="cannot write to .*report.json: No space left"):
        runs.write_json_atomic(target, {"a": 2})
    with pytest.raises(ValueError, match="cannot write"):
        runs.write_bytes_atomic(target, b"garbage")
    assert target.read_text() == old
    assert sorted(os.listdir(tmp_path)) == ["report.json"]  # no temporary file left behind, hidden or not


def test_atomic_write_rejects_values_json_cannot_hold(tmp_path):
    with pytest.raises(ValueError, match=r"config\.f of type function"):
        runs.create(tmp_path, {"f": lambda x: x})
    with pytest.raises(ValueError, match="keys must be strings"):
        runs.write_json_atomic(tmp_path / "x.json", {1: 2})
    assert not (tmp_path / "x.json").exists()


# ---------------------------------------------------------------------------------------------------- create / status
def test_create_same_config_resumes_different_config_raises(tmp_path):
    run = runs.create(tmp_path, CONFIG, name="r")
    assert runs.load_config(run) == {**CONFIG, "hidden": [8, 8]}
    runs.set_status(run, "failed", reason="NaN in policy gradient at step 96")
    stray = run / ".metrics.parquet.dead.tmp"  # left by a writer killed mid-write
    stray.write_bytes(b"half")
    assert runs.create(tmp_path, {**CONFIG, "hidden": [8, 8]}, name="r") == run  # list == tuple once in JSON
    assert runs.status(run)["state"] == "running" and runs.status(run)["reason"] is None
    assert not stray.exists()
    with pytest.raises(ValueError, match=r"exists with a different config \(differing keys: horizon\)"):
        runs.create(tmp_path, {**CONFIG, "horizon": 20}, name="r")
    with pytest.raises(ValueError, match="holds a 'train' run, not 'audit'"):
        runs.create(tmp_path, CONFIG, name="r", kind="audit")
    assert runs.load_config(run)["horizon"] == 10


def test_create_checks_names_and_locations(tmp_path):
    a, b = runs.create(tmp_path, CONFIG), runs.create(tmp_path, {**CONFIG, "horizon": 5})
    assert a != b and a.name.startswith("cancer-markov-") and b.name.startswith("cancer-markov-")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("x")
    with pytest.raises(ValueError, match="not a gradlens run folder"):
        runs.create(tmp_path, CONFIG, name="notes")
    for bad in ("a/b", "..", ".hidden", "_private", ""):
        with pytest.raises(ValueError, match="plain folder name"):
            runs.create(tmp_path, CONFIG, name=bad)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="cannot write to .*file"):
        runs.create(tmp_path / "file" / "runs", CONFIG, name="r")
    with pytest.raises(ValueError, match="not a run folder"):
        runs.load(tmp_path / "missing")


def test_status_transitions(tmp_path):
    run = runs.create(tmp_path, CONFIG, name="r")
    first = runs.status(run)
    assert first["state"] == "running" and first["kind"] == "train" and first["reason"] is None
    time.sleep(0.002)
    done = runs.set_status(run, "done", step=5000, wall_time=np.float64(1.5))
    assert runs.status(run) == done and done["step"] == 5000 and done["wall_time"] == 1.5
    assert done["created"] == first["created"] and done["updated"] > first["updated"]
    with pytest.raises(ValueError, match="needs a reason"):
        runs.set_status(run, "failed")
    failed = runs.set_status(run, "failed", reason="model loss is NaN at step 64")
    assert failed["reason"] == "model loss is NaN at step 64" and "step" not in failed  # extras replaced
    with pytest.raises(ValueError, match="state must be one of running, done, failed; got 'finished'"):
        runs.set_status(run, "finished")
    with pytest.raises(ValueError, match="managed by the run store"):
        runs.set_status(run, "done", created="yesterday")
    assert runs.status(run)["state"] == "failed"


# ---------------------------------------------------------------------------------------------------- checkpoints
def test_checkpoint_round_trip_is_bit_exact(tmp_path):
    run = runs.create(tmp_path, CONFIG, name="r")
    assert runs.load_checkpoint(run, _state(0)) is None
    rng = np.random.default_rng(0)
    with jax.enable_x64(True):
        state = {
            "f32": jnp.asarray(rng.normal(size=(4, 3)), jnp.float32).at[0, 0].set(-0.0).at[0, 1].set(jnp.inf),
            "f64": jnp.asarray(rng.normal(size=5) * 1e-310),  # subnormal float64
            "i64": jnp.asarray([-(2**62), 2**62 + 1]),
            "u32": jax.random.split(jax.random.PRNGKey(7), 3),  # raw keys [3, 2] uint32
            "typed": jax.random.split(jax.random.key(3), 2),
            "bf16": jnp.asarray([1.5, -2.25], jnp.bfloat16),
            "np": (np.uint8(255), np.array([True, False])),
        }
        runs.save_checkpoint(run, state, 64, _rows(2))
        loaded, step, metrics = runs.load_checkpoint(run, state)
    assert step == 64 and len(metrics) == 2
    plain = {k: v for k, v in state.items() if k != "typed"}
    _leaves_equal_bitwise({k: v for k, v in loaded.items() if k != "typed"}, plain)
    assert jax.dtypes.issubdtype(loaded["typed"].dtype, jax.dtypes.prng_key)
    assert jax.random.key_impl(loaded["typed"]) == jax.random.key_impl(state["typed"])
    np.testing.assert_array_equal(jax.random.key_data(loaded["typed"]), jax.random.key_data(state["typed"]))
    assert np.array_equal(jax.random.uniform(loaded["typed"][1], (3,)), jax.random.uniform(state["typed"][1], (3,)))


def test_checkpoint_loads_with_shape_dtype_struct_template(tmp_path):
    run = runs.create(tmp_path, CONFIG, name="r")
    runs.save_checkpoint(run, _state(3), 3, _rows(3))
    loaded, step, _ = runs.load_checkpoint(run, jax.eval_shape(lambda: _state(0)))
    assert isinstance(loaded, State) and step == 3
    _leaves_equal_bitwise(loaded, _state(3))


def test_template_mismatch_raises(tmp_path):
    run = runs.create(tmp_path, CONFIG, name="r")
    runs.save_checkpoint(run, _state(1), 1, _rows(1))
    wrong_shape = _state(1)._replace(params={"w": jnp.zeros((3, 3)), "b": jnp.arange(4)})
    with pytest.raises(ValueError, match=r"leaf \.params\['w'\] .* float32\[3, 2\] but the template wants float32"
                                         r"\[3, 3\]"):
        runs.load_checkpoint(run, wrong_shape)
    with pytest.raises(ValueError, match=r"\.count.* int32\[\] but the template wants float32\[\]"):
        runs.load_checkpoint(run, _state(1)._replace(count=jnp.float32(1)))
    with pytest.raises(ValueError, match="holds 4 leaves but the template `like` has 3"):
        runs.load_checkpoint(run, _state(1)._replace(key=()))


def test_save_checkpoint_refuses_bad_input_and_writes_nothing(tmp_path):
    run = runs.create(tmp_path, CONFIG, name="r")
    runs.save_checkpoint(run, _state(2), 2, _rows(2))
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    bad_state = _state(3)._replace(params={"w": jnp.full((3, 2), jnp.nan), "b": jnp.arange(4)})
    with pytest.raises(ValueError, match=r"leaf \.params\['w'\] holds NaN at step 3"):
        runs.save_checkpoint(run, bad_state, 3, _rows(3))
    with pytest.raises(ValueError, match="env_steps <= step 2; got env_steps 3"):
        runs.save_checkpoint(run, _state(2), 2, _rows(3))
    with pytest.raises(ValueError, match="missing seed"):
        runs.save_checkpoint(run, _state(3), 3, [{"env_steps": 3}])
    with pytest.raises(ValueError, match="'env_steps' must hold integers"):
        runs.save_checkpoint(run, _state(3), 3, [{"env_steps": 2.5, "seed": 0}])
    with pytest.raises(ValueError, match="got 1 metrics rows but 2 are committed"):
        runs.save_checkpoint(run, _state(3), 3, _rows(1))
    with pytest.raises(ValueError, match="not an array"):
        runs.save_checkpoint(run, {"x": "text", "y": object()}, 3, _rows(2))
    with pytest.raises(ValueError, match="step must be an integer >= 0"):
        runs.save_checkpoint(run, _state(3), -1, [])
    with pytest.raises(ValueError, match="not a gradlens run folder"):
        runs.save_checkpoint(tmp_path, _state(3), 3, _rows(3))
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


def test_uncommitted_rows_are_dropped_after_a_crash_before_the_marker(tmp_path, monkeypatch):
    run = runs.create(tmp_path, CONFIG, name="r")
    runs.save_checkpoint(run, _state(2), 2, _rows(2, seeds=(0, 1)))
    write_json = runs.write_json_atomic

    def crash_on_marker(path, obj):
        if Path(path).name == "checkpoint.json":
            raise KeyboardInterrupt  # the process dies right before the commit
        write_json(path, obj)

    monkeypatch.setattr(runs, "write_json_atomic", crash_on_marker)
    with pytest.raises(KeyboardInterrupt):
        runs.save_checkpoint(run, _state(3), 3, _rows(3, seeds=(0, 1)))
    monkeypatch.undo()
    assert len(pd.read_parquet(run / "metrics.parquet")) == 6  # the new rows did reach the disk ...
    state, step, metrics = runs.load_checkpoint(run, _state(0))
    assert step == 2 and metrics["env_steps"].max() == 2 and len(metrics) == 4  # ... but are not committed
    _leaves_equal_bitwise(state, _state(2))
    assert len(runs.load(run)) == 4 and runs.scan(tmp_path)["env_steps"].tolist() == [2]
    # resuming appends from the committed rows: no duplicated row
    rows = metrics.to_dict("records") + _rows(3, seeds=(0, 1))[4:]
    runs.save_checkpoint(run, _state(3), 3, rows)
    _, step, metrics = runs.load_checkpoint(run, _state(0))
    assert step == 3 and not metrics.duplicated(["env_steps", "seed"]).any() and len(metrics) == 6


def test_crash_between_rename_and_new_checkpoint_keeps_committed_state(tmp_path, monkeypatch):
    run = runs.create(tmp_path, CONFIG, name="r")
    runs.save_checkpoint(run, _state(1), 1, _rows(1))
    runs.save_checkpoint(run, _state(2), 2, _rows(2))
    write_bytes = runs.write_bytes_atomic

    def crash_on_checkpoint(path, data):
        if Path(path).name == "checkpoint.npz":
            raise KeyboardInterrupt
        write_bytes(path, data)

    monkeypatch.setattr(runs, "write_bytes_atomic", crash_on_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        runs.save_checkpoint(run, _state(3), 3, _rows(3))
    monkeypatch.undo()
    assert not (run / "checkpoint.npz").exists()  # step 2 now lives in checkpoint.prev.npz only
    state, step, metrics = runs.load_checkpoint(run, _state(0))
    assert step == 2 and len(metrics) == 2
    _leaves_equal_bitwise(state, _state(2))
    runs.save_checkpoint(run, _state(3), 3, _rows(3))  # and the next save keeps step 2 as the previous one
    assert runs.load_checkpoint(run, _state(0))[1] == 3
    (run / "checkpoint.npz").write_bytes(b"damaged")
    with pytest.warns(UserWarning, match="resuming from the previous one at step 2"):
        assert runs.load_checkpoint(run, _state(0))[1] == 2


def test_previous_checkpoint_is_kept_and_used_when_the_latest_is_damaged(tmp_path):
    run = runs.create(tmp_path, CONFIG, name="r")
    for step in (1, 2, 3):
        runs.save_checkpoint(run, _state(step), step, _rows(step))
    latest = (run / "checkpoint.npz").read_bytes()
    (run / "checkpoint.npz").write_bytes(latest[: len(latest) // 2])  # a torn file (e.g. a disk fault)
    with pytest.warns(UserWarning, match=r"checkpoint at step 3 is unreadable .*previous one at step 2"):
        state, step, metrics = runs.load_checkpoint(run, _state(0))
    assert step == 2 and metrics["env_steps"].tolist() == [1, 2]
    _leaves_equal_bitwise(state, _state(2))
    runs.save_checkpoint(run, _state(3), 3, metrics.to_dict("records") + _rows(3)[2:])  # resume over the damage
    _, step, metrics = runs.load_checkpoint(run, _state(0))
    assert step == 3 and metrics["env_steps"].tolist() == [1, 2, 3]
    (run / "checkpoint.npz").write_bytes(b"x")
    (run / "checkpoint.prev.npz").write_bytes(b"y")
    with pytest.raises(ValueError, match="no readable checkpoint for the committed step 3"):
        runs.load_checkpoint(run, _state(0))


_WRITER = textwrap.dedent("""
    import sys
    import numpy as np
    from gradlens import runs
    run = sys.argv[1]
    like = {"w": np.zeros(512, np.float32), "key": np.zeros(2, np.uint32), "n": np.zeros((), np.int64)}
    got = runs.load_checkpoint(run, like)
    step, rows = (0, []) if got is None else (got[1], got[2].to_dict("records"))
    print("ready", flush=True)
    while True:
        step += 1
        rows += [{"env_steps": step, "seed": s, "return": float(step + s)} for s in (0, 1)]
        state = {"w": np.full(512, step, np.float32), "key": np.array([step, 7 * step], np.uint32),
                 "n": np.int64(step)}
        runs.save_checkpoint(run, state, step, rows)
""")


def test_writer_killed_at_random_moments_resumes_without_loss_or_duplicates(tmp_path):
    run = runs.create(tmp_path, CONFIG, name="killed")
    like = {"w": np.zeros(512, np.float32), "key": np.zeros(2, np.uint32), "n": np.zeros((), np.int64)}
    rng, last = random.Random(0), 0
    for _ in range(5):  # about half the kills land inside a save (a stray .tmp or an uncommitted checkpoint.npz)
        proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(run)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.02, 0.25))
        proc.send_signal(signal.SIGKILL)
        assert proc.wait() == -signal.SIGKILL  # still writing when killed
        proc.stdout.close()
        state, step, metrics = runs.load_checkpoint(run, like)
        assert step >= last  # nothing committed is ever lost
        assert np.all(state["w"] == step) and state["key"].tolist() == [step, 7 * step] and state["n"] == step
        assert metrics["env_steps"].tolist() == [k for k in range(1, step + 1) for _ in (0, 1)]
        assert metrics["seed"].tolist() == [0, 1] * step
        assert (metrics["return"] == metrics["env_steps"] + metrics["seed"]).all()
        last = step
    assert last > 0
    table = runs.scan(tmp_path)
    assert table["state"].tolist() == ["running"] and table["step"].tolist() == [last]
    files = set(_visible(run))  # checkpoint.npz is absent when the kill fell between steps (2) and (3) of a save
    assert {"checkpoint.json", "config.json", "metrics.parquet", "status.json"} <= files
    assert files <= {"checkpoint.json", "checkpoint.npz", "checkpoint.prev.npz", "config.json", "metrics.parquet",
                     "status.json"}


# ---------------------------------------------------------------------------------------------------- reading
def test_load_columns(tmp_path):
    run = runs.create(tmp_path, CONFIG, name="r")
    empty = runs.load(run)
    assert list(empty.columns) == ["run", "system", "method", "horizon", "env_steps", "seed"] and len(empty) == 0
    runs.save_checkpoint(run, _state(2), 2, pd.DataFrame(_rows(2, seeds=(0, 1))))
    frame = runs.load(run)
    assert list(frame.columns) == ["run", "system", "method", "horizon", "env_steps", "seed", "return", "model_loss"]
    assert frame["env_steps"].dtype == np.int64 and frame["seed"].dtype == np.int64
    assert set(frame["run"]) == {"r"} and set(frame["system"]) == {"cancer"} and set(frame["horizon"]) == {10}
    assert frame[["env_steps", "seed"]].values.tolist() == [[1, 0], [1, 1], [2, 0], [2, 1]]


@dataclasses.dataclass(frozen=True)
class _Config:
    system: str = "hiv"
    method: str = "simulator"
    horizon: int = 5


def test_scan_flags_damaged_folders_and_reads_the_others(tmp_path):
    healthy = runs.create(tmp_path, CONFIG, name="healthy")
    runs.save_checkpoint(healthy, _state(2), 2, _rows(2, seeds=(0, 1)))
    runs.set_status(healthy, "done")
    other = runs.create(tmp_path, _Config(), name="other")  # a dataclass config
    bad_json = runs.create(tmp_path, CONFIG, name="bad_json")
    (bad_json / "config.json").write_text('{"system": "cancer", ')
    truncated = runs.create(tmp_path, CONFIG, name="truncated")
    runs.save_checkpoint(truncated, _state(2), 2, _rows(2))
    data = (truncated / "metrics.parquet").read_bytes()
    (truncated / "metrics.parquet").write_bytes(data[: len(data) // 2])
    no_config = tmp_path / "no_config"
    no_config.mkdir()
    (no_config / "status.json").write_text('{"state": "running"}')
    garbage = runs.create(tmp_path, CONFIG, name="garbage")
    (garbage / "status.json").write_bytes(os.urandom(64))
    bad_marker = runs.create(tmp_path, CONFIG, name="bad_marker")
    (bad_marker / "checkpoint.json").write_text('{"step": "two"}')
    (tmp_path / ".hidden").mkdir()
    (tmp_path / "README.txt").write_text("not a run")
    (healthy / "report.json").write_text("{}")  # extra files live beside the run's own

    table = runs.scan(tmp_path).set_index("name")
    assert list(table.columns) == [c for c in runs.SCAN_COLUMNS if c != "name"]
    assert sorted(table.index) == ["bad_json", "bad_marker", "garbage", "healthy", "no_config", "other", "truncated"]
    corrupt = {"bad_json": "config.json is corrupt", "truncated": "metrics.parquet is unreadable",
               "no_config": "no config.json", "garbage": "status.json is corrupt",
               "bad_marker": "checkpoint.json is corrupt"}
    for name, message in corrupt.items():
        assert table.loc[name, "state"] == "corrupt" and message in table.loc[name, "error"], name
    h = table.loc["healthy"]
    assert (h["state"], h["kind"], h["system"], h["method"], h["horizon"]) == ("done", "train", "cancer", "markov", 10)
    assert (h["n_seeds"], h["env_steps"], h["step"]) == (2, 2, 2) and pd.isna(h["error"])
    assert h["final_return"] == pytest.approx((20.0 + 21.0) / 2)  # mean over seeds at the last evaluation
    assert table.loc["other", "system"] == "hiv" and pd.isna(table.loc["other", "env_steps"])

    metrics = runs.scan_metrics(tmp_path)
    assert set(metrics["run"]) == {"healthy"} and len(metrics) == 4
    assert sorted(p["name"] for p in metrics.attrs["problems"]) == sorted(corrupt)
    assert len(runs.scan_metrics(tmp_path, method=["simulator", "ppo"])) == 0
    assert len(runs.scan_metrics(tmp_path, system="cancer", state="done")) == 4
    with pytest.raises(ValueError, match="unknown filter.*seed.*valid filters: kind, state"):
        runs.scan_metrics(tmp_path, seed=0)
    assert other.exists()


def test_scan_of_missing_or_empty_root_is_empty(tmp_path):
    for root in (tmp_path / "nothing", tmp_path):
        table = runs.scan(root)
        assert len(table) == 0 and list(table.columns) == list(runs.SCAN_COLUMNS)
        metrics = runs.scan_metrics(root)
        assert len(metrics) == 0 and metrics.attrs["problems"] == []
    (tmp_path / "f").write_text("x")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        runs.scan(tmp_path / "f")
