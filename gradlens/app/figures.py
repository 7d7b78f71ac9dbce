"""Figures the app adds to `gradlens.plots`: the unrolled dependency graph with the paths a_k -> ŝ_t highlighted, the
histogram of those paths' lengths, and `subset`, which narrows an audit report to the methods and horizons in view."""
import dataclasses
import re

import networkx as nx
import plotly.graph_objects as go

from gradlens.plots import _paper_layout

ROWS = {"param": 3.0, "action": 2.0, "hidden": 1.0, "state": 0.0, "reward": -1.7, "return": -2.7}
KIND_COLORS = {"param": "#7f7f7f", "action": "#ff7f0e", "hidden": "#9467bd", "state": "#1f77b4",
               "reward": "#2ca02c", "return": "#000000"}
HIGHLIGHT = "#d62728"


def _position(node, attrs, horizon) -> tuple[float, float]:
    """Time runs left to right, one row per kind; h_t sits between a_t and ŝ_{t+1}, θ and J are centred."""
    kind, time = attrs["kind"], attrs["time"]
    x = (horizon + 1) / 2 if time is None else time + (0.5 if kind == "hidden" else 0.0)
    return x, ROWS[kind]


def _label(text: str) -> str:
    """"ŝ_12" -> "ŝ<sub>12</sub>" (plotly's HTML subset)."""
    return re.sub(r"_(\w+)$", r"<sub>\1</sub>", text)


_SUBSCRIPTS = str.maketrans("0123456789kt", "₀₁₂₃₄₅₆₇₈₉ₖₜ")


def subscript(text: str) -> str:
    """"a_12 -> ŝ_t" -> "a₁₂ -> ŝₜ": subscripts (digits, k, t) as Unicode characters, for widget labels and text."""
    return re.sub(r"_([0-9kt]+)", lambda m: m.group(1).translate(_SUBSCRIPTS), text)


def _edge_points(p, q, steps=12) -> tuple[list, list]:
    """A straight segment, or an arc below the row for an edge that skips along one row (ŝ_j -> ŝ_t, h_j -> h_t)."""
    (x0, y0), (x1, y1) = p, q
    if y0 != y1 or abs(x1 - x0) <= 1:
        return [x0, x1, None], [y0, y1, None]
    depth = 0.22 * (abs(x1 - x0) - 1) ** 0.8
    ts = [i / steps for i in range(steps + 1)]
    return ([x0 + (x1 - x0) * t for t in ts] + [None],
            [y0 - 4 * depth * t * (1 - t) for t in ts] + [None])


def on_paths(G: nx.DiGraph, source, target) -> set:
    """The nodes lying on at least one directed path source -> target (empty when there is none)."""
    if source not in G or target not in G:
        raise ValueError(f"{source!r} or {target!r} is not a node of this graph")
    reach = (nx.descendants(G, source) | {source}) & (nx.ancestors(G, target) | {target})
    return reach if target in reach else set()


def dependency_graph_figure(G: nx.DiGraph, source=None, target=None, title=None, width=900, height=460):
    """Draw a time-step gradient graph (`gradlens.analysis.paths.graph(..., level="time")`): one row per node kind,
    time left to right, every edge grey; the edges and nodes on the paths `source` -> `target` (e.g. ("a", 2),
    ("s", 5)) in red."""
    if G.graph.get("level") != "time":
        raise ValueError(f"only time-step graphs can be drawn here, got level {G.graph.get('level')!r}")
    horizon = G.graph["horizon"]
    pos = {n: _position(n, a, horizon) for n, a in G.nodes(data=True)}
    lit = on_paths(G, source, target) if source is not None else set()
    fig = go.Figure()
    for on, color, width_px, opacity in ((False, "#b0b0b0", 1.0, 0.8), (True, HIGHLIGHT, 2.6, 1.0)):
        xs, ys = [], []
        for u, v in G.edges:
            if (u in lit and v in lit) == on:
                ex, ey = _edge_points(pos[u], pos[v])
                xs += ex
                ys += ey
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", hoverinfo="skip", opacity=opacity, showlegend=False,
                                 line={"color": color, "width": width_px}))
    for kind, color in KIND_COLORS.items():
        nodes = [n for n, a in G.nodes(data=True) if a["kind"] == kind]
        if not nodes:
            continue
        fig.add_trace(go.Scatter(
            x=[pos[n][0] for n in nodes], y=[pos[n][1] for n in nodes], mode="markers+text", name=kind,
            text=[_label(G.nodes[n]["label"]) for n in nodes], textposition="top center",
            hovertext=[f"{G.nodes[n]['label']} ({kind})" for n in nodes], hoverinfo="text",
            marker={"size": [15 if n in (source, target) else 11 for n in nodes], "color": color,
                    "line": {"color": [HIGHLIGHT if n in lit else "white" for n in nodes], "width": 2.5}}))
    fig.update_xaxes(visible=False, range=[0.3, horizon + 1.7])
    fig.update_yaxes(visible=False, range=[-3.0, 3.4])
    settings = G.graph
    title = title or (f"{settings['model_class']}, H = {horizon}, {settings['policy']}-loop policy"
                      + (", stop-gradient" if settings["stop_gradient"] else ""))
    return _paper_layout(fig, title, width, height)


def path_lengths_figure(histogram: dict, title="Lengths of the paths", width=420, height=330):
    """Bar chart of {length (edges): number of paths} (a `PathStats.length_histogram`); log counts when they span
    more than two decades."""
    lengths, counts = list(histogram), [float(c) for c in histogram.values()]
    fig = go.Figure(go.Bar(x=lengths, y=counts, marker_color=HIGHLIGHT,
                           hovertemplate="length %{x}: %{y:.4g} paths<extra></extra>"))
    fig.update_xaxes(title_text="path length (edges)", dtick=1 if len(lengths) <= 20 else None)
    spread = max(counts, default=1) / max(min(counts, default=1), 1)
    fig.update_yaxes(title_text="number of paths", type="log" if spread > 100 else "linear")
    return _paper_layout(fig, title, width, height)


def subset(report, methods=None, horizons=None):
    """A copy of an `AuditReport` whose gradient, Jacobian and landscape rows are limited to `methods` and `horizons`
    (None keeps all): what the `gradlens.plots` functions then draw."""
    keep_m = set(report.methods if methods is None else methods)
    keep_h = set(report.horizons if horizons is None else horizons)

    def rows(table):
        return [r for r in table if r.method in keep_m and r.horizon in keep_h]

    return dataclasses.replace(report, models=[m for m in report.models if m in keep_m],
                               horizons=[h for h in report.horizons if h in keep_h],
                               gradients=rows(report.gradients), jacobians=rows(report.jacobians),
                               landscapes=rows(report.landscapes))
