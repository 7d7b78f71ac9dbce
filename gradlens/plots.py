"""Figures of gradlens results: one function per figure, each returning a plotly Figure in a clean paper style
(white template, boxed axes, outside ticks, one colour per model class)."""
import math

import plotly.graph_objects as go
from plotly.subplots import make_subplots

CLASS_COLORS = {
    "simulator": "#000000",
    "markov": "#7f7f7f",
    "awm-rnn": "#1f77b4",
    "awm-ssm": "#17becf",
    "awm-transformer": "#2ca02c",
    "hwm-rnn": "#ff7f0e",
    "hwm-transformer": "#d62728",
}
_AXIS = {"showline": True, "mirror": True, "ticks": "outside", "linecolor": "black", "gridcolor": "#eeeeee"}


def _paper_layout(fig, title, width, height):
    fig.update_layout(template="plotly_white", title=title, width=width, height=height,
                      font={"family": "Arial", "size": 13}, margin={"l": 70, "r": 20, "t": 70, "b": 55},
                      legend={"orientation": "h", "yanchor": "bottom", "y": 1.04, "x": 0})
    fig.update_xaxes(**_AXIS)
    fig.update_yaxes(**_AXIS)
    return fig


def _setting_name(row):
    name = row["model_class"]
    if row["policy"] == "closed" and not row["stop_gradient"]:
        name += ", full closed loop"
    if row["level"] == "architecture" and row.get("layers"):
        name += f", L={row['layers']}"
    return name


def _decade_step(top):
    """A 1-2-5 tick step (in decades, at least 1) giving about six ticks up to `top` decades."""
    raw = max(top / 6, 1)
    base = 10 ** math.floor(math.log10(raw))
    return next(m * base for m in (1, 2, 5, 10) if m * base >= raw)


def path_counts_figure(table, title="Gradient paths from the actions to the return", width=980, height=420):
    """The "exponential vs polynomial" figure: paths a_k -> J against the horizon H, one line per setting.

    table: rows of gradlens.analysis.paths.horizon_table (keys model_class, level, policy, stop_gradient, layers,
    horizon, log10_paths, longest, mean_length), for any mix of classes and settings. Left: Σ_k #(a_k -> J); right:
    the longest (solid) and mean (dotted) path length. All axes logarithmic. The count axis is drawn from log10_paths
    with ticks labelled 1eN, because the counts pass float64's 1.8e308 (3^H does at H = 647).
    """
    series = {}
    for row in sorted(table, key=lambda r: r["horizon"]):
        series.setdefault(_setting_name(row), []).append(row)
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.1,
                        subplot_titles=("number of paths Σ_k #(a_k → J)", "path length a_k → J"))
    for name, rows in series.items():
        color = CLASS_COLORS.get(rows[0]["model_class"], "#9467bd")
        dash = "dash" if " closed loop" in name else "solid"
        horizons = [r["horizon"] for r in rows]
        common = {"x": horizons, "mode": "lines+markers", "legendgroup": name, "marker": {"size": 5}}
        fig.add_trace(go.Scatter(y=[r["log10_paths"] for r in rows], name=name, line={"color": color, "dash": dash},
                                 hovertemplate="H=%{x}<br>log10 paths=%{y:.2f}<extra>" + name + "</extra>",
                                 **common), row=1, col=1)
        fig.add_trace(go.Scatter(y=[r["longest"] for r in rows], name=name, showlegend=False,
                                 line={"color": color, "dash": dash}, **common), row=1, col=2)
        fig.add_trace(go.Scatter(y=[r["mean_length"] for r in rows], name=name + " (mean)", showlegend=False,
                                 line={"color": color, "dash": "dot"}, **common), row=1, col=2)
    top = max((r["log10_paths"] for r in table), default=1.0)
    fig.update_xaxes(type="log", title_text="horizon H")
    fig.update_yaxes(title_text="paths (log scale)", tickprefix="1e", tickformat="d", tick0=0,
                     dtick=_decade_step(top), rangemode="tozero", row=1, col=1)
    fig.update_yaxes(type="log", title_text="edges per path (log scale)", row=1, col=2)
    return _paper_layout(fig, title, width, height)


def learning_curves_figure(metrics, title="Return in the true system during training", width=760, height=460,
                           y="return"):
    """The paper's learning-curve figure: `y` (default the deterministic policy's real return) against env steps,
    mean over seeds with a ±1 std band, one line per method (and system, when several are present).

    metrics: a pandas DataFrame as `gradlens.runs.load` / `scan_metrics` return (columns env_steps, seed, method,
    system, `y`).
    """
    fig = go.Figure()
    systems = sorted(metrics["system"].unique()) if "system" in metrics else [None]
    for system in systems:
        part = metrics if system is None else metrics[metrics["system"] == system]
        for method in sorted(part["method"].unique()):
            curve = part[part["method"] == method].groupby("env_steps")[y].agg(["mean", "std", "count"]).reset_index()
            curve["std"] = curve["std"].fillna(0.0)
            name = method if len(systems) == 1 else f"{system}: {method}"
            color = CLASS_COLORS.get(method, "#9467bd")
            x = list(curve["env_steps"])
            upper, lower = list(curve["mean"] + curve["std"]), list(curve["mean"] - curve["std"])
            fig.add_trace(go.Scatter(x=x + x[::-1], y=upper + lower[::-1], fill="toself", fillcolor=color,
                                     opacity=0.15, line={"width": 0}, hoverinfo="skip", showlegend=False,
                                     legendgroup=name))
            n = int(curve["count"].max())
            fig.add_trace(go.Scatter(x=x, y=list(curve["mean"]), mode="lines", line={"color": color, "width": 2},
                                     name=f"{name} ({n} seed{'s' if n > 1 else ''})", legendgroup=name))
    fig.update_xaxes(title_text="environment steps")
    fig.update_yaxes(title_text=y.replace("_", " "))
    return _paper_layout(fig, title, width, height)


def write_figure(fig, path) -> list[str]:
    """Write `fig` to `path` (.html, self-contained) and beside it a .png when a Chromium for kaleido is available.

    Returns the paths written; the PNG is skipped with a one-line note on stderr when it cannot be rendered.
    """
    import sys
    from pathlib import Path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    html = path.with_suffix(".html")
    fig.write_html(html, include_plotlyjs=True, full_html=True)
    written = [str(html)]
    png = path.with_suffix(".png")
    try:
        fig.write_image(png)
        written.append(str(png))
    except Exception as err:  # kaleido missing, or no Chromium for it: HTML is still complete
        print(f"note: no PNG for {html.name} (static export unavailable: {type(err).__name__}); HTML written",
              file=sys.stderr)
    return written
