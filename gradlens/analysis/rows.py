"""The typed rows of an `AuditReport`'s sections: one frozen dataclass per row kind, its fields exactly the keys of the
row in report.json (README, "report.json"). `Row.as_dict()` and `Row.from_dict()` are the one JSON path; `row.cosine`
is how gradlens reads them, and `row["cosine"]` still works for scripts written for the dict rows.

Path rows (`paths.horizon_table`) stay dicts: their columns depend on the graph's settings (level, policy, layers).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Mapping


@functools.lru_cache(maxsize=None)
def _names(cls) -> tuple[frozenset, frozenset]:
    """(every field name, the names without a default) of a row class."""
    fields = dataclasses.fields(cls)
    return (frozenset(f.name for f in fields),
            frozenset(f.name for f in fields if f.default is dataclasses.MISSING
                      and f.default_factory is dataclasses.MISSING))


@dataclasses.dataclass(frozen=True)
class Row:
    """Base of the row kinds: plain JSON values in, plain JSON values out."""

    def __getitem__(self, key: str):
        """`row["cosine"]` is `row.cosine` (KeyError for a name that is not a field)."""
        if key not in _names(type(self))[0]:
            raise KeyError(key)
        return getattr(self, key)

    def as_dict(self) -> dict:
        """{field: value}: the row as report.json holds it."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping) -> "Row":
        """The row from its report.json dict; a key that older schemas lack takes the field's documented default.
        ValueError naming the keys that are missing (without a default) or unknown."""
        names, required = _names(cls)
        missing, unknown = sorted(required - set(data)), sorted(set(data) - names)
        if missing or unknown:
            raise ValueError(f"not a {cls.__name__} row: missing keys {missing}, unknown keys {unknown}")
        return cls(**data)


@dataclasses.dataclass(frozen=True)
class GradientRow(Row):
    """One method's gradient statistics at one horizon (`gradients.GradientStats` + its bootstrap intervals).

    n, n_nonfinite: finite samples used, samples left out (at nonfinite_samples, leaves nonfinite_leaves);
    mean_norm ‖ḡ‖, sample_norm mean ‖g_i‖, variance tr Σ̂, snr ‖ḡ‖ / sqrt(tr Σ̂); cosine, relative_error to the
    simulator's mean gradient; <stat>_ci: 95 % interval [low, high] (schema >= 4). Every field after horizon
    defaults to None, "not in the row": reports of schema < 4 have no intervals, hand-built rows may have fewer.
    """

    method: str
    estimator: str  # "first-order" | "zeroth-order"
    horizon: int
    n: int | None = None
    n_nonfinite: int | None = None
    nonfinite_samples: list[int] | None = None
    nonfinite_leaves: list[str] | None = None
    mean_norm: float | None = None
    sample_norm: float | None = None
    variance: float | None = None
    snr: float | None = None
    cosine: float | None = None
    relative_error: float | None = None
    mean_norm_ci: list[float] | None = None
    variance_ci: list[float] | None = None
    snr_ci: list[float] | None = None
    cosine_ci: list[float] | None = None
    relative_error_ci: list[float] | None = None


@dataclasses.dataclass(frozen=True)
class JacobianRow(Row):
    """One method's Jacobian chain at horizon H: norms [H+1][H] (‖d ŝ_t / d a_k‖_F), growth_rate (ln per step of
    t - k, NaN when none can be fitted), lags [L] and mean_log_norm [L], step_norms [H] (None: no state edge, AWMs).
    The fields after horizon default to None, "not in the row" (hand-built rows)."""

    method: str
    horizon: int
    norms: list[list[float]] | None = None
    growth_rate: float | None = None
    lags: list[int] | None = None
    mean_log_norm: list[float] | None = None
    step_norms: list[float] | None = None


@dataclasses.dataclass(frozen=True)
class LandscapeRow(Row):
    """One slice of the return J: kind "action" (J(a_1)), "direction" (J(θ + αd)) or "plane" (J(θ + αd1 + βd2));
    grid [G] or [[G1], [G2]], values [G] or [G1][G2], roughness (`landscape.roughness`)."""

    method: str
    horizon: int
    kind: str
    grid: list
    values: list
    roughness: dict


@dataclasses.dataclass(frozen=True)
class GrowthRow(Row):
    """A growth law of `quantity` against "H" (horizon None) or "lag" (at that horizon): verdict "polynomial" |
    "exponential" | "indistinguishable" | "no fit", description, fit (`growth.GrowthFit.as_dict()`) or None with the
    reason (schema >= 3)."""

    method: str
    quantity: str  # "gradient norm" | "gradient variance" | "Jacobian norm"
    against: str
    horizon: int | None
    verdict: str
    description: str
    fit: dict | None
    reason: str | None


@dataclasses.dataclass(frozen=True)
class ProblemRow(Row):
    """A NaN/Inf met or a diagnostic that could not be computed, and where (method, horizon: None for all)."""

    diagnostic: str
    method: str | None
    horizon: int | None
    message: str


@dataclasses.dataclass(frozen=True)
class WarningRow(Row):
    """A reason to distrust a model's gradients: kind "unpredictable" | "not_converged" | "fit_bar" | "zero_gradient"
    (the simulator's own gradient is identically zero) (schema >= 2)."""

    kind: str
    method: str | None
    horizon: int | None
    message: str


# AuditReport section -> its row kind (paths: dict rows)
ROW_TYPES = {"gradients": GradientRow, "jacobians": JacobianRow, "landscapes": LandscapeRow, "growth": GrowthRow,
             "problems": ProblemRow, "warnings": WarningRow}
