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
