"""Figures of aggregate outcomes (rliable's three figures) in the paper style of `gradlens.plots`: interval
estimates, probability of improvement, performance profiles. Each takes the tidy frame of the matching
`gradlens.outcomes` function and returns a plotly Figure."""
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from gradlens.outcomes import AGGREGATES
from gradlens.plots import _band, _color, _paper_layout

_METRIC_TITLES = {"iqm": "IQM", "median": "median", "mean": "mean", "optimality_gap": "optimality gap"}


def _need(frame, columns, source):
    missing = [c for c in columns if c not in frame.columns]
    if missing or frame.empty:
        raise ValueError(f"expected a non-empty frame from gradlens.outcomes.{source} (columns {', '.join(columns)}); "
                         + (f"missing {', '.join(missing)}" if missing else "got no rows"))


def interval_estimates_figure(aggregates, metrics=AGGREGATES, title="Aggregate scores with 95 % bootstrap CIs",
                              width=None, height=None):
    """One panel per aggregate (`metrics`, from iqm, median, mean, optimality_gap), one row per method: the point
    estimate with its confidence interval as horizontal whiskers. aggregates: `gradlens.outcomes.aggregates(...)`."""
    _need(aggregates, ("method", "metric", "value", "low", "high"), "aggregates")
    unknown = sorted(set(metrics) - set(aggregates["metric"]))
    if unknown:
        raise ValueError(f"metrics {', '.join(unknown)} are not in the frame; it has "
                         f"{', '.join(sorted(set(aggregates['metric'])))}")
    methods = list(dict.fromkeys(aggregates["method"]))
    fig = make_subplots(rows=1, cols=len(metrics), horizontal_spacing=0.04, shared_yaxes=True,
                        subplot_titles=[_METRIC_TITLES.get(m, m) for m in metrics])
    for col, metric in enumerate(metrics, start=1):
        for method in methods:
            r = aggregates[(aggregates["metric"] == metric) & (aggregates["method"] == method)].iloc[0]
            fig.add_trace(go.Scatter(x=[r["value"]], y=[method], mode="markers", name=method, legendgroup=method,
                                     showlegend=False, marker={"color": _color(method), "size": 9},
                                     error_x={"type": "data", "symmetric": False, "array": [r["high"] - r["value"]],
                                              "arrayminus": [r["value"] - r["low"]], "color": _color(method),
                                              "thickness": 2.5},
                                     hovertemplate=f"{method}: {metric} %{{x:.4g}} [{r['low']:.4g}, {r['high']:.4g}]"
                                                   "<extra></extra>"), row=1, col=col)
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(title_text="normalised score")
    return _paper_layout(fig, title, width or 240 * len(metrics) + 160, height or 60 * len(methods) + 170)


def probability_of_improvement_figure(improvement, title="Probability of improvement P(X > Y)", width=620,
                                      height=None):
    """One row per pair (X, Y): P(X > Y) with its confidence interval; the dashed line at 0.5 is "no difference".
    improvement: `gradlens.outcomes.probability_of_improvement(...)`."""
    _need(improvement, ("x", "y", "value", "low", "high"), "probability_of_improvement")
    fig = go.Figure()
    for _, r in improvement.iterrows():
        pair = f"P({r['x']} > {r['y']})"
        fig.add_trace(go.Scatter(x=[r["value"]], y=[pair], mode="markers", showlegend=False,
                                 marker={"color": _color(r["x"]), "size": 9},
                                 error_x={"type": "data", "symmetric": False, "array": [r["high"] - r["value"]],
                                          "arrayminus": [r["value"] - r["low"]], "color": _color(r["x"]),
                                          "thickness": 2.5},
                                 hovertemplate=f"{pair} = %{{x:.3f}} [{r['low']:.3f}, {r['high']:.3f}]"
                                               "<extra></extra>"))
    fig.add_vline(x=0.5, line={"color": "#7f7f7f", "dash": "dash", "width": 1})
    fig.update_xaxes(range=[-0.02, 1.02], title_text="probability of improvement")
    fig.update_yaxes(autorange="reversed")
    return _paper_layout(fig, title, width, height or 60 * len(improvement) + 170)


def performance_profiles_figure(profiles, title="Performance profiles", width=640, height=440):
    """Fraction of runs with score > τ against τ, one line per method with its confidence band.
    profiles: `gradlens.outcomes.performance_profiles(...)`."""
    _need(profiles, ("method", "tau", "value", "low", "high"), "performance_profiles")
    fig = go.Figure()
    for method in dict.fromkeys(profiles["method"]):
        part = profiles[profiles["method"] == method].sort_values("tau")
        tau = list(part["tau"])
        fig.add_trace(_band(tau, part["low"], part["high"], "fraction", _color(method), method, "confidence band"))
        fig.add_trace(go.Scatter(x=tau, y=list(part["value"]), mode="lines", name=method, legendgroup=method,
                                 line={"color": _color(method), "width": 2}))
    fig.update_xaxes(title_text="normalised score τ")
    fig.update_yaxes(range=[-0.02, 1.02], title_text="fraction of runs with score > τ")
    return _paper_layout(fig, title, width, height)
