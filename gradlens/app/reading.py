"""A plain-language reading of an audit, generated from its numbers: which model's gradient points closest to the
simulator's at the largest horizon, how norm and variance grow with H, which gradients are not finite, and which
models do not beat repeating the last state 2x (the fit bar). Each function returns sentences (Markdown), nothing
when the numbers are missing."""
import math

from gradlens.analysis.audit import SIMULATOR


def _first_order(report, horizon) -> dict:
    """method -> first-order gradient row at `horizon`."""
    return {r["method"]: r for r in report.gradients if r["estimator"] == "first-order" and r["horizon"] == horizon}


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def _times(ratio: float) -> str:
    return f"×{ratio:.1e}" if ratio >= 1e4 or ratio < 1e-2 else f"×{ratio:.2g}"


def _series(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def cosine_sentence(report) -> list[str]:
    """Which model's mean gradient points closest to (and furthest from) the simulator's at the largest H."""
    h = max(report.horizons)
    rows = _first_order(report, h)
    cos = {m: rows[m]["cosine"] for m in report.models if m in rows and _finite(rows[m]["cosine"])}
    if not cos:
        return []
    best = max(cos, key=cos.get)
    text = f"At the largest horizon, H = {h}, **{best}**'s gradient points closest to the simulator's " \
           f"(cosine {cos[best]:.2f})"
    if len(cos) > 1:
        worst = min(cos, key=cos.get)
        text += f"; **{worst}**'s is furthest (cosine {cos[worst]:.2f})"
    return [text + ". A cosine near 1 means the model gives the true descent direction."]


def growth_sentence(report, key: str, what: str) -> list[str]:
    """How the first-order `key` ("mean_norm", "variance") grows from the smallest to the largest H, per method."""
    lo, hi = min(report.horizons), max(report.horizons)
    if lo == hi:
        return []
    first, last = _first_order(report, lo), _first_order(report, hi)
    ratios = {}
    for m in report.methods:
        a, b = first.get(m, {}).get(key), last.get(m, {}).get(key)
        if _finite(a) and _finite(b) and a > 0:
            ratios["the simulator" if m == SIMULATOR else m] = b / a
    if not ratios:
        return []
    verb = "grows" if min(ratios.values()) >= 1 else "changes"
    parts = [f"{_times(x)} for {m}" for m, x in ratios.items()]
    return [f"From H = {lo} to H = {hi} the {what} {verb} {_series(parts)}."]


def nonfinite_sentences(report) -> list[str]:
    """One sentence per method whose first-order gradient is NaN/Inf at some horizon."""
    bad = {}
    for r in report.gradients:
        if r["estimator"] == "first-order" and (r["n_nonfinite"] or not _finite(r["mean_norm"])):
            bad.setdefault(r["method"], []).append(r["horizon"])
    return [f"**{m}**'s gradient is not finite at H = {', '.join(map(str, sorted(hs)))}: see the problems above."
            for m, hs in bad.items()]


def fit_sentences(report) -> list[str]:
    """The models that do not beat repeating the last state 2x at some audited H (fit records, schema >= 2), or, in
    older reports, whose open-loop error is no better than predicting s_1 throughout, in one sentence each kind."""
    failing, legacy = [], []
    for name, fit in report.fits.items():
        if "passes_fit_bar" in fit:
            bad = [(h, r) for h, r, ok in zip(report.horizons, fit["ratio_to_repeat"], fit["passes_fit_bar"]) if not ok]
            if bad:
                failing.append(f"**{name}** at H = {', '.join(str(h) for h, _ in bad)} (error "
                               f"{', '.join(f'{r:.2g}' for _, r in bad)}x that baseline's)")
            continue
        mse, base = fit.get("open_loop_mse"), fit.get("baseline_mse")
        if _finite(mse) and _finite(base) and mse >= base:
            legacy.append(f"**{name}** (open-loop MSE {mse:.3g} against {base:.3g})")
    out = []
    if failing:
        out.append(f"{_series(failing)} {'does' if len(failing) == 1 else 'do'} not beat repeating the last state 2x: "
                   "gradients there measure the fit quality, not the architecture.")
    if legacy:
        one = len(legacy) == 1
        out.append(f"{_series(legacy)} {'predicts' if one else 'predict'} no better than holding s₁ throughout: "
                   f"{'its' if one else 'their'} gradients say little about the true system's.")
    return out


def overview(report) -> list[str]:
    """The reading shown beside the gradient figure on the Overview page."""
    return (cosine_sentence(report) + growth_sentence(report, "mean_norm", "norm of the mean gradient")
            + growth_sentence(report, "variance", "variance of one gradient sample") + nonfinite_sentences(report)
            + fit_sentences(report))
