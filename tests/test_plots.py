"""The audit figures read as JSON (`fig.to_dict()`) on synthetic reports: bands inside their quantity's range, one
colour range and a colour bar for compared contours, a distinct dash and marker per model, readable panel titles."""
import dataclasses
import math
import shutil
import struct
from pathlib import Path

import plotly.graph_objects as go
import pytest

from gradlens import plots
from gradlens.analysis.audit import AuditReport
from gradlens.analysis.paths import horizon_table
from gradlens.analysis.rows import GradientRow

H = [2, 4, 8]
METHODS = ("simulator", "markov", "awm-rnn", "awm-transformer")


def _row(method, h, cosine, variance, n=4, estimator="first-order"):
    return {"method": method, "estimator": estimator, "horizon": h, "n": n, "n_nonfinite": 0, "mean_norm": 0.5,
            "variance": variance, "snr": 0.5 / math.sqrt(variance), "cosine": cosine, "relative_error": 0.5}


def _plane(method, scale):
    return {"method": method, "horizon": 8, "kind": "plane", "grid": [[0.0, 1.0, 2.0], [0.0, 1.0, 2.0]],
            "values": [[scale * (i + j) for j in range(3)] for i in range(3)], "roughness": {"normalized_tv": 1.0}}


def _report(**changes):
    """Noisy gradients (4 samples, SNR 0.1-0.5: a ± 1 s.e. band would pass 1 and 0 unclipped); awm-rnn and
    awm-transformer give the same numbers (their lines coincide)."""
    grads = [_row(m, h, 1.0 if m == "simulator" else 0.95, 10.0 * h) for m in METHODS for h in H]
    grads.append(_row("simulator", 8, 0.3, 1e3, estimator="zeroth-order"))
    fields = dict(system={"name": "toy"}, models=list(METHODS[1:]), horizons=H, config={}, gradients=grads,
                  landscapes=[_plane("simulator", 1.0), _plane("markov", 2.0), _plane("awm-rnn", 1.5),
                              _plane("awm-transformer", 1e3)])
    return AuditReport(**{**fields, **changes})


def _bands(fig: dict) -> list[dict]:
    return [t for t in fig["data"] if t.get("fill") == "toself"]


def test_gradient_bands_stay_inside_each_quantitys_range():
    fig = plots.gradient_stats_figure(_report()).to_dict()
    bands = _bands(fig)
    assert len(bands) == 4 * 4 - 1  # norm, variance, SNR and cosine per first-order method; none on cos(sim, sim)
    by_axis = {}
    for band in bands:
        by_axis.setdefault(band["xaxis"], []).extend(band["y"])
    assert min(by_axis["x"]) > 0 and min(by_axis["x2"]) > 0 and min(by_axis["x3"]) > 0  # log axes: positive
    cosines = by_axis["x4"]
    assert -1 <= min(cosines) and max(cosines) == 1.0  # unclipped, 0.95 + s.e. would pass 1
    assert {b["name"].split(" ", 1)[1] for b in bands} == {"± 1 s.e."}  # rows without intervals (schema < 4)
    markov, sim = (GradientRow.from_dict(_row(m, 8, c, 80.0)) for m, c in (("markov", 0.95), ("simulator", 1)))
    unclipped = plots._standard_errors([markov], "cosine", {8: sim})
    assert unclipped[1][0] > 1 and plots.clip_band(*unclipped, "cosine") == ([-1.0], [1.0])
    assert plots.clip_band([-2.0, 0.5], [3.0, 4.0], "variance") == ([0.0, 0.5], [3.0, 4.0])


def test_bands_are_the_rows_bootstrap_intervals_where_they_have_them():
    report = _report()
    report.gradients[:] = [dataclasses.replace(r, mean_norm_ci=[0.4, 0.6], snr_ci=[0.1, 0.2],
                                               variance_ci=[0.5 * r.variance, 2 * r.variance],
                                               cosine_ci=[0.9, 1.2])  # a cosine interval past 1 is clipped
                           for r in report.gradients]
    fig = plots.gradient_stats_figure(report).to_dict()
    markov = [b for b in _bands(fig) if b["name"] == "markov 95 % bootstrap CI"]
    assert [b["xaxis"] for b in markov] == ["x", "x2", "x3", "x4"]
    norm, variance, snr, cosine = (list(b["y"]) for b in markov)
    assert norm == [0.6] * 3 + [0.4] * 3 and snr == [0.2] * 3 + [0.1] * 3  # high along H, then low back
    assert variance == [2 * 10.0 * h for h in H] + [0.5 * 10.0 * h for h in H[::-1]]
    assert cosine == [1.0] * 3 + [0.9] * 3


def test_each_models_trace_has_its_own_dash_and_marker_and_stays_visible():
    fig = plots.gradient_stats_figure(_report()).to_dict()
    lines = [t for t in fig["data"] if t.get("fill") is None and t["xaxis"] == "x"]
    first = [t for t in lines if "zeroth" not in t["name"]]
    styles = {(t["line"]["dash"], t["marker"]["symbol"]) for t in first}
    assert len(styles) == len(first) == 4
    widths = [t["line"]["width"] for t in first]
    sizes = [t["marker"]["size"] for t in first]
    assert widths == sorted(widths, reverse=True) and sizes == sorted(sizes, reverse=True)  # nested outlines
    assert len(set(sizes)) == 4  # awm-rnn's marker shows around awm-transformer's, on the same points
    legend = [t for t in fig["data"] if t.get("showlegend") is not False]
    assert [t["name"] for t in legend] == ["simulator", "simulator (zeroth-order)", "markov", "awm-rnn",
                                           "awm-transformer"]
    zeroth = next(t for t in legend if "zeroth" in t["name"])
    assert zeroth["line"]["dash"] == "dot" and zeroth["marker"]["symbol"].endswith("-open")


def test_coinciding_path_counts_have_distinct_dashes_and_markers():
    table = horizon_table("awm-rnn", H) + horizon_table("awm-transformer", H) + horizon_table("markov", H)
    fig = plots.path_counts_figure(table).to_dict()
    counts = [t for t in fig["data"] if t["xaxis"] == "x"]
    assert list(counts[0]["y"]) == list(counts[1]["y"])  # the two AWMs' counts coincide...
    assert len({(t["line"]["dash"], t["marker"]["symbol"]) for t in counts}) == 3  # ...and both stay visible
    assert counts[0]["marker"]["size"] > counts[1]["marker"]["size"]


def test_compared_contours_share_one_range_and_a_colour_bar():
    fig = plots.plane_figure(_report()).to_dict()
    contours = {t["name"]: t for t in fig["data"] if t["type"] == "contour"}
    shared = [contours[m] for m in ("simulator", "markov", "awm-rnn")]
    assert {(t["zmin"], t["zmax"]) for t in shared} == {(0.0, 8.0)}
    assert {(t["contours"]["start"], t["contours"]["end"]) for t in shared} == {(0.0, 8.0)}
    assert [t["showscale"] for t in fig["data"]] == [False, False, True, False]  # one bar, beside the compared
    assert shared[-1]["colorbar"]["title"]["text"] == "return J"
    own = contours["awm-transformer"]
    assert (own["zmin"], own["zmax"]) == (0.0, 4000.0)  # 500x the simulator's span: its own range, said so
    titles = [a["text"] for a in fig["layout"]["annotations"]]
    assert titles[3].endswith("own colour range 0 to 4e+03")
    assert not any("own colour range" in t for t in titles[:3])


def test_jacobian_panel_titles_fit_their_panels():
    rows = [{"method": m, "horizon": 8, "norms": [[1.0] * 8] * 9, "growth_rate": -0.0123456} for m in METHODS]
    fig = plots.jacobian_heatmaps_figure(_report(jacobians=rows)).to_dict()
    layout = fig["layout"]
    plot_width = layout["width"] - layout["margin"]["l"] - layout["margin"]["r"]
    for i, note in enumerate(layout["annotations"]):
        axis = layout[f"xaxis{i + 1 if i else ''}"]["domain"]
        panel = (axis[1] - axis[0]) * plot_width
        longest = max(len(line) for line in note["text"].split("<br>"))
        assert longest * 0.6 * layout["font"]["size"] <= panel, note["text"]  # ~0.6 em per character


@pytest.mark.parametrize("kind", ["gradients", "plane"])
def test_figures_still_draw_with_missing_numbers(kind):
    report = _report()
    report.gradients[0] = dataclasses.replace(report.gradients[0], variance=math.nan, cosine=math.nan, n=0)
    report.landscapes[1].values[0][0] = math.nan
    fig = plots.gradient_stats_figure(report) if kind == "gradients" else plots.plane_figure(report)
    assert fig.to_dict()["data"]


def test_coinciding_learning_curves_have_distinct_medians():
    import pandas as pd

    frame = pd.DataFrame([{"system": "linear", "method": m, "horizon": 8, "env_steps": 10 * (i + 1), "seed": s,
                           "cosine_to_simulator": 0.9} for m in ("awm-rnn", "markov") for s in (0, 1)
                          for i in range(3)])
    fig = plots.learning_curves_figure(frame, y="cosine_to_simulator").to_dict()
    medians = [t for t in fig["data"] if t.get("showlegend") is not False]
    assert [list(t["y"]) for t in medians] == [[0.9] * 3] * 2  # the two medians coincide
    assert len({(t["line"]["dash"], t["marker"]["symbol"]) for t in medians}) == 2


def test_a_failed_png_export_writes_the_html_and_says_why_in_one_line(tmp_path, monkeypatch, capsys):
    def no_chrome(self, *args, **kwargs):
        raise RuntimeError("\n\nKaleido requires Google Chrome to be installed.\n\nEither download ... \n")

    monkeypatch.setattr(plots.go.Figure, "write_image", no_chrome)
    written = plots.write_figure(plots.path_counts_figure(horizon_table("markov", H)), tmp_path / "paths.html")
    assert written == [str(tmp_path / "paths.html")] and (tmp_path / "paths.html").stat().st_size > 1e6
    err = capsys.readouterr().err
    assert err == ("note: no PNG for paths.html (Kaleido requires Google Chrome to be installed.); the HTML is "
                   f"written ({plots.PNG_HELP})\n")
    assert "Traceback" not in err


def test_many_figures_export_in_one_batch_and_a_failed_batch_names_each_figure_alone(tmp_path, monkeypatch, capsys):
    figs = {tmp_path / f"{name}.html": plots.path_counts_figure(horizon_table(name, H)) for name in METHODS[1:]}
    for i, fig in enumerate(figs.values()):
        fig.update_layout(width=500 + 100 * i, height=300 + 10 * i)
    batches = []
    monkeypatch.setattr(plots.pio, "write_images", lambda f, paths, width, height: batches.append(
        (paths, width, height)) or [Path(p).write_text("PNG") for p in paths])
    written = plots.write_figures(figs)
    sizes = [f.layout.width for f in figs.values()], [f.layout.height for f in figs.values()]
    assert batches == [([p.with_suffix(".png") for p in figs], *sizes)]  # one kaleido session, each figure's size
    assert written == [str(w) for p in figs for w in (p, p.with_suffix(".png"))]

    def broken(self, path, *args, **kwargs):  # one figure's JavaScript error breaks the batch
        if "awm-rnn" in str(path):
            raise ValueError("Transform failed: a JavaScript error")
        Path(path).write_text("PNG")

    monkeypatch.setattr(plots.pio, "write_images", lambda f, paths, **size: [broken(None, p) for p in paths])
    monkeypatch.setattr(plots.go.Figure, "write_image", broken)
    written = plots.write_figures(figs)
    assert str(tmp_path / "awm-rnn.png") not in written and str(tmp_path / "markov.png") in written
    assert capsys.readouterr().err.count("\n") == 1  # one line, for that figure alone
    with pytest.raises(ValueError, match="write_figures writes pages"):
        plots.write_figures({tmp_path / "x.png": next(iter(figs.values()))})


def test_a_run_folder_holds_one_copy_of_plotly_js_and_report_html_can_stand_alone(tmp_path, monkeypatch):
    from gradlens.report import PLOTLY_JS, standalone_html, write_report

    monkeypatch.setattr(plots.pio, "write_images", lambda figs, paths: None)
    rows = [{"method": m, "horizon": 8, "norms": [[1.0] * 8] * 9, "growth_rate": 0.1} for m in METHODS]
    write_report(_report(jacobians=rows, system={"name": "toy", "horizon_mode": "rebuilt"}), tmp_path)
    pages = [tmp_path / "report.html", *sorted((tmp_path / "figures").glob("*.html"))]
    assert len(pages) >= 3
    js = (tmp_path / PLOTLY_JS).read_text()
    marker = js[:200]  # plotly.js's licence header: present wherever the library is embedded
    assert all(marker not in page.read_text() for page in pages)  # no page embeds it: they load the one copy
    assert f'<script src="{PLOTLY_JS}"></script>' in pages[0].read_text()
    assert all(p.stat().st_size < 1e6 for p in pages) and len(js) > 3e6
    alone = standalone_html(tmp_path).decode()
    assert alone.count(marker) == 1 and "<script src=" not in alone and "id='conclusions'" in alone


@pytest.mark.skipif(shutil.which("chromium") is None,
                    reason="kaleido renders PNGs through Chromium (.ci/run installs it)")
def test_batch_export_keeps_each_figures_own_size(tmp_path):
    figs = {tmp_path / f"{i}.html": go.Figure(go.Scatter(x=[0, 1], y=[0, 1])).update_layout(width=w, height=h)
            for i, (w, h) in enumerate(((900, 300), (400, 600)))}
    plots.write_figures(figs)
    size = lambda png: struct.unpack(">II", png.read_bytes()[16:24])  # the IHDR chunk: width, height in pixels
    assert [size(p.with_suffix(".png")) for p in figs] == [(900, 300), (400, 600)]
