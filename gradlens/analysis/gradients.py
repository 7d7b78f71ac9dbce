"""Gradient statistics: per-sample policy gradients, their spread, and their bias against the true simulator's.

Glossary of shapes: N samples, H horizon, O observation dim (physical state + time index), P number of policy
parameters (all leaves flattened). A "samples" pytree has the policy parameters' structure with a leading [N] axis.

Small pure functions, optax style:

    g = per_sample_gradients(system, policy, params, s1, H, key, N)      # ∇θ J of N single rollouts, vmapped
    z = zeroth_order_gradients(system, policy, params, s1, H, key, N)    # Gaussian smoothing, same budget
    gradient_stats(g, reference=mean_gradient(g_sim))                    # norm, variance, SNR, cosine, rel. error
    horizon_sweep(system, {"awm": (model, params)}, policy, params, [5, 10, 20], key, N)   # table rows

Sample i uses key_i = jax.random.split(key, N)[i], split as (k_s1, k_rollout, k_direction) =
jax.random.split(key_i, 3): the initial-state perturbation, the policy and process noise of the rollout, and (for the
zeroth-order estimator) the parameter perturbation. So the first- and zeroth-order estimators, and every model, see the
same noise under the same key (common random numbers). Non-finite gradients are counted and located, never dropped
silently (`GradientStats.n_nonfinite`, `.nonfinite_samples`, `.nonfinite_leaves`).

Sample i's first-order gradient is the trainer's (`gradlens.objective.policy_gradient` of a batch of one, in the
trainer's reverse mode `bpo.DEFAULT_REVERSE`), vmapped over the samples: the gradient analysed is the gradient
optimised, bit for bit (tests/test_dynamics.py); the zeroth-order estimator evaluates the same objective.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from gradlens.analysis.uncertainty import gradient_intervals
from gradlens.compilation_cache import jit_once
from gradlens.envs.base import System, check_positive, physical, time_index, with_time
from gradlens.models.base import WorldModel
from gradlens import validate
from gradlens.objective import DEFAULT_REVERSE, imagined_objective, policy_gradient

Array = jax.Array
ZEROTH_ORDER = ("none", "simulator", "all")


def _split_dynamics(dynamics):
    """(static part, params): a world model's params are a traced jit argument, not a baked-in constant."""
    if isinstance(dynamics, tuple) and len(dynamics) == 2 and isinstance(dynamics[0], WorldModel):
        return dynamics[0], dynamics[1]
    return dynamics, None


def _check_common(horizon, n_samples, s1_noise) -> None:
    check_positive(horizon, "horizon", integer=True)
    check_positive(n_samples, "n_samples", integer=True)
    if isinstance(s1_noise, bool) or not isinstance(s1_noise, (int, float)) or not 0 <= s1_noise < np.inf:
        raise ValueError(f"s1_noise must be a finite number >= 0 (std of the initial-state perturbation), "
                         f"got {s1_noise!r}")


def _initial_states(s1: Array, n_samples: int) -> Array:
    """s1 [O] broadcast to [N, O], or s1 [N, O] checked."""
    s1 = jnp.asarray(s1)
    if s1.ndim == 1:
        return jnp.broadcast_to(s1, (n_samples,) + s1.shape)
    if s1.ndim != 2 or s1.shape[0] != n_samples:
        raise ValueError(f"s1 must be one initial observation [O] or one per sample [n_samples={n_samples}, O], "
                         f"got shape {s1.shape}")
    return s1


def _estimator(kind, policy, static, pair, horizon, entropy_coef, policy_input_grad, s1_noise, sigma, antithetic,
               discount, truncate):
    """jit(vmap) of one sample's estimate (policy_params, dyn_params, s1s [N, O], keys [N]) -> samples pytree [N]."""

    def inputs(dyn_params, s1, key):  # (dynamics, s1 [1, O] perturbed, rollout key) of ONE imagined rollout
        k_s1, k_roll, _ = jax.random.split(key, 3)
        x = physical(s1)
        s = with_time(x + s1_noise * jax.random.normal(k_s1, x.shape, s1.dtype), time_index(s1))  # time untouched
        return ((static, dyn_params) if pair else static), s[None], k_roll

    def objective(policy_params, dyn_params, s1, key):  # J of ONE imagined rollout
        dynamics, s, k_roll = inputs(dyn_params, s1, key)
        return imagined_objective(policy_params, policy, dynamics, s, k_roll, horizon, entropy_coef,
                                  policy_input_grad, DEFAULT_REVERSE, discount, truncate)[0]

    def first_order(policy_params, dyn_params, s1, key):  # the trainer's gradient, in its reverse mode
        dynamics, s, k_roll = inputs(dyn_params, s1, key)
        return policy_gradient(policy_params, policy, dynamics, s, k_roll, horizon, entropy_coef, policy_input_grad,
                               DEFAULT_REVERSE, discount, truncate)[0]

    def zeroth_order(policy_params, dyn_params, s1, key):
        flat, unravel = ravel_pytree(policy_params)  # [P]
        u = jax.random.normal(jax.random.split(key, 3)[2], flat.shape, flat.dtype)
        j_plus = objective(unravel(flat + sigma * u), dyn_params, s1, key)
        if antithetic:
            diff = (j_plus - objective(unravel(flat - sigma * u), dyn_params, s1, key)) / (2 * sigma)
        else:
            diff = (j_plus - objective(policy_params, dyn_params, s1, key)) / sigma
        return unravel(diff * u)

    if kind == "first-order":  # compiled with XLA's defaults, as the trainer's gradient: the same bits
        return jax.jit(jax.vmap(first_order, in_axes=(None, None, 0, 0)))
    return jit_once(jax.vmap(zeroth_order, in_axes=(None, None, 0, 0)))


_cached_estimator = functools.lru_cache(maxsize=64)(_estimator)


def _estimate(kind, dynamics, policy, policy_params, s1, horizon, key, n_samples, entropy_coef, policy_input_grad,
              s1_noise, discount, truncate, sigma=None, antithetic=None):
    """Validate, then run the (cached, when every static argument is hashable) estimator."""
    _check_common(horizon, n_samples, s1_noise)
    validate.discount(discount)
    validate.truncation(truncate)
    s1s = _initial_states(s1, n_samples)
    static, dyn_params = _split_dynamics(dynamics)
    config = (kind, policy, static, dyn_params is not None, horizon, entropy_coef, policy_input_grad, s1_noise,
              sigma, antithetic, float(discount), truncate)
    try:
        fn = _cached_estimator(*config)
    except TypeError:  # an unhashable policy or dynamics: compile afresh
        fn = _estimator(*config)
    return fn(policy_params, dyn_params, s1s, jax.random.split(key, n_samples))


def per_sample_gradients(dynamics, policy, policy_params, s1: Array, horizon: int, key: Array, n_samples: int, *,
                         entropy_coef: float = 0.0, policy_input_grad="stop", s1_noise: float = 0.0,
                         discount: float = 1.0, truncate: int | None = None):
    """∇θ J of N independent single imagined rollouts: a pytree like `policy_params` with a leading [N] axis.

    Args:
      dynamics: what `gradlens.rollout` takes: a `System` (the simulator), a `(world_model, params)` pair, a `Dynamics`.
      policy: a gradlens policy (`bind`, `entropy`), e.g. `gradlens.policies.make_policy("mlp", system)`.
      s1: initial observation [O], or one per sample [N, O].
      horizon: H, rollout length (<= the dynamics' horizon or the model's max_horizon).
      key: PRNG key; sample i's policy noise, process noise (noisy systems) and initial-state perturbation come from
        split(key, N)[i] (module docstring).
      entropy_coef, policy_input_grad, discount, truncate: as in `gradlens.objective.imagined_objective`
        (per-sample objective J_i = Σ_t γ^t r_t + α · mean_t Ĥ_t of rollout i; γ = 1 and no truncation, the paper's,
        by default; the stabilisers of docs/stability.md otherwise).
      s1_noise: std of a Gaussian perturbation of s1's physical components (the time channel is untouched).
    The mean over samples is the BPO gradient of a batch of N; the spread is what `gradient_stats` measures.
    """
    return _estimate("first-order", dynamics, policy, policy_params, s1, horizon, key, n_samples, entropy_coef,
                     policy_input_grad, s1_noise, discount, truncate)


def zeroth_order_gradients(dynamics, policy, policy_params, s1: Array, horizon: int, key: Array, n_samples: int, *,
                           sigma: float = 0.05, antithetic: bool = True, entropy_coef: float = 0.0,
                           policy_input_grad="stop", s1_noise: float = 0.0, discount: float = 1.0,
                           truncate: int | None = None):
    """Gaussian-smoothing (zeroth-order) estimates of ∇θ E[J], one per sample: same layout as `per_sample_gradients`.

    With u_i ~ N(0, I_P) in the flattened parameters and J_i(·) the return of rollout i under its own fixed noise
    (common random numbers, as in Suh et al. 2022):
        antithetic (default): g_i = (J_i(θ + σ u_i) - J_i(θ - σ u_i)) / (2σ) · u_i
        baseline:             g_i = (J_i(θ + σ u_i) - J_i(θ)) / σ · u_i
    Both cost two forward rollouts per sample and no backward pass; the budget N matches the first-order estimator's
    N rollouts. Their mean estimates the gradient of the smoothed objective E_u[J(θ + σu)], which equals ∇θ E[J]
    exactly when J is quadratic in θ and up to O(σ²) when it is smooth. `sigma` is in raw parameter units.
    Other arguments as `per_sample_gradients`.
    """
    check_positive(sigma, "sigma (zeroth-order smoothing std)")
    return _estimate("zeroth-order", dynamics, policy, policy_params, s1, horizon, key, n_samples, entropy_coef,
                     policy_input_grad, s1_noise, discount, truncate, float(sigma), bool(antithetic))


@dataclasses.dataclass(frozen=True)
class GradientStats:
    """Statistics of N per-sample gradients g_i [P] (float64, over the finite samples only).

    Fields:
      n: number of finite samples used; n_nonfinite: samples with any NaN/Inf entry (excluded, and reported):
      nonfinite_samples: their indices; nonfinite_leaves: the parameter leaves (Haiku paths) where they appeared.
      mean_norm: ‖ḡ‖, the norm of the mean gradient (the N-sample BPO gradient).
      sample_norm: mean_i ‖g_i‖.
      variance: tr Σ̂ = Σ_i ‖g_i - ḡ‖² / (n - 1), the unbiased trace of the covariance (NaN when n < 2).
      snr: ‖ḡ‖ / sqrt(tr Σ̂), the signal-to-noise ratio of ONE sample (dimensionless, independent of N); the mean of B
        samples has SNR sqrt(B) · snr. (‖ḡ‖² overestimates ‖E g‖² by tr Σ / n.) Inf when tr Σ̂ = 0 and ḡ ≠ 0,
        NaN when both are 0.
      cosine, relative_error: ḡ against a reference gradient r (the simulator's): ḡ·r / (‖ḡ‖ ‖r‖) and ‖ḡ - r‖ / ‖r‖;
        None without a reference, NaN where undefined (a zero norm or a non-finite reference).
    Every float field is NaN when no finite sample remains.
    """

    n: int
    n_nonfinite: int
    nonfinite_samples: tuple[int, ...]
    nonfinite_leaves: tuple[str, ...]
    mean_norm: float
    sample_norm: float
    variance: float
    snr: float
    cosine: float | None = None
    relative_error: float | None = None

    def as_dict(self) -> dict:
        """Plain JSON-ready dict (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


def _flatten_samples(samples) -> tuple[np.ndarray, list[tuple[str, np.ndarray]]]:
    """samples pytree with leading [N] -> ([N, P] float64, [(leaf path, leaf [N, ...])])."""
    leaves = [(jax.tree_util.keystr(path), np.asarray(leaf, np.float64))
              for path, leaf in jax.tree_util.tree_flatten_with_path(samples)[0]]
    if not leaves or any(leaf.ndim == 0 for _, leaf in leaves):
        raise ValueError("samples must be a non-empty pytree of arrays with a leading [n_samples] axis")
    sizes = {leaf.shape[0] for _, leaf in leaves}
    if len(sizes) != 1:
        raise ValueError(f"every leaf of samples must have the same leading [n_samples] axis, "
                         f"got sizes {sorted(sizes)}")
    n = sizes.pop()
    return np.concatenate([leaf.reshape(n, -1) for _, leaf in leaves], axis=1), leaves


def mean_gradient(samples):
    """Mean over the finite samples (pytree without the [N] axis); NaN leaves if none is finite."""
    flat, _ = _flatten_samples(samples)
    finite = np.all(np.isfinite(flat), axis=1)
    mean = flat[finite].mean(axis=0) if finite.any() else np.full(flat.shape[1], np.nan)
    leaves, treedef = jax.tree_util.tree_flatten(samples)
    sizes = np.cumsum([0] + [int(np.prod(np.shape(leaf)[1:])) for leaf in leaves])
    out = [jnp.asarray(mean[a:b].reshape(np.shape(leaf)[1:]), jnp.asarray(leaf).dtype)
           for a, b, leaf in zip(sizes[:-1], sizes[1:], leaves)]
    return jax.tree_util.tree_unflatten(treedef, out)


def gradient_stats(samples, reference=None) -> GradientStats:
    """`GradientStats` of per-sample gradients (a pytree with leading [N]) against an optional reference pytree."""
    flat, leaves = _flatten_samples(samples)  # [N, P]
    finite = np.all(np.isfinite(flat), axis=1)
    bad_leaves = tuple(path for path, leaf in leaves if not np.all(np.isfinite(leaf)))
    g = flat[finite]
    n = g.shape[0]
    nan = float("nan")
    mean_norm = sample_norm = variance = snr = nan
    if n:
        mean = g.mean(axis=0)
        mean_norm = float(np.linalg.norm(mean))
        sample_norm = float(np.mean(np.linalg.norm(g, axis=1)))
        if n >= 2:
            variance = float(np.sum((g - mean) ** 2) / (n - 1))
            with np.errstate(divide="ignore", invalid="ignore"):
                snr = float(np.divide(mean_norm, np.sqrt(variance)))
    cosine = relative_error = None
    if reference is not None:
        ref = np.concatenate([np.asarray(leaf, np.float64).reshape(-1) for leaf in jax.tree.leaves(reference)])
        if ref.shape != (flat.shape[1],):
            raise ValueError(f"reference must have the parameters' structure ({flat.shape[1]} entries), "
                             f"got {ref.shape[0]} entries")
        cosine = relative_error = nan
        ref_norm = np.linalg.norm(ref)
        if n and np.isfinite(ref_norm) and ref_norm > 0:
            relative_error = float(np.linalg.norm(mean - ref) / ref_norm)
            if mean_norm > 0:
                cosine = float(np.dot(mean, ref) / (mean_norm * ref_norm))
    return GradientStats(n=int(n), n_nonfinite=int(np.sum(~finite)),
                         nonfinite_samples=tuple(int(i) for i in np.flatnonzero(~finite)),
                         nonfinite_leaves=bad_leaves, mean_norm=mean_norm, sample_norm=sample_norm,
                         variance=variance, snr=snr, cosine=cosine, relative_error=relative_error)


def _at_horizon(x, horizon: int):
    """A per-horizon factory `horizon -> System | dynamics` evaluated, or a fixed one returned."""
    return x(horizon) if callable(x) and not isinstance(x, System) else x


def horizon_sweep(system: System | Callable[[int], System], models: Mapping[str, object], policy, policy_params,
                  horizons, key: Array, n_samples: int, *, zeroth_order: str = "simulator", sigma: float = 0.05,
                  antithetic: bool = True, entropy_coef: float = 0.0, policy_input_grad="stop", s1=None,
                  s1_noise: float = 0.0, discount: float = 1.0, truncate: int | None = None) -> list[dict]:
    """Gradient statistics of the simulator and each model for every horizon: a list of table rows.

    Args:
      system: the true `System`, or a factory `horizon -> System`. With a fixed system, horizon H means the first H
        steps of its episode: J_H = Σ_{t<H} r_t, terminal terms only at the system's own t = H_sys - 1. For tasks
        whose reward is terminal only (the toys) pass factories that build the system (and models) for each H.
      models: name -> `(world_model, params)` pair / `Dynamics` / `System`, or a factory `horizon -> one of these`.
        The name "simulator" is reserved for the true system.
      horizons: the H values; each must be <= the system's horizon and every model's `max_horizon`.
      key, n_samples: the same key for every method and horizon (common random numbers).
      zeroth_order: which methods also get the zeroth-order estimator at the same budget: "none", "simulator"
        (default, the reference of Suh et al. 2022) or "all".
      sigma, antithetic: of the zeroth-order estimator; s1 (default: the system's initial state), s1_noise,
        entropy_coef, policy_input_grad, discount, truncate: as `per_sample_gradients` (the simulator's reference
        gradient is taken with the same discount and truncation).
    Returns rows {method, estimator ("first-order" | "zeroth-order"), horizon, **GradientStats.as_dict(),
    **uncertainty.gradient_intervals(...)}: the reference of every row is the mean first-order simulator gradient at
    the same horizon, and each statistic has a 95 % bootstrap interval (`<stat>_ci`, paired with the simulator's
    samples).
    """
    if zeroth_order not in ZEROTH_ORDER:
        raise ValueError(f"zeroth_order must be one of {', '.join(ZEROTH_ORDER)}, got {zeroth_order!r}")
    if "simulator" in models:
        raise ValueError("the method name 'simulator' is reserved for the true system; rename that model")
    horizons = list(horizons)
    if not horizons:
        raise ValueError("horizons must be a non-empty list of positive integers")
    common = dict(entropy_coef=entropy_coef, policy_input_grad=policy_input_grad, s1_noise=s1_noise,
                  discount=discount, truncate=truncate)
    setups = []  # built and checked for every horizon before any gradient is computed
    for horizon in horizons:
        check_positive(horizon, "horizon", integer=True)
        methods = {"simulator": _at_horizon(system, horizon),
                   **{name: _at_horizon(m, horizon) for name, m in models.items()}}
        for name, dynamics in methods.items():
            model = dynamics[0] if isinstance(dynamics, tuple) and len(dynamics) == 2 else None
            if model is not None and horizon > getattr(model, "max_horizon", horizon):
                raise ValueError(f"horizon {horizon} exceeds model {name!r}'s max_horizon {model.max_horizon}; "
                                 f"make the model with a larger max_horizon or sweep shorter horizons")
        setups.append((horizon, methods))
    rows = []
    for horizon, methods in setups:
        start = methods["simulator"].initial_state() if s1 is None else s1
        sim = per_sample_gradients(methods["simulator"], policy, policy_params, start, horizon, key, n_samples,
                                   **common)
        reference = mean_gradient(sim)
        for name, dynamics in methods.items():
            first = sim if name == "simulator" else per_sample_gradients(
                dynamics, policy, policy_params, start, horizon, key, n_samples, **common)
            estimates = [("first-order", first)]
            if zeroth_order == "all" or (zeroth_order == "simulator" and name == "simulator"):
                estimates.append(("zeroth-order", zeroth_order_gradients(
                    dynamics, policy, policy_params, start, horizon, key, n_samples, sigma=sigma,
                    antithetic=antithetic, **common)))
            for estimator, samples in estimates:
                stats = gradient_stats(samples, reference)
                rows.append({"method": name, "estimator": estimator, "horizon": horizon, **stats.as_dict(),
                             **gradient_intervals(samples, sim)})
    return rows
