"""An audit as files: the run folder (`report.json`, one HTML/PNG per figure) and `report.html`, which opens on the
audit's conclusions.

    run = run_audit("double_pendulum", ["markov", "awm-transformer"], [5, 10, 20], root="gradlens-runs")
    # gradlens-runs/<system>-audit-<UTC time>/{config.json, status.json, report.json, report.html, figures/...}

Every page of a run loads the run's one copy of plotly.js, `figures/plotly.min.js`, so the folder opens offline in
any browser; `standalone_html` gives report.html with it inlined, one file to send.
"""
from __future__ import annotations

import dataclasses
import html
import math
import textwrap
from pathlib import Path

from gradlens import plots, runs
from gradlens.analysis.audit import AuditConfig, AuditReport, audit, prepare, summary_rows
from gradlens.conclusions import conclusions
from gradlens.fitting.record import FitRecord, horizon_ratio

DEMO = {"system": "double_pendulum", "models": ("markov", "hwm-transformer", "awm-transformer"),
        "horizons": (5, 10, 20)}  # `gradlens demo`: the main job
QUICK_HORIZONS = (4, 8)  # `gradlens demo --quick`: toy sizes, about 50 s cold on 2 cores, 28 s warm
# fits still run to a validation plateau (patience 10; the cap of 300 epochs is a safety limit): 8-step episodes make
# an epoch cheap, and 128 of them in batches of 32 (4 Adam steps per epoch) beat repeating the last state >= 2x
QUICK_CONFIG = AuditConfig(n_episodes=128, fit_epochs=300, fit_patience=10, fit_batch=32, n_samples=4,
                           landscape_points=21, landscape_2d_points=5)
SUMMARY_COLUMNS = (("method", "method"), ("horizon", "H"), ("fit", "fit/repeat"), ("grad_norm", "‖ḡ‖"),
                   ("variance", "tr Σ"),
                   ("snr", "SNR"), ("cosine", "cos(sim)"), ("rel_error", "rel. err"),
                   ("growth_rate", "Jac. growth/step"), ("roughness", "landscape TV"), ("log10_paths", "log10 paths"))


def audit_figures(report: AuditReport) -> dict:
    """name -> plotly Figure for every section the report holds data for."""
    figs = {"gradients": plots.gradient_stats_figure(report), "jacobians": plots.jacobian_heatmaps_figure(report)}
    if any("val_error_by_horizon" in f for f in report.fits.values()):
        figs["fit_error"] = plots.fit_error_figure(report)
    kinds = {r.kind for r in report.landscapes}
    for kind in ("action", "direction"):
        if kind in kinds:
            figs[f"landscape_{kind}"] = plots.landscapes_figure(report, kind)
    if "plane" in kinds:
        figs["landscape_plane"] = plots.plane_figure(report)
    if report.paths:
        figs["paths"] = plots.path_counts_figure(report.paths)
    return figs


def _cell(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return "NaN" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def _fit_cell(row: dict) -> str:
    """"0.012x ok" / "0.81x FAIL": the model's open-loop error over steps 1 … H relative to repeating the last state,
    and whether it beats that baseline 2x; "–" for the simulator (and reports without fit records)."""
    if row["fit_ratio"] is None:
        return "–"
    return f"{_cell(row['fit_ratio'])}x {'ok' if row['fit_passes'] else 'FAIL'}"


def summary_table(report: AuditReport) -> list[list[str]]:
    """The summary as text cells: a header row, then one row per (method, horizon)."""
    rows = [{**r, "fit": _fit_cell(r)} for r in summary_rows(report)]
    return [[label for _, label in SUMMARY_COLUMNS]] + [[_cell(r[key]) for key, _ in SUMMARY_COLUMNS] for r in rows]


FIT_NOTE = ("fit/repeat: the model's open-loop error over steps 1-H, on held-out episodes of the H-step task, "
            "relative to repeating the last state; a model must beat that baseline 2x (<= 0.5x) before its gradients "
            "say anything about its architecture")


def warning_lines(report: AuditReport) -> list[str]:
    """One plain sentence per warning (unpredictable horizon, unconverged fit, fit bar failed, zero simulator
    gradient); [] for old reports."""
    return [w.message + "." for w in report.warnings]


def fit_caveat(report: AuditReport) -> str:
    """One sentence naming every model (and its horizons) whose gradient conclusions do not hold because it does not
    beat repeating the last state 2x; "" when every fit passes (or the report has no fit records)."""
    failing = {}
    for w in report.warnings:
        if w.kind == "fit_bar":
            failing.setdefault(w.method, []).append(str(w.horizon))
    if not failing:
        return ""
    parts = [f"{name} at H = {', '.join(hs)}" for name, hs in failing.items()]
    return (f"Caution: the gradients of {'; '.join(parts)} come from a model that does not beat repeating the last "
            "state 2x there: they measure its fit quality, not its architecture (see World-model fits).")


def format_conclusions(report: AuditReport, width: int = 120) -> str:
    """`conclusions` as plain text wrapped to `width`: "Conclusions:" and "What not to conclude:", a bullet each."""
    found = conclusions(report)
    lines = []
    for heading, sentences in (("Conclusions:", found.findings), ("What not to conclude:", found.caveats)):
        if sentences:
            lines += [heading, *(textwrap.fill(s, width, initial_indent="- ", subsequent_indent="  ")
                                 for s in sentences)]
    return "\n".join(lines)


def format_summary(report: AuditReport) -> str:
    """The summary table as aligned plain text, then the fit note, every warning and the conclusions (what
    `gradlens audit` prints)."""
    table = summary_table(report)
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))) for row in table]
    lines.insert(1, "-" * len(lines[0]))
    if report.fits:
        lines.append(FIT_NOTE)
    lines += [f"WARNING: {line}" for line in warning_lines(report)]
    text = format_conclusions(report)
    return "\n".join(lines + (["", text] if text else []))


def predictability_sentence(report: AuditReport) -> str:
    """What the simulator's own divergence from starts δ apart says about the audited horizons ("" without it)."""
    system, spread = report.system, report.system.get("divergence_by_horizon")
    if not spread:
        return ""
    h = len(spread)
    text = (f"Two simulator starts {system['divergence_delta']:g} apart (state and actions) end "
            f"{spread[-1] ** 0.5:.3g} apart (RMS) after {h} steps. ")
    bad = system.get("unpredictable_horizons", [])
    if not bad:
        return text + "The system is predictable at every audited horizon, so every model can be held to the fit bar."
    return text + (f"At H = {', '.join(map(str, bad))} that divergence exceeds half the error of repeating the last "
                   "state: no model can be expected to predict there.")


def fits_table(report: AuditReport) -> list[list[str]]:
    """The fit records as text cells: a header row, then one row per model ([] when the report has none)."""
    hs = report.horizons
    head = ["model", "source", "epochs (cap)", "converged", *(f"vs repeat, H={h}" for h in hs),
            *(f"linear/repeat, H={h}" for h in hs), "seconds"]
    rows = []
    for name, f in report.fits.items():
        if "val_error_by_horizon" not in f:
            continue
        record = FitRecord.from_dict(f)
        converged = {True: "yes", False: "NO", None: "–"}[record.converged]
        linear = record.baseline_linear_by_horizon
        rows.append([name, f["source"], f"{record.epochs} ({_cell(record.max_epochs)})", converged,
                     *(_fit_cell({"fit_ratio": r, "fit_passes": ok})
                       for r, ok in zip(f["ratio_to_repeat"], f["passes_fit_bar"])),
                     *(f"{_cell(horizon_ratio(linear, record.baseline_repeat_by_horizon, h))}x" for h in hs),
                     _cell(f["seconds"])])
    return [head, *rows] if rows else []


SECTION_TEXT = {
    "fit_error": ("Open-loop validation error", "Per-step error of each model fed its own predictions on held-out "
                  "episodes, beside repeating the last state, a least-squares linear model and the simulator's "
                  "own divergence from starts a hair apart. Vertical lines mark the audited horizons: ✓ where the "
                  "model beats repeating the last state 2x over steps 1-H, ✗ where it does not."),
    "gradients": ("Policy-gradient statistics", "Norm of the mean gradient, variance and signal-to-noise ratio of "
                  "one sample, and cosine to the true simulator's mean gradient, per method and horizon, each shaded "
                  "by its 95 % bootstrap interval (the gradient samples resampled, paired with the simulator's; "
                  "clipped to the quantity's range). A model whose cosine stays near 1 as H grows gives the "
                  "simulator's descent direction; exploding variance is chaos or a bad model."),
    "jacobians": ("Jacobian chains", "log10 ‖d ŝ_t / d a_k‖ for every state t and action k at the largest "
                  "horizon; a positive growth rate means gradients explode with the lag t − k."),
    "landscape_action": ("Return landscape J(a_1)", "The return as the first action varies, other actions zero: the "
                         "toy tasks' landscape. The normalised total variation is 1 for a monotone slice."),
    "landscape_direction": ("Return along a random policy direction", "J(θ + α d) for one filter-normalised "
                            "direction d in policy-parameter space."),
    "landscape_plane": ("Return on a random plane", "J(θ + α d1 + β d2) at the largest horizon, on one colour "
                        "range shared by the panels compared; a panel on its own range says so in its title."),
    "paths": ("Gradient paths", "Exact number of paths a_k → J on the unrolled time-step graph, and their longest "
              "and mean length: exponential in H for history models, polynomial for action models."),
}


def _html_table(table: list[list[str]]) -> str:
    esc = html.escape
    head = "".join(f"<th>{esc(c)}</th>" for c in table[0])
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in table[1:])
    return f"<table><tr>{head}</tr>{body}</table>"


def _item_list(lines: list[str], css: str) -> str:
    return f"<ul class='{css}'>" + "".join(f"<li>{html.escape(line)}</li>" for line in lines) + "</ul>"


def _warning_list(lines: list[str]) -> str:
    return _item_list(lines, "warnings") if lines else ""


NOTHING_TO_READ = "No finite gradient statistics to read."


def conclusion_html(report: AuditReport) -> str:
    """The report's first section: `conclusions` as two lists, what the numbers show and what not to conclude."""
    found = conclusions(report)
    shown = _item_list(found.findings, "findings") if found.findings else f"<p>{NOTHING_TO_READ}</p>"
    caveats = f"<h3>What not to conclude</h3>{_item_list(found.caveats, 'warnings')}" if found.caveats else ""
    return f"<h2 id='conclusions'>Conclusions</h2>{shown}{caveats}"


def report_html(report: AuditReport, figures: dict | None = None, plotlyjs: str | None = None) -> str:
    """One HTML page: header, conclusions, problems, fit records with their warnings, summary table, then every
    figure with a short reading; the fit warnings are repeated next to the gradient conclusions. plotly.js is
    embedded once (a page that stands alone), or, with `plotlyjs` a path relative to the page, loaded from there."""
    figures = audit_figures(report) if figures is None else figures
    esc = html.escape
    problems = "".join(f"<li><b>{esc(str(p.diagnostic))}</b> · {esc(str(p.method))} · "
                       f"H={esc(str(p.horizon))}: {esc(p.message)}</li>" for p in report.problems)
    records = fits_table(report)
    legacy = "".join(f"<li>{esc(name)} ({esc(f['source'])}): open-loop MSE {_cell(f['open_loop_mse'])} vs "
                     f"{_cell(f['baseline_mse'])} for predicting s_1 throughout (no fit record: schema "
                     f"{esc(str(report.meta.get('schema')))})</li>" for name, f in report.fits.items()
                     if "val_error_by_horizon" not in f)
    warnings = _warning_list(warning_lines(report))
    caveat = fit_caveat(report)
    caveat = f"<p class='warnings'>{esc(caveat)}</p>" if caveat else ""
    if records:
        fits = (f"<p>{esc(FIT_NOTE)}. {esc(predictability_sentence(report))}</p>{_html_table(records)}{warnings}"
                + ("" if warnings else "<p>Every fit converged and beats repeating the last state 2x at every "
                   "audited horizon.</p>"))
    else:
        fits = ""
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>gradlens audit: "
        f"{esc(report.system['name'])}</title><style>body{{font-family:Arial,sans-serif;margin:24px;max-width:1200px}}"
        "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
        "td:first-child,th:first-child{text-align:left}.problems{color:#b00}.warnings{color:#a60}</style>"
        + (_script(plotlyjs) if plotlyjs else "") + "</head><body>",
        f"<h1>gradlens audit: {esc(report.system['name'])}</h1>",
        f"<p>Models: {esc(', '.join(report.models))}; horizons {esc(str(report.horizons))}; policy "
        f"{esc(str(report.system.get('policy')))}; horizon mode {esc(report.system['horizon_mode'])}; created "
        f"{esc(str(report.meta.get('created')))}.</p>",
        conclusion_html(report),
        "<h2 id='problems'>Problems</h2>",
        f"<ul class='problems'>{problems}</ul>" if problems else "<p>No NaN, Inf or failed diagnostic.</p>",
        f"<h2 id='fits'>World-model fits</h2>{fits}"
        + (f"<ul>{legacy}</ul>" if legacy else "" if records else "<p>No world model in this audit.</p>"),
        f"<h2 id='summary'>Summary</h2>{caveat}{_html_table(summary_table(report))}",
        growth_html(report),
    ]
    first = plotlyjs is None
    for name, fig in figures.items():
        heading, text = SECTION_TEXT.get(name, (name, ""))
        parts.append(f"<h2 id='{esc(name)}'>{esc(heading)}</h2><p>{esc(text)}</p>")
        if name == "gradients":
            parts.append(caveat)
        parts.append(fig.to_html(full_html=False, include_plotlyjs=first))
        first = False
    parts.append("</body></html>")
    return "\n".join(parts)


GROWTH_NOTE = ("Each series fitted by a power law and by an exponential (least squares on its logarithm); the verdict "
               "is the law with the lower AIC by more than 2, else indistinguishable; intervals are 95 %")


def growth_table(report: AuditReport) -> list[list[str]]:
    """Header + one row per growth-law fit of the report (`AuditReport.growth`); [] for reports without them."""
    if not report.growth:
        return []
    rows = [["method", "quantity", "against", "verdict", "law"]]
    for r in report.growth:
        against = r.against if r.horizon is None else f"{r.against} (H = {r.horizon})"
        rows.append([r.method, r.quantity, against, r.verdict, r.description])
    return rows


def growth_html(report: AuditReport) -> str:
    table = growth_table(report)
    if not table:
        return ""
    return f"<h2 id='growth'>Growth laws</h2><p>{html.escape(GROWTH_NOTE)}.</p>{_html_table(table)}"


PLOTLY_JS = "figures/plotly.min.js"  # a run's one copy of plotly.js, shared by report.html and figures/*.html


def _script(src: str) -> str:
    return f'<script src="{html.escape(src)}"></script>'


def write_report(report: AuditReport, folder) -> list[str]:
    """report.json, figures/<name>.html (+ .png where Chromium is available) and report.html into `folder`, every
    page loading the run's one copy of plotly.js, `PLOTLY_JS` (offline; `standalone_html` inlines it)."""
    folder = Path(folder)
    written = [str(report.save(folder))]
    figures = audit_figures(report)
    written += plots.write_figures({folder / "figures" / f"{name}.html": fig for name, fig in figures.items()},
                                   plotlyjs="directory")
    runs.write_bytes_atomic(folder / "report.html", report_html(report, figures, plotlyjs=PLOTLY_JS).encode())
    written.append(str(folder / "report.html"))
    return written


def standalone_html(folder) -> bytes:
    """The run's report.html with its shared plotly.js inlined: one file that opens offline anywhere."""
    folder = Path(folder)
    page = (folder / "report.html").read_text(encoding="utf-8")
    tag = _script(PLOTLY_JS)
    if tag not in page:  # a report written before plotly.js was shared: already stands alone
        return page.encode()
    js = (folder / PLOTLY_JS).read_text(encoding="utf-8")
    return page.replace(tag, f'<script type="text/javascript">{js}</script>', 1).encode()


def run_audit(system, models, horizons, root, *, config: AuditConfig = AuditConfig(), name: str | None = None,
              progress: bool = True, log=None, on_progress=None) -> Path:
    """`audit(...)` recorded as a run (kind "audit") under `root`; returns the run folder. progress, log, on_progress:
    as `audit`'s.

    The folder is created first (status "running"); an exception or interrupt marks it failed with the reason.
    """
    models = [models] if isinstance(models, str) else list(models)
    horizons = prepare(system, models, horizons, None, config)[0]  # bad input fails before a folder is made
    system_name = system if isinstance(system, str) else getattr(system, "name", "custom")
    model_names = [m if isinstance(m, str) else m.name for m in models]
    run = runs.create(root, {"system": system_name, "method": "audit", "models": model_names, "horizons": horizons,
                             **dataclasses.asdict(config)}, name=name, kind="audit")
    try:
        report = audit(system, models, horizons, config=config, progress=progress, log=log, on_progress=on_progress)
        write_report(report, run)
    except BaseException as err:
        runs.set_status(run, "failed", reason=f"{type(err).__name__}: {err}" if str(err) else type(err).__name__)
        raise
    runs.set_status(run, "done", problems=len(report.problems))
    return run
