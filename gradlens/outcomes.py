"""Outcomes of training runs as distributions over seeds, and aggregate statistics with bootstrap confidence intervals.

BPO outcomes are bimodal per seed (PAPER.md §11: most runs leave a plateau after a seed-dependent time, a few never
do), so a mean ± std over seeds hides what happened. This module reports, per run group, every seed's final return,
whether it converged and when, and the group's median, interquartile mean (IQM) and fraction converged; and, through
`rliable` (Agarwal et al., NeurIPS 2021), aggregates with stratified-bootstrap confidence intervals, probabilities
of improvement and performance profiles.

Glossary of shapes: N runs (seeds) of one method, T tasks (systems, or system × horizon), K thresholds τ.

Inputs are metrics frames as `gradlens.runs.load` / `scan_metrics` / `gradlens.training.train.train` return them:
one row per (seed, evaluation), columns `env_steps`, `seed`, `return` (the sum of true rewards of one deterministic
episode), ... and, from the run store, the settings `system`, `method`, `horizon`.

Convergence: a seed has converged when its final return is at least `best - tol`, with `best` the best-known
return of its group (`BEST_KNOWN`, or given, or the best final return across the compared methods) and
`tol = rtol · |best|` (default 2 %) or an absolute `atol`. Returns above `best` count as converged (returns are
maximised). Its convergence step is the first evaluation from which every later return stays >= best - tol.
"""
from __future__ import annotations

import contextlib
from typing import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from gradlens import envs
from gradlens.envs.base import System
from gradlens.rollout import rollout

# Returns of true-simulator BPO at H = 100 after 5000 env steps in the authors' reference code (PAPER.md §11: the
# converged seeds' final returns, -20.67 ... -20.83 on cancer and -85.99 ... -86.42 on mould_fungicide).
BEST_KNOWN = {"cancer": -20.67, "mould_fungicide": -85.99}
BEST_KNOWN_HORIZON = 100
DEFAULT_RTOL = 0.02  # cancer: >= -21.08, mould: >= -87.71; tight enough that an untrained policy is never "converged"
SETTING_COLUMNS = ("system", "method", "horizon")
NOT_SETTINGS = ("env_steps", "seed", "run", "zeroed_policy_grads")  # never grouped by; nor are float columns (metrics)
AGGREGATES = ("iqm", "median", "mean", "optimality_gap")
VERDICTS = ("reproduced", "not reproduced", "inconclusive")
OUTCOME_COLUMNS = ("seed", "final", "converged", "converged_step", "n_evals", "best", "best_source", "tolerance")


# ---------------------------------------------------------------------------------------------------- per seed
def iqm(values) -> float:
    """Interquartile mean: the mean of the middle 50 % of `values` (any shape, flattened; 25 % trimmed each end)."""
    from rliable import metrics as rly  # imported on use, as everything of rliable's: it pulls in scipy.stats

    x = np.asarray(values, dtype=float).ravel()
    if x.size == 0:
        raise ValueError("iqm of an empty array: pass at least one value")
    return float(rly.aggregate_iqm(x))


def best_known(system, horizon) -> float | None:
    """`BEST_KNOWN[system]` when `horizon` is `BEST_KNOWN_HORIZON` (100), else None (unknown)."""
    if horizon is None or pd.isna(horizon) or int(horizon) != BEST_KNOWN_HORIZON:
        return None
    return BEST_KNOWN.get(system)


def tolerance(best: float, rtol: float = DEFAULT_RTOL, atol: float | None = None) -> float:
    """The convergence band's width: `atol` when given, else `rtol · |best|` (same units as the return)."""
    _check_tolerance(rtol, atol)
    if atol is not None:
        return float(atol)
    tol = rtol * abs(best)
    if tol <= 0:
        raise ValueError(f"rtol · |best-known| is 0 for best-known {best!r}: pass an absolute tolerance atol > 0")
    return float(tol)


def _check_tolerance(rtol, atol) -> None:
    if atol is not None and not (np.isfinite(atol) and atol > 0):
        raise ValueError(f"atol must be a finite number > 0 (return units), got {atol!r}")
    if not (np.isfinite(rtol) and rtol > 0):
        raise ValueError(f"rtol must be a finite number > 0 (a fraction of |best-known|, e.g. 0.05), got {rtol!r}")


def group_columns(metrics: pd.DataFrame) -> list[str]:
    """The columns that define a run group: `system`, `method`, `horizon` when present, then any other non-float
    column except env_steps, seed and run (float columns are metrics)."""
    others = [c for c in metrics.columns if c not in (*SETTING_COLUMNS, *NOT_SETTINGS)
              and not pd.api.types.is_float_dtype(metrics[c])]
    return [c for c in SETTING_COLUMNS if c in metrics.columns] + others


def _check_metrics(metrics, y: str) -> None:
    if not isinstance(metrics, pd.DataFrame):
        raise ValueError(f"metrics must be a pandas DataFrame, got {type(metrics).__name__}")
    missing = [c for c in ("env_steps", "seed", y) if c not in metrics.columns]
    if missing:
        raise ValueError(f"metrics frame lacks column(s) {', '.join(missing)}; it has {', '.join(metrics.columns)}")
    if metrics.empty:
        raise ValueError("metrics frame is empty: no evaluation to summarise")


def _groups(frame: pd.DataFrame, by: list[str]):
    """(key dict, sub-frame) per group of `by` (one group when `by` is empty)."""
    if not by:
        return [({}, frame)]
    return [(dict(zip(by, key if isinstance(key, tuple) else (key,))), part)
            for key, part in frame.groupby(by, sort=True, dropna=False)]


def _resolve_best(key: dict, given, finals: dict, by: list[str], fallback: bool) -> tuple[float, str]:
    """(best, source) of one group; finals maps each group's key tuple to its seeds' final returns."""
    if isinstance(given, Mapping):
        if key.get("system") in given:
            return float(given[key["system"]]), "given"
    elif given is not None:
        return float(given), "given"
    known = best_known(key.get("system"), key.get("horizon"))
    if known is not None:
        return known, "BEST_KNOWN"
    if not fallback:
        return float("nan"), "unknown"
    peers = [c for c in by if c != "method"]
    same = np.concatenate([v for k, v in finals.items() if all(k[by.index(c)] == key[c] for c in peers)])
    if not np.isfinite(same).any():
        return float("nan"), "unknown"
    return float(np.nanmax(same)), "best final across methods"


def seed_outcomes(metrics: pd.DataFrame, best=None, rtol: float = DEFAULT_RTOL, atol: float | None = None,
                  last_k: int = 1, y: str = "return", fallback: bool = True) -> pd.DataFrame:
    """One row per (run group, seed): its final return, whether it converged and at which env step.

    Args:
      metrics: a metrics frame (module docstring); groups are `group_columns(metrics)`.
      best: best-known return, a number for every group or a dict {system: return}; None (default) or a system
        missing from the dict: `BEST_KNOWN` at H = 100, else (with `fallback`) the best final return of any seed of
        the groups that differ from this one only in `method`, else unknown (converged NA).
      rtol, atol: the tolerance (`tolerance`). last_k: the final return is the mean of the last `last_k` evaluations.
      y: the column read as the return.
    Returns a DataFrame: the group columns, then `OUTCOME_COLUMNS`: `seed`, `final`, `converged` (bool, NA when best
    is unknown), `converged_step` (env steps, NaN if never), `n_evals`, `best`, `best_source` ("given",
    "BEST_KNOWN", "best final across methods" or "unknown"), `tolerance`.
    """
    _check_metrics(metrics, y)
    _check_tolerance(rtol, atol)
    if isinstance(last_k, bool) or not isinstance(last_k, (int, np.integer)) or last_k < 1:
        raise ValueError(f"last_k must be an integer >= 1 (evaluations averaged), got {last_k!r}")
    by = group_columns(metrics)
    dup = metrics.duplicated([*by, "seed", "env_steps"])
    if dup.any():
        row = metrics[dup].iloc[0]
        raise ValueError(f"seed {row['seed']} is evaluated twice at env step {row['env_steps']} in group "
                         f"{ {c: row[c] for c in by} }: two runs share a seed; filter one out")
    curves, finals = [], {}  # (key, seed, steps [E], returns [E], final); {group key tuple: finals [N]}
    for key, part in _groups(metrics, by):
        for seed, curve in part.sort_values("env_steps").groupby("seed", sort=True):
            ret = curve[y].to_numpy(dtype=float)
            curves.append((key, int(seed), curve["env_steps"].to_numpy(), ret, float(np.mean(ret[-last_k:]))))
            finals.setdefault(tuple(key.values()), []).append(curves[-1][-1])
    finals = {k: np.asarray(v) for k, v in finals.items()}
    rows, cache = [], {}
    for key, seed, steps, ret, final in curves:
        if tuple(key.values()) not in cache:
            b, source = _resolve_best(key, best, finals, by, fallback)
            cache[tuple(key.values())] = (b, source, tolerance(b, rtol, atol) if np.isfinite(b) else float("nan"))
        b, source, tol = cache[tuple(key.values())]
        converged, step = pd.NA, float("nan")
        if np.isfinite(b):
            converged = bool(final >= b - tol)
            outside = np.flatnonzero(~(ret >= b - tol))  # NaN returns count as outside
            first = 0 if outside.size == 0 else outside[-1] + 1
            step = float(steps[first]) if first < len(steps) else float("nan")
        rows.append({**key, "seed": seed, "final": final, "converged": converged, "converged_step": step,
                     "n_evals": len(steps), "best": b, "best_source": source, "tolerance": tol})
    out = pd.DataFrame(rows)
    out["converged"] = out["converged"].astype("boolean")
    return out


def summarize(outcomes: pd.DataFrame) -> pd.DataFrame:
    """One row per run group of `seed_outcomes(...)`: n_seeds, median, iqm, mean, std (ddof 0), min, max of the final
    returns, n_converged and frac_converged (NA / NaN when best is unknown), median_converged_step (over converged
    seeds; NaN if none), best, best_source, tolerance."""
    if not isinstance(outcomes, pd.DataFrame) or outcomes.empty or "final" not in outcomes.columns:
        raise ValueError("outcomes must be a non-empty frame from seed_outcomes (with a 'final' column)")
    by = [c for c in outcomes.columns if c not in OUTCOME_COLUMNS]
    rows = []
    for key, part in _groups(outcomes, by):
        final = part["final"].to_numpy(dtype=float)
        unknown = part["converged"].isna().all()
        steps = part["converged_step"].dropna().to_numpy()
        rows.append({**key, "n_seeds": len(part), "median": float(np.median(final)), "iqm": iqm(final),
                     "mean": float(np.mean(final)), "std": float(np.std(final)), "min": float(np.min(final)),
                     "max": float(np.max(final)),
                     "n_converged": pd.NA if unknown else int(part["converged"].sum()),
                     "frac_converged": float("nan") if unknown else float(part["converged"].fillna(False).mean()),
                     "median_converged_step": float(np.median(steps)) if steps.size else float("nan"),
                     **part[["best", "best_source", "tolerance"]].iloc[0].to_dict()})
    return pd.DataFrame(rows)


def outcome_line(outcomes: pd.DataFrame) -> str:
    """A one-line account of one run group's seeds: per-seed finals, median, IQM and fraction converged with the
    best-known return and tolerance used (or 'best-known unknown')."""
    summary = summarize(outcomes)
    if len(summary) != 1:
        raise ValueError(f"outcome_line describes one run group; got {len(summary)}: filter the outcomes first")
    s = summary.iloc[0]
    finals = ", ".join(f"{seed}: {f:.5g}" for seed, f in zip(outcomes["seed"], outcomes["final"]))
    line = (f"final return per seed {{{finals}}}; median {s['median']:.5g}, IQM {s['iqm']:.5g} over "
            f"{s['n_seeds']} seed(s); ")
    if np.isnan(s["frac_converged"]):
        return line + "converged: best-known unknown"
    return line + (f"converged {s['n_converged']}/{s['n_seeds']}: final >= best-known - tolerance = {s['best']:.5g} - "
                   f"{s['tolerance']:.3g} (best-known from {s['best_source']})")


# ---------------------------------------------------------------------------------------------------- normalisation
def normalize(returns, low: float, high: float) -> np.ndarray:
    """(R - low) / (high - low): the random-policy return `low` maps to 0, the simulator-BPO return `high` to 1.

    returns: any shape (returns in reward units); low < high, both finite."""
    if not (np.isfinite(low) and np.isfinite(high)) or high <= low:
        raise ValueError(f"need finite low < high (random-policy return < simulator-BPO return), got low={low!r}, "
                         f"high={high!r}")
    return (np.asarray(returns, dtype=float) - low) / (high - low)


def random_policy_return(system, key, episodes: int = 32) -> float:
    """Mean return of `episodes` episodes of uniform-random actions in [-1, 1] in the true `system` (a `System` or a
    registered name, built with its defaults) from its fixed initial state; `key` a PRNG key."""
    if isinstance(system, str):
        system = envs.make(system)
    elif not isinstance(system, System):
        raise ValueError(f"system must be a gradlens System or a system name, got {type(system).__name__}")
    if isinstance(episodes, bool) or not isinstance(episodes, (int, np.integer)) or episodes < 1:
        raise ValueError(f"episodes must be an integer >= 1, got {episodes!r}")

    def one(k):
        k_actions, k_noise = jax.random.split(k)
        actions = jax.random.uniform(k_actions, (system.horizon, system.action_dim), minval=-1.0, maxval=1.0)
        return rollout(system, actions, system.initial_state(), key=k_noise).ret

    return float(jnp.mean(jax.jit(jax.vmap(one))(jax.random.split(key, episodes))))


# ---------------------------------------------------------------------------------------------------- rliable
def score_matrices(outcomes: pd.DataFrame, value: str = "final", task: str | Sequence[str] = "system") \
        -> dict[str, np.ndarray]:
    """{method: scores [N, T]} from `seed_outcomes` rows: one row per seed (sorted), one column per task (sorted
    values of the `task` column(s)). Every task of a method needs the same number of seeds."""
    tasks = [task] if isinstance(task, str) else list(task)
    missing = [c for c in ("method", "seed", value, *tasks) if c not in outcomes.columns]
    if missing:
        raise ValueError(f"outcomes lack column(s) {', '.join(missing)}; they have {', '.join(outcomes.columns)}")
    if outcomes.empty:
        raise ValueError("outcomes are empty: no scores")
    if outcomes.duplicated(["method", *tasks, "seed"]).any():
        others = [c for c in outcomes.columns if c not in (*OUTCOME_COLUMNS, "method", *tasks)]
        raise ValueError(f"several rows per (method, {', '.join(tasks)}, seed): the outcomes also differ in "
                         f"{', '.join(others) or 'other columns'}; filter them or add them to task")
    task_keys = sorted(outcomes[tasks].drop_duplicates().itertuples(index=False, name=None))
    scores = {}
    for method, part in outcomes.groupby("method", sort=False):
        columns = []
        for t in task_keys:
            cell = part[(part[tasks] == pd.Series(t, index=tasks)).all(axis=1)].sort_values("seed")
            columns.append(cell[value].to_numpy(dtype=float))
        sizes = {len(c) for c in columns}
        if len(sizes) != 1 or 0 in sizes:
            raise ValueError(f"method {method!r} has {[len(c) for c in columns]} seeds on tasks {task_keys}: each "
                             "task needs the same number of seeds (at least one)")
        scores[method] = np.stack(columns, axis=1)
    return scores


def _check_scores(scores) -> None:
    if not isinstance(scores, Mapping) or not scores:
        raise ValueError("scores must be a non-empty dict {method: array [runs, tasks]}")
    tasks = set()
    for method, s in scores.items():
        s = np.asarray(s)
        if s.ndim != 2 or s.shape[0] < 1 or s.shape[1] < 1:
            raise ValueError(f"scores[{method!r}] must be a 2-D array [runs, tasks], got shape {s.shape}")
        if not np.isfinite(s).all():
            raise ValueError(f"scores[{method!r}] holds non-finite values (a diverged run?): drop or replace them")
        tasks.add(s.shape[1])
    if len(tasks) > 1:
        raise ValueError(f"every method needs the same number of tasks; got {sorted(tasks)}")


@contextlib.contextmanager
def _bootstrap(seed: int):
    """Yield `rliable.library` (imported here: through `arch` it takes about 2 s) with NumPy's global RNG, which its
    stratified bootstrap draws from, seeded by `seed`; the RNG's previous state is restored afterwards."""
    from rliable import library

    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield library
    finally:
        np.random.set_state(state)


def _rows(point: dict, interval: dict, names: Sequence[str], **columns) -> list[dict]:
    return [{**{k: v[i] for k, v in columns.items()}, "value": float(np.ravel(point)[i]),
             "low": float(interval[0][i]), "high": float(interval[1][i])} for i in range(len(names))]


def aggregates(scores: Mapping[str, np.ndarray], gamma: float = 1.0, reps: int = 2000, confidence: float = 0.95,
               seed: int = 0) -> pd.DataFrame:
    """IQM, median, mean and optimality gap per method with stratified-bootstrap confidence intervals (rliable).

    scores: {method: [N, T]} (normalised, higher is better). iqm: 25 %-trimmed mean over all runs and tasks; median:
    the median over all runs and tasks (rliable's own `aggregate_median` is the median of the per-task means, which
    for one task is the mean); mean: mean of the per-task means; optimality_gap: gamma - mean(min(score, gamma)).
    Returns a tidy frame: method, metric, value, low, high; deterministic given `seed`, and each method's intervals
    are its own: bootstrapped apart, so they do not change when other methods are added to `scores`.
    """
    from rliable import metrics as rly

    _check_scores(scores)
    fns = (rly.aggregate_iqm, np.median, rly.aggregate_mean, lambda s: rly.aggregate_optimality_gap(s, gamma))
    rows = []
    for m, s in scores.items():
        with _bootstrap(seed) as library:
            point, interval = library.get_interval_estimates(
                {m: np.asarray(s, dtype=float)}, lambda x: np.array([f(x) for f in fns]), reps=reps,
                confidence_interval_size=confidence)
        rows += _rows(point[m], interval[m], AGGREGATES, method=[m] * 4, metric=AGGREGATES)
    return pd.DataFrame(rows, columns=["method", "metric", "value", "low", "high"])


def probability_of_improvement(scores: Mapping[str, np.ndarray], pairs: Sequence[tuple[str, str]] | None = None,
                               reps: int = 2000, confidence: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """P(X > Y): the probability that a run of X on a task beats a run of Y (ties count half), averaged over tasks,
    with a stratified-bootstrap confidence interval (rliable). pairs: (X, Y) names; default every pair in the
    order of `scores`. Returns a tidy frame: x, y, value, low, high; deterministic given `seed`, each pair
    bootstrapped apart, so that its interval does not change with the other pairs asked for."""
    from rliable import metrics as rly

    _check_scores(scores)
    names = list(scores)
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1:]] if pairs is None else list(pairs)
    unknown = sorted({m for p in pairs for m in p} - set(names))
    if unknown or not pairs:
        raise ValueError(f"pairs must name methods of scores ({', '.join(names)}); unknown: {', '.join(unknown)}"
                         if unknown else "pairs is empty: give at least one (X, Y)")
    rows = []
    for x, y in pairs:
        with _bootstrap(seed) as library:
            point, interval = library.get_interval_estimates(
                {"pair": [np.asarray(scores[x], float), np.asarray(scores[y], float)]}, rly.probability_of_improvement,
                reps=reps, confidence_interval_size=confidence)
        rows.append({"x": x, "y": y, "value": float(point["pair"]), "low": float(np.ravel(interval["pair"][0])[0]),
                     "high": float(np.ravel(interval["pair"][1])[0])})
    return pd.DataFrame(rows, columns=["x", "y", "value", "low", "high"])


def performance_profiles(scores: Mapping[str, np.ndarray], taus=None, reps: int = 2000, confidence: float = 0.95,
                         seed: int = 0) -> pd.DataFrame:
    """Score distributions: the fraction of runs (over all runs and tasks) with score > τ, per method and τ, with
    stratified-bootstrap confidence intervals (rliable). taus: [K] (default 51 values spanning every score).
    Returns a tidy frame: method, tau, value, low, high; deterministic given `seed`."""
    _check_scores(scores)
    if taus is None:
        everything = np.concatenate([np.ravel(s) for s in scores.values()])
        taus = np.linspace(everything.min(), everything.max(), 51)
    taus = np.asarray(taus, dtype=float)
    if taus.ndim != 1 or taus.size == 0 or not np.isfinite(taus).all():
        raise ValueError(f"taus must be a non-empty 1-D array of finite thresholds, got shape {taus.shape}")
    with _bootstrap(seed) as library:
        point, interval = library.create_performance_profile(
            {m: np.asarray(s, dtype=float) for m, s in scores.items()}, taus, reps=reps,
            confidence_interval_size=confidence)
    rows = [r for m in scores for r in _rows(point[m], interval[m], taus, method=[m] * len(taus), tau=taus)]
    return pd.DataFrame(rows, columns=["method", "tau", "value", "low", "high"])


# ---------------------------------------------------------------------------------------------------- verdicts
def verdict(low: float, high: float, threshold: float = 0.5) -> str:
    """Verdict on a claim "statistic > threshold" from the statistic's confidence interval [low, high].

    Rule: "reproduced" if the interval lies above the threshold (low > threshold), "not reproduced" if it lies
    below (high < threshold), "inconclusive" if it contains the threshold. For "A beats B", pass the CI of
    P(A > B) with threshold 0.5 (`probability_of_improvement`).
    """
    if not (np.isfinite(low) and np.isfinite(high)) or low > high:
        raise ValueError(f"need a finite interval with low <= high, got [{low!r}, {high!r}]")
    return VERDICTS[0] if low > threshold else VERDICTS[1] if high < threshold else VERDICTS[2]


def verdict_from_intervals(a: tuple[float, float], b: tuple[float, float]) -> str:
    """Verdict on "A beats B" from separate CIs (low, high) of one aggregate (higher is better): "reproduced" if A's
    interval lies entirely above B's, "not reproduced" if entirely below, "inconclusive" if they overlap."""
    for name, (low, high) in (("a", a), ("b", b)):
        if not (np.isfinite(low) and np.isfinite(high)) or low > high:
            raise ValueError(f"{name} must be a finite interval (low, high) with low <= high, got {(low, high)!r}")
    return VERDICTS[0] if a[0] > b[1] else VERDICTS[1] if a[1] < b[0] else VERDICTS[2]
