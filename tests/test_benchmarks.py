"""Every script in benchmarks/ runs in --quick mode and prints well-formed Markdown tables of finite numbers."""
from __future__ import annotations

import importlib.util
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?|\bnan\b|\binf\b", re.IGNORECASE)


def tables(text: str) -> list[list[list[str]]]:
    """The Markdown tables in `text`: each a list of rows (header first, the |---| line dropped) of cells."""
    found, current = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not all(set(c) <= set("-:") and c for c in cells):
                current.append(cells)
        elif current:
            found.append(current)
            current = []
    return found


def check_tables(text: str, min_tables: int) -> list[list[list[str]]]:
    """Every table rectangular with at least one row, every number in it finite, no 'failed' cell."""
    found = tables(text)
    assert len(found) >= min_tables, text
    for table in found:
        header, rows = table[0], table[1:]
        assert rows, f"table without rows: {header}"
        for row in rows:
            assert len(row) == len(header), f"row {row} does not match header {header}"
            for cell in row:
                assert "failed" not in cell.lower(), row
                for token in NUMBER.findall(cell):
                    assert math.isfinite(float(token)), f"non-finite {token!r} in row {row}"
    return found


def run(script: str, *args: str, cwd: Path = ROOT) -> str:
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--quick", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.parametrize("script, min_tables", [("models_speed.py", 2), ("jacobian_speed.py", 1),
                                                ("paths_speed.py", 1), ("train_speed.py", 1),
                                                ("baselines_speed.py", 1), ("demo_speed.py", 1)])
def test_speed_benchmark_quick(script, min_tables):
    check_tables(run(script), min_tables)


def _reproduce_module():
    spec = importlib.util.spec_from_file_location("reproduce", ROOT / "benchmarks" / "reproduce.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["reproduce"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_reproduce_quick(tmp_path):
    quick = _reproduce_module().QUICK
    out = tmp_path / "results"
    log = run("reproduce.py", "--out", str(out))
    readme = (out / "README.md").read_text()
    for section in ("Double pendulum", "One-bounce", "Gradient statistics"):
        assert f"## {section}" in readme, section
    # the Myriad returns are the grid's, the open questions their own study's
    assert "## Myriad" not in readme and "[`grid.md`](grid.md)" in readme
    assert "## Open questions" not in readme and "[`open_questions.md`](open_questions.md)" in readme
    found = check_tables(readme, 8)
    toy_methods = 1 + len(quick.toy_models)
    roughness = [t for t in found if t[0][:3] == ["method", "H", "normalized TV"]]
    assert [len(t) - 1 for t in roughness] == [toy_methods * len(quick.pendulum_horizons),
                                               toy_methods * len(quick.bounce_horizons)]
    gradient_table = next(t for t in found if t[0][:3] == ["method", "H", "grad_norm"])
    assert sorted(row[0] for row in gradient_table[1:]) == sorted(["simulator", *quick.gradient_models]
                                                                  * len(quick.gradient_horizons))
    assert list((out / "figures").glob("*.html")), "no figure written"
    assert (out / "audits" / "pendulum.json").exists()
    # a rerun resumes: --redo rewrites the tables from the cached audits, computing nothing again
    again = run("reproduce.py", "--out", str(out), "--only", "gradients", "--redo")
    assert "audit gradients" in log and "audit gradients" not in again
    assert (out / "README.md").read_text().count("## Gradient statistics") == 1


def test_reproduce_bad_experiment(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "reproduce.py"), "--only", "pendulum,nope",
                           "--out", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 2 and "unknown experiment(s) 'nope'" in proc.stderr
    assert "Traceback" not in proc.stderr


def _fidelity_module():
    spec = importlib.util.spec_from_file_location("fidelity", ROOT / "benchmarks" / "fidelity.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["fidelity"] = module
    spec.loader.exec_module(module)
    return module


def test_fidelity_report_reads_stage_files(tmp_path):
    """fidelity.py's report from stage CSVs: outcome tables with the right convergence counts, P(option > paper)."""
    fidelity = _fidelity_module()
    folder = tmp_path / "fidelity"
    folder.mkdir()
    finals = {"paper": [-53.0, -20.7, -20.8], "converging": [-20.8, -20.85, -20.9]}  # cancer: >= -21.08 converges
    rows = [{"system": "cancer", "method": "simulator", "setting": setting, "horizon": 100, "total_steps": 64,
             "seed": seed, "env_steps": step, "return": -80.0 if step == 32 else final}
            for setting, values in finals.items() for seed, final in enumerate(values) for step in (32, 64)]
    pd.DataFrame(rows).to_csv(folder / "myriad.csv", index=False)
    fidelity.saturation(fidelity.Scale(seeds=2)).to_csv(folder / "saturation.csv", index=False)
    text = fidelity.report(tmp_path)
    found = check_tables(text, 3)
    outcome = next(t for t in found if t[0][:3] == ["system", "method", "setting"])
    converged = {row[2]: row[outcome[0].index("converged")] for row in outcome[1:]}
    assert converged == {"converging": "3", "paper": "2"}
    improvement = next(t for t in found if "P(converging > paper)" in t[0])
    assert len(improvement) == 2 and 0.0 <= float(improvement[1][2]) <= 1.0
    saturation = next(t for t in found if "abs μ_99 raw" in t[0])
    assert len(saturation) == 1 + 2 * 2  # 2 systems x 2 seeds
    assert "Not run yet." in text  # the stages without files


@pytest.mark.slow
def test_grid_quick(tmp_path):
    """The toy grid trains its three stages, exports each, and reports; an exported stage is not trained again."""
    import pandas as pd

    log = run("grid.py", "--out", str(tmp_path))
    report = (tmp_path / "grid-quick.md").read_text()
    for section in ("Compute", "Final return per task and method", "Normalisation", "Aggregates over tasks",
                    "Return versus horizon on cancer", "The paper's claims"):
        assert f"## {section}" in report, section
    found = check_tables(report, 4)
    per_task = next(t for t in found if t[0][:3] == ["task", "H", "method"])
    assert len(per_task) == 1 + 2 * 2  # (simulator, sac) x (H = 6, 10) on cancer
    assert all(row[-1] == "2" for row in per_task[1:])  # seeds
    for stage in ("simulator", "sac", "horizons"):
        metrics = pd.read_parquet(tmp_path / "grid-quick" / f"{stage}.parquet")
        assert {"system", "method", "horizon", "seed", "return", "cosine_to_simulator"} <= set(metrics.columns)
        assert metrics["return"].notna().all() and sorted(metrics["seed"].unique()) == [0, 1]
    assert list((tmp_path / "figures").glob("grid-quick_*.html"))
    assert ": return " in log
    # an exported stage is never trained again, even when its run folders are gone
    spec = importlib.util.spec_from_file_location("grid", ROOT / "benchmarks" / "grid.py")
    grid = importlib.util.module_from_spec(spec)
    sys.modules["grid"] = grid  # its dataclasses look their module up
    spec.loader.exec_module(grid)
    shutil.rmtree(tmp_path / "runs")
    lines = []
    assert not grid.run_stage(grid.QUICK, "sac", tmp_path, lines.append)
    assert "already exported" in lines[0] and not (tmp_path / "runs").exists()


def test_a_stage_keeps_each_finished_run_so_a_fresh_clone_never_trains_it_again(tmp_path, monkeypatch):
    """grid.train_stage on a stand-in trainer: a run kept before an interruption is not trained after the run folders
    are lost, a failed run is not retried, and the export holds every finished run once."""
    spec = importlib.util.spec_from_file_location("grid", ROOT / "benchmarks" / "grid.py")
    grid = importlib.util.module_from_spec(spec)
    sys.modules["grid"] = grid
    spec.loader.exec_module(grid)
    from gradlens.sweep import SweepSpec
    from gradlens.training.train import run_name

    sweep = SweepSpec(systems=("cancer",), methods=("simulator",), horizons=(5, 6, 7), seeds=2)
    trained = []

    def fake_sweep(cell, store, **_):  # "trains" one cell; H = 6 fails; the session ends during H = 7's first try
        (config,) = cell.configs()
        trained.append(config.horizon)
        if config.horizon == 7 and trained.count(7) == 1:
            raise KeyboardInterrupt
        (store / run_name(config)).mkdir(parents=True, exist_ok=True)
        state = "failed" if config.horizon == 6 else "done"
        return pd.DataFrame([{"name": run_name(config), "state": state, "error": "ValueError: NaN"}])

    def fake_load(folder):
        horizon = int(next(c.horizon for c in sweep.configs() if run_name(c) == folder.name))
        return pd.DataFrame({"system": "cancer", "method": "simulator", "horizon": horizon, "seed": [0, 1],
                             "env_steps": 10, "return": -float(horizon), "model_loss": 0.0,
                             "policy_grad_norm": 1.0, "wall_time": 1.0})

    monkeypatch.setattr(grid, "run_sweep", fake_sweep)
    monkeypatch.setattr(grid.runs, "load", fake_load)
    store, export = tmp_path / "runs", tmp_path / "export"
    columns = ("system", "method", "horizon", "seed", "return", "zeroed_policy_grads")
    with pytest.raises(KeyboardInterrupt):
        grid.train_stage([sweep], store, export, "sim", columns, log=lambda _: None)
    assert trained == [5, 6, 7] and len(list((export / "sim").iterdir())) == 2  # H = 5 kept, H = 6's failure kept
    shutil.rmtree(store)  # a fresh clone
    lines = []
    assert grid.train_stage([sweep], store, export, "sim", columns, log=lines.append)
    assert trained == [5, 6, 7, 7]  # only the interrupted run trains again
    metrics = pd.read_parquet(export / "sim.parquet")
    assert sorted(metrics["horizon"]) == [5, 5, 7, 7] and list(metrics.columns) == list(columns)
    assert pd.read_csv(export / "sim-failed.csv")["error"].tolist() == ["ValueError: NaN"]
    assert not (export / "sim").exists() and any("FAILED" in line for line in lines)


def test_a_claim_with_parts_not_yet_run_is_settled_by_a_part_that_fails_and_waits_otherwise(monkeypatch):
    """grid_report._pair_claim on synthetic scores with known answers: AWM-RNN below Markov on every seed and task
    gives P = 0, which refutes the claim before AWM-transformer has run; above it, the claim waits for that part."""
    from types import SimpleNamespace

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import grid_report

    grid = SimpleNamespace(horizon=100, methods=("markov", "awm-rnn", "awm-transformer"))
    pairs = [("awm-rnn", "markov"), ("awm-transformer", "markov")]

    def claim(awm_rnn_offset):
        cells = pd.DataFrame([{"system": task, "method": method, "horizon": 100, "seed": seed,
                               "score": seed / 10 + (awm_rnn_offset if method == "awm-rnn" else 0.0)}
                              for task in ("cancer", "mould") for method in ("markov", "awm-rnn")
                              for seed in range(10)])
        cells["auc_score"] = cells["score"]
        return grid_report._pair_claim(grid_report.Aggregates(grid, cells, reps=200), "AWMs beat Markov", pairs)

    _, evidence, verdict = claim(-5.0)
    assert verdict == "not reproduced"
    assert "P(awm-rnn > markov) = 0 [0, 0]" in evidence and "not yet run: awm-transformer" in evidence
    _, evidence, verdict = claim(+5.0)
    assert verdict == "pending: 1 of 2 parts run" and "P(awm-rnn > markov) = 1 [1, 1]" in evidence
    empty = grid_report.Aggregates(grid, pd.DataFrame(columns=["system", "method", "horizon", "seed", "score",
                                                               "auc_score"]), reps=200)
    assert grid_report._pair_claim(empty, "AWMs beat Markov", pairs)[2] == "not yet run"


def test_the_runs_kept_by_a_running_stage_are_reported_apart_and_counted_done(tmp_path, monkeypatch):
    """grid.kept_runs reads only the stages not yet exported; the report lists their runs in a table of their own
    (seeds converged against the known cancer optimum) and counts them done in Compute, outside every aggregate."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import grid
    import grid_report

    export = grid.FULL.folders(tmp_path)[1]

    def run(method, finals, horizon=100):
        return pd.DataFrame([{"system": "cancer", "method": method, "horizon": horizon, "seed": seed,
                              "env_steps": step, "return": final if step == 64 else -60.0, "model_loss": 0.0,
                              "policy_grad_norm": 1.0, "cosine_to_simulator": 1.0,
                              "relative_error_to_simulator": 0.0, "wall_time": 10.0 * step}
                             for seed, final in enumerate(finals) for step in (32, 64)])

    (export / "simulator").mkdir(parents=True)  # exported: its leftover folder is not read again
    run("simulator", [-20.7] * 10).assign(zeroed_policy_grads=0).to_parquet(export / "simulator.parquet")
    run("simulator", [-99.0] * 10).to_parquet(export / "simulator" / "stale.parquet")
    (export / "awm-transformer").mkdir()
    run("awm-transformer", [-20.7] * 7 + [-53.0] * 3).to_parquet(export / "awm-transformer" / "cancer.parquet")
    kept = grid.kept_runs(grid.FULL, tmp_path)
    assert list(kept.columns) == list(grid.EXPORT_COLUMNS) and set(kept["method"]) == {"awm-transformer"}
    assert (kept["zeroed_policy_grads"] == 0).all()  # a run that logged none
    metrics = grid.exported(grid.FULL, tmp_path)
    table = check_tables(grid_report.interim_section(metrics, kept, reps=200), 1)[0]
    assert table[1][:3] == ["cancer", "100", "awm-transformer"] and table[1][5] == "7/10" and table[1][-1] == "10"
    compute = check_tables(grid_report.compute_section(grid.FULL, tmp_path, metrics, kept), 1)[0]
    row = next(r for r in compute if r[0] == "awm-transformer")
    assert row[3] == "640 (1)" and row[6] == "1/13"  # measured here: the kept run's wall time; 1 of 13 runs done
    assert grid.kept_runs(grid.FULL, tmp_path / "elsewhere").empty


def test_the_simulator_claim_names_the_other_methods_that_beat_the_simulator_on_the_same_task(monkeypatch):
    """grid_report.simulator_claim on synthetic finals with known answers: where every model beats simulator BPO the
    evidence says so; where only the AWM-transformer does, it says "alone"; a task it loses is not listed."""
    from types import SimpleNamespace

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import grid_report

    finals = {"bear": {"simulator": -45.0, "markov": -25.0, "awm-rnn": -45.0, "awm-transformer": -21.0},
              "mould": {"simulator": -90.0, "markov": -90.0, "awm-rnn": -91.0, "awm-transformer": -80.0},
              "cancer": {"simulator": -20.7, "markov": -21.0, "awm-rnn": -20.8, "awm-transformer": -30.0}}
    cells = pd.DataFrame([{"system": task, "method": method, "horizon": 100, "seed": seed,
                           "final": final + 0.1 * seed, "score": final + 0.1 * seed}
                          for task, row in finals.items() for method, final in row.items() for seed in range(10)])
    cells["auc_score"] = cells["score"]
    grid = SimpleNamespace(horizon=100, methods=("simulator", "markov", "awm-rnn", "awm-transformer"))
    agg = grid_report.Aggregates(grid, cells, reps=200)
    _, evidence, verdict = grid_report.simulator_claim(agg, cells, reps=200, horizon=100)
    assert verdict == "reproduced"
    assert evidence.startswith("above on bear (so do markov), mould (alone); overlapping on no task")
