"""`gradlens.audit`: what it reports on systems with known answers, its JSON round trip, NaN reporting, bad input,
and `gradlens audit` / `gradlens demo` end to end."""
import dataclasses
import json
import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradlens as gl
from gradlens import cli
from gradlens.analysis.audit import STAGES, AuditConfig, AuditReport, Progress, audit, summary_rows
from gradlens.analysis.rows import ROW_TYPES, GradientRow
from gradlens.envs.base import System
from gradlens.fitting.record import FIT_BAR, FitRecord
from gradlens.report import PLOTLY_JS, SECTION_TEXT, format_summary, report_html

SMALL = AuditConfig(n_episodes=16, fit_epochs=2, n_samples=8, landscape_points=11, landscape_2d_points=0)


def _same(a, b):
    """Structural equality with NaN == NaN (what a JSON round trip must preserve)."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    return a == b and type(a) is type(b)


@pytest.fixture(scope="module")
def pendulum_report():
    """Simulator only: the chaotic pendulum's own gradient behaviour, no model fitted."""
    return audit("double_pendulum", [], [5, 10, 25], config=dataclasses.replace(SMALL, n_samples=16),
                 progress=False)


def test_pendulum_simulator_gradients_explode_with_horizon(pendulum_report):
    r = pendulum_report
    assert r.system["horizon_mode"] == "rebuilt" and r.system["policy"] == "open_loop"
    jac = {row["horizon"]: row for row in r.jacobians}
    assert all(jac[h]["growth_rate"] > 0 for h in r.horizons)  # chaos: positive growth of ‖d s_t / d a_1‖
    # d s_t / d a_1 is the only non-zero column (later actions are ignored) and grows with t
    norms = np.asarray(jac[25]["norms"])
    assert np.all(norms[:, 1:] == 0) and norms[25, 0] > 3 * norms[1, 0]
    grads = {row["horizon"]: row for row in r.gradients if row["estimator"] == "first-order"}
    sample_norms = [grads[h]["sample_norm"] for h in r.horizons]
    assert sample_norms[-1] > 2 * sample_norms[0]  # per-sample gradient norm grows with H
    assert grads[25]["snr"] < grads[5]["snr"]  # and its signal drowns in the chaos
    assert all(grads[h]["cosine"] == pytest.approx(1.0) for h in r.horizons)  # the reference is the simulator's own
    assert {row["estimator"] for row in r.gradients} == {"first-order", "zeroth-order"}
    assert r.problems == []


def test_contracting_linear_system_reports_negative_growth():
    A = 0.5 * np.array([[math.cos(0.7), -math.sin(0.7)], [math.sin(0.7), math.cos(0.7)]])
    system = lambda h: gl.envs.make("linear", A=A, B=[[1.0], [0.5]], horizon=h)  # noqa: E731
    r = audit(system, [], [6, 12], config=dataclasses.replace(SMALL, policy="open_loop"), progress=False)
    for row in r.jacobians:  # ‖A^{d-1} B‖ = 0.5^{d-1} ‖B‖: slope log 0.5 exactly
        assert row["growth_rate"] == pytest.approx(math.log(0.5), abs=1e-4)
        assert row["step_norms"] == pytest.approx([0.5] * row["horizon"], rel=1e-5)


def test_report_round_trips_through_json_and_holds_every_section(tmp_path):
    r = audit("linear", ["awm-rnn"], [3, 6], config=SMALL, progress=False)
    assert r.models == ["awm-rnn"] and r.methods == ["simulator", "awm-rnn"]
    for section in ("gradients", "jacobians", "landscapes", "paths"):
        methods = {row["model_class"] if section == "paths" else row.method for row in getattr(r, section)}
        assert methods == {"simulator", "awm-rnn"}, section
    assert set(r.fits) == {"awm-rnn"} and r.fits["awm-rnn"]["source"] == "fitted"
    assert r.fits["awm-rnn"]["epochs"] == SMALL.fit_epochs and math.isfinite(r.fits["awm-rnn"]["open_loop_mse"])
    kinds = {(row["method"], row["horizon"], row["kind"]) for row in r.landscapes}
    assert kinds == {(m, h, k) for m in r.methods for h in (3, 6) for k in ("action", "direction")}
    back = AuditReport.from_json(r.to_json())
    assert _same(dataclasses.asdict(back), json.loads(r.to_json()))
    assert back.to_json() == r.to_json()
    for section, kind in ROW_TYPES.items():  # the same typed rows back, field by field (NaN == NaN)
        rows, again = getattr(r, section), getattr(back, section)
        assert all(type(a) is type(b) is kind and _same(a.as_dict(), b.as_dict()) for a, b in zip(rows, again))
        assert len(rows) == len(again) and (rows or section in ("problems", "warnings")), section
    saved = AuditReport.load(r.save(tmp_path))
    assert saved.to_json() == r.to_json()
    assert len(summary_rows(r)) == 2 * 2 and "awm-rnn" in format_summary(r)


def test_nan_in_model_params_is_reported_with_where_it_appeared():
    system = gl.envs.make("linear", horizon=6)
    model = gl.models.make("awm-rnn", system)
    params = model.init(jax.random.PRNGKey(0))
    poisoned = jax.tree_util.tree_map(lambda x: x.at[(0,) * x.ndim].set(np.nan) if x.ndim else x, params)
    r = audit("linear", [model], [3, 6], params={"awm-rnn": poisoned}, config=SMALL, progress=False)
    assert r.fits["awm-rnn"]["source"] == "given"
    where = {(p["diagnostic"], p["method"], p["horizon"]) for p in r.problems}
    for h in (3, 6):
        for diagnostic in ("gradients", "jacobians", "landscapes"):
            assert (diagnostic, "awm-rnn", h) in where
        assert not any(p[1] == "simulator" for p in where)
    assert ("fits", "awm-rnn", None) in where
    grads = [row for row in r.gradients if row["method"] == "awm-rnn"]
    assert all(row["n_nonfinite"] == SMALL.n_samples and math.isnan(row["mean_norm"]) for row in grads)
    assert "non-finite" in report_html(r, {})  # shown, not dropped


def test_bad_input_raises_clear_errors():
    with pytest.raises(ValueError, match="non-empty list"):
        audit("linear", ["markov"], [], config=SMALL)
    with pytest.raises(ValueError, match="unknown model 'nope'.*awm-transformer"):
        audit("linear", ["nope"], [3], config=SMALL)
    with pytest.raises(ValueError, match="unknown system"):
        audit("nope", ["markov"], [3], config=SMALL)
    short = gl.models.make("awm-transformer", gl.envs.make("linear", horizon=20), max_horizon=8)
    with pytest.raises(ValueError, match="beyond model 'awm-transformer'.s context \\(max_horizon 8\\)"):
        audit("linear", [short], [4, 12], config=SMALL)
    wrong = gl.models.make("markov", gl.envs.make("cancer"))
    with pytest.raises(ValueError, match="model 'markov' is for obs_dim 2.*has obs_dim 4"):
        audit("linear", [wrong], [3], config=SMALL)
    with pytest.raises(ValueError, match="params given for awm-rnn"):
        audit("linear", ["markov"], [3], params={"awm-rnn": {}}, config=SMALL)
    with pytest.raises(ValueError, match="n_samples must be an integer >= 2"):
        AuditConfig(n_samples=1)
    with pytest.raises(ValueError, match="pays its reward at its last step only.*lambda h"):
        audit(gl.envs.make("double_pendulum", horizon=20), [], [5, 20], config=SMALL)
    with pytest.raises(ValueError, match="exceeds system 'cancer'.s horizon 100"):
        audit(gl.envs.make("cancer"), [], [200], config=SMALL)


def test_cli_audit_bad_input_is_one_line_without_traceback(tmp_path, capsys):
    for argv, message in ((["--models", "markov,nope", "--horizons", "3"], "unknown model 'nope'"),
                          (["--models", "markov", "--horizons", "3,x"], "comma-separated list of integers"),
                          (["--models", "markov", "--horizons", ","], "comma-separated list"),
                          (["--models", "markov", "--horizons", "0"], "each horizon must be a positive integer")):
        code = cli.main(["audit", "--system", "linear", *argv, "--out", str(tmp_path / "runs")])
        err = capsys.readouterr().err
        assert code == 2 and message in err and "Traceback" not in err and err.count("\n") == 1
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())  # nothing half-made


@pytest.mark.slow
def test_demo_quick_writes_a_complete_run(tmp_path, capsys):
    assert cli.main(["demo", "--quick", "--out", str(tmp_path), "--quiet"]) == 0
    out = capsys.readouterr().out
    (run,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert str(run) in out and "gradlens app --runs" in out and "awm-transformer" in out
    assert gl.runs.status(run)["state"] == "done"
    report = AuditReport.load(run)
    assert report.models == ["markov", "hwm-transformer", "awm-transformer"]
    for name, fit in report.fits.items():  # fitted to a plateau, each beats repeating the last state 2x at every H
        assert fit["converged"] and fit["passes_fit_bar"] == [True, True], (name, fit["ratio_to_repeat"])
    assert report.warnings == [] and "WARNING" not in out
    page = (run / "report.html").read_text()
    for name, (heading, _) in SECTION_TEXT.items():
        assert f"id='{name}'" in page and heading in page
    assert "predictable at every audited horizon" in page and "id='fit_error'" in page
    for section in ("problems", "fits", "summary"):
        assert f"id='{section}'" in page
    assert page.count("<script") >= len(SECTION_TEXT)
    assert re.findall(r"<script[^>]*\bsrc=\"([^\"]*)\"", page) == [PLOTLY_JS]  # offline: the run's own copy
    assert (run / "figures" / "gradients.html").exists() and (run / "figures" / "plotly.min.js").exists()
    assert gl.runs.scan(tmp_path).loc[0, "kind"] == "audit"


# --------------------------------------------------------------------------------------------- fit records and bar
TINY = dataclasses.replace(SMALL, n_samples=2, landscape_points=2)


@pytest.mark.slow
def test_an_undertrained_model_is_flagged_everywhere(tmp_path):
    r = audit("linear", ["markov"], [2, 4], config=dataclasses.replace(TINY, fit_epochs=1), progress=False)
    back = AuditReport.load(r.save(tmp_path))
    fit = back.fits["markov"]
    assert fit["epochs"] == 1 and fit["max_epochs"] == 1 and fit["converged"] is False
    assert fit["passes_fit_bar"] == [False, False] and all(x > FIT_BAR for x in fit["ratio_to_repeat"])
    assert len(fit["val_error_by_horizon"]) == len(fit["baseline_linear_by_horizon"]) == 4
    assert back.meta["schema"] == 4 and back.system["unpredictable_horizons"] == []
    kinds = sorted((w["kind"], w["horizon"]) for w in back.warnings if w["method"] == "markov")
    assert kinds == [("fit_bar", 2), ("fit_bar", 4), ("not_converged", None)]
    assert [(row["method"], row["fit_passes"]) for row in summary_rows(back)] == [
        ("simulator", None), ("markov", False)] * 2
    page = report_html(back, {})
    assert "markov does not beat repeating the last state 2x at H = 4" in page and "did not converge" in page
    assert "Caution: the gradients of markov at H = 2, 4" in page and "x FAIL</td>" in page
    text = format_summary(back)
    assert "WARNING: markov does not beat repeating the last state 2x at H = 2" in text and "x FAIL" in text


@pytest.mark.slow
def test_a_fitted_model_passes_the_bar_and_is_not_flagged():
    r = audit("linear", ["markov"], [2, 4],
              config=dataclasses.replace(TINY, n_episodes=64, fit_batch=16, fit_epochs=400, fit_patience=5,
                                        fit_rel_min_delta=0.01), progress=False)
    fit = r.fits["markov"]
    assert fit["converged"] is True and fit["epochs"] < 400 and fit["passes_fit_bar"] == [True, True]
    assert all(x < 0.1 for x in fit["ratio_to_repeat"])
    assert r.warnings == [] and r.problems == []
    assert all(row["fit_passes"] in (None, True) for row in summary_rows(r))
    page = report_html(r, {})
    assert "FAIL" not in page and "Caution" not in page and "beats repeating the last state 2x at every" in page
    assert "WARNING" not in format_summary(r)


def _flip_system(horizon: int) -> System:
    """x += 0.1 a inside |x| < 2, x flips sign outside; from x0 = 0 (at H = 4) no episode leaves |x| < 2, from
    x0 = 3 (below H = 4) every episode flips at each step: states a model fitted on the H = 4 episodes never saw."""
    return System(name="flip", state_dim=1, action_dim=1, horizon=horizon, dt=0.1,
                  x0=(0.0 if horizon == 4 else 3.0,), transition=_flip, reward_fn=lambda x, a, t: -jnp.sum(x ** 2))


def _flip(x, a, t):
    return jnp.where(jnp.abs(x) < 2, x + 0.1 * a, -x)


@pytest.mark.slow
def test_the_fit_bar_is_measured_on_each_horizons_own_episodes():
    """A model fitted at H_max predicts the first H steps of the H_max episodes, not the H-step task rebuilt with
    another s_1: the bar at H is measured on episodes of the system rebuilt at H, so it fails there."""
    r = audit(_flip_system, ["markov"], [2, 4],
              config=dataclasses.replace(TINY, n_episodes=64, fit_batch=16, fit_epochs=400, fit_patience=5,
                                        fit_rel_min_delta=0.01), progress=False)
    fit = r.fits["markov"]
    assert fit["converged"] and FitRecord.from_dict(fit).passes(2)  # on prefixes of the H = 4 episodes it passes
    assert fit["passes_fit_bar"] == [False, True] and fit["ratio_to_repeat"][0] > 0.9
    assert r.system["fit_bar_episodes"] == {"mode": "rebuilt", "n_episodes": 6, "scheme": "random_walk"}
    assert [len(c) for c in fit["bar_error_by_horizon"]] == [len(c) for c in fit["bar_repeat_by_horizon"]] == [2, 4]
    # from x0 = 3 every step flips x whatever the action: the simulator's gradient at H = 2 is exactly zero
    assert [(w["kind"], w["horizon"]) for w in r.warnings] == [("fit_bar", 2), ("zero_gradient", 2)]
    assert "held-out episodes of the H = 2 task" in r.warnings[0]["message"]


def test_a_schema_1_report_still_loads_and_renders():
    r = AuditReport(system={"name": "linear", "horizon_mode": "rebuilt"}, models=["markov"], horizons=[3],
                    config={}, meta={"schema": 1},
                    fits={"markov": {"source": "fitted", "open_loop_mse": 1.0, "baseline_mse": 2.0, "epochs": 3,
                                     "best_epoch": 2, "train_loss": [1.0], "val_loss": [1.0], "seconds": 0.1}})
    back = AuditReport.from_json(r.to_json())
    assert back.warnings == [] and summary_rows(back)[1]["fit_ratio"] is None
    assert "no fit record: schema 1" in report_html(back, {}) and "WARNING" not in format_summary(back)


def test_the_progress_bar_counts_real_sub_steps(monkeypatch):
    """One unit per horizon of gradients, per (horizon, method) of Jacobians and of landscapes, then the paths and
    the growth laws: for the simulator alone at H = 2, 3, 2 + 2 x 2 + 2 = 8 units, each labelled, all done."""
    import tqdm.auto

    bars = []

    class Recorder:
        def __init__(self, *args, total=None, desc=None, disable=False, **kwargs):
            self.total, self.done, self.labels, self.descriptions = total, 0, [], [desc]
            bars.append(self)

        def update(self, n=1):
            self.done += n

        def set_postfix_str(self, label, refresh=True):
            self.labels.append(label)

        def set_description(self, desc):
            self.descriptions.append(desc)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(tqdm.auto, "tqdm", Recorder)
    small = dataclasses.replace(SMALL, n_samples=2, landscape_points=3)
    events, lines = [], []
    audit("linear", [], [2, 3], config=small, progress=True, log=lines.append, on_progress=events.append)
    bar = next(b for b in bars if b.descriptions[0] == "audit")
    assert (bar.total, bar.done) == (8, 8)
    assert bar.labels == ["H = 2", "H = 3", "H = 2, simulator", "H = 3, simulator", "H = 2, simulator",
                          "H = 3, simulator", "paths", "growth laws"]
    assert bar.descriptions[1:] == [f"audit: {s}" for s in STAGES]

    # the bar, the log lines and the app's live progress are all drawn from these events
    from gradlens.app.live import progress_text

    assert all(isinstance(e, Progress) and e.total == 8 for e in events)
    assert [e.label for e in events if e.kind == "step"] == bar.labels
    assert [(e.section, e.kind) for e in events if e.kind != "step"] == [(s, k) for s in STAGES
                                                                         for k in ("start", "end")]
    assert [e.done for e in events if e.kind == "step"] == list(range(1, 9)) and events[-1].fraction == 1.0
    assert lines == [e.line for e in events if e.kind == "end"] and lines[0] == "fits: none"
    assert all(re.fullmatch(rf"{s}: done in \d+\.\d s", line) for s, line in zip(STAGES[1:], lines[1:]))
    assert [progress_text(e) for e in events[2:5]] == [
        "0 of 8 steps · gradients: starting", "1 of 8 steps · gradients: H = 2", "2 of 8 steps · gradients: H = 3"]


def test_an_older_schemas_rows_load_typed_with_their_defaults_and_a_bad_row_is_refused():
    """A schema-3 report (gradient rows without intervals) loads as typed rows, the missing keys None; the JSON path
    is one: `as_dict` gives the rows back as written, with the intervals now null."""
    row = {"method": "simulator", "estimator": "first-order", "horizon": 4, "n": 8, "n_nonfinite": 0,
           "nonfinite_samples": [], "nonfinite_leaves": [], "mean_norm": 2.0, "sample_norm": 2.5,
           "variance": float("nan"), "snr": 0.5, "cosine": 1.0, "relative_error": 0.0}
    old = {"system": {"name": "linear"}, "models": [], "horizons": [4], "config": {}, "meta": {"schema": 3},
           "gradients": [row], "problems": [{"diagnostic": "gradients", "method": None, "horizon": 4, "message": "x"}]}
    back = AuditReport.from_json(json.dumps(old))
    (grad,), (problem,) = back.gradients, back.problems
    assert isinstance(grad, GradientRow) and grad.cosine == 1.0 == grad["cosine"] and grad.cosine_ci is None
    assert problem.horizon == 4 and problem.method is None
    assert _same(grad.as_dict(), {**row, **{f"{q}_ci": None for q in ("mean_norm", "variance", "snr", "cosine",
                                                                       "relative_error")}})
    again = AuditReport.from_json(back.to_json())
    assert again.to_json() == back.to_json() and type(again.gradients[0]) is GradientRow
    with pytest.raises(ValueError, match=r"GradientRow row: missing keys \['estimator'\], unknown keys \['cos'\]"):
        AuditReport.from_json(json.dumps({**old, "gradients": [{"method": "markov", "horizon": 4, "cos": 1.0}]}))
    with pytest.raises(KeyError):
        grad["as_dict"]


# ------------------------------------------------------------------------------------------------------ threads
def test_in_threads_keeps_order_reports_progress_here_and_raises_the_first_error(monkeypatch):
    import threading
    import time

    from gradlens.analysis import audit as audit_module

    monkeypatch.setenv(audit_module.THREADS_ENV, "3")
    main, seen = threading.get_ident(), []

    def work(x):
        time.sleep(0.02 * (5 - x))  # later items finish first
        return x * x, threading.get_ident()

    out = audit_module._in_threads(list(range(5)), work, lambda label: seen.append((label, threading.get_ident())),
                                   lambda x: f"item {x}")
    assert [value for value, _ in out] == [0, 1, 4, 9, 16]
    assert len({ident for _, ident in out} - {main}) > 1  # the work ran in other threads, at once
    assert [label for label, _ in seen] == [f"item {x}" for x in range(5)] and {i for _, i in seen} == {main}

    def fails(x):
        if x == 2:
            raise ValueError("item 2 failed")
        return x

    with pytest.raises(ValueError, match="item 2 failed"):
        audit_module._in_threads(list(range(4)), fails, lambda label: None, str)
    monkeypatch.setenv(audit_module.THREADS_ENV, "two")
    with pytest.raises(ValueError, match="GRADLENS_AUDIT_THREADS must be a positive integer, got 'two'"):
        audit_module._threads()


def test_the_report_does_not_depend_on_the_number_of_threads(monkeypatch):
    config = dataclasses.replace(SMALL, n_samples=4, landscape_points=5)
    reports = []
    for threads in ("1", "3"):
        monkeypatch.setenv("GRADLENS_AUDIT_THREADS", threads)
        report = audit("linear", ["markov"], [2, 3], config=config, progress=False).as_dict()
        for key in ("timings", "meta"):
            report.pop(key)
        for fit in report["fits"].values():
            fit.pop("seconds")
        reports.append(report)
    assert _same(*reports)  # bit for bit: gradients, Jacobians, landscapes, fit record (a fit is a pure function)
