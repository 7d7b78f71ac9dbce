"""Issue 18, items 7, 10 and 11: `gradlens plot curves` / `plot audit` figures and formats, the resolved
configuration and speed `train` prints, `--name` / `--overwrite`, and a progress bar no log line is printed into."""
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from gradlens import cli, plots, runs
from test_plots import METHODS, _report

ROOT = Path(__file__).resolve().parents[1]  # subprocesses import this checkout's gradlens
TINY = ["--system", "linear", "--method", "simulator", "--horizon", "8", "--steps", "96", "--warmup", "32"]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """A run store holding one finished TINY run of two seeds."""
    root = tmp_path_factory.mktemp("store")
    assert cli.main(["train", *TINY, "--seeds", "2", "--out", str(root), "--quiet"]) == 0
    return root


@pytest.fixture
def images(monkeypatch) -> list[dict]:
    """Kaleido replaced by a writer of a tiny file that records each figure's JSON."""
    seen = []

    def fake(self, path, *args, **kwargs):
        seen.append(self.to_dict())
        Path(path).write_text("<svg/>" if str(path).endswith(".svg") else "PNG")

    monkeypatch.setattr(plots.go.Figure, "write_image", fake)
    return seen


def _one_line_error(argv, capsys) -> str:
    try:
        code = cli.main([str(a) for a in argv])
    except SystemExit as exit_:
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def _frame() -> pd.DataFrame:
    """Two methods, three seeds, every logged metric (zeroed policy gradients included)."""
    return pd.DataFrame([{"system": "linear", "method": m, "horizon": 8, "env_steps": 32 * (i + 1), "seed": s,
                          "return": -10.0 + i + s, "model_loss": 1.0 / (i + 1), "policy_grad_norm": 1.0 + s,
                          "cosine_to_simulator": 0.98 + 0.01 * s, "relative_error_to_simulator": 0.1,
                          "wall_time": 1.0 * i, "zeroed_policy_grads": s}
                         for m in ("simulator", "markov") for s in range(3) for i in range(4)])


# ---------------------------------------------------------------------------------------------------- item 7: figures
def test_training_curves_have_a_panel_per_metric_seed_lines_a_mean_and_a_clipped_band():
    fig = plots.training_curves_figure(_frame(), width=900, height=700).to_dict()
    titles = [a["text"] for a in fig["layout"]["annotations"]]
    assert titles == [title for title, _ in plots.TRAINING_METRICS.values()]
    assert fig["layout"]["width"] == 900 and fig["layout"]["height"] == 700
    panels = {t.get("xaxis", "x") for t in fig["data"]}
    assert len(panels) == len(titles)
    for panel in panels:
        traces = [t for t in fig["data"] if t.get("xaxis", "x") == panel]
        seeds = [t for t in traces if ", seed " in t["name"]]
        bands = [t for t in traces if t.get("fill") == "toself"]
        means = [t for t in traces if t not in seeds and t not in bands]
        assert len(seeds) == 6 and len(bands) == 2 and len(means) == 2, panel
    legend = [t["name"] for t in fig["data"] if t.get("showlegend") is not False]
    assert legend == ["markov (3 seeds, 1/3 converged, median final -6)",
                      "simulator (3 seeds, 1/3 converged, median final -6)"]
    cosine = titles.index("cosine with the simulator") + 1
    band = next(t for t in fig["data"] if t.get("fill") == "toself" and t.get("xaxis", "x") == f"x{cosine}")
    assert max(band["y"]) <= 1.0 < 0.99 + 4.303 * 0.01 / math.sqrt(3)  # the unclipped 95 % CI passes 1
    mean = next(t for t in fig["data"] if t["name"].startswith("markov (") and t.get("xaxis", "x") == "x")
    assert list(mean["y"]) == [-9.0, -8.0, -7.0, -6.0]  # the mean over seeds 0, 1, 2


def test_plot_curves_writes_every_logged_metric_at_the_asked_size(store, images, tmp_path, capsys):
    out = tmp_path / "fig" / "curves.svg"
    assert cli.main(["plot", "curves", str(store), "--out", str(out), "--width", "800", "--height", "600"]) == 0
    assert out.read_text() == "<svg/>" and not out.with_suffix(".html").exists()
    assert capsys.readouterr().out.startswith(f"wrote {out}\n")
    fig, = images
    titles = [a["text"] for a in fig["layout"]["annotations"]]
    # the simulator logs no model loss: the metrics that hold a value, each its own panel
    assert titles == ["return in the true system", "policy-gradient norm", "cosine with the simulator",
                      "relative error to the simulator", "wall time (s)"]
    assert (fig["layout"]["width"], fig["layout"]["height"]) == (800, 600)
    assert sum(t["name"] == "simulator, seed 1" for t in fig["data"]) == len(titles)


def test_a_png_kaleido_cannot_render_falls_back_to_html_in_one_line(store, tmp_path, monkeypatch, capsys):
    def no_chrome(self, *args, **kwargs):
        raise RuntimeError("\nKaleido requires Google Chrome to be installed.\n")

    monkeypatch.setattr(plots.go.Figure, "write_image", no_chrome)
    out = tmp_path / "curves.png"
    assert cli.main(["plot", "curves", str(store), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert not out.exists() and "environment steps" in out.with_suffix(".html").read_text()
    assert captured.err == ("note: no curves.png (Kaleido requires Google Chrome to be installed.); wrote curves.html "
                            f"instead (for PNGs: {plots.IMAGE_HELP})\n")
    assert f"wrote {out.with_suffix('.html')}\n" in captured.out


@pytest.mark.parametrize("argv, message", [
    (["--out", "OUT/c.jpg"], "cannot write figure OUT/c.jpg: unknown format '.jpg'; the suffix must be one of .html, "
                             ".png, .svg"),
    (["--out", "OUT/c.svg", "--width", "12"], "a size must be an integer number of pixels from 100 to 10000, got "
                                              "'12'"),
    (["--out", "OUT/c.svg", "--height", "tall"], "got 'tall'"),
])
def test_bad_figure_outputs_are_one_line(argv, message, store, tmp_path, capsys):
    argv = [a.replace("OUT", str(tmp_path)) for a in argv]
    assert message.replace("OUT", str(tmp_path)) in _one_line_error(["plot", "curves", store, *argv], capsys)


def test_plot_audit_writes_each_audit_figure_in_the_format_of_its_suffix(tmp_path, images, capsys):
    run = tmp_path / "audit"
    run.mkdir()
    jacobians = [{"method": m, "horizon": 8, "norms": [[1.0] * 8] * 9, "growth_rate": 0.1} for m in METHODS]
    _report(jacobians=jacobians).save(run)
    assert cli.main(["plot", "audit", str(run), "--out", str(tmp_path / "figs" / "toy.svg"), "--width", "640"]) == 0
    names = sorted(p.name for p in (tmp_path / "figs").iterdir())
    assert names == ["toy-gradients.svg", "toy-jacobians.svg", "toy-landscape_plane.svg"]
    assert all(fig["layout"]["width"] == 640 for fig in images)
    assert cli.main(["plot", "audit", str(run), "--figure", "gradients", "--out", str(tmp_path / "g.html")]) == 0
    assert "Policy-gradient statistics versus horizon" in (tmp_path / "g.html").read_text()
    assert (tmp_path / "g.png").read_text() == "PNG" and capsys.readouterr().out.endswith(f"{tmp_path / 'g.png'}\n")
    err = _one_line_error(["plot", "audit", run, "--figure", "bars", "--out", tmp_path / "b.html"], capsys)
    assert f"no figure 'bars' in {run}; it has gradients, jacobians, landscape_plane" in err
    err = _one_line_error(["plot", "audit", tmp_path / "figs", "--out", tmp_path / "b.html"], capsys)
    assert "report.json is missing: not an audit run folder" in err


# ------------------------------------------------------------------------------------- item 11: configuration, names
def test_train_prints_its_configuration_and_speed_and_takes_a_name(tmp_path, capsys):
    out = tmp_path / "store"
    argv = ["train", *TINY, "--out", str(out), "--name", "mine", "--quiet"]
    assert cli.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == (f"training linear with simulator: H=8, 96 env steps (32 warm-up), seed 0, policy time input "
                        f"raw, policy lr 0.0001 -> {out / 'mine'}")
    speed = re.fullmatch(r"trained 96 env steps x 1 seed\(s\) in ([\d.]+) s: ([\d.]+) env steps/s per seed "
                         r"\(compilation included\)", lines[1])
    assert speed and float(speed[2]) == pytest.approx(96 / float(speed[1]), rel=0.05)
    assert lines[-1] == f"run folder {out / 'mine'}" and runs.status(out / "mine")["state"] == "done"
    err = _one_line_error(argv, capsys)
    assert f"run folder {out / 'mine'} already exists: continue it with --resume, replace it with --overwrite" in err
    assert "resume=True" not in err
    (out / "mine" / "marker").write_text("")
    assert cli.main([*argv, "--overwrite"]) == 0 and not (out / "mine" / "marker").exists()
    assert len(runs.load(out / "mine")) == 3 and capsys.readouterr().out.startswith("training linear")
    assert "--resume continues a run and --overwrite replaces it" in _one_line_error([*argv, "--overwrite",
                                                                                     "--resume"], capsys)
    assert "run name must be a plain folder name" in _one_line_error([*argv, "--name", "../up"], capsys)
    assert not (tmp_path / "up").exists()
    resume = ["train", "--resume", str(out / "mine"), "--quiet"]
    assert "(for a run trained with --name, add --name mine)" in _one_line_error(resume, capsys)
    assert "the run is already finished" in _one_line_error([*resume, "--name", "mine"], capsys)


def test_audit_prints_its_configuration_before_any_work(tmp_path, monkeypatch, capsys):
    import gradlens.report

    def stop(*args, **kwargs):
        raise ValueError("stopped before the work")

    monkeypatch.setattr(gradlens.report, "run_audit", stop)
    argv = ["audit", "--system", "cancer", "--models", "markov", "--horizons", "5,10", "--samples", "8",
            "--episodes", "16", "--epochs", "3", "--out", tmp_path]
    assert cli.main([str(a) for a in argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == (f"audit cancer: models markov beside the simulator, H=5, 10, 16 episodes (data auto), up "
                            f"to 3 fitting epochs, 8 gradient samples per model and H, policy auto, seed 0 -> "
                            f"{tmp_path}\n")
    assert captured.err == "gradlens audit: error: stopped before the work\n"


def test_sweep_prints_its_configuration_and_speed(tmp_path, capsys):
    argv = ["sweep", "--systems", "linear", "--methods", "simulator", "--horizons", "8", "--steps", "96",
            "--warmup", "32", "--jobs", "1", "--out", str(tmp_path), "--quiet"]
    assert cli.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == (f"sweep: 1 run(s): systems linear x methods simulator x H=8, 96 env steps (32 warm-up), "
                        f"seed 0 -> {tmp_path} (local backend)")
    assert re.fullmatch(r"trained 96 env steps x 1 seed\(s\) in [\d.]+ s: [\d.]+ env steps/s per seed \(all runs "
                        r"trained, compilation included\)", lines[-1])


# ------------------------------------------------------------------------------------------ item 10: the progress bar
def _in_a_terminal(argv, cwd) -> tuple[int, str]:
    """Run `python -m gradlens.cli argv` with stdout and stderr on a pseudo-terminal (120 columns); its exit code and
    everything it wrote."""
    import fcntl
    import struct
    import termios

    main, child = os.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu", "TERM": "xterm"}
    proc = subprocess.Popen([sys.executable, "-m", "gradlens.cli", *argv], stdin=child, stdout=child, stderr=child,
                            cwd=cwd, env=env)
    os.close(child)
    chunks = []
    while True:
        try:
            data = os.read(main, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(main)
    return proc.wait(timeout=120), b"".join(chunks).decode(errors="replace")


def test_log_lines_go_above_the_progress_bar_and_its_eta_waits_for_compilation(tmp_path):
    code, text = _in_a_terminal(["train", *TINY, "--out", str(tmp_path)], tmp_path)
    assert code == 0, text
    segments = [s for s in re.split(r"[\r\n]", text) if s.strip()]
    bars = [s for s in segments if re.search(r"\|\s*\d+/3 \[", s)]
    logs = [s for s in segments if "step " in s]
    assert bars and [s.split()[:2] for s in logs] == [["step", "32"], ["step", "64"], ["step", "96"]]
    assert not [s for s in segments if s in bars and "step " in s], "a log line was printed inside the bar"
    compiling = [s for s in bars if "compiling…" in s]
    first_done = next(s for s in bars if "1/3 [" in s)
    assert compiling and all(" 0/3 [" in s for s in compiling)
    assert "<?" in first_done  # no ETA from the compiling chunk
    assert segments.index(compiling[-1]) < segments.index(logs[0])
