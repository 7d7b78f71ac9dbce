"""Figures of gradlens results: one function per figure, each returning a plotly Figure in a clean paper style
(white template, boxed axes, outside ticks, one colour per model class)."""
import contextlib
import logging
import math
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
from plotly.subplots import make_subplots

from gradlens import outcomes

CLASS_COLORS = {
    "simulator": "#000000",
    "markov": "#7f7f7f",
    "awm-rnn": "#1f77b4",
    "awm-ssm": "#17becf",
    "awm-transformer": "#2ca02c",
    "hwm-rnn": "#ff7f0e",
    "hwm-transformer": "#d62728",
}
GROUP_COLORS = ("#000000", "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")
_AXIS = {"showline": True, "mirror": True, "ticks": "outside", "linecolor": "black", "gridcolor": "#eeeeee"}
DASHES = ("solid", "dash", "dashdot", "longdash", "longdashdot", "6px,3px,1px,3px")  # "dot": zeroth-order, divergence
SYMBOLS = ("circle", "square", "diamond", "triangle-up", "x", "star", "triangle-down", "pentagon", "hexagon")
RANGES = {"cosine": (-1.0, 1.0), "mean_norm": (0.0, math.inf), "variance": (0.0, math.inf), "snr": (0.0, math.inf),
          "fraction": (0.0, 1.0), "nonnegative": (0.0, math.inf), "real": (-math.inf, math.inf)}
# the columns of a training run's metrics (gradlens.training.train) -> (panel title, range of the quantity)
TRAINING_METRICS = {
    "return": ("return in the true system", "real"), "model_loss": ("model loss", "nonnegative"),
    "policy_grad_norm": ("policy-gradient norm", "nonnegative"), "cosine_to_simulator": ("cosine with the simulator",
                                                                                         "cosine"),
    "relative_error_to_simulator": ("relative error to the simulator", "nonnegative"),
    "wall_time": ("wall time (s)", "nonnegative"), "zeroed_policy_grads": ("zeroed policy gradients", "nonnegative"),
}
FORMATS = (".html", ".png", ".svg")


def line_styles(names) -> dict:
    """name -> {dash, symbol, width, size}: a distinct (dash, marker) pair per name, the first drawn widest and
    largest, so that lines which coincide stay visible as nested outlines and every legend entry has a trace to see."""
    names = list(dict.fromkeys(names))
    last = max(len(names) - 1, 1)
    return {name: {"dash": DASHES[i % len(DASHES)], "symbol": SYMBOLS[i % len(SYMBOLS)],
                   "width": 1.5 + 2.0 * (len(names) - 1 - i) / last, "size": 6 + 6 * (len(names) - 1 - i) / last}
            for i, name in enumerate(names)}


def clip_band(low, high, quantity: str) -> tuple[list, list]:
    """(low, high) clipped to the quantity's range (`RANGES`: a cosine within [-1, 1], norms and variances >= 0)."""
    lo, hi = RANGES[quantity]
    return [min(max(x, lo), hi) for x in low], [min(max(x, lo), hi) for x in high]


def _band(x, low, high, quantity: str, color: str, group: str, what: str = "± 1 s.e.") -> go.Scatter:
    """A shaded band `what` between `low` and `high` (clipped to the quantity's range), without a legend entry."""
    low, high = clip_band(low, high, quantity)
    return go.Scatter(x=list(x) + list(x)[::-1], y=high + low[::-1], mode="lines", fill="toself", fillcolor=color,
                      opacity=0.15, line={"width": 0}, hoverinfo="skip", showlegend=False, legendgroup=group,
                      name=f"{group} {what}")


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
    horizon, log10_paths, longest, mean_length), for any mix of classes and settings, each setting in its own dash
    and marker (`line_styles`: settings with equal counts stay visible). Left: Σ_k #(a_k -> J); right: the longest
    and (dotted) mean path length. All axes logarithmic. The count axis is drawn from log10_paths
    with ticks labelled 1eN, because the counts pass float64's 1.8e308 (3^H does at H = 647).
    """
    series = {}
    for row in sorted(table, key=lambda r: r["horizon"]):
        series.setdefault(_setting_name(row), []).append(row)
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.1,
                        subplot_titles=("number of paths Σ_k #(a_k → J)", "path length a_k → J (dotted: mean)"))
    styles = line_styles(series)
    for name, rows in series.items():
        color, style = CLASS_COLORS.get(rows[0]["model_class"], "#9467bd"), styles[name]
        line = {"color": color, "dash": style["dash"], "width": style["width"]}
        horizons = [r["horizon"] for r in rows]
        common = {"x": horizons, "mode": "lines+markers", "legendgroup": name,
                  "marker": {"size": style["size"], "symbol": style["symbol"]}}
        fig.add_trace(go.Scatter(y=[r["log10_paths"] for r in rows], name=name, line=line,
                                 hovertemplate="H=%{x}<br>log10 paths=%{y:.2f}<extra>" + name + "</extra>",
                                 **common), row=1, col=1)
        fig.add_trace(go.Scatter(y=[r["longest"] for r in rows], name=name, showlegend=False, line=line, **common),
                      row=1, col=2)
        fig.add_trace(go.Scatter(y=[r["mean_length"] for r in rows], name=name + " (mean)", showlegend=False,
                                 line={**line, "dash": "dot"}, **common), row=1, col=2)
    top = max((r["log10_paths"] for r in table), default=1.0)
    fig.update_xaxes(type="log", title_text="horizon H")
    fig.update_yaxes(title_text="paths (log scale)", tickprefix="1e", tickformat="d", tick0=0,
                     dtick=_decade_step(top), rangemode="tozero", row=1, col=1)
    fig.update_yaxes(type="log", title_text="edges per path (log scale)", row=1, col=2)
    return _paper_layout(fig, title, width, height)


def _group_name(setting, varying):
    """"method", prefixed by "system: " and followed by ", H=horizon" (and ", column=value") where those vary."""
    name = f"{setting['system']}: {setting['method']}" if "system" in varying else str(setting["method"])
    return ", ".join([name] + [f"H={setting[c]}" if c == "horizon" else f"{c}={setting[c]}"
                               for c in varying if c != "system"])


def learning_curves_figure(metrics, title="Return in the true system during training", width=760, height=460,
                           y="return", best=None, rtol=outcomes.DEFAULT_RTOL):
    """The paper's learning-curve figure as a distribution over seeds: `y` (default the deterministic policy's real
    return) against env steps, a thin line per seed and a thick line for the median over seeds, per run group
    (method, and system / horizon when several are present), each median in its own dash and marker.

    metrics: a pandas DataFrame as `gradlens.runs.load` / `scan_metrics` return (columns env_steps, seed, method,
    system, `y`). For y = "return" each group's legend entry gives its fraction of seeds converged and median final
    return (`gradlens.outcomes.seed_outcomes` with `best` and `rtol`).
    """
    if "method" not in metrics.columns:
        raise ValueError(f"metrics need a 'method' column to draw one curve per method; got {list(metrics.columns)}")
    by = outcomes.group_columns(metrics)
    varying = [c for c in by if c != "method" and metrics[c].nunique(dropna=False) > 1]
    summary = _summaries(metrics, by, best, rtol) if y == "return" else {}
    fig = go.Figure()
    groups = list(metrics.groupby(by, sort=True, dropna=False) if by else [((), metrics)])
    one_per_method = len(groups) == metrics["method"].nunique()  # else colours by group: methods repeat
    styles = line_styles(_group_name(dict(zip(by, k if isinstance(k, tuple) else (k,))), varying) for k, _ in groups)
    for i, (key, part) in enumerate(groups):
        key = key if isinstance(key, tuple) else (key,)
        setting = dict(zip(by, key))
        name = _group_name(setting, varying)
        color = _color(setting["method"]) if one_per_method else GROUP_COLORS[i % len(GROUP_COLORS)]
        for seed, curve in part.sort_values("env_steps").groupby("seed", sort=True):
            fig.add_trace(go.Scatter(x=list(curve["env_steps"]), y=list(curve[y]), mode="lines", opacity=0.35,
                                     line={"color": color, "width": 1}, name=f"{name}, seed {seed}",
                                     legendgroup=name, showlegend=False,
                                     hovertemplate=f"{name}, seed {seed}<br>step %{{x}}<br>{y} %{{y:.5g}}"
                                                   "<extra></extra>"))
        median = part.groupby("env_steps")[y].median()
        n = part["seed"].nunique()
        label, rule = _curve_label(name, n, summary.get(key))
        style = styles[name]
        fig.add_trace(go.Scatter(x=list(median.index), y=list(median), mode="lines+markers", name=label,
                                 legendgroup=name, line={"color": color, "width": style["width"] + 1,
                                                         "dash": style["dash"]},
                                 marker={"symbol": style["symbol"], "size": style["size"], "maxdisplayed": 12},
                                 hovertemplate=f"{name}: median over {n} seed(s)<br>step %{{x}}<br>{y} %{{y:.5g}}"
                                               f"{rule}<extra></extra>"))
    fig.update_xaxes(title_text="environment steps")
    fig.update_yaxes(title_text=y.replace("_", " "))
    fig = _paper_layout(fig, title, width, height + 24 * len(groups))
    # the legend entries are long (seeds, converged, median): below the axes, one per line, clear of the title
    return fig.update_layout(legend={"orientation": "v", "yanchor": "top", "y": -0.16, "x": 0},
                             margin={"b": 70 + 24 * len(groups)})


def _summaries(metrics, by, best, rtol) -> dict:
    """Group key (values of `by`) -> its row of `outcomes.summarize` (converged seeds, median final return)."""
    found = outcomes.summarize(outcomes.seed_outcomes(metrics, best=best, rtol=rtol))
    return {tuple(row[c] for c in by): row for _, row in found.iterrows()}


def _curve_label(name, n, row) -> tuple[str, str]:
    """(legend label, hover rule): "name (n seeds)", with the converged count and median final return when `row`
    (a `_summaries` row) is given, and the convergence rule for the hover text."""
    label, rule = f"{name} ({n} seed{'s' if n > 1 else ''}", ""
    if row is not None:
        converged = "?" if pd.isna(row["n_converged"]) else row["n_converged"]
        label += f", {converged}/{n} converged, median final {row['median']:.4g}"
        rule = ("<br>converged: final >= best-known - tolerance = "
                f"{row['best']:.5g} - {row['tolerance']:.3g} ({row['best_source']})")
    return label + ")", rule


def training_columns(metrics) -> list[str]:
    """The `TRAINING_METRICS` columns of `metrics` that hold at least one finite value, in that order."""
    return [c for c in TRAINING_METRICS if c in metrics.columns
            and pd.to_numeric(metrics[c], errors="coerce").replace([math.inf, -math.inf], math.nan).notna().any()]


def seed_interval(part, column: str, level: float = 0.95) -> pd.DataFrame:
    """Per env step: the mean of `column` over seeds and its `level` t-interval (low, high; NaN with one seed)."""
    from scipy import stats

    grouped = part.groupby("env_steps")[column]
    frame = pd.DataFrame({"mean": grouped.mean(), "sd": grouped.std(ddof=1), "n": grouped.count()})
    t = frame["n"].map(lambda n: stats.t.ppf(0.5 + level / 2, n - 1) if n > 1 else math.nan)
    half = t * frame["sd"] / frame["n"].pow(0.5)
    return frame.assign(low=frame["mean"] - half, high=frame["mean"] + half)


def training_curves_figure(metrics, columns=None, title="Training metrics: each seed, the mean over seeds and its "
                           "95 % CI", width=None, height=None, best=None, rtol=outcomes.DEFAULT_RTOL):
    """Small multiples, one panel per logged metric (`columns`, default `training_columns(metrics)`): a thin line
    per seed, the mean over seeds (its own dash and marker per run group) and its 95 % t-interval as a band clipped
    to the metric's range. Run groups and colours as `learning_curves_figure`; the legend gives each group's seeds
    converged and median final return. Size: `width` x `height` pixels (default from the number of panels)."""
    if "method" not in metrics.columns:
        raise ValueError(f"metrics need a 'method' column to draw one curve per method; got {list(metrics.columns)}")
    columns = training_columns(metrics) if columns is None else list(columns)
    unknown = [c for c in columns if c not in TRAINING_METRICS or c not in metrics.columns]
    if unknown or not columns:
        raise ValueError(f"cannot plot metric(s) {', '.join(unknown) or '(none)'}; the metrics hold "
                         f"{', '.join(training_columns(metrics)) or 'no finite metric'}")
    by = outcomes.group_columns(metrics)
    varying = [c for c in by if c != "method" and metrics[c].nunique(dropna=False) > 1]
    summary = _summaries(metrics, by, best, rtol) if "return" in columns else {}
    groups = list(metrics.groupby(by, sort=True, dropna=False) if by else [((), metrics)])
    one_per_method = len(groups) == metrics["method"].nunique()
    names = [_group_name(dict(zip(by, k if isinstance(k, tuple) else (k,))), varying) for k, _ in groups]
    styles = line_styles(names)
    ncols = min(3, len(columns))
    nrows = -(-len(columns) // ncols)
    fig = make_subplots(rows=nrows, cols=ncols, subplot_titles=[TRAINING_METRICS[c][0] for c in columns],
                        horizontal_spacing=0.08, vertical_spacing=0.5 / nrows if nrows > 1 else 0.1)
    for i, ((key, part), name) in enumerate(zip(groups, names)):
        key = key if isinstance(key, tuple) else (key,)
        color = _color(dict(zip(by, key))["method"]) if one_per_method else GROUP_COLORS[i % len(GROUP_COLORS)]
        n = part["seed"].nunique()
        label, rule = _curve_label(name, n, summary.get(key))
        for j, column in enumerate(columns):
            cell = {"row": j // ncols + 1, "col": j % ncols + 1}
            _seed_lines(fig, part, column, name, color, cell)
            found = seed_interval(part, column)
            steps = list(found.index)
            if n > 1:
                fig.add_trace(_band(steps, list(found["low"]), list(found["high"]), TRAINING_METRICS[column][1],
                                    color, name, "95 % CI"), **cell)
            style = styles[name]
            fig.add_trace(go.Scatter(x=steps, y=list(found["mean"]), mode="lines+markers", name=label,
                                     legendgroup=name, showlegend=j == 0,
                                     line={"color": color, "width": style["width"] + 1, "dash": style["dash"]},
                                     marker={"symbol": style["symbol"], "size": style["size"], "maxdisplayed": 12},
                                     hovertemplate=f"{name}: mean over {n} seed(s)<br>step %{{x}}<br>{column} "
                                                   f"%{{y:.5g}}{rule if column == 'return' else ''}<extra></extra>"),
                          **cell)
    fig.update_xaxes(title_text="environment steps", row=nrows)
    fig = _paper_layout(fig, title, width or 340 * ncols + 90, height or 290 * nrows + 110 + 24 * len(groups))
    return fig.update_layout(legend={"orientation": "v", "yanchor": "top", "y": -0.12, "x": 0},
                             margin={"b": 70 + 24 * len(groups)})


def _seed_lines(fig, part, column, name, color, cell):
    """One thin line of `column` per seed of `part`, in subplot `cell`, without legend entries."""
    for seed, curve in part.sort_values("env_steps").groupby("seed", sort=True):
        fig.add_trace(go.Scatter(x=list(curve["env_steps"]), y=list(curve[column]), mode="lines", opacity=0.35,
                                 line={"color": color, "width": 1}, name=f"{name}, seed {seed}", legendgroup=name,
                                 showlegend=False, hovertemplate=f"{name}, seed {seed}<br>step %{{x}}<br>{column} "
                                                                 "%{y:.5g}<extra></extra>"), **cell)


def _color(method):
    return CLASS_COLORS.get(method, "#9467bd")


def _methods(rows):
    """Methods in first-seen order, the simulator first."""
    seen = list(dict.fromkeys(r.method for r in rows))
    return sorted(seen, key=lambda m: m != "simulator")


def gradient_stats_figure(report, title="Policy-gradient statistics versus horizon", width=1300, height=420):
    """Four panels against the horizon H (log axes): norm of the mean gradient ‖ḡ‖, variance tr Σ̂ of one sample,
    its signal-to-noise ratio, and the cosine of ḡ to the simulator's mean gradient; one line per method (its own
    colour, dash and marker), dotted with open markers for the zeroth-order (Gaussian-smoothing) estimator.
    First-order lines carry a shaded band, clipped to the quantity's range: the row's 95 % bootstrap interval
    (`<stat>_ci`, schema >= 4), or about one standard error for an older report (`_standard_errors`). `report`: an
    `AuditReport` (its `gradients` rows)."""
    fig = make_subplots(rows=1, cols=4, horizontal_spacing=0.07,
                        subplot_titles=("gradient norm ‖ḡ‖", "variance tr Σ (one sample)", "SNR (one sample)",
                                        "cosine to simulator"))
    rows = report.gradients
    styles = line_styles(_methods(rows))
    sim = {r.horizon: r for r in rows if r.method == "simulator" and r.estimator == "first-order"}
    for method, style in styles.items():
        for estimator in ("first-order", "zeroth-order"):
            part = sorted((r for r in rows if r.method == method and r.estimator == estimator), key=lambda r: r.horizon)
            if not part:
                continue
            first = estimator == "first-order"
            name = method if first else f"{method} (zeroth-order)"
            x = [r.horizon for r in part]
            for col, key in ((1, "mean_norm"), (2, "variance"), (3, "snr"), (4, "cosine")):
                if first and not (key == "cosine" and method == "simulator"):  # its own mean: cosine 1 exactly
                    low, high, what = gradient_band(part, key, sim)
                    fig.add_trace(_band(x, low, high, key, _color(method), name, what), row=1, col=col)
                fig.add_trace(go.Scatter(
                    x=x, y=[getattr(r, key) for r in part], mode="lines+markers", name=name, legendgroup=name,
                    showlegend=col == 1, line={"color": _color(method), "dash": style["dash"] if first else "dot",
                                               "width": style["width"]},
                    marker={"size": style["size"], "symbol": style["symbol"] + ("" if first else "-open")}),
                    row=1, col=col)
    fig.update_xaxes(type="log", title_text="horizon H")
    for col in (1, 2, 3):
        fig.update_yaxes(type="log", row=1, col=col)
    fig.update_yaxes(range=[-1.05, 1.05], row=1, col=4)
    fig = _paper_layout(fig, title, width, height + 30)
    return fig.update_layout(margin={"t": 110}, legend={"y": 1.12})  # the legend above the panel titles


def gradient_band(part, key: str, sim: dict) -> tuple[list, list, str]:
    """(low, high, what) of each row's statistic `key` (rows: `GradientRow`s): its bootstrap interval `<key>_ci`
    where every row has one, otherwise about one standard error (`_standard_errors`)."""
    intervals = [getattr(r, f"{key}_ci") for r in part]
    if all(ci is not None for ci in intervals):
        return [lo for lo, _ in intervals], [hi for _, hi in intervals], "95 % bootstrap CI"
    return (*_standard_errors(part, key, sim), "± 1 s.e.")


def _standard_errors(part, key: str, sim: dict) -> tuple[list, list]:
    """(low, high) of about one standard error s around each row's `key`, from its n samples: s = sqrt(tr Σ / n) for
    ‖ḡ‖ and tr Σ sqrt(2 / (n - 1)) for tr Σ (a Gaussian variance's), both as the factor 1 + s / value either way (so
    the band stays positive on the log axes); SNR by the delta method from the two, s_SNR² = SNR² (s_‖ḡ‖² / ‖ḡ‖² +
    s_trΣ² / (4 tr Σ²)); cosine ± (1 / SNR + 1 / SNR_sim) / sqrt(n) (the angles of ḡ and of the simulator's mean, to
    first order). sim: H -> the simulator's first-order row. NaN where a statistic is missing."""
    low, high = [], []
    for r in part:
        n, value = r.n or 0, getattr(r, key)
        spread = math.nan
        if n >= 2 and _finite(value):
            if key == "mean_norm":
                spread = math.sqrt(r.variance / n)
            elif key == "variance":
                spread = value * math.sqrt(2 / (n - 1))
            elif key == "snr":
                if r.mean_norm > 0 and r.variance > 0:
                    spread = value * math.sqrt(r.variance / n / r.mean_norm ** 2 + 1 / (2 * (n - 1)))
            else:
                spread = sum(math.sqrt(row.variance / row.n) / row.mean_norm for row in (r, sim.get(r.horizon))
                             if row is not None and row.n and row.mean_norm)
        if not _finite(spread):
            low.append(math.nan)
            high.append(math.nan)
        elif key == "cosine":
            low.append(value - spread)
            high.append(value + spread)
        else:
            low.append(value / (1 + spread / value) if value > 0 else 0.0)
            high.append(value + spread)
    return low, high


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def jacobian_heatmaps_figure(report, horizon=None, title=None, width=None, height=360):
    """log10 ‖d ŝ_t / d a_k‖_F as a (t × k) heatmap, one panel per method, at `horizon` (default the largest).
    Entries with k >= t are exactly zero (causality) and left blank."""
    import numpy as np

    horizon = max(report.horizons) if horizon is None else horizon
    rows = [r for r in report.jacobians if r.horizon == horizon]
    if not rows:
        raise ValueError(f"no Jacobians at horizon {horizon}; the report has horizons {report.horizons}")
    fig = make_subplots(rows=1, cols=len(rows), horizontal_spacing=0.07,
                        subplot_titles=[f"{r.method}<br>growth {r.growth_rate:.3g} per step" for r in rows])
    logs = []
    for r in rows:
        n = np.asarray(r.norms, dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            logs.append(np.where(n > 0, np.log10(n), np.nan))
    finite = np.concatenate([x[np.isfinite(x)] for x in logs]) if logs else np.array([])
    zmin, zmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    for i, (r, z) in enumerate(zip(rows, logs)):
        fig.add_trace(go.Heatmap(z=z.tolist(), x=list(range(1, z.shape[1] + 1)), y=list(range(1, z.shape[0] + 1)),
                                 zmin=zmin, zmax=zmax, colorscale="Viridis", showscale=i == len(rows) - 1,
                                 colorbar={"title": "log10 ‖·‖"},
                                 hovertemplate="t=%{y}, k=%{x}<br>log10 norm=%{z:.2f}<extra>" + r.method
                                 + "</extra>"), row=1, col=i + 1)
    fig.update_xaxes(title_text="action a_k")
    fig.update_yaxes(title_text="state ŝ_t", autorange="reversed", col=1)
    fig.update_yaxes(autorange="reversed")
    title = title or f"Jacobian norms ‖d ŝ_t / d a_k‖ at H = {horizon}"
    fig = _paper_layout(fig, title, width or 300 * len(rows) + 120, height)
    return fig.update_layout(margin={"t": 100})  # the two-line panel titles, clear of the figure's title


def landscapes_figure(report, kind="action", title=None, width=None, height=340):
    """1-D slices J along `kind` ("action": J(a_1); "direction": J(θ + α d)), one panel per horizon, one line per
    method; panel titles carry the normalised total variation of each slice (1 = monotone)."""
    rows = [r for r in report.landscapes if r.kind == kind]
    if not rows:
        raise ValueError(f"no {kind!r} landscapes in this report (kinds: "
                         f"{sorted({r.kind for r in report.landscapes})})")
    horizons = sorted({r.horizon for r in rows})
    fig = make_subplots(rows=1, cols=len(horizons), horizontal_spacing=0.05,
                        subplot_titles=[f"H = {h}" for h in horizons])
    styles = line_styles(_methods(rows))
    for col, h in enumerate(horizons, start=1):
        for r in sorted((r for r in rows if r.horizon == h), key=lambda r: r.method != "simulator"):
            rough = r.roughness.get("normalized_tv")
            style = styles[r.method]
            fig.add_trace(go.Scatter(x=r.grid, y=r.values, mode="lines+markers", name=r.method,
                                     legendgroup=r.method, showlegend=col == 1,
                                     line={"color": _color(r.method), "width": style["width"],
                                           "dash": style["dash"]},
                                     marker={"symbol": style["symbol"], "size": style["size"], "maxdisplayed": 12},
                                     hovertemplate=f"{r.method}, H={h}<br>x=%{{x:.3f}}<br>J=%{{y:.4g}}<br>"
                                     f"normalised TV={rough:.3g}<extra></extra>"), row=1, col=col)
    fig.update_xaxes(title_text="first action a_1" if kind == "action" else "step α along d")
    fig.update_yaxes(title_text="return J", col=1)
    title = title or ("Return landscape J(a_1)" if kind == "action" else "Return along a random direction in θ")
    return _paper_layout(fig, title, width or max(420, 300 * len(horizons)), height)


def plane_figure(report, horizon=None, title=None, height=360):
    """2-D slices J(θ + α d1 + β d2) at `horizon` (default the largest), one contour panel per method. Panels are
    compared on one colour range with one colour bar (`shared_ranges`); a panel whose values span more than
    `OWN_RANGE`x or less than 1/`OWN_RANGE` of the simulator's (the median panel's without it) is drawn on its own
    range, stated in its title."""
    horizon = max(report.horizons) if horizon is None else horizon
    rows = [r for r in report.landscapes if r.kind == "plane" and r.horizon == horizon]
    if not rows:
        raise ValueError(f"no 2-D slices at horizon {horizon} in this report")
    rows.sort(key=lambda r: r.method != "simulator")
    ranges, shared = shared_ranges({r.method: r.values for r in rows})
    titles = [f"{r.method} (TV {r.roughness['normalized_tv']:.3g})" + (
        "" if r.method in shared else f"<br>own colour range {ranges[r.method][0]:.3g} to "
                                      f"{ranges[r.method][1]:.3g}") for r in rows]
    fig = make_subplots(rows=1, cols=len(rows), horizontal_spacing=0.06, subplot_titles=titles)
    bar = next((r.method for r in reversed(rows) if r.method in shared), None)
    for i, r in enumerate(rows):
        alphas, betas = r.grid
        lo, hi = ranges[r.method]
        fig.add_trace(go.Contour(z=r.values, x=betas, y=alphas, colorscale="RdBu", zmin=lo, zmax=hi,
                                 autocontour=False, contours={"coloring": "heatmap", "start": lo, "end": hi,
                                                              "size": (hi - lo) / 20 or 1.0},
                                 showscale=r.method == bar, colorbar={"title": {"text": "return J"}},
                                 name=r.method,
                                 hovertemplate="α=%{y:.2f}, β=%{x:.2f}<br>J=%{z:.4g}<extra>" + r.method
                                 + "</extra>"), row=1, col=i + 1)
    fig.update_xaxes(title_text="β (direction 2)")
    fig.update_yaxes(title_text="α (direction 1)", col=1)
    fig = _paper_layout(fig, title or f"Return on a random plane in θ at H = {horizon}", 280 * len(rows) + 160,
                        height)
    return fig.update_layout(margin={"t": 100})


OWN_RANGE = 10.0


def shared_ranges(values: dict) -> tuple[dict, list]:
    """({name: (zmin, zmax)}, names compared on one range) for 2-D arrays of values: the panels whose finite values
    span within a factor `OWN_RANGE` of the reference span (the "simulator"'s, else the median) share the union of
    their ranges; any other panel, or one with no finite value, keeps its own."""
    import numpy as np

    own, spans = {}, {}
    for name, v in values.items():
        v = np.asarray(v, np.float64)
        v = v[np.isfinite(v)]
        own[name] = (float(v.min()), float(v.max())) if v.size else (0.0, 1.0)
        if v.size:
            spans[name] = own[name][1] - own[name][0]
    ref = spans.get("simulator", float(np.median(list(spans.values()))) if spans else 0.0)
    shared = [n for n, span in spans.items() if (span == ref == 0) or
              (ref > 0 and ref / OWN_RANGE <= span <= ref * OWN_RANGE)]
    if shared:
        lo, hi = min(own[n][0] for n in shared), max(own[n][1] for n in shared)
        own.update({n: (lo, hi) for n in shared})
    return own, shared


def write_figure(fig, path, plotlyjs="embed") -> list[str]:
    """Write `fig` to `path` in the format its suffix names (`FORMATS`); return the paths written.

    .html: the page, and beside it a .png when a Chromium for kaleido is available. .png / .svg: the image through
    kaleido. When an image cannot be rendered the HTML is written (beside it, for .png / .svg) and one line on stderr
    says why and how to get one (`png_note`), no traceback. plotlyjs: "embed" (a self-contained page, about 4.7 MB)
    or "directory" (pages in one folder share a plotly.min.js written beside them: small, still offline).
    """
    if plotlyjs not in ("embed", "directory"):
        raise ValueError(f"plotlyjs must be 'embed' or 'directory', got {plotlyjs!r}")
    import sys
    from pathlib import Path

    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise ValueError(f"cannot write figure {path}: unknown format {path.suffix or '(no suffix)'!r}; the suffix "
                         f"must be one of {', '.join(FORMATS)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    html, beside = path.with_suffix(".html"), path.suffix.lower() == ".html"
    image = path.with_suffix(".png") if beside else path
    if beside:
        fig.write_html(html, include_plotlyjs=True if plotlyjs == "embed" else "directory", full_html=True)
    try:
        with _quiet_exporters():
            fig.write_image(image)
    except Exception as err:  # kaleido missing, no Chromium for it, or a JavaScript error: the HTML is complete
        if not beside:
            fig.write_html(html, include_plotlyjs=True if plotlyjs == "embed" else "directory", full_html=True)
        print(png_note(html.name, err, None if beside else image.name), file=sys.stderr)
        return [str(html)]
    return [str(html), str(image)] if beside else [str(image)]


def write_figures(figures: dict, plotlyjs="embed") -> list[str]:
    """`write_figure` for many figures at once, {path ending in .html: fig}: every page, then every PNG beside them
    in one kaleido session (one browser start instead of one per figure, about 5 s each on 2 CPU cores). When the
    batch fails, the figures are exported one at a time, so that each one that cannot be rendered is named alone."""
    paths = [Path(p) for p in figures]
    bad = [str(p) for p in paths if p.suffix.lower() != ".html"]
    if bad:
        raise ValueError(f"write_figures writes pages (.html), got {', '.join(bad)}")
    for path, fig in zip(paths, figures.values()):
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.write_html(path, include_plotlyjs=True if plotlyjs == "embed" else "directory", full_html=True)
    try:
        with _quiet_exporters():
            figs = list(figures.values())  # each figure's own size: the batch call ignores the layout's (700 x 500)
            pio.write_images(figs, [p.with_suffix(".png") for p in paths], width=[f.layout.width for f in figs],
                             height=[f.layout.height for f in figs])
    except Exception:  # one figure's JavaScript error, or no Chromium at all: find out which, one by one
        return [w for path, fig in zip(paths, figures.values()) for w in write_figure(fig, path, plotlyjs)]
    return [str(w) for path in paths for w in (path, path.with_suffix(".png"))]


IMAGE_HELP = "pip install kaleido, then plotly_get_chrome"
PNG_HELP = f"for PNGs: {IMAGE_HELP}"


def png_note(name: str, err: BaseException, image: str | None = None) -> str:
    """One line: why the page `name` has no PNG beside it (or, given `image`, why that .png / .svg was not rendered
    and the page `name` was written instead), with the error's first line, shortened, and how to get images."""
    why = next((line.strip() for line in str(err).splitlines() if line.strip()), "") or type(err).__name__
    why = why if len(why) <= 100 else why[:99] + "…"
    if image is None:
        return f"note: no PNG for {name} ({why}); the HTML is written ({PNG_HELP})"
    kind = image.rsplit(".", 1)[-1].upper()
    return f"note: no {image} ({why}); wrote {name} instead (for {kind}s: {IMAGE_HELP})"


@contextlib.contextmanager
def _quiet_exporters():
    """Silence kaleido's and choreographer's own logging (tracebacks of a failed export) while one figure exports."""
    loggers = [logging.getLogger(name) for name in ("kaleido", "choreographer", "logistro")]
    levels = [log.level for log in loggers]
    for log in loggers:
        log.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for log, level in zip(loggers, levels):
            log.setLevel(level)


def fit_error_figure(report, title="Open-loop validation error versus horizon", height=340):
    """Per-step open-loop MSE on the held-out episodes (log axis) against the step t, one panel per fitted model:
    the model beside the repeat-last-state and least-squares linear baselines, and the simulator's own divergence
    from starts δ apart (dotted; where it meets the repeat baseline no model can predict). Audited horizons are
    marked, each with ✓ or ✗ for the fit bar. `report`: an `AuditReport` whose fits hold fit records."""
    names = [n for n, f in report.fits.items() if "val_error_by_horizon" in f]
    fig = make_subplots(rows=1, cols=max(len(names), 1), subplot_titles=names or ("no fit record",),
                        horizontal_spacing=0.06)
    spread = report.system.get("divergence_by_horizon")
    for col, name in enumerate(names, start=1):
        fit = report.fits[name]
        curves = ((name, fit["val_error_by_horizon"], _color(name), "solid"),
                  ("repeat last state", fit["baseline_repeat_by_horizon"], "#000000", "dash"),
                  ("linear least squares", fit["baseline_linear_by_horizon"], "#8c564b", "dashdot"),
                  (f"simulator, starts {report.system.get('divergence_delta', 0):g} apart", spread or [], "#bcbd22",
                   "dot"))
        for label, values, color, dash in curves:
            if values:
                fig.add_trace(go.Scatter(x=list(range(1, len(values) + 1)), y=values, mode="lines", name=label,
                                         legendgroup=label, showlegend=col == 1 or label == name,
                                         line={"color": color, "dash": dash}), row=1, col=col)
        for h, ok in zip(report.horizons, fit["passes_fit_bar"]):
            fig.add_vline(x=h, line={"color": "#2ca02c" if ok else "#d62728", "width": 1}, row=1, col=col,
                          annotation_text=f"H={h} {'✓' if ok else '✗'}", annotation_position="bottom left")
    fig.update_xaxes(title_text="step t")
    fig.update_yaxes(type="log", title_text="MSE", row=1, col=1)
    fig.update_yaxes(type="log")
    return _paper_layout(fig, title, max(420, 380 * len(names)), height)
