"""`audit(system, models, horizons)`: every gradient diagnostic of gradlens in one call, as a JSON-ready report.

For a system and a set of world models (fitted here on data collected in the true system, or given fitted), and for
every horizon H of a grid, beside the true simulator:

    fits        each model's fit record (`fitting.record`): loss curves, epochs, converged (stopped on a
                validation plateau, not the epoch cap), open-loop validation error versus horizon beside the
                repeat-last-state and least-squares linear baselines, and whether it beats repeating the last state
                at least 2x at each audited H (the fit bar, measured on episodes of the H-step task: see below);
                the simulator's own divergence from starts 1e-6 apart goes in `system["divergence_by_horizon"]`
    gradients   per-sample policy gradients: norm, variance, SNR, cosine and relative error to the simulator's
                (`gradients.horizon_sweep`), plus a zeroth-order reference at the same budget
    jacobians   ‖d ŝ_t / d a_k‖ for all (t, k), the growth rate of the norm with t - k, step Jacobian norms
    landscapes  J(a_1) (the toys' action landscape) and J along one and two filter-normalised directions in
                policy-parameter space, each with its roughness numbers
    paths       exact gradient-path counts a_k -> J of each model class (`paths.horizon_table`)
    problems    every NaN/Inf met, with the diagnostic, method, horizon and where it appeared (never dropped)
    warnings    every fit that did not converge and every (model, H) failing the fit bar, in plain words: the gradients
                of such a model measure its fit quality, not its architecture; and every H where the simulator's own
                policy gradient is identically zero (a reward constant in the actions: nothing to compare with)

Horizon H means the task of H steps. A system given by name is rebuilt at each H when that leaves its step dt
unchanged (the toys, `linear`, `lorenz96`: only the episode length and the terminal reward move, so one model fitted
on H_max-step episodes serves every H); when dt = T / H depends on H (the Myriad tasks), or for a `System` object,
H means the first H steps of the H_max-step episode. A callable `horizon -> System` is rebuilt at each H.

The fit bar at H is measured where the gradients at H are: in "prefix" mode on the first H steps of the held-out
episodes; in "rebuilt" mode on as many fresh episodes, collected with the fit data's scheme in the system rebuilt at
H, because that system may start from, or move to, states the H_max episodes never show (`system["fit_bar_episodes"]`
says which).

All randomness comes from `AuditConfig.seed`; the same config gives the same report (timings aside), however many
threads compute its models and horizons (`$GRADLENS_AUDIT_THREADS`, default the CPU count up to 4).
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime
import functools
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import jax
import numpy as np

from gradlens import envs, memory, models as model_registry, validate
from gradlens.analysis import gradients, growth, jacobians, landscape, paths
from gradlens.analysis.rows import (ROW_TYPES, GradientRow, GrowthRow, JacobianRow, LandscapeRow, ProblemRow, Row,
                                    WarningRow)
from gradlens.envs.base import System, check_positive
from gradlens.models.base import WorldModel
from gradlens.policies import POLICIES, make_policy
from gradlens.rollout import check_policy_input_grad
from gradlens.tables import Table
from gradlens.fitting.data import Trajectories, as_scheme, collect
from gradlens.fitting.fit import FitConfig, FitDiverged, baseline_mse, fit, fit_split, mse
from gradlens.fitting.record import (CHAOS_DELTA, FIT_BAR, FitRecord, divergence, fit_record, horizon_ratio,
                                     open_loop_error, repeat_error)

SIMULATOR = "simulator"
REPORT = "report.json"
SCHEMA_VERSION = 4  # 2: fit records, system divergence, warnings; 3: growth laws; 4: gradient intervals
SECTIONS = ("fits", "gradients", "jacobians", "landscapes", "paths")
STAGES = (*SECTIONS, "growth")  # the audit's stages in order: its timings and the sections of its progress events
THREADS_ENV = "GRADLENS_AUDIT_THREADS"
_TOYS = ("double_pendulum", "one_bounce")  # terminal-reward tasks: the paper's toy data scheme


@dataclasses.dataclass(frozen=True)
class AuditConfig:
    """What an audit computes and at what size; defaults run in about a minute per model on a laptop CPU.

    Fields:
      n_episodes, data: episodes collected in the true system to fit the models, and the exploration scheme
        ("auto": the paper's toy scheme on the toy tasks, a random walk elsewhere; or any `collect` scheme name).
      fit_epochs, fit_patience, fit_batch, fit_lr, fit_rel_min_delta: `FitConfig` of the fits (Adam, 10 %
        validation split shared by every model): a fit stops on a validation plateau, `fit_patience` epochs without a
        relative improvement above `fit_rel_min_delta`; `fit_epochs` is only a safety cap, and a fit that reaches it
        is reported as not converged.
      normalize: build the fitted models (those given by name, without params) with state normalisation
        (`ModelConfig.normalize`, statistics of the training states).
      policy: "mlp" (the paper's tanh-Gaussian state-feedback policy, at its random initialisation), "open_loop"
        (a_t = tanh(θ_t + σ ε_t) from θ = 0, σ = `policy_noise`) or "auto": open loop on the toy tasks, whose first
        action is all that matters and whose raw observations (angles of ±90 rad) saturate an MLP at initialisation,
        the MLP elsewhere.
      policy_input_grad: "stop" (the paper's), "full" or a float λ, for gradients, Jacobians and path counts.
      n_samples: per-sample gradients per method and horizon (the zeroth-order reference uses the same budget).
      s1_noise: std of the initial-state perturbation of each gradient sample (0: policy noise only).
      landscape_points: grid size of the 1-D slices (J(a_1) over [-1, 1], J along a direction over α ∈ [-1, 1]).
      landscape_2d_points: grid size per axis of the 2-D slice (0 = none).
      discount, truncate: the stabilisers of the objective whose gradient is analysed (docs/stability.md): γ in
        (0, 1] on the imagined return, and None or K to stop the gradient every K steps; the defaults are the paper's.
      seed: every key of the audit derives from it.
    """

    n_episodes: int = 256
    data: str = "auto"
    fit_epochs: int = 1000
    fit_patience: int = 20
    fit_batch: int = 64
    fit_lr: float = 3e-3
    fit_rel_min_delta: float = 0.0
    normalize: bool = True
    policy: str = "auto"
    policy_noise: float = 0.3
    policy_input_grad: str | float = "stop"
    n_samples: int = 32
    s1_noise: float = 0.0
    landscape_points: int = 101
    landscape_2d_points: int = 15
    discount: float = 1.0
    truncate: int | None = None
    seed: int = 0

    def __post_init__(self):
        for name in ("n_episodes", "fit_epochs", "fit_patience", "fit_batch", "landscape_points"):
            check_positive(getattr(self, name), f"AuditConfig.{name}", integer=True)
        if self.n_samples is None or isinstance(self.n_samples, bool) or not isinstance(self.n_samples, int) \
                or self.n_samples < 2:
            raise ValueError(f"AuditConfig.n_samples must be an integer >= 2 (a variance needs two samples), "
                             f"got {self.n_samples!r}")
        if self.landscape_points < 2:
            raise ValueError(f"AuditConfig.landscape_points must be >= 2, got {self.landscape_points}")
        p2 = self.landscape_2d_points
        if isinstance(p2, bool) or not isinstance(p2, int) or p2 < 0 or p2 == 1:
            raise ValueError(f"AuditConfig.landscape_2d_points must be 0 (no 2-D slice) or an integer >= 2, got {p2!r}")
        if self.policy not in ("auto", *POLICIES):
            raise ValueError(f"AuditConfig.policy must be one of auto, {', '.join(POLICIES)}, got {self.policy!r}")
        check_positive(self.policy_noise, "AuditConfig.policy_noise")
        check_policy_input_grad(self.policy_input_grad)
        check_positive(self.fit_lr, "AuditConfig.fit_lr")
        rd = self.fit_rel_min_delta
        if isinstance(rd, bool) or not isinstance(rd, (int, float)) or not 0.0 <= rd < 1.0:
            raise ValueError(f"AuditConfig.fit_rel_min_delta must be a number in [0, 1), got {rd!r}")
        if not isinstance(self.normalize, bool):
            raise ValueError(f"AuditConfig.normalize must be True or False, got {self.normalize!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"AuditConfig.seed must be an integer, got {self.seed!r}")
        if isinstance(self.s1_noise, bool) or not isinstance(self.s1_noise, (int, float)) \
                or not 0 <= self.s1_noise < math.inf:
            raise ValueError(f"AuditConfig.s1_noise must be a finite number >= 0, got {self.s1_noise!r}")
        if self.data != "auto":
            as_scheme(self.data)
        validate.discount(self.discount, "AuditConfig.discount")
        validate.truncation(self.truncate, "AuditConfig.truncate")


@dataclasses.dataclass
class AuditReport:
    """The result of `audit`, as plain JSON types (so `from_json(to_json())` gives the same report back); the rows of
    gradients, jacobians, landscapes, growth, problems and warnings are typed (`gradlens.analysis.rows`: `row.cosine`),
    those of paths dicts, each section a `Table`.

    Fields (the README's "report.json" section documents every key):
      system: {name, obs_dim, action_dim, dt, horizon_mode ("rebuilt" | "prefix"), max_horizon}
      models: the audited model names, simulator excluded; horizons: the grid; config: `AuditConfig` as a dict.
      fits: {model: {source ("fitted" | "given"), open_loop_mse (over every collected episode), baseline_mse,
        the `FitRecord` keys (train_loss [E], val_loss [E], epochs, max_epochs, best_epoch, converged,
        val_error_by_horizon [H_max], baseline_repeat_by_horizon [H_max], baseline_linear_by_horizon [H_max]),
        bar_error_by_horizon, bar_repeat_by_horizon [len(horizons)][H] (the model's and the repeat baseline's
        per-step error on the episodes of each audited H), ratio_to_repeat [len(horizons)], passes_fit_bar
        [len(horizons)], seconds}}; with fits, system also holds fit_bar_episodes {mode ("prefix" | "rebuilt"),
        n_episodes, scheme}, divergence_delta, divergence_by_horizon [H_max] and unpredictable_horizons
      gradients: rows {method, estimator, horizon, n, n_nonfinite, mean_norm, sample_norm, variance, snr, cosine,
        relative_error, ...} (`gradients.GradientStats`); the reference is the simulator's mean gradient; each
        statistic's 95 % bootstrap interval as mean_norm_ci, variance_ci, snr_ci, cosine_ci, relative_error_ci
        [low, high] (`uncertainty.gradient_intervals`, schema >= 4)
      jacobians: rows {method, horizon, norms [H+1][H] (‖d ŝ_t / d a_k‖_F, t = 0..H, k = 0..H-1), growth_rate,
        lags [L], mean_log_norm [L], step_norms [H] or null (no state edge: AWMs)}
      landscapes: rows {method, horizon, kind ("action" | "direction" | "plane"), grid [G] or [[G1], [G2]],
        values [G] or [G1][G2], roughness {...} (`landscape.roughness`)}
      paths: rows of `paths.horizon_table` (time-step level) per model class; exact counts as integers
      growth: rows {method, quantity ("gradient norm" | "gradient variance" | "Jacobian norm"), against ("H" |
        "lag"), horizon (null for a series over the grid; H for a Jacobian chain's lags), verdict ("polynomial" |
        "exponential" | "indistinguishable" | "no fit"), description, fit (`growth.GrowthFit.as_dict()`) or null,
        reason (why there is no fit) or null} (schema >= 3)
      problems: [{diagnostic, method, horizon, message}] for every NaN/Inf or failed diagnostic
      warnings: [{kind ("unpredictable" | "not_converged" | "fit_bar" | "zero_gradient"), method, horizon, message}]
        (schema >= 2)
      timings: seconds per section; meta: gradlens version, JAX version, created (UTC), schema version.
    Non-finite floats are written as the JSON extensions NaN / Infinity (Python's json and pandas read them).
    """

    system: dict
    models: list
    horizons: list
    config: dict
    fits: dict = dataclasses.field(default_factory=dict)
    gradients: list = dataclasses.field(default_factory=list)
    jacobians: list = dataclasses.field(default_factory=list)
    landscapes: list = dataclasses.field(default_factory=list)
    paths: list = dataclasses.field(default_factory=list)
    growth: list = dataclasses.field(default_factory=list)
    problems: list = dataclasses.field(default_factory=list)
    warnings: list = dataclasses.field(default_factory=list)
    timings: dict = dataclasses.field(default_factory=dict)
    meta: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        """Each row section as a `Table`; dict rows (report.json's) become their typed rows (`Row.from_dict`)."""
        for name in _ROW_SECTIONS:
            kind = ROW_TYPES.get(name)
            setattr(self, name, Table(kind.from_dict(row) if kind and not isinstance(row, Row) else row
                                      for row in getattr(self, name)))

    def __repr__(self) -> str:
        """One line per section with its size: the rows themselves print as compact tables (`report.gradients`)."""
        sections = ", ".join(f"{name} {len(getattr(self, name))} rows" for name in _ROW_SECTIONS)
        return (f"AuditReport({self.system.get('name')!r}, models {self.models}, horizons {self.horizons}: fits of "
                f"{len(self.fits)} models, {sections})")

    @property
    def methods(self) -> list[str]:
        """The simulator, then the audited models."""
        return [SIMULATOR, *self.models]

    def as_dict(self) -> dict:
        """The report as plain JSON types: report.json's object (rows as dicts, `Row.as_dict`)."""
        return _plain({f.name: getattr(self, f.name) for f in dataclasses.fields(self)})

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), sort_keys=True, indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "AuditReport":
        """The report of `to_json`'s text, of this schema or an older one (keys added since take their defaults);
        ValueError when it is not an audit report."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError(f"an audit report must be a JSON object, got {type(data).__name__}")
        fields = {f.name for f in dataclasses.fields(cls)}
        missing = sorted(f.name for f in dataclasses.fields(cls)
                         if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
                         and f.name not in data)
        unknown = sorted(set(data) - fields)
        if missing or unknown:
            raise ValueError(f"not an audit report: missing keys {missing}, unknown keys {unknown}")
        return cls(**data)

    def save(self, folder) -> Path:
        """Write `folder/report.json` atomically; returns its path."""
        from gradlens.files import write_bytes_atomic

        path = Path(folder) / REPORT
        write_bytes_atomic(path, self.to_json().encode())
        return path

    @classmethod
    def load(cls, path) -> "AuditReport":
        """Read a report from `report.json` or from the run folder holding it (ValueError if missing or corrupt)."""
        path = Path(path)
        path = path / REPORT if path.is_dir() else path
        try:
            return cls.from_json(path.read_text())
        except FileNotFoundError:
            raise ValueError(f"{path} is missing: not an audit run folder") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"{path} is corrupt: {err}") from None


_ROW_SECTIONS = (*STAGES[1:], "problems", "warnings")  # lists of rows, held as `Table`s


def _plain(value):
    """NumPy / JAX scalars and arrays, tuples, typed rows -> plain JSON types (recursively)."""
    if isinstance(value, Row):
        return _plain(value.as_dict())
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.ndarray, np.generic, jax.Array)):
        return _plain(np.asarray(value).tolist())
    return value


# --------------------------------------------------------------------------------------------------- set-up
def _horizons(horizons) -> list[int]:
    horizons = list(horizons) if isinstance(horizons, (list, tuple, range, np.ndarray)) else None
    if not horizons:
        raise ValueError("horizons must be a non-empty list of positive integers, e.g. [5, 10, 20]")
    for h in horizons:
        check_positive(h, "each horizon", integer=True)
    if len(set(horizons)) != len(horizons):
        raise ValueError(f"horizons must be distinct, got {horizons}")
    return sorted(int(h) for h in horizons)


def _system_factory(system, grid: list[int]) -> tuple[Callable[[int], System], str]:
    """(horizon -> System, "rebuilt" | "prefix") as the module docstring describes."""
    h_max = grid[-1]
    if isinstance(system, System):
        if h_max > system.horizon:
            raise ValueError(f"horizon {h_max} exceeds system {system.name!r}'s horizon {system.horizon}; "
                             f"make the system with horizon >= {h_max}")
        if system.name in _TOYS and grid[0] < system.horizon:
            raise ValueError(f"{system.name!r} pays its reward at its last step only, so its first {grid[0]} of "
                             f"{system.horizon} steps have zero return; pass the name {system.name!r} or a factory "
                             f"such as `lambda h: gradlens.envs.make({system.name!r}, horizon=h, ...)` so that each "
                             f"horizon is a task of its own")
        return (lambda h: system), "prefix"
    if isinstance(system, str):
        big = envs.make(system, horizon=h_max)
        if envs.make(system, horizon=grid[0]).dt != big.dt:
            return (lambda h: big), "prefix"
        return (lambda h: envs.make(system, horizon=h)), "rebuilt"  # envs.make keeps one System per H
    if callable(system):
        built = functools.lru_cache(maxsize=None)(system)
        if not isinstance(built(h_max), System):
            raise ValueError(f"a system factory must return a gradlens System, got {type(built(h_max)).__name__}")
        return built, "rebuilt"
    raise ValueError(f"system must be a system name (one of {', '.join(envs.names())}), a System or a callable "
                     f"horizon -> System; got {type(system).__name__}")


def _resolve_models(models, params, system: System, normalize: bool) -> dict[str, tuple[WorldModel, Any]]:
    """name -> (model made for `system`, given params or None); a name without params is made with `normalize`."""
    if isinstance(models, (str, WorldModel)):
        models = [models]
    params = dict(params or {})
    out = {}
    for m in models:
        fitted_here = normalize and isinstance(m, str) and m not in params
        model = model_registry.make(m, system, **({"normalize": True} if fitted_here else {})) \
            if isinstance(m, str) else m
        if not isinstance(model, WorldModel):
            raise ValueError(f"models must be model names (one of {', '.join(model_registry.names())}) or "
                             f"WorldModels, got {type(m).__name__}")
        if model.name == SIMULATOR:
            raise ValueError("the name 'simulator' is reserved for the true system")
        if (model.system.obs_dim, model.system.action_dim) != (system.obs_dim, system.action_dim):
            raise ValueError(f"model {model.name!r} is for obs_dim {model.system.obs_dim}, action_dim "
                             f"{model.system.action_dim}; system {system.name!r} has obs_dim {system.obs_dim}, "
                             f"action_dim {system.action_dim}")
        if model.name in out:
            raise ValueError(f"model {model.name!r} is listed twice")
        out[model.name] = (model, params.pop(model.name, None))
    if params:
        raise ValueError(f"params given for {', '.join(sorted(params))}, which are not among the audited models "
                         f"({', '.join(out)})")
    return out


def policy_kind(config: AuditConfig, system: System) -> str:
    """The policy class an audit of `system` uses ("mlp" or "open_loop")."""
    if config.policy != "auto":
        return config.policy
    return "open_loop" if system.name in _TOYS else "mlp"


def _scheme(config: AuditConfig, system: System) -> str:
    if config.data != "auto":
        return config.data
    return "toy" if system.name in _TOYS else "random_walk"


# --------------------------------------------------------------------------------------------------- progress
@dataclasses.dataclass(frozen=True)
class Progress:
    """One progress event of `audit`: the CLI's bar (`bar_events`), the log lines (`log_lines`) and the app's progress
    all consume these.

    section: the stage (`STAGES`); kind: "start" (the stage begins), "step" (one unit done: a model's fit, a horizon's
    gradients, a (horizon, method)'s Jacobians or landscapes, the path counts, the growth laws) or "end" (the stage is
    done); done of total: units done over the whole audit (M + H + 2 H (M + 1) + 2 for M models and H horizons);
    label: the unit just done ("H = 5, markov"), the stage's one-line summary on "end" ("done in 1.2 s"), "" on "start".
    """

    section: str
    kind: str
    done: int
    total: int
    label: str = ""

    @property
    def fraction(self) -> float:
        """done / total, in [0, 1]."""
        return self.done / self.total

    @property
    def line(self) -> str | None:
        """The log line of an "end" event ("gradients: done in 1.2 s"), None for the others."""
        return f"{self.section}: {self.label}" if self.kind == "end" else None


def log_lines(log: Callable[[str], None]) -> Callable[[Progress], None]:
    """The progress callback that calls `log` with each stage's one line (`Progress.line`)."""
    def on_event(event: Progress) -> None:
        if event.line is not None:
            log(event.line)

    return on_event


def bar_events(bar) -> Callable[[Progress], None]:
    """The progress callback that drives a tqdm `bar` of `Progress.total` units: the stage as its description, the
    unit just done as its postfix."""
    def on_event(event: Progress) -> None:
        if event.kind == "start":
            bar.set_description(f"audit: {event.section}")
        elif event.kind == "step":
            bar.set_postfix_str(event.label, refresh=False)
            bar.update()

    return on_event


# --------------------------------------------------------------------------------------------------- the audit
def prepare(system, models, horizons, params=None, config: AuditConfig = AuditConfig()):
    """Validate `audit`'s arguments without computing anything: (horizon grid, horizon -> System, horizon mode,
    {name: (model, given params or None)}). ValueError naming the bad value and what is allowed."""
    if not isinstance(config, AuditConfig):
        raise ValueError(f"config must be an AuditConfig, got {type(config).__name__}")
    grid = _horizons(horizons)
    h_max = grid[-1]
    system_at, mode = _system_factory(system, grid)
    chosen = _resolve_models(models, params, system_at(h_max), config.normalize)
    for name, (model, _) in chosen.items():
        if h_max > model.max_horizon:
            raise ValueError(f"horizon {h_max} is beyond model {name!r}'s context (max_horizon "
                             f"{model.max_horizon}); audit horizons <= {model.max_horizon} or build the model "
                             f"with max_horizon >= {h_max}")
    memory.check(memory.audit_estimate(system_at, grid, chosen, config), f"an audit at horizon {h_max}",
                 "--horizons, --samples or --episodes")
    return grid, system_at, mode, chosen


def audit(system, models: Sequence = ("markov", "hwm-transformer", "awm-transformer"), horizons=(5, 10, 20), *,
          params: Mapping[str, Any] | None = None, config: AuditConfig = AuditConfig(), progress: bool = True,
          log: Callable[[str], None] | None = None,
          on_progress: Callable[[Progress], None] | None = None) -> AuditReport:
    """Fit (or take) world models of `system` and run every diagnostic at every horizon; returns an `AuditReport`.

    Args:
      system: a system name, a `System` (H = its first H steps) or a callable horizon -> System.
      models: model names (`gradlens.models.names()`, user-registered ones included) and/or `WorldModel`s.
      horizons: the horizon grid; every H must fit the system and each model's `max_horizon`.
      params: {model name: fitted params}; those models are not fitted again (and a NaN in them is reported).
      config: `AuditConfig` (sizes, seed); progress: tqdm bars; log: called with one line per finished stage;
      on_progress: called with every `Progress` event (the bar and the log lines are drawn from the same events).
    Raises ValueError on bad input (unknown names, an empty grid, a horizon beyond a model's context, models whose
    dimensions do not match the system) before any computation, `memory.OutOfMemory` (a ValueError) when the
    estimated memory exceeds the memory available or an allocation fails anyway.
    """
    grid, system_at, mode, chosen = prepare(system, models, horizons, params, config)
    h_max = grid[-1]
    base = system_at(h_max)
    report = AuditReport(
        system={"name": base.name, "obs_dim": base.obs_dim, "action_dim": base.action_dim, "dt": base.dt,
                "horizon_mode": mode, "max_horizon": h_max},
        models=list(chosen), horizons=grid, config=dataclasses.asdict(config),
        meta={"gradlens": _version(), "jax": jax.__version__, "schema": SCHEMA_VERSION,
              "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")})
    k_data, k_fit, k_policy, k_grad, k_dir, k_noise = jax.random.split(jax.random.PRNGKey(config.seed), 6)
    from tqdm.auto import tqdm

    n_h, n_m = len(grid), len(chosen) + 1
    total = len(chosen) + n_h + 2 * n_h * n_m + 2
    bar = tqdm(total=total, desc="audit", disable=not progress, leave=False)
    listeners = [bar_events(bar), *([log_lines(log)] if log else []), *([on_progress] if on_progress else [])]
    done = 0

    def emit(section: str, kind: str, label: str = "") -> None:
        nonlocal done
        done += kind == "step"
        for listen in listeners:
            listen(Progress(section, kind, done, total, label))

    def stage(section: str, run: Callable[[Callable[[str], None]], Any]):
        """`run(step)` as `section`: timed, its start, units (`step(label)`) and end emitted."""
        emit(section, "start")
        start = time.perf_counter()
        out = _guarded(section, h_max, lambda: run(functools.partial(emit, section, "step")))
        report.timings[section] = time.perf_counter() - start
        emit(section, "end", _fit_summary(report) if section == "fits" else
             f"done in {report.timings[section]:.1f} s")
        return out

    def dynamics_at(name, h):
        """The dynamics of `name` at H: the system, or (model, params) once the fits are done."""
        if name == SIMULATOR:
            return system_at(h)
        model, p = fitted[name]
        return (model if mode == "prefix" else dataclasses.replace(model, system=system_at(h)), p)

    kind = policy_kind(config, base)
    report.system["policy"] = kind
    policy = make_policy(kind, base, horizon=h_max, noise_std=config.policy_noise)
    policy_params = policy.init(k_policy)
    methods = report.methods
    with bar:
        fitted = stage("fits", lambda step: _fit_all(report, chosen, system_at, mode, config, k_data, k_fit, progress,
                                                     step))
        stage("gradients", lambda step: _gradients(report, dynamics_at, methods, policy, policy_params, k_grad,
                                                   config, step))
        stage("jacobians", lambda step: _jacobians(report, dynamics_at, methods, policy, policy_params, k_noise,
                                                   config, step))
        stage("landscapes", lambda step: _landscapes(report, dynamics_at, methods, policy, policy_params, k_dir,
                                                     k_noise, config, step))
        stage("paths", lambda step: _paths(report, methods, kind, config) or step("paths"))
        stage("growth", lambda step: report.growth.extend(growth_rows(report)) or step("growth laws"))
    return report


def _guarded(section: str, h_max: int, run: Callable):
    """`run()`, an allocation failure turned into the one-line `memory.OutOfMemory`."""
    try:
        return run()
    except (RuntimeError, MemoryError) as err:  # XLA's RESOURCE_EXHAUSTED is a RuntimeError
        if not memory.is_oom(err):
            raise
        raise memory.oom_error(err, f"the audit's {section} at horizon {h_max}",
                               "--horizons, --samples or --episodes") from None


def _version() -> str:
    from gradlens import __version__

    return __version__


def _fit_summary(report: AuditReport) -> str:
    parts = [f"{name} {f['epochs']} epochs{'' if f['converged'] is not False else ' (not converged)'}, "
             f"error/repeat {', '.join(f'{r:.2g}' for r in f['ratio_to_repeat'])} at H = "
             f"{', '.join(map(str, report.horizons))}" for name, f in report.fits.items()]
    return "; ".join(parts) if parts else "none"


def _problem(report: AuditReport, diagnostic: str, method: str | None, horizon: int | None, message: str) -> None:
    report.problems.append(ProblemRow(diagnostic, method, horizon, message))


def _bar_episodes(system_at, mode: str, grid: list[int], scheme: str, val: Trajectories, key) -> dict:
    """H -> the episodes the fit bar at H is measured on: in "prefix" mode the held-out episodes `val` (their first
    H steps are the H-step task); in "rebuilt" mode len(val) episodes collected with `scheme` in `system_at(H)`
    (key fold_in(key, H))."""
    if mode == "prefix":
        return {h: val for h in grid}
    return {h: collect(system_at(h), scheme, val.n_episodes, jax.random.fold_in(key, h)) for h in grid}


def _fit_all(report, chosen, system_at, mode: str, config: AuditConfig, k_data, k_fit, progress, step) -> dict:
    """Fit every model without given params on one shared data set (collected at H_max) and one shared held-out
    split; measure the fit bar at each audited H on `_bar_episodes`; fill report.fits, the system's divergence and
    the fit warnings; `step(name)` after each model; return name -> (model, params)."""
    if not chosen:
        return {}
    grid = report.horizons
    base = system_at(grid[-1])
    scheme = _scheme(config, base)
    data = collect(base, scheme, config.n_episodes, k_data)
    fit_config = FitConfig(learning_rate=config.fit_lr, epochs=config.fit_epochs, patience=config.fit_patience,
                           batch_size=config.fit_batch, rel_min_delta=config.fit_rel_min_delta)
    train, val = fit_split(data, k_fit, fit_config)  # one held-out split: every model and baseline on the same
    baseline = float(baseline_mse(data))
    spread = divergence(base, val)
    bar_data = _bar_episodes(system_at, mode, grid, scheme, val, k_data)
    report.system["fit_bar_episodes"] = {"mode": mode, "n_episodes": val.n_episodes, "scheme": scheme}

    def fit_one(item):
        """(params, fit entry, divergence message or None) of the i-th model."""
        i, (name, (model, given)) = item
        start, history, diverged = time.perf_counter(), None, None
        if given is None:
            try:
                given, history = fit(model, train, jax.random.fold_in(k_fit, i), fit_config, progress=progress,
                                     validation=val)
            except FitDiverged as err:
                given, history, diverged = err.params, err.history, str(err)
        record = fit_record(model, given, history, train, val, config.fit_epochs)
        errors = [open_loop_error(model if mode == "prefix" else dataclasses.replace(model, system=system_at(h)),
                                  given, bar_data[h])[:h].tolist() for h in grid]
        repeats = [repeat_error(bar_data[h])[:h].tolist() for h in grid]
        ratios = [horizon_ratio(e, r, h) for e, r, h in zip(errors, repeats, grid)]
        entry = {"source": "fitted" if history is not None else "given", **record.to_dict(),
                 "open_loop_mse": float(mse(model, given, data)), "baseline_mse": baseline,
                 "bar_error_by_horizon": errors, "bar_repeat_by_horizon": repeats, "ratio_to_repeat": ratios,
                 "passes_fit_bar": [bool(r <= FIT_BAR) for r in ratios], "seconds": time.perf_counter() - start}
        return given, entry, diverged

    items = list(enumerate(chosen.items()))
    out = {}
    for (_, (name, (model, _))), (given, entry, diverged) in zip(
            items, _in_threads(items, fit_one, step, lambda item: item[1][0])):
        if diverged:
            _problem(report, "fits", name, None, diverged)
        if not math.isfinite(entry["open_loop_mse"]):
            _problem(report, "fits", name, None, f"open-loop MSE on the collected data is {entry['open_loop_mse']}")
        report.fits[name] = entry
        out[name] = (model, given)
    repeat = next(iter(report.fits.values()))["baseline_repeat_by_horizon"]
    report.system.update(divergence_delta=CHAOS_DELTA, divergence_by_horizon=spread.tolist(),
                         unpredictable_horizons=[h for h in report.horizons
                                                 if horizon_ratio(spread, repeat, h) > FIT_BAR])
    _fit_warnings(report)
    return out


def _fit_warnings(report: AuditReport) -> None:
    """report.warnings: one per unpredictable H, per unconverged fit and per (model, H) failing the fit bar."""
    spread, delta = report.system["divergence_by_horizon"], report.system["divergence_delta"]
    chaotic = set(report.system["unpredictable_horizons"])
    repeat = next(iter(report.fits.values()))["baseline_repeat_by_horizon"]
    for h in sorted(chaotic):
        _warning(report, "unpredictable", None, h,
                 f"At H = {h} no model can be expected to predict {report.system['name']}: two simulator starts "
                 f"{delta:g} apart diverge to {math.sqrt(spread[h - 1]):.3g} (RMS) by step {h}, "
                 f"{horizon_ratio(spread, repeat, h):.2g}x the error of repeating the last state over steps 1-{h}")
    for name, entry in report.fits.items():
        record = FitRecord.from_dict(entry)
        if record.converged is False:
            _warning(report, "not_converged", name, None,
                     f"{name}'s fit did not converge: it ran to the safety cap of {record.max_epochs} epochs "
                     f"(best epoch {record.best_epoch}) without a validation plateau; raise fit_epochs")
        for h, ratio, ok in zip(report.horizons, entry["ratio_to_repeat"], entry["passes_fit_bar"]):
            if not ok:
                why = " (the system is unpredictable at this horizon, see above)" if h in chaotic else ""
                _warning(report, "fit_bar", name, h,
                         f"{name} does not beat repeating the last state 2x at H = {h}: its open-loop error on "
                         f"held-out episodes of the H = {h} task is {ratio:.2g}x that baseline's over steps 1-{h}"
                         f"{why}; its gradients at this horizon measure its fit quality, not its architecture")


def _warning(report: AuditReport, kind: str, method: str | None, horizon: int | None, message: str) -> None:
    report.warnings.append(WarningRow(kind, method, horizon, message))


def _threads() -> int:
    """How many (method, H) computations an audit section runs at once: `$GRADLENS_AUDIT_THREADS`, else the CPU
    count up to 4. On a cold compilation cache an audit is mostly XLA compilation, which uses one core per program."""
    chosen = os.environ.get(THREADS_ENV, "").strip()
    if chosen:
        if not chosen.isdigit() or int(chosen) < 1:
            raise ValueError(f"${THREADS_ENV} must be a positive integer, got {chosen!r}")
        return int(chosen)
    return max(1, min(4, os.cpu_count() or 1))


def _in_threads(items: list, work: Callable, step: Callable[[str], None], label: Callable) -> list:
    """[work(item) for item in items], up to `_threads()` at a time. `step(label(item))` is called from this thread
    (progress listeners, such as the app's, may not be thread-safe) and in the items' order, each as soon as it and
    every item before it have finished; results keep the items' order too, so neither the report nor the progress
    log depends on which finished first. The first error is raised here."""
    workers = min(_threads(), len(items))
    if workers <= 1:
        out = []
        for item in items:
            out.append(work(item))
            step(label(item))
        return out
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        futures = {pool.submit(work, item): i for i, item in enumerate(items)}
        out, done, shown = [None] * len(items), [False] * len(items), 0
        try:
            for future in concurrent.futures.as_completed(futures):
                i = futures[future]
                out[i], done[i] = future.result(), True
                while shown < len(items) and done[shown]:
                    step(label(items[shown]))
                    shown += 1
        except BaseException:  # an error or Ctrl-C: start nothing more (running work cannot be stopped)
            for future in futures:
                future.cancel()
            raise
    return out


def _gradients(report, dynamics_at, methods, policy, policy_params, key, config: AuditConfig, step) -> None:
    """Every method's gradient statistics, one horizon at a time (the same key at each: common random numbers, as
    in one `horizon_sweep` over the grid)."""
    def sweep(h):
        return gradients.horizon_sweep(
            lambda h: dynamics_at(SIMULATOR, h), {m: (lambda h, m=m: dynamics_at(m, h)) for m in methods[1:]},
            policy, policy_params, [h], key, config.n_samples, zeroth_order="simulator",
            policy_input_grad=config.policy_input_grad, s1_noise=config.s1_noise, discount=config.discount,
            truncate=config.truncate)

    by_horizon = _in_threads(report.horizons, sweep, step, lambda h: f"H = {h}")
    rows = [GradientRow.from_dict(row) for row in _plain([row for rows in by_horizon for row in rows])]
    for row in rows:
        if row.n_nonfinite:
            _problem(report, "gradients", row.method, row.horizon,
                     f"{row.n_nonfinite} of {row.n + row.n_nonfinite} {row.estimator} gradient samples non-finite "
                     f"(samples {row.nonfinite_samples[:8]}, parameter leaves {row.nonfinite_leaves[:4]})")
        if row.method == SIMULATOR and row.estimator == "first-order" and row.n and row.sample_norm == 0:
            _warning(report, "zero_gradient", SIMULATOR, row.horizon,
                     f"The simulator's policy gradient is exactly zero in all {row.n} samples at H = {row.horizon}: "
                     f"the return of {report.system['name']} does not move with the actions (a reward constant in "
                     f"them, such as an alive bonus); there is no gradient to compare the models' with, so their "
                     f"cosines and relative errors at this horizon mean nothing")
    report.gradients.extend(rows)


def _nonfinite_where(values: np.ndarray, names: str) -> str:
    bad = np.argwhere(~np.isfinite(values))
    shown = ", ".join(str(tuple(int(i) for i in idx)) for idx in bad[:6])
    return f"{len(bad)} non-finite value(s) at {names} = {shown}{' …' if len(bad) > 6 else ''}"


def _jacobians(report, dynamics_at, methods, policy, policy_params, noise_key, config: AuditConfig, step) -> None:
    """Jacobian chains of the deterministic policy's rollout; a system with process noise is differentiated along
    one fixed draw of its noise (`noise_key`, the same at every H)."""
    act = policy.bind(policy_params, deterministic=True)

    def chain_of(item):
        """(chain, step Jacobian norms [H] or None) of one (H, method)."""
        h, method = item
        dyn, s1 = dynamics_at(method, h), dynamics_at(SIMULATOR, h).initial_state()
        chain = jacobians.jacobian_chain(dyn, act, s1, h, noise_key, policy_input_grad=config.policy_input_grad)
        return chain, jacobians.step_jacobian_norms(dyn, act, s1, h, noise_key)

    items = [(h, method) for h in report.horizons for method in methods]
    for (h, method), (chain, steps) in zip(items, _in_threads(items, chain_of, step, lambda i: f"H = {i[0]}, {i[1]}")):
        norms = np.asarray(jacobians.norms(chain), np.float64)  # [H+1, H]
        rate, lags, mean_log_norm = float("nan"), [], []
        if not np.all(np.isfinite(norms)):
            _problem(report, "jacobians", method, h, _nonfinite_where(norms, "(t, k)"))
        try:
            rate = jacobians.growth_rate(chain)
            profile = jacobians.lag_profile(chain)
            lags, mean_log_norm = profile.lags, profile.mean_log_norm
        except ValueError as err:
            _problem(report, "jacobians", method, h, f"no growth rate: {err}")
        if steps is not None:
            steps = np.asarray(steps, np.float64)
            if not np.all(np.isfinite(steps)):
                _problem(report, "jacobians", method, h, "step Jacobian norms: " + _nonfinite_where(steps, "(t,)"))
        report.jacobians.append(JacobianRow(**_plain({
            "method": method, "horizon": h, "norms": norms, "growth_rate": float(rate), "lags": lags,
            "mean_log_norm": mean_log_norm, "step_norms": steps})))


def _landscapes(report, dynamics_at, methods, policy, policy_params, key, noise_key, config: AuditConfig,
                step) -> None:
    """1-D and 2-D slices of J; a system with process noise is sliced along one fixed draw (`noise_key`)."""
    normalize = not isinstance(policy_params, jax.Array)  # an open-loop θ = 0 would give zero filter-normalised ones
    d1, d2 = (landscape.random_direction(policy_params, k, filter_normalize=normalize) for k in jax.random.split(key))
    line = np.linspace(-1.0, 1.0, config.landscape_points)
    plane = np.linspace(-1.0, 1.0, config.landscape_2d_points) if config.landscape_2d_points else None
    def slices_of(item):
        """[(kind, grid, values)] of one (H, method)."""
        h, method = item
        dyn, s1 = dynamics_at(method, h), dynamics_at(SIMULATOR, h).initial_state()
        objective = landscape.policy_return_fn(dyn, policy, s1, h, noise_key)
        # the direction's line (α, 0) and the plane's grid in one program: one compilation, not two
        rows = np.concatenate([np.stack([line, np.zeros_like(line)], axis=1)]
                              + ([np.asarray(landscape.plane_grid(plane, plane))] if plane is not None else []))
        values = np.asarray(landscape.along(objective, policy_params, (d1, d2), rows), np.float64)
        slices = [("action", line, np.asarray(landscape.action_slice(dyn, s1, h, line, key=noise_key), np.float64)),
                  ("direction", line, values[:len(line)])]
        if plane is not None:
            slices.append(("plane", (plane, plane), values[len(line):].reshape(len(plane), len(plane))))
        return slices

    items = [(h, method) for h in report.horizons for method in methods]
    for (h, method), slices in zip(items, _in_threads(items, slices_of, step, lambda i: f"H = {i[0]}, {i[1]}")):
        for kind, grid, values in slices:
            rough = landscape.roughness(values, grid)
            if rough["n_nonfinite"]:
                _problem(report, "landscapes", method, h,
                         f"{kind} slice: {rough['n_nonfinite']} non-finite value(s) at grid positions "
                         f"{rough['nonfinite_at'][:6]}")
            report.landscapes.append(LandscapeRow(**_plain({"method": method, "horizon": h, "kind": kind,
                                                            "grid": grid, "values": values, "roughness": rough})))


def _paths(report, methods, kind: str, config: AuditConfig) -> None:
    policy = "open" if kind == "open_loop" else "closed"
    stop = config.policy_input_grad == "stop"
    for method in methods:
        if method not in paths.MODEL_CLASSES:
            _problem(report, "paths", method, None, f"no gradient-path graph for {method!r} (user model): gradlens "
                     f"counts paths for {', '.join(paths.MODEL_CLASSES)}")
            continue
        for row in paths.horizon_table(method, report.horizons, level="time", policy=policy, stop_gradient=stop):
            report.paths.append(_plain({k: v for k, v in row.items() if k != "mean_length_per_action"}))


def growth_rows(report: AuditReport) -> list[GrowthRow]:
    """Growth laws (`gradlens.analysis.growth`) of each method's first-order gradient norm and variance against H
    over the grid, and of its Jacobian norm against the lag t - k at each H; a row says why where no law can be
    fitted (fewer than 3 horizons or lags with a finite positive value)."""
    rows = []

    def add(method, quantity, against, horizon, x, y):
        try:
            fit = growth.fit_growth(x, y)
        except ValueError as err:
            rows.append(GrowthRow(method, quantity, against, horizon, "no fit", f"no fit: {err}", None, str(err)))
            return
        unit = "per step" if against == "lag" else "per unit of H"
        rows.append(GrowthRow(method, quantity, against, horizon, fit.verdict, fit.describe(unit),
                              _plain(fit.as_dict()), None))

    grads = [r for r in report.gradients if r.estimator == "first-order"]
    for method in report.methods:
        mine = sorted((r for r in grads if r.method == method), key=lambda r: r.horizon)
        x = [r.horizon for r in mine]
        add(method, "gradient norm", "H", None, x, [_number(r.mean_norm) for r in mine])
        add(method, "gradient variance", "H", None, x, [_number(r.variance) for r in mine])
        for r in (r for r in report.jacobians if r.method == method):
            add(method, "Jacobian norm", "lag", r.horizon, r.lags, np.exp(np.asarray(r.mean_log_norm, float)))
    return rows


def _number(value) -> float:
    return float("nan") if value is None else float(value)


def summary_rows(report: AuditReport) -> list[dict]:
    """One row per (method, horizon): the figures the CLI prints and report.html tabulates, with the model's fit
    against repeating the last state at that H (fit_ratio, fit_passes: None for the simulator and older reports)."""
    grads = {(r.method, r.horizon): r for r in report.gradients if r.estimator == "first-order"}
    jac = {(r.method, r.horizon): r for r in report.jacobians}
    rough = {(r.method, r.horizon): r.roughness for r in report.landscapes if r.kind == "direction"}
    counts = {(r["model_class"], r["horizon"]): r for r in report.paths}
    rows = []
    for h in report.horizons:
        for method in report.methods:
            g, j = grads.get((method, h)), jac.get((method, h))
            p = counts.get((method, h))
            fit_row = report.fits.get(method, {})
            i = report.horizons.index(h)
            ratio = fit_row["ratio_to_repeat"][i] if "ratio_to_repeat" in fit_row else None
            passes = fit_row["passes_fit_bar"][i] if "passes_fit_bar" in fit_row else None
            rows.append({"method": method, "horizon": h, "fit_ratio": ratio, "fit_passes": passes,
                         "grad_norm": g and g.mean_norm, "variance": g and g.variance, "snr": g and g.snr,
                         "cosine": g and g.cosine, "rel_error": g and g.relative_error,
                         "growth_rate": j and j.growth_rate,
                         "roughness": rough.get((method, h), {}).get("normalized_tv"),
                         "log10_paths": p["log10_paths"] if p else None})
    return rows
