"""`gradlens runs export --tensorboard`: a tiny training run's metrics read back from the event files (an independent
TFRecord reader over tensorboardX's protobuf): every finite metric per seed and env step, NaN left out, the config as
text; a missing tensorboardX is one line naming the install command."""
import struct
import sys

import numpy as np
import pytest

from gradlens import cli, runs, tensorboard
from gradlens.training.loop import TrainConfig
from gradlens.training.train import run_name, train

TINY = TrainConfig(system="linear", method="simulator", horizon=8, total_steps=64, warmup_steps=16, eval_every=16,
                   policy="open_loop", seeds=2)


def _events(logdir):
    """{tag: [(step, value, walltime)]} and the text summaries of every event file in `logdir`."""
    from tensorboardX.proto import event_pb2

    scalars, texts = {}, []
    for file in sorted(logdir.glob("events.out.tfevents.*")):
        data = file.read_bytes()
        at = 0
        while at < len(data):
            (length,) = struct.unpack("<Q", data[at:at + 8])
            record = data[at + 12:at + 12 + length]  # after the length and its CRC
            at += 12 + length + 4  # and the record's CRC
            event = event_pb2.Event.FromString(record)
            for value in event.summary.value:
                if value.HasField("tensor") and value.tensor.string_val:
                    texts.append(value.tensor.string_val[0].decode())
                else:
                    scalars.setdefault(value.tag, []).append((event.step, value.simple_value, event.wall_time))
    return scalars, texts


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    train(TINY, root, progress=False)
    return root


def test_every_finite_metric_of_every_seed_is_exported_against_env_steps(store, tmp_path, capsys):
    assert cli.main(["runs", "export", "--tensorboard", str(tmp_path / "tb"), str(store)]) == 0
    assert "wrote 2 TensorBoard log directories (1 run, one directory per seed)" in capsys.readouterr().out
    metrics = runs.load(store / run_name(TINY))
    start = tensorboard._created(store / run_name(TINY))
    for seed in (0, 1):
        scalars, texts = _events(tmp_path / "tb" / run_name(TINY) / f"seed{seed}")
        rows = metrics[metrics["seed"] == seed].sort_values("env_steps")
        assert [s for s, _, _ in scalars["train/return"]] == rows["env_steps"].tolist()
        np.testing.assert_allclose([v for _, v, _ in scalars["train/return"]], rows["return"], rtol=1e-6)
        np.testing.assert_allclose([w for _, _, w in scalars["train/return"]], start + rows["wall_time"], rtol=1e-9)
        assert "train/model_loss" not in scalars  # the simulator has no model: NaN throughout, left out
        finite = rows["policy_grad_norm"].notna()
        assert len(scalars.get("train/policy_grad_norm", [])) == finite.sum()
        assert texts and '"method": "simulator"' in texts[0]


def test_the_table_is_still_the_default_and_a_missing_writer_is_one_line(store, tmp_path, capsys, monkeypatch):
    assert cli.main(["runs", str(store)]) == 0 and run_name(TINY) in capsys.readouterr().out
    assert cli.main(["runs", "list", str(store)]) == 0 and run_name(TINY) in capsys.readouterr().out
    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # import fails
    assert cli.main(["runs", "export", "--tensorboard", str(tmp_path / "tb"), str(store)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "tensorboardX, which is not installed: pip install tensorboardX" in err
    monkeypatch.undo()
    assert cli.main(["runs", "export", "--tensorboard", str(tmp_path / "tb"), str(tmp_path / "nope")]) == 2
    assert "no run folder or run store at" in capsys.readouterr().err
