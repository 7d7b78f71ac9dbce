"""Loss landscapes: J along random directions in policy-parameter space and along actions, with roughness numbers.

Glossary of shapes: G, G1, G2 grid sizes, H horizon, A action dim, O observation dim (physical state + time index).

    d = random_direction(params, key)                                # Li et al. 2018 filter normalisation
    J = slice_1d(policy_return_fn(system, policy, s1, H), params, d, alphas)          # [G]
    J = along(objective, params, (d1, d2), coefficients)             # any rows c [N, K]: J(θ + Σ c_k d_k), [N]
    J = action_slice(system, s1, H, a1_values)                       # J(a_1) of the toy tasks, [G]
    roughness(J, a1_values)                                          # total variation, local Lipschitz, ...

Slices are evaluated with `jax.lax.map` in vmapped chunks of `batch_size` grid points (bounded memory). Non-finite
values are kept in the slice (NaN stays NaN) and reported by `roughness` with their grid positions.
"""
from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from gradlens.compilation_cache import jit_once
from gradlens.envs.base import check_positive, float_dtype
from gradlens.rollout import as_dynamics, rollout

Array = jax.Array


@functools.partial(jax.jit, static_argnames=("filter_normalize", "ignore_biases"))
def random_direction(params, key: Array, filter_normalize: bool = True, ignore_biases: bool = True):
    """A Gaussian direction with the structure of `params` (Li et al. 2018, "Visualizing the loss landscape").

    With `filter_normalize`, every filter of a weight leaf is rescaled to the norm of the same filter of the weights:
    d[..., j] ← d[..., j] / ‖d[..., j]‖ · ‖w[..., j]‖, a filter being one output unit (the LAST axis: Haiku's Linear
    weights are [in, out], convolutions [..., in, out]); for an open-loop policy [H, A] a filter is one action
    component over time. Leaves with ndim <= 1 (biases) get a zero direction when `ignore_biases` (Li et al.'s
    default), otherwise are rescaled as one filter. A filter whose weights are all zero gets a zero direction (for
    zero-initialised parameters use `filter_normalize=False`). Without it, the raw N(0, I) direction is returned.
    """
    leaves, treedef = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(key, max(len(leaves), 1))
    out = []
    for leaf, k in zip(leaves, keys):
        w = jnp.asarray(leaf)
        d = jax.random.normal(k, w.shape, w.dtype)
        if filter_normalize:
            if w.ndim <= 1 and ignore_biases:
                d = jnp.zeros_like(w)
            else:
                axes = tuple(range(w.ndim - 1)) if w.ndim > 1 else None
                d = d / jnp.linalg.norm(d, axis=axes, keepdims=True) * jnp.linalg.norm(w, axis=axes, keepdims=True)
        out.append(d)
    return jax.tree_util.tree_unflatten(treedef, out)


def policy_return_fn(dynamics, policy, s1: Array, horizon: int, key: Array | None = None,
                     deterministic: bool = True) -> Callable:
    """params -> return Σ_t r_t of one rollout of `policy.bind(params, deterministic)` in `dynamics` (System or
    (model, params) pair) from s1 [O]. A stochastic policy or noisy system reuses the same `key` at every params
    (common random numbers), so the landscape is that of one fixed noise draw."""
    return lambda params: rollout(dynamics, policy.bind(params, deterministic), s1, horizon, key).ret


def _grid(values, what: str) -> Array:
    values = jnp.asarray(values)
    if values.ndim != 1 or values.shape[0] < 1:
        raise ValueError(f"{what} must be a non-empty 1-D array of grid values, got shape {values.shape}")
    return values if jnp.issubdtype(values.dtype, jnp.floating) else values.astype(float_dtype())


def _evaluate(fn: Callable, points: Array, batch_size: int) -> Array:
    """fn over the rows of points [G, k], in vmapped chunks of batch_size."""
    check_positive(batch_size, "batch_size", integer=True)
    return jit_once(lambda p: jax.lax.map(fn, p, batch_size=batch_size))(points)


def _shift(params, directions, coefficients):
    return jax.tree.map(lambda w, *ds: w + sum(c * d for c, d in zip(coefficients, ds)), params, *directions)


def _check_direction(params, direction, what: str) -> None:
    if jax.tree.structure(params) != jax.tree.structure(direction) or any(
            jnp.shape(a) != jnp.shape(b) for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(direction))):
        raise ValueError(f"{what} must have the structure and leaf shapes of params")


def along(objective_fn: Callable, params, directions, coefficients, batch_size: int = 256) -> Array:
    """J(params + Σ_k c_ik d_k) for each row c_i of coefficients [N, K] -> [N]; `directions` a sequence of K
    directions shaped like params. One compiled program for every row, so 1-D and 2-D slices along the same
    directions can share it (stack their rows)."""
    coefficients = jnp.asarray(coefficients)
    if coefficients.ndim != 2 or coefficients.shape[1] != len(directions) or coefficients.shape[0] < 1:
        raise ValueError(f"coefficients must be [N >= 1, {len(directions)}] (one column per direction), got shape "
                         f"{coefficients.shape}")
    for k, d in enumerate(directions):
        _check_direction(params, d, f"direction {k}")
    return _evaluate(lambda c: objective_fn(_shift(params, directions, tuple(c))), coefficients, batch_size)


def plane_grid(alphas, betas) -> Array:
    """The rows (α_i, β_j) of a 2-D slice's grid, [G1·G2, 2] (α the slower index)."""
    return jnp.stack(jnp.meshgrid(alphas, betas, indexing="ij"), axis=-1).reshape(-1, 2)


def slice_1d(objective_fn: Callable, params, direction, alphas, batch_size: int = 256) -> Array:
    """J(params + α d) for α in alphas [G] -> [G]; objective_fn(params) -> scalar must be pure JAX."""
    alphas = _grid(alphas, "alphas")
    return along(objective_fn, params, (direction,), alphas[:, None], batch_size)


def slice_2d(objective_fn: Callable, params, d1, d2, alphas, betas, batch_size: int = 256) -> Array:
    """J(params + α_i d1 + β_j d2) -> [G1, G2] (rows α, columns β); objective_fn(params) -> scalar."""
    alphas, betas = _grid(alphas, "alphas"), _grid(betas, "betas")
    values = along(objective_fn, params, (d1, d2), plane_grid(alphas, betas), batch_size)
    return values.reshape(alphas.shape[0], betas.shape[0])


def _action_setup(dynamics, horizon, other_actions, coordinates):
    dyn = as_dynamics(dynamics)
    check_positive(horizon, "horizon", integer=True)
    base = jnp.zeros((horizon, dyn.action_dim)) if other_actions is None else jnp.asarray(other_actions)
    if base.shape != (horizon, dyn.action_dim):
        raise ValueError(f"other_actions must have shape (horizon, action_dim) = {(horizon, dyn.action_dim)}, "
                         f"got {base.shape}")
    for t, i in coordinates:
        if not (0 <= t < horizon and 0 <= i < dyn.action_dim):
            raise ValueError(f"action coordinate (step, component) = {(t, i)} is outside [0, {horizon}) x "
                             f"[0, {dyn.action_dim})")
    if len(set(coordinates)) != len(coordinates):
        raise ValueError(f"the two action coordinates must differ, got {coordinates}")
    return base


def action_slice(dynamics, s1: Array, horizon: int, values, *, other_actions=None, coordinate=(0, 0),
                 key: Array | None = None, batch_size: int = 256) -> Array:
    """Open-loop return J as one action entry varies: [G] for values [G].

    The actions are `other_actions` [H, A] (default zeros) with entry `coordinate` = (step, component) (default
    (0, 0): a_1 of the toy tasks, whose landscape J(a_1) the paper plots) set to each value. `dynamics`: a System
    or a (model, params) pair; `key` is needed for noisy systems (the same key at every grid point).
    """
    values = _grid(values, "values")
    base = _action_setup(dynamics, horizon, other_actions, (tuple(coordinate),))
    base = base.astype(values.dtype)

    def ret(v):
        return rollout(dynamics, base.at[tuple(coordinate)].set(v[0]), s1, horizon, key).ret

    return _evaluate(ret, values[:, None], batch_size)


def action_slice_2d(dynamics, s1: Array, horizon: int, values1, values2, *, other_actions=None, coordinates=None,
                    key: Array | None = None, batch_size: int = 256) -> Array:
    """J as two action entries vary: [G1, G2] for values1 [G1] (rows) and values2 [G2] (columns).

    `coordinates` = ((step, component), (step, component)); default: the two components of a_1 for A >= 2, else
    a_1 and a_2. Other arguments as `action_slice`.
    """
    values1, values2 = _grid(values1, "values1"), _grid(values2, "values2")
    if coordinates is None:
        coordinates = ((0, 0), (0, 1)) if as_dynamics(dynamics).action_dim >= 2 else ((0, 0), (1, 0))
    (c1, c2) = coordinates = (tuple(coordinates[0]), tuple(coordinates[1]))
    base = _action_setup(dynamics, horizon, other_actions, coordinates).astype(values1.dtype)

    def ret(v):
        return rollout(dynamics, base.at[c1].set(v[0]).at[c2].set(v[1]), s1, horizon, key).ret

    return _evaluate(ret, plane_grid(values1, values2), batch_size).reshape(values1.shape[0], values2.shape[0])


def roughness(values, grid) -> dict:
    """Roughness numbers of a 1-D slice (values [G], grid [G]) or a 2-D one (values [G1, G2], grid = (g1, g2)).

    Over every pair of grid neighbours (along both axes in 2-D) whose two values are finite, with ΔJ and Δx the
    differences across the pair:
      total_variation: Σ |ΔJ| (2-D: the anisotropic TV, summed over both axes);
      lipschitz: max |ΔJ| / Δx, a local Lipschitz estimate (a jump shows as ~ jump / grid step);
      lipschitz_at: the grid position of that steepest pair (its midpoint; a tuple in 2-D);
      mean_slope: mean |ΔJ| / Δx: TV per unit length (on a uniform 1-D grid TV / (x_max - x_min));
      normalized_tv: TV / (L · (max J - min J)), L the number of grid lines (1 in 1-D, G1 + G2 in 2-D):
        scale-free, 1 for a monotone 1-D slice, 2 for a single bump, large for an oscillating one (0 if flat);
      n_nonfinite, nonfinite_at: the non-finite values and their grid positions (kept, never dropped).
    Every float is NaN when no neighbouring pair is finite. Grids must be strictly increasing.
    """
    values = np.asarray(values, np.float64)
    axes = (grid,) if values.ndim == 1 else tuple(grid) if values.ndim == 2 else None
    if axes is None or len(axes) != values.ndim:
        raise ValueError(f"values must be a 1-D slice with grid [G] or a 2-D slice with grid (g1, g2), got values "
                         f"of shape {values.shape}")
    axes = tuple(np.asarray(a, np.float64) for a in axes)
    for axis, (a, size) in enumerate(zip(axes, values.shape)):
        if a.shape != (size,) or size < 2 or not np.all(np.diff(a) > 0):
            raise ValueError(f"grid axis {axis} must be {size} >= 2 strictly increasing values (the slice's size "
                             f"along that axis), got shape {a.shape}")
    position = (lambda idx: float(axes[0][idx[0]])) if values.ndim == 1 else (
        lambda idx: tuple(float(a[i]) for a, i in zip(axes, idx)))
    bad = np.argwhere(~np.isfinite(values))
    tv, slopes, steepest, steepest_at = 0.0, [], -np.inf, None
    for axis, a in enumerate(axes):
        dv = np.diff(values, axis=axis)  # finite iff both neighbours are
        dx = np.diff(a).reshape([-1 if i == axis else 1 for i in range(values.ndim)])
        ok = np.isfinite(dv)
        slope = np.where(ok, np.abs(np.where(ok, dv, 0.0)) / dx, -np.inf)
        tv += float(np.sum(np.abs(dv[ok])))
        slopes.append(slope[ok])
        idx = np.unravel_index(np.argmax(slope), slope.shape)
        if ok.any() and slope[idx] > steepest:
            mid = [float(g[i]) for g, i in zip(axes, idx)]
            mid[axis] = 0.5 * float(a[idx[axis]] + a[idx[axis] + 1])
            steepest, steepest_at = float(slope[idx]), mid[0] if values.ndim == 1 else tuple(mid)
    slopes = np.concatenate(slopes)
    nan = float("nan")
    result = {"total_variation": nan, "lipschitz": nan, "lipschitz_at": None, "mean_slope": nan,
              "normalized_tv": nan, "n_nonfinite": int(len(bad)), "nonfinite_at": [position(i) for i in bad]}
    if slopes.size:
        finite = values[np.isfinite(values)]
        span = float(finite.max() - finite.min())
        lines = 1 if values.ndim == 1 else sum(values.shape)
        result.update(total_variation=tv, lipschitz=steepest, lipschitz_at=steepest_at,
                      mean_slope=float(np.mean(slopes)), normalized_tv=tv / (lines * span) if span > 0 else 0.0)
    return result
