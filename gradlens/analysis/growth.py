"""Growth laws: is a positive series y(x) (gradient norm or variance versus horizon H, Jacobian norm versus lag t - k)
polynomial or exponential in x, and at what rate?

Both laws are fitted by least squares on log y, so that each point weighs by its relative error:
    power        log y = log c + p · log x        (x > 0)
    exponential  log y = log c + λ · x            (λ per unit of x: per step when x counts steps)
Each has two coefficients, so their Akaike information criteria, AIC = n log(RSS / n) + 2k, differ only by the fit:
ΔAIC = AIC_exponential - AIC_power = n log(RSS_exponential / RSS_power). The verdict is "polynomial" when ΔAIC > 2,
"exponential" when ΔAIC < -2, otherwise "indistinguishable" (the usual threshold: within 2, both laws are
supported). The rate's interval is the ordinary least-squares one, Student's t with n - 2 degrees of freedom.

    fit = fit_growth(horizons, variances)   # GrowthFit
    fit.verdict, fit.power.rate, fit.exponential.interval, fit.describe()
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy import stats

VERDICTS = ("polynomial", "exponential", "indistinguishable")
MIN_POINTS = 3  # two coefficients and at least one degree of freedom left for the rate's interval


@dataclasses.dataclass(frozen=True)
class LawFit:
    """One law fitted to (x, log y): y ≈ scale · x^rate (power) or scale · exp(rate · x) (exponential)."""

    law: str  # "power" or "exponential"
    rate: float  # p (power) or λ per unit of x (exponential)
    interval: tuple[float, float]  # the rate's confidence interval
    scale: float
    rss: float  # residual sum of squares of log y
    aic: float

    def as_dict(self) -> dict:
        return {**dataclasses.asdict(self), "interval": list(self.interval)}


@dataclasses.dataclass(frozen=True)
class GrowthFit:
    """Both laws fitted to one series, and which the data prefer."""

    power: LawFit
    exponential: LawFit
    delta_aic: float  # AIC_exponential - AIC_power: > 2 favours the power law, < -2 the exponential
    verdict: str  # one of VERDICTS
    n: int  # points used (x > 0 and y > 0, both finite)
    n_dropped: int  # points left out: y <= 0 or not finite
    level: float  # of the rate intervals

    def describe(self, unit: str = "per step") -> str:
        """'polynomial, p = 2.8 [2.5, 3.1]' / 'exponential, λ = 0.41 [0.36, 0.46] per step' / 'indistinguishable
        (p = … or λ = …)', with the interval at `level`."""
        p, lam = self.power, self.exponential
        power = f"p = {p.rate:.3g} [{p.interval[0]:.3g}, {p.interval[1]:.3g}]"
        exponential = f"λ = {lam.rate:.3g} [{lam.interval[0]:.3g}, {lam.interval[1]:.3g}] {unit}"
        if self.verdict == "polynomial":
            return f"polynomial, {power} (ΔAIC {self.delta_aic:+.3g})"
        if self.verdict == "exponential":
            return f"exponential, {exponential} (ΔAIC {self.delta_aic:+.3g})"
        return f"indistinguishable: {power} or {exponential} (ΔAIC {self.delta_aic:+.3g})"

    def as_dict(self) -> dict:
        """JSON-ready (`from_dict` inverts it)."""
        return {**dataclasses.asdict(self), "power": self.power.as_dict(), "exponential": self.exponential.as_dict()}

    @classmethod
    def from_dict(cls, data: dict) -> "GrowthFit":
        law = lambda d: LawFit(**{**d, "interval": tuple(d["interval"])})
        return cls(**{**data, "power": law(data["power"]), "exponential": law(data["exponential"])})


def _law(law: str, u: np.ndarray, log_y: np.ndarray, level: float) -> LawFit:
    """Least squares log_y = a + rate · u with the rate's t interval."""
    n = u.size
    slope, intercept = np.polyfit(u, log_y, 1)
    residuals = log_y - (intercept + slope * u)
    rss = float(residuals @ residuals)
    sxx = float(np.sum((u - u.mean()) ** 2))
    half = stats.t.ppf(0.5 + level / 2, n - 2) * math.sqrt(rss / (n - 2) / sxx)
    aic = n * math.log(max(rss, 1e-300) / n) + 2 * 3  # 3 parameters: two coefficients and the residual variance
    return LawFit(law, float(slope), (float(slope - half), float(slope + half)), float(math.exp(intercept)), rss, aic)


def _short(values: np.ndarray) -> str:
    """[9011.7, 9723.1]: 5 significant digits each, for messages."""
    return "[" + ", ".join(f"{v:.5g}" for v in values.tolist()) + "]"


def fit_growth(x, y, *, level: float = 0.95, threshold: float = 2.0) -> GrowthFit:
    """Fit a power law and an exponential to y(x) and choose by AIC (see the module docstring).

    Args:
      x: [n] positive, finite abscissae (horizons, lags), at least MIN_POINTS distinct ones among the points kept.
      y: [n] the series; points with y <= 0 or not finite are left out and counted (`n_dropped`).
      level: of the rate intervals, in (0, 1). threshold: |ΔAIC| above which one law is preferred.
    ValueError naming the problem for mismatched shapes, x <= 0, or too few usable points.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(f"fit_growth: x and y must be 1-D of the same length, got shapes {x.shape} and {y.shape}")
    if not (0 < level < 1) or not (threshold >= 0):
        raise ValueError(f"fit_growth: level must be in (0, 1) and threshold >= 0, got {level!r} and {threshold!r}")
    if not np.all(np.isfinite(x) & (x > 0)):
        raise ValueError(f"fit_growth: x must be finite and > 0 (a power law needs log x), got {x.tolist()}")
    keep = np.isfinite(y) & (y > 0)
    if np.unique(x[keep]).size < MIN_POINTS:
        raise ValueError(f"fit_growth needs y > 0 and finite at {MIN_POINTS} or more distinct x; got "
                         f"{np.unique(x[keep]).size} of {x.size} points usable (x {_short(x)}, y {_short(y)})")
    xs, log_y = x[keep], np.log(y[keep])
    power, exponential = _law("power", np.log(xs), log_y, level), _law("exponential", xs, log_y, level)
    delta = exponential.aic - power.aic
    verdict = "polynomial" if delta > threshold else "exponential" if delta < -threshold else "indistinguishable"
    return GrowthFit(power, exponential, float(delta), verdict, int(keep.sum()), int((~keep).sum()), level)
