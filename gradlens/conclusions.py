"""The plain-language conclusion of an audit, written from its numbers: `conclusions(report)`.

Findings: which model's gradient is closest to the simulator's (cosine, relative error) and up to which horizon its
cosine stays >= `COSINE_GOOD`; whose gradient variance grows fastest with H, and the growth law fitted to it; which
model's return landscape is smoothest, weighed against how far its gradient is from the simulator's. Caveats (what
not to conclude): every model that fails the fit bar, by name, horizon and ratio; unconverged fits; horizons at which
the system itself is unpredictable; non-finite gradients; the sample size behind every statistic. A finding about a
model at a horizon where it fails the fit bar says so in the same sentence. report.html's first section and the
app's reading both show these sentences.
"""
from __future__ import annotations

import math
from typing import NamedTuple

from gradlens.analysis import growth
from gradlens.analysis.audit import SIMULATOR
from gradlens.analysis.rows import GradientRow

COSINE_GOOD = 0.9  # a gradient this aligned with the simulator's descends the true landscape
REL_ERROR_BAD = 0.5  # a relative error above this is a gradient mostly off the simulator's
VARIANCE_BAD = 10.0  # a variance this many times the simulator's needs that many more samples for the same SNR
TIE = 1.05  # landscapes whose roughness differs by less than 5 % are equally smooth
SMOOTHER = 0.5  # a model landscape under half the simulator's roughness has smoothed its structure away
_ABSENT = GradientRow("", "", 0)  # the row of a (method, H) without gradients: every statistic None


class Conclusions(NamedTuple):
    """findings: what the numbers show; caveats: what not to conclude from them. Plain sentences with their numbers."""

    findings: list[str]
    caveats: list[str]


def conclusions(report) -> Conclusions:
    """The conclusion of an `AuditReport`, every sentence carrying the numbers behind it."""
    grads = {(r.method, r.horizon): r for r in report.gradients if r.estimator == "first-order"}
    findings = _closest(report, grads) + _variance_growth(report, grads) + _smoothest(report, grads)
    caveats = (_fit_caveats(report) + _unpredictable(report) + _zero_gradient(report) + _nonfinite(report, grads)
               + _sample_size(report, grads))
    return Conclusions(findings, caveats)


# --------------------------------------------------------------------------------------------------- helpers
def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _num(x) -> str:
    return f"{x:.3g}" if _finite(x) else "n/a"


def _cos(x) -> str:
    """A cosine with as many decimals as its distance from ±1 needs: 0.99996 stays 0.99996, not 1."""
    if not _finite(x) or abs(x) >= 1:
        return _num(x)
    decimals = min(8, max(3, math.ceil(-math.log10(1 - abs(x))) + 1))
    return f"{x:.{decimals}f}".rstrip("0").rstrip(".")


def _hs(horizons) -> str:
    return "H = " + ", ".join(map(str, horizons))


def _span(values) -> str:
    """"3.1-16" (min-max), or one number when they agree to 3 digits."""
    lo, hi = _num(min(values)), _num(max(values))
    return lo if lo == hi else f"{lo}-{hi}"


def _failing(report, method: str) -> dict:
    """H -> the model's fit ratio to repeating the last state, at each audited H where it fails the fit bar; every H
    (ratio None) for an old report whose open-loop MSE is no better than holding s_1; {} for the simulator."""
    fit = report.fits.get(method, {})
    if "passes_fit_bar" in fit:
        return {h: r for h, r, ok in zip(report.horizons, fit["ratio_to_repeat"], fit["passes_fit_bar"]) if not ok}
    mse, base = fit.get("open_loop_mse"), fit.get("baseline_mse")
    return dict.fromkeys(report.horizons) if _finite(mse) and _finite(base) and mse >= base else {}


def _qualifier(report, method: str, horizons) -> str:
    bad = [h for h in horizons if h in _failing(report, method)]
    return (f" (but {method} fails the fit bar at {_hs(bad)}: there its gradient measures its fit, not its "
            "architecture)") if bad else ""


# --------------------------------------------------------------------------------------------------- findings
def _closest(report, grads) -> list[str]:
    """The model whose cosine to the simulator's gradient is highest at the largest H, and how far down it holds."""
    h = max(report.horizons)
    cos = {m: grads[m, h].cosine for m in report.models if _finite(grads.get((m, h), _ABSENT).cosine)}
    if not cos:
        return []
    best = max(cos, key=cos.get)
    others = sorted((m for m in cos if m != best), key=cos.get, reverse=True)
    text = (f"{best}'s gradient is the closest to the simulator's at the largest horizon, H = {h}: cosine "
            f"{_cos(cos[best])}{_ci(grads[best, h])}, relative error {_num(grads[best, h].relative_error)}")
    if others:
        text += f" (cosine {', '.join(f'{m} {_cos(cos[m])}' for m in others)})"
    tied = [m for m in others if _overlap(grads[best, h], grads[m, h])]
    if tied:
        text += (f"; but its cosine's 95 % interval overlaps {', '.join(tied)}'s, so which is closer is inconclusive "
                 f"at {grads[best, h].n} samples")
    text += "; " + _reach(report, grads, best)
    costs = _error_cost(report, grads, best) + _variance_cost(grads, best, h)
    text += ("; but " + "; ".join(costs) + ": it is close in direction, not in size or noise" if costs else "") \
        + _qualifier(report, best, report.horizons)
    fit = [m for m in others if h not in _failing(report, m)]
    if h in _failing(report, best) and fit:
        text += (f"; of the models that pass the fit bar at H = {h}, {fit[0]}'s is the closest (cosine "
                 f"{_cos(cos[fit[0]])}, relative error {_num(grads[fit[0], h].relative_error)})")
    return [text + "."]


def _ci(row: GradientRow) -> str:
    """" (95 % CI [lo, hi])" of the row's cosine (schema >= 4), or nothing."""
    lo, hi = row.cosine_ci or (None, None)
    return f" (95 % CI [{_cos(lo)}, {_cos(hi)}])" if _finite(lo) and _finite(hi) else ""


def _overlap(a: GradientRow, b: GradientRow) -> bool:
    """Whether two rows' cosine intervals overlap (False without intervals)."""
    (alo, ahi), (blo, bhi) = a.cosine_ci or (None, None), b.cosine_ci or (None, None)
    return all(map(_finite, (alo, ahi, blo, bhi))) and alo <= bhi and blo <= ahi


def _reach(report, grads, method: str) -> str:
    """Up to which audited H the model's cosine stays >= COSINE_GOOD, from the smallest H."""
    cosines = [(h, grads.get((method, h), _ABSENT).cosine) for h in report.horizons]
    bad = next(((h, c) for h, c in cosines if not (_finite(c) and c >= COSINE_GOOD)), None)
    if bad is None:
        return f"its cosine stays >= {COSINE_GOOD} at every audited horizon up to H = {report.horizons[-1]}"
    if bad[0] == report.horizons[0]:
        return f"its cosine is below {COSINE_GOOD} from the smallest horizon on ({_cos(bad[1])} at H = {bad[0]})"
    last = report.horizons[report.horizons.index(bad[0]) - 1]
    return f"its cosine stays >= {COSINE_GOOD} up to H = {last} and is {_cos(bad[1])} at H = {bad[0]}"


def _law_text(pts) -> str:
    """The growth law of [(H, variance)]: `growth.fit_growth`'s verdict with its rate interval from 3 horizons on."""
    (h0, v0), (h1, v1) = pts[0], pts[-1]
    if len(pts) < growth.MIN_POINTS:
        return (f"two horizons fit exponential growth ×{math.exp(math.log(v1 / v0) / (h1 - h0)):.3g} per step and a "
                f"power law ∝ H^{math.log(v1 / v0) / math.log(h1 / h0):.2g} equally well")
    fit = growth.fit_growth(*zip(*pts))
    return f"growth law over {len(pts)} horizons: {fit.describe('per unit of H')}"


def _rate(pts) -> float:
    """Exponential rate per unit of H of [(H, variance)] (least squares from 3 points, else the two-point slope)."""
    if len(pts) >= growth.MIN_POINTS:
        return growth.fit_growth(*zip(*pts)).exponential.rate
    (h0, v0), (h1, v1) = pts[0], pts[-1]
    return math.log(v1 / v0) / (h1 - h0)


def _variance_series(report, grads) -> dict:
    """method -> [(H, variance)] over the horizons where it is finite and > 0, for methods with at least two."""
    out = {}
    for m in report.methods:
        pts = [(h, v) for h, v in ((h, grads.get((m, h), _ABSENT).variance) for h in report.horizons)
               if _finite(v) and v > 0]
        if len(pts) >= 2:
            out[m] = pts
    return out


def _variance_growth(report, grads) -> list[str]:
    """Whose one-sample gradient variance grows fastest with H (exponential rate fitted to log variance)."""
    series = _variance_series(report, grads)
    if not series:
        return []
    fastest = max(series, key=lambda m: _rate(series[m]))
    pts = series[fastest]
    (h0, v0), (h1, v1) = pts[0], pts[-1]
    who = "the simulator" if fastest == SIMULATOR else fastest
    text = (f"Gradient variance grows fastest for {who}: from {_num(v0)} at H = {h0} to {_num(v1)} at H = {h1} "
            f"(×{_num(v1 / v0)}), {_law_text(pts)}")
    sim = dict(series.get(SIMULATOR, []))
    if fastest != SIMULATOR and h0 in sim and h1 in sim:
        text += (f"; at H = {h1} it is ×{_num(v1 / sim[h1])} the simulator's, which grows ×{_num(sim[h1] / sim[h0])} "
                 f"from H = {h0} to {h1}")
    return [text + _qualifier(report, fastest, [h for h, _ in pts]) + "."]


def _landscape_rows(report):
    """(kind, H, method -> normalised TV) of the largest H's random-direction slices (the toys' J(a_1) without)."""
    for kind, what in (("direction", "along a random policy direction"), ("action", "of the first action, J(a_1)")):
        rows = [r for r in report.landscapes if r.kind == kind]
        if rows:
            h = max(r.horizon for r in rows)
            tv = {r.method: r.roughness.get("normalized_tv") for r in rows if r.horizon == h}
            return what, h, {m: x for m, x in tv.items() if _finite(x)}
    return None, None, {}


def _smoothest(report, grads) -> list[str]:
    """The model with the smoothest return landscape, weighed against its gradient's distance from the simulator's."""
    what, h, tv = _landscape_rows(report)
    models = {m: x for m, x in tv.items() if m != SIMULATOR}
    if not models:
        return []
    best = min(models, key=models.get)
    if len(models) > 1 and max(models.values()) <= TIE * models[best]:
        return [f"No model's return landscape {what} is clearly the smoothest at H = {h}: normalised total variation "
                f"{_span(models.values())} (simulator {_num(tv.get(SIMULATOR))}; 1 is a monotone slice)."]
    others = ", ".join(f"{m} {_num(models[m])}" for m in sorted(models, key=models.get) if m != best)
    ref = tv.get(SIMULATOR)
    text = (f"{best}'s return landscape {what} is the smoothest at H = {h}: normalised total variation "
            f"{_num(models[best])} (simulator {_num(ref)}{', ' + others if others else ''}; 1 is a monotone slice)")
    costs = _cosine_cost(grads, best, h) + _error_cost(report, grads, best) + _variance_cost(grads, best, h)
    if _finite(ref) and models[best] < SMOOTHER * ref:
        costs.insert(0, f"it is smoother than the true landscape ({_num(models[best] / ref)}x its roughness)")
    if costs:
        text += "; but " + "; ".join(costs) + ": a smooth model landscape is easy to descend, not necessarily " \
                "towards the simulator's optimum"
    return [text + _qualifier(report, best, [h]) + "."]


def _cosine_cost(grads, method: str, h: int) -> list[str]:
    cos = grads.get((method, h), _ABSENT).cosine
    return [f"its gradient's cosine to the simulator's is {_cos(cos)} at H = {h}"] \
        if _finite(cos) and cos < COSINE_GOOD else []


def _error_cost(report, grads, method: str) -> list[str]:
    rel = [(g, r) for g, r in ((g, grads.get((method, g), _ABSENT).relative_error) for g in report.horizons)
           if _finite(r)]
    return [f"its relative error is {_span([r for _, r in rel])} over {_hs([g for g, _ in rel])}"] \
        if rel and max(r for _, r in rel) > REL_ERROR_BAD else []


def _variance_cost(grads, method: str, h: int) -> list[str]:
    var, ref = grads.get((method, h), _ABSENT).variance, grads.get((SIMULATOR, h), _ABSENT).variance
    return [f"its gradient variance is ×{_num(var / ref)} the simulator's at H = {h}"] \
        if _finite(var) and _finite(ref) and ref > 0 and var > VARIANCE_BAD * ref else []


# --------------------------------------------------------------------------------------------------- caveats
def _fit_caveats(report) -> list[str]:
    """One sentence per model failing the fit bar, then one per unconverged fit."""
    out = []
    for m in report.models:
        bad = _failing(report, m)
        if not bad:
            continue
        fit = report.fits[m]
        if "passes_fit_bar" in fit:
            why = (f"it does not beat repeating the last state 2x there (its open-loop error is "
                   f"{', '.join(f'{_num(r)}x' for r in bad.values())} that baseline's)")
        else:
            why = (f"its open-loop MSE, {_num(fit['open_loop_mse'])}, is no better than holding s_1 throughout "
                   f"({_num(fit['baseline_mse'])})")
        out.append(f"Do not read {m}'s gradients at {_hs(bad)} as a property of its architecture: {why}; they "
                   "measure its fit quality.")
    for m, fit in report.fits.items():
        if fit.get("converged") is False:
            out.append(f"{m}'s fit did not converge: it ran to the cap of {fit.get('max_epochs')} epochs, so a "
                       "longer fit may change its numbers.")
    return out


def _unpredictable(report) -> list[str]:
    bad, spread = report.system.get("unpredictable_horizons"), report.system.get("divergence_by_horizon")
    if not bad or not spread:
        return []
    rms = ", ".join(_num(math.sqrt(spread[h - 1])) for h in bad)
    return [f"At {_hs(bad)} the system itself is unpredictable: two simulator starts "
            f"{report.system.get('divergence_delta', 0):g} apart end {rms} apart (RMS), so no model can be expected "
            "to match the simulator's gradient there and a mismatch is no evidence against its architecture."]


def _zero_gradient(report) -> list[str]:
    """The audit's zero-gradient warnings: horizons where the simulator's gradient is exactly zero in every sample."""
    return [w.message + "." for w in report.warnings if w.kind == "zero_gradient"]


def _nonfinite(report, grads) -> list[str]:
    out = []
    for (m, h), r in grads.items():
        if r.n_nonfinite:
            out.append(f"{m}'s gradient is not finite in {r.n_nonfinite} of {r.n + r.n_nonfinite} samples "
                       f"at H = {h}: its statistics there use the finite samples only (see Problems).")
        elif r.n and not _finite(r.mean_norm):
            out.append(f"{m}'s gradient statistics at H = {h} are not finite (see Problems).")
    return out


def _sample_size(report, grads) -> list[str]:
    sizes = sorted({r.n + (r.n_nonfinite or 0) for r in grads.values() if r.n is not None})
    if not sizes:
        return []
    n = sizes[0] if len(sizes) == 1 else f"{sizes[0]}-{sizes[-1]}"
    policy, seed = report.system.get("policy"), (report.config or {}).get("seed")
    return [f"Every gradient statistic comes from {n} samples per method and horizon, at one policy"
            f"{f' ({policy}, at initialisation)' if policy else ''}: differences within the gradient figure's "
            "bands (95 % bootstrap intervals; about one standard error in reports before schema 4) are not "
            "evidence. Those bands hold the sampling noise of one seed only"
            f"{f' (seed {seed})' if seed is not None else ''}: its data, fits and policy. Models fitted on other "
            "seeds can rank differently (gradlens's open-questions study, benchmarks/results/open_questions.md, "
            "measures the spread over 10 seeds), so audit several seeds (--seed) before ranking models."]


__all__ = ["COSINE_GOOD", "Conclusions", "conclusions"]
