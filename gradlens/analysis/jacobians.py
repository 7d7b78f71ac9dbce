"""Jacobian chains d ŝ_t / d a_k of a rollout, their norms, their growth with the lag t - k, and step Jacobians.

Glossary of shapes: H horizon (number of actions), D physical state dim, O = D + 1 observation dim (physical state +
time index), A action dim, L number of distinct lags. Indices are 0-based: states[0] = s_1, actions[k] = a_{k+1}, and
states[t] depends on actions[:t] only (causality).

Definition. d ŝ_t / d a_k is the derivative of the rollout's physical states w.r.t. an additive perturbation δ_k of
action k, at δ = 0:
    open loop  (actions [H, A]):   a_t = actions[t] + δ_t          -> exactly ∂ states / ∂ actions
    closed loop (policy callable): a_t = policy(ŝ_t, key_t) + δ_t  -> also the feedback through later actions
                                   a_j = policy(ŝ_j), j > k, as `policy_input_grad` lets it through
                                   ("stop": none, the paper's estimator; "full": all; a float λ: scaled per step).
Everything goes through `gradlens.rollout`, so what is analysed is exactly what is optimised, for any dynamics it
accepts (a `System`, a `(model, params)` pair, a user model, any `Dynamics`).

    chain = jacobian_chain(system, policy, s1)      # chain.jac [H+1, D, H, A], chain.trajectory at δ = 0
    norms(chain)                                    # [H+1, H] per-(t, k) Frobenius norms
    growth_rate(chain)                              # slope of log-norm vs lag: > 0 explodes, < 0 vanishes
    step_jacobian_norms(system, policy, s1)         # [H] spectral norms of d ŝ_{t+1} / d ŝ_t (None for an AWM)
"""
from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradlens.compilation_cache import jit_once
from gradlens.dynamics import STEP_ONLY
from gradlens.envs.base import check_finite, check_shape, physical, time_index, with_time
from gradlens.rollout import Trajectory, as_dynamics, rollout

Array = jax.Array
MODES = ("auto", "fwd", "rev")
ORDS = ("fro", 2)


class JacobianChain(NamedTuple):
    """All action-to-state Jacobians of one rollout (a pytree: jit- and vmap-friendly).

    jac:        [H+1, D, H, A]   jac[t, :, k, :] = d ŝ_t / d a_k (physical components; zero for k >= t)
    trajectory: the rollout at δ = 0 (states [H+1, O], actions [H, A], rewards [H])
    A vmapped chain has leading batch axes [B, ...]; `norms`, `lag_profile` and `growth_rate` accept it and pool
    the pairs (t, k) of all episodes.
    """

    jac: Array
    trajectory: Trajectory

    @property
    def horizon(self) -> int:
        return self.jac.shape[-2]

    def as_numpy(self) -> "JacobianChain":
        """The same chain with NumPy arrays (for tables, plots and the run store)."""
        return jax.tree_util.tree_map(np.asarray, self)


class LagProfile(NamedTuple):
    """Mean log-norm per lag d = t - k over the pairs with a finite non-zero norm.

    lags [L] (int, ascending), mean_log_norm [L], pairs [L] (number of (t, k) pairs averaged at each lag).
    """

    lags: np.ndarray
    mean_log_norm: np.ndarray
    pairs: np.ndarray


def jacobian_chain(dynamics, policy, s1: Array, horizon: int | None = None, key: Array | None = None, *,
                   policy_input_grad="stop", mode: str = "auto") -> JacobianChain:
    """d ŝ_t / d a_k for every t in 0 … H and k in 0 … H-1 of the rollout of `dynamics` from s1 [O] (see module doc).

    Args are those of `gradlens.rollout` (policy: actions [H, A] or `policy(obs, key) -> [A]`), plus
      mode: "fwd" (jax.jacfwd, H·A tangents), "rev" (jax.jacrev, H·D cotangents) or "auto": "fwd" iff H·A <= H·D.
    The step index used to pick δ_t is read from the observation's time channel (exact in systems and world models);
    a user `Dynamics` must advance it by exactly 1 per step. Compiled on every call (one trace of the rollout);
    pure, so it also runs inside the caller's jit or vmap (with `dynamics`, `policy`, `horizon`, `policy_input_grad`
    and `mode` closed over).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(map(repr, MODES))}, got {mode!r}")
    dyn = as_dynamics(dynamics)
    horizon = _resolve_horizon(dyn, policy, horizon)
    check_shape(s1, (dyn.obs_dim,), "s1 (obs_dim = state_dim + 1 time index)")
    if callable(policy):
        delta = jnp.zeros((horizon, dyn.action_dim), jnp.result_type(s1))  # [H, A]
        t0 = time_index(s1)

        def perturbed(delta):
            def act(obs, key):
                step = jnp.clip(jnp.round(time_index(obs) - t0).astype(jnp.int32), 0, horizon - 1)
                return policy(obs, key) + delta[step]
            return act
    else:
        actions = jnp.asarray(policy)
        check_shape(actions, (horizon, dyn.action_dim), "open-loop actions [horizon, action_dim]")
        check_finite(actions, "open-loop actions")
        delta = jnp.zeros_like(actions)  # [H, A]
        perturbed = lambda delta: actions + delta

    def states(delta):
        traj = rollout(dyn, perturbed(delta), s1, horizon, key, policy_input_grad=policy_input_grad)
        return physical(traj.states), traj  # [H+1, D]

    if mode == "auto":
        mode = "fwd" if dyn.action_dim <= dyn.obs_dim - 1 else "rev"
    jac, traj = jit_once((jax.jacfwd if mode == "fwd" else jax.jacrev)(states, has_aux=True))(delta)
    return JacobianChain(jac, traj)


def norms(chain: JacobianChain, ord="fro") -> Array:
    """[..., H+1, H] norms of the blocks d ŝ_t / d a_k [D, A]: ord "fro" (Frobenius) or 2 (spectral)."""
    if ord not in ORDS:
        raise ValueError(f"ord must be 'fro' or 2, got {ord!r}")
    blocks = jnp.moveaxis(chain.jac, -2, -3)  # [..., H+1, H, D, A]
    if ord == "fro":
        return jnp.sqrt(jnp.sum(blocks**2, axis=(-2, -1)))
    return jnp.linalg.norm(blocks, ord=2, axis=(-2, -1))


def _log_norm_pairs(chain: JacobianChain, ord) -> tuple[np.ndarray, np.ndarray]:
    """(lags, log norms) over the pairs (t, k) with d = t - k >= 1 and a finite non-zero norm."""
    n = np.asarray(norms(chain, ord), dtype=np.float64)  # [..., H+1, H]
    t, k = np.indices(n.shape[-2:])
    lag = np.broadcast_to(t - k, n.shape)
    keep = (lag >= 1) & np.isfinite(n) & (n > 0)
    return lag[keep], np.log(n[keep])


def lag_profile(chain: JacobianChain, ord="fro") -> LagProfile:
    """Mean of log ‖d ŝ_t / d a_k‖ at each lag d = t - k >= 1 (pairs with zero or non-finite norm left out)."""
    lags, logs = _log_norm_pairs(chain, ord)
    unique, inverse, counts = np.unique(lags, return_inverse=True, return_counts=True)
    return LagProfile(unique, np.bincount(inverse, weights=logs) / counts, counts)


def growth_rate(chain: JacobianChain, ord="fro") -> float:
    """Least-squares slope of log ‖d ŝ_t / d a_k‖ against the lag d = t - k (per step, natural log).

    Fitted over all pairs with d >= 1 and a finite, non-zero norm (pairs an action cannot reach, such as the double
    pendulum's ignored later actions, are left out). exp(slope) is the mean per-step gain: > 0 means gradients
    explode with the lag (chaos, η > 1), < 0 that they vanish; for s' = A s + B a it tends to log ρ(A).
    ValueError if fewer than two distinct lags remain (H = 1, or no action reaches the states).
    """
    lags, logs = _log_norm_pairs(chain, ord)
    if np.unique(lags).size < 2:
        raise ValueError(f"growth_rate needs non-zero Jacobians at two or more lags t - k; got lags "
                         f"{sorted(set(lags.tolist()))} (horizon {chain.horizon})")
    return float(np.polyfit(lags, logs, 1)[0])


@dataclasses.dataclass(frozen=True, eq=False)
class _Probed:
    """`inner` Dynamics with the physical part of every fed state shifted by ε [D], fed state and memory held fixed.

    Rolled out with the policy input stopped (so the actions do not see ε either), each prediction ŝ_{t+1} depends
    on ε only through its own input ŝ_t + ε: d ŝ_{t+1} / d ε is the step Jacobian d ŝ_{t+1} / d ŝ_t at fixed memory
    (history, KV cache, noise) and action. All H step Jacobians thus come from D tangents of one rollout.
    """

    inner: Any
    eps: Array  # [D]

    obs_dim = property(lambda self: self.inner.obs_dim)
    action_dim = property(lambda self: self.inner.action_dim)
    horizon = property(lambda self: self.inner.horizon)
    needs_key = property(lambda self: self.inner.needs_key)
    capabilities = STEP_ONLY  # one step: the probe must see every fed state

    def reset(self, s1, horizon):
        return self.inner.reset(s1, horizon)

    def transition(self, carry, obs, action, key):
        carry, obs = jax.lax.stop_gradient((carry, obs))
        shift = with_time(self.eps, jnp.zeros((), self.eps.dtype))  # ε on x, 0 on t
        return self.inner.transition(carry, obs + shift, action, key)

    def reward(self, obs, action):
        return self.inner.reward(obs, action)


def has_state_edge(dynamics) -> bool:
    """True if predictions read the fed state (systems, Markov, HWMs; a `Dynamics` unless it says otherwise via a
    `reads_states` attribute of itself or of its `model`); False for AWMs, which read s_1 and actions only."""
    dyn = as_dynamics(dynamics)
    return bool(getattr(getattr(dyn, "model", dyn), "reads_states", True))


def step_jacobians(dynamics, policy, s1: Array, horizon: int | None = None,
                   key: Array | None = None) -> Array | None:
    """[H, D, D]: row t = d ŝ_{t+1} / d ŝ_t along the rollout, or None for dynamics without that edge (AWMs).

    For a system: the Jacobian of `system.step` w.r.t. the physical state (at the step's noise). For a Markov model:
    that of its one-step transition. For an HWM: the derivative of the next prediction w.r.t. the latest fed state,
    holding its memory (earlier states, KV cache) fixed, the one hop of the HWM chain. An AWM never reads the states
    it predicts: no such edge. The actions are those of the rollout, held fixed (so `policy_input_grad` plays no
    role). Computed by jax.jacfwd through `gradlens.rollout` (D tangents).
    """
    if not has_state_edge(dynamics):
        return None
    dyn = as_dynamics(dynamics)
    horizon = _resolve_horizon(dyn, policy, horizon)
    check_shape(s1, (dyn.obs_dim,), "s1 (obs_dim = state_dim + 1 time index)")

    def next_states(eps):
        traj = rollout(_Probed(dyn, eps), policy, s1, horizon, key, policy_input_grad="stop")
        return physical(traj.states[1:])  # [H, D]

    return jit_once(jax.jacfwd(next_states))(jnp.zeros((dyn.obs_dim - 1,), jnp.result_type(s1)))


def step_jacobian_norms(dynamics, policy, s1: Array, horizon: int | None = None,
                        key: Array | None = None) -> Array | None:
    """[H] spectral norms ‖d ŝ_{t+1} / d ŝ_t‖_2 (the per-hop η of PAPER.md §3.2), or None for an AWM."""
    jac = step_jacobians(dynamics, policy, s1, horizon, key)
    return None if jac is None else jnp.linalg.norm(jac, ord=2, axis=(-2, -1))


def _resolve_horizon(dyn, policy, horizon) -> int:
    """H as `rollout` resolves it (the action rows for an open-loop array, else the dynamics' horizon), validated."""
    if horizon is None:
        horizon = jnp.shape(policy)[0] if not callable(policy) and jnp.ndim(policy) == 2 else dyn.horizon
    if isinstance(horizon, bool) or not isinstance(horizon, int) or not 1 <= horizon <= dyn.horizon:
        raise ValueError(f"horizon must be an integer in [1, {dyn.horizon}] (the dynamics' horizon), got {horizon!r}")
    return horizon
