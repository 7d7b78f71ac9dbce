"""The Streamlit app (gradlens/app), page by page with Streamlit's AppTest on a prepared run store: a tiny audit, a
copy of it with an injected NaN, a copy whose report.json is unreadable, a tiny training run and a corrupt run folder.
Also the app's pure parts on known answers: path highlighting, the live-audit bounds (its reading: test_conclusions)."""
import dataclasses
import fcntl
import json
import math
import os
import re
import shutil
import subprocess
from pathlib import Path

import plotly.graph_objects as go
import plotly.io as pio
import pytest
from streamlit.testing.v1 import AppTest

import gradlens
from gradlens import cli, runs
from gradlens.analysis import paths
from gradlens.analysis.audit import AuditReport
from gradlens.app import figures, live
from gradlens.app.server import MAIN
from gradlens.report import QUICK_CONFIG, run_audit

# the form's fields (live.SIZES) shrunk, the rest as the form's quick config (so the form can find this audit again)
SMALL = dataclasses.replace(QUICK_CONFIG, n_episodes=16, fit_epochs=2, n_samples=4, landscape_points=11,
                            landscape_2d_points=5)
AUDIT, NAN, UNREADABLE, BROKEN = "linear-audit", "linear-audit-nan", "linear-audit-unreadable", "broken-run"


def _no_png(self, *args, **kwargs):
    raise RuntimeError("PNG export skipped in the app tests")


def _skip_png(mp) -> None:
    """No kaleido + Chromium (about 5 s per figure, or per batch): not what is tested here."""
    mp.setattr(go.Figure, "write_image", _no_png)
    mp.setattr(pio, "write_images", _no_png)


def _copy_audit(root: Path, name: str, seed: int, edit_report) -> None:
    """A copy of the prepared audit under another config (seed) and an older creation time, its report edited."""
    shutil.copytree(root / AUDIT, root / name)
    for file, edit in (("config.json", lambda c: {**c, "seed": seed}),
                       ("status.json", lambda s: {**s, "created": "2000-01-01T00:00:00.000+00:00"})):
        (root / name / file).write_text(json.dumps(edit(json.loads((root / name / file).read_text()))))
    edit_report(root / name / "report.json")


def _inject_nan(path: Path) -> None:
    report = json.loads(path.read_text())
    for row in report["gradients"]:
        if (row["method"], row["horizon"], row["estimator"]) == ("markov", 6, "first-order"):
            row.update(mean_norm=math.nan, cosine=math.nan, n_nonfinite=2)
    report["problems"].append({"diagnostic": "gradients", "method": "markov", "horizon": 6,
                               "message": "2 of 4 first-order gradient samples non-finite (injected by the test)"})
    path.write_text(json.dumps(report))


def _build(root: Path) -> None:
    with pytest.MonkeyPatch.context() as mp:
        _skip_png(mp)
        run_audit("linear", ["markov", "awm-rnn"], [3, 6], root, config=SMALL, name=AUDIT, progress=False)
    gradlens.train(gradlens.TrainConfig(system="linear", method="simulator", horizon=6, total_steps=120,
                                        warmup_steps=24, eval_every=24, policy="open_loop", seeds=2),
                   out=root, progress=False)
    _copy_audit(root, NAN, 1, _inject_nan)
    _copy_audit(root, UNREADABLE, 2, lambda path: path.write_text('{"system": {"name": "lin'))
    (root / BROKEN).mkdir()
    (root / BROKEN / "config.json").write_text("{not json")


def prepared_store(tmp_path_factory) -> Path:
    """The prepared run store, built once per test session (shared by pytest-xdist workers through a file lock)."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the session's folder above the workers' own
    root = base / "gradlens-app-store"
    with open(base / "gradlens-app-store.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (root / ".ready").exists():
            shutil.rmtree(root, ignore_errors=True)
            _build(root)
            (root / ".ready").touch()
    return root


@pytest.fixture(scope="session")
def store(tmp_path_factory) -> Path:
    return prepared_store(tmp_path_factory)


def _app(root, page: str | None = None, entry: Path = MAIN) -> AppTest:
    at = AppTest.from_file(str(entry), default_timeout=60)
    at.session_state["runs_root"] = str(root)
    at.run()
    if page:
        at.switch_page(f"app_pages/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _charts(at) -> list[dict]:
    """The plotly figures on screen, as their JSON specs."""
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def _titles(at) -> list[str]:
    return [spec["layout"]["title"]["text"] for spec in _charts(at)]


def _texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


def _by_label(widgets, start: str):
    return next(w for w in widgets if w.label.startswith(start))


# --------------------------------------------------------------------------------------------- the pure parts
def test_highlighted_nodes_are_exactly_those_on_a_path():
    G = paths.graph("markov", 4, policy="open")
    assert figures.on_paths(G, ("a", 1), ("s", 3)) == {("a", 1), ("s", 2), ("s", 3)}
    assert figures.on_paths(G, ("a", 3), ("s", 3)) == set()  # causality: a_3 only reaches ŝ_4 onwards
    G = paths.graph("hwm-transformer", 5, policy="open")
    fig = figures.dependency_graph_figure(G, ("a", 1), ("s", 6))
    lit = figures.on_paths(G, ("a", 1), ("s", 6))
    red_edges = sum(u in lit and v in lit for u, v in G.edges)
    assert sum(x is None for x in fig.data[1].x) == red_edges  # one segment (ended by None) per highlighted edge
    assert red_edges + sum(x is None for x in fig.data[0].x) == G.number_of_edges()
    with pytest.raises(ValueError, match="time-step graphs"):
        figures.dependency_graph_figure(paths.graph("hwm-transformer", 3, level="architecture"))


def test_live_audit_bounds_are_checked_in_the_users_words():
    assert live.parse_horizons(" 8, 4,4; 2") == [2, 4, 8]
    for text, message in (("4, eight", "whole numbers"), ("", "at least one"), ("60", "between 1 and 50"),
                          ("1,2,3,4,5", "at most 4 horizons"), ("0", "between 1 and 50")):
        with pytest.raises(ValueError, match=message):
            live.parse_horizons(text)


def test_cli_app_rejects_a_bad_port_and_a_file_as_run_store(tmp_path, capsys):
    assert cli.main(["app", "--port", "0"]) == 2
    assert "port must be an integer between 1 and 65535, got 0" in capsys.readouterr().err
    (tmp_path / "file").write_text("")
    assert cli.main(["app", "--runs", str(tmp_path / "file")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------- pages, no run needed
def test_empty_store_opens_on_the_demo_offer_and_the_exact_path_counts(tmp_path):
    at = _app(tmp_path / "no-runs-yet")
    assert [t.value for t in at.title] == ["Gradient audit overview"]
    assert "No finished audit in the run store" in _texts(at.info)
    demo = _by_label(at.button, "Run the demo: double_pendulum, markov, hwm-transformer, awm-transformer, H = 4, 8")
    assert demo is not None and at.checkbox(key="demo_quick").value is True
    at.checkbox(key="demo_quick").uncheck().run()
    assert _by_label(at.button, "Run the demo").label.endswith("H = 5, 10, 20")  # the full `gradlens demo`
    assert _titles(at) == ["Gradient paths from the actions to the return"]
    assert not at.error and "No finished audit" in _texts(at.sidebar.caption)


def test_the_top_level_entry_script_is_the_same_app_with_its_pages_by_absolute_path(tmp_path):
    """`streamlit run app/streamlit_app.py` (from a checkout): the same pages, found from outside the package."""
    entry = Path(__file__).parents[1] / "app" / "streamlit_app.py"
    at = _app(tmp_path / "no-runs-yet", entry=entry)
    assert [t.value for t in at.title] == ["Gradient audit overview"]
    at.switch_page(str(Path(gradlens.__file__).parent / "app" / "app_pages" / "paths.py")).run()
    assert not at.exception and [t.value for t in at.title] == ["Gradient paths"]


def test_paths_page_counts_known_closed_forms(tmp_path):
    at = _app(tmp_path / "no-runs-yet", "paths")
    assert at.metric[0].value == "16" and at.metric[0].label == "paths a₁ → ŝ₆"  # hwm-transformer: 2^(t-k-1)
    at.slider(key="pg_horizon").set_value(8).run()
    at.radio(key="pg_policy").set_value("closed").run()
    at.toggle(key="pg_stop").set_value(False).run()
    assert at.metric[0].value == "2,187"  # full closed loop: 3^(t-k-1) = 3^7
    _by_label(at.slider, "from action").set_value(3).run()
    assert at.metric[0].value == "243"  # 3^(9-3-1)
    at.selectbox(key="pg_class").set_value("awm-transformer").run()
    G = paths.graph("awm-transformer", 8, policy="closed", stop_gradient=False)
    assert at.metric[0].value == f"{paths.action_to_state(G, 3, 9).count:,}"
    assert len(_charts(at)) == 3 and not at.error and not at.exception
    assert _titles(at)[0] == "awm-transformer, H = 8, closed-loop policy"
    table = at.dataframe[0].value
    assert table.set_index("model class").loc["hwm-transformer", "paths a₃ → ŝ₉"] == "243"


# --------------------------------------------------------------------------------------------- pages on the store
@pytest.mark.slow
def test_overview_shows_gradients_beside_the_simulator_and_reads_them(store):
    at = _app(store)
    report = AuditReport.load(store / AUDIT)
    assert at.session_state["audit_run"] == str(store / AUDIT)  # the newest finished audit
    assert _titles(at) == ["Policy-gradient statistics versus horizon", "Open-loop validation error versus horizon"]
    traces = {t["name"] for t in _charts(at)[0]["data"]}
    assert {"simulator", "markov", "awm-rnn"} <= traces
    cosines = {r["method"]: r["cosine"] for r in report.gradients
               if r["horizon"] == 6 and r["estimator"] == "first-order" and r["method"] != "simulator"}
    best = max(cosines, key=cosines.get)
    closest = re.search(rf"{best}'s gradient is the closest to the simulator's at the largest horizon, H = 6: "
                        r"cosine (-?[\d.]+)", _texts(at.markdown))  # gradlens.conclusions, as in report.html
    assert closest and float(closest.group(1)) == pytest.approx(cosines[best], abs=5e-4)
    summary = at.dataframe[0].value
    assert len(summary) == 6 and set(summary["method"]) == {"simulator", "markov", "awm-rnn"}
    assert not at.error
    # the tiny audit's 2-epoch fits fail the fit bar: said above the gradients and listed under the fits
    assert not report.fits["markov"]["passes_fit_bar"][1]
    warned = _texts(at.main.warning)
    assert "Caution: the gradients of markov at H = 3, 6" in warned
    assert "markov does not beat repeating the last state 2x at H = 6" in warned and "did not converge" in warned
    assert "Do not read markov's gradients at H = 3, 6 as a property of its architecture" in _texts(at.markdown)
    assert f"Skipped run folder **{BROKEN}**: config.json is corrupt" in _texts(at.sidebar.warning)


@pytest.mark.slow
def test_an_audit_with_a_nan_is_shown_with_its_problems(store):
    at = _app(store)
    at.sidebar.selectbox(key="audit_run").set_value(str(store / NAN)).run()
    assert "This audit met 1 problem(s)" in _texts(at.warning)
    assert "injected by the test" in _texts(at.warning)
    assert "markov's gradient is not finite in 2 of 6 samples at H = 6" in _texts(at.markdown)
    assert len(_charts(at)) == 2 and not at.exception  # gradients, and the fits' open-loop error


@pytest.mark.slow
def test_an_unreadable_report_is_named_with_its_reason_and_hides_no_other_run(store):
    at = _app(store)
    picker = at.sidebar.selectbox(key="audit_run")
    assert [option.rsplit(" · ", 1)[1] for option in picker.options] == [AUDIT, NAN]  # newest first; not the damaged
    skipped = [w for w in _texts(at.sidebar.warning).split("\n") if UNREADABLE in w]
    assert skipped and "report.json" in skipped[0] and "corrupt" in skipped[0]
    at.switch_page("app_pages/jacobians.py").run()
    assert not at.exception and not at.error
    at.sidebar.selectbox(key="audit_run").set_value(str(store / AUDIT)).run()
    assert not at.error and len(_charts(at)) == 1


@pytest.mark.slow
def test_jacobians_page_shows_the_chosen_model_and_horizon(store):
    at = _app(store, "jacobians")
    assert _titles(at) == ["Jacobian norms ‖d ŝ_t / d a_k‖ at H = 6"]
    assert len(_charts(at)[0]["data"]) == 3  # simulator, markov, awm-rnn side by side
    at.selectbox(key="jac_method").set_value("awm-rnn").run()
    at.selectbox(key="jac_horizon").set_value(3).run()
    heatmap = _charts(at)[0]["data"]
    want = next(r for r in AuditReport.load(store / AUDIT).jacobians if r["method"] == "awm-rnn" and r["horizon"] == 3)
    assert len(heatmap) == 1 and len(heatmap[0]["z"]) == 4 and len(heatmap[0]["z"][0]) == 3  # [H+1][H]
    table = at.dataframe[0].value
    assert list(table["model"]) == ["awm-rnn"] and table["growth rate (ln per step)"][0] == want["growth_rate"]


@pytest.mark.slow
def test_landscapes_page_shows_slices_and_roughness_per_model_and_horizon(store):
    at = _app(store, "landscapes")
    assert _titles(at) == ["Return landscape J(a_1)", "Return along a random direction in θ",
                           "Return on a random plane in θ at H = 6"]
    at.radio(key="land_plane_h").set_value(3).run()
    assert _titles(at)[-1] == "Return on a random plane in θ at H = 3"
    at.multiselect(key="land_methods").set_value(["simulator", "awm-rnn"]).run()
    at.multiselect(key="land_horizons").set_value([3]).run()
    table = at.dataframe[0].value
    assert len(table) == 6 and set(table["slice"]) == {"action", "direction", "plane"} and set(table["H"]) == {3}
    want = next(r for r in AuditReport.load(store / AUDIT).landscapes
                if (r["method"], r["horizon"], r["kind"]) == ("awm-rnn", 3, "direction"))
    got = table[(table["model"] == "awm-rnn") & (table["slice"] == "direction")]["normalised TV"].item()
    assert got == want["roughness"]["normalized_tv"]
    assert _titles(at)[-1] == "Return on a random plane in θ at H = 3"
    at.multiselect(key="land_methods").set_value([]).run()
    assert "No landscape for this choice" in _texts(at.warning) and not at.exception


@pytest.mark.slow
def test_learning_curves_page_shows_training_beside_the_same_systems_audit(store):
    at = _app(store, "curves")
    assert at.selectbox(key="lc_system").value == "linear"
    assert _titles(at) == ["Return in the true system during training (linear)",
                           "Their policy gradients versus horizon"]
    curve = next(t for t in _charts(at)[0]["data"] if t.get("name", "").startswith("simulator ("))  # the median
    assert curve["name"].startswith("simulator (2 seeds, ") and curve["x"] == [24, 48, 72, 96, 120]
    lines = [t for t in _charts(at)[1]["data"] if t.get("fill") is None]  # the shaded bands aside
    assert {t["name"] for t in lines} == {"simulator", "simulator (zeroth-order)"}
    at.selectbox(key="lc_metric").set_value("policy_grad_norm").run()
    assert _titles(at)[0] == "Policy-gradient norm during training (linear)"
    assert not at.error and not at.exception


def test_learning_curves_of_a_run_in_progress_redraw_themselves(store, tmp_path):
    """A run whose writer is alive (this process) is "running": its panel is a fragment redrawn every few seconds,
    said in a caption with the latest env step; once the run is done the caption goes."""
    trained = next(p for p in store.iterdir() if p.name.startswith("linear-simulator"))
    run = Path(shutil.copytree(trained, tmp_path / trained.name))
    runs.set_status(run, "running")
    at = _app(tmp_path, "curves")
    live_line = next(c.value for c in at.caption if "Live:" in str(c.value))
    assert f"{run.name} training, redrawn every 5 s (latest env step: {run.name} 120)" in live_line
    runs.set_status(run, "done")
    at.run()
    assert not any("Live:" in str(c.value) for c in at.caption) and not at.exception


@pytest.mark.slow
def test_audit_form_refuses_bad_bounds_and_reuses_a_stored_audit(store):
    at = _app(store, "audit")
    at.text_input(key="form_horizons").input("10, 60")
    _by_label(at.button, "Run the audit").click().run()
    assert "at most 4 horizons between 1 and 50" in _texts(at.error)
    at.selectbox(key="form_system").set_value("linear")
    at.multiselect(key="form_models").set_value(["markov", "awm-rnn"])
    at.text_input(key="form_horizons").input("6, 3")
    for name in live.SIZES:
        at.number_input(key=f"form_{name}").set_value(getattr(SMALL, name))
    _by_label(at.button, "Run the audit").click().run()
    assert [t.value for t in at.title] == ["Gradient audit overview"]
    assert f"This audit is already in the run store ({AUDIT})" in _texts(at.success)
    assert at.session_state["audit_run"] == str(store / AUDIT)


@pytest.mark.slow
def test_a_live_audit_runs_with_progress_and_is_stored_as_a_run(tmp_path, monkeypatch):
    _skip_png(monkeypatch)
    root = tmp_path / "live"
    at = _app(root, "audit")
    at.selectbox(key="form_system").set_value("linear")
    at.multiselect(key="form_models").set_value([])  # the simulator alone: nothing to fit
    at.text_input(key="form_horizons").input("3")
    for name, value in (("n_episodes", 8), ("fit_epochs", 1), ("n_samples", 2), ("landscape_points", 3),
                        ("landscape_2d_points", 0)):
        at.number_input(key=f"form_{name}").set_value(value)
    _by_label(at.button, "Run the audit").click().run(timeout=300)
    assert not at.exception and not at.error
    table = runs.scan(root)
    assert list(table["kind"]) == ["audit"] and list(table["state"]) == ["done"]
    assert f"stored as {table['name'][0]}" in _texts(at.success)
    assert at.session_state["audit_run"] == table["path"][0]
    assert _titles(at) == ["Policy-gradient statistics versus horizon"]


def test_an_interrupted_run_is_named_in_the_sidebar_with_the_command_that_continues_it(tmp_path):
    from gradlens.training.loop import TrainConfig

    run = runs.create(tmp_path, TrainConfig(method="simulator").to_dict(), name="cancer-simulator-H100-seed0")
    finished = subprocess.Popen(["true"])
    finished.wait()
    dead = finished.pid  # the writer of a run killed by the OOM killer or kill -9
    status = json.loads((run / "status.json").read_text())
    (run / "status.json").write_text(json.dumps({**status, "pid": dead}))
    at = _app(tmp_path)
    warned = _texts(at.sidebar.warning)
    assert f"Run **{run.name}** was interrupted: its process {dead} is gone" in warned
    assert f"gradlens train --resume {run}" in warned
