"""One rollout for true systems and world models alike: what is analysed is exactly what is optimised.

Glossary of shapes: H horizon, O observation dim (physical state + time index), A action dim.

`rollout(dynamics, policy, s1, horizon, key)` unrolls
    a_t     = policy(s_t)  (or the t-th row of an open-loop action array [H, A])
    s_{t+1} = dynamics.transition(carry, s_t, a_t)      r_t = dynamics.reward(s_t, a_t)
with `jax.lax.scan` over `gradlens.dynamics.rollout_step`, and returns a `Trajectory`. `dynamics` is a `System`, a
`(model, params)` pair of a fitted world model, or anything implementing `gradlens.dynamics.Dynamics`; which optional
modes it offers (open loop, a custom reverse pass) is read from its declared `capabilities`.
"""
from __future__ import annotations

from typing import Callable, Union

import jax
import jax.numpy as jnp

from gradlens import validate
from gradlens.dynamics import STEP_ONLY, Dynamics, SystemDynamics, Trajectory, rollout_step
from gradlens.envs.base import System, check_action_bounds, check_finite, check_shape
from gradlens.models.base import WorldModel

Array = jax.Array
Policy = Callable[[Array, Array], Array]  # (obs [O], key) -> action [A]
PolicyInputGrad = Union[str, float]
REVERSE_MODES = ("store", "recompute")  # reverse-mode strategies of `rollout` (see its docstring)


def as_dynamics(dynamics) -> Dynamics:
    """A `System`, a `(model, params)` pair, or a `Dynamics` -> `Dynamics`."""
    if isinstance(dynamics, System):
        return SystemDynamics(dynamics)
    if isinstance(dynamics, Dynamics):
        return dynamics
    if isinstance(dynamics, tuple) and len(dynamics) == 2 and isinstance(dynamics[0], WorldModel):
        model, params = dynamics
        return model.bind(params)
    raise ValueError(
        f"dynamics must be a gradlens System, a (world_model, params) pair or a Dynamics, got {type(dynamics).__name__}"
    )


def policy_input(obs: Array, policy_input_grad: PolicyInputGrad) -> Array:
    """The state the policy sees: gradient stopped ("stop"), kept ("full"), or scaled by λ ∈ [0, 1] (a float)."""
    if policy_input_grad == "stop":
        return jax.lax.stop_gradient(obs)
    if policy_input_grad == "full":
        return obs
    lam = policy_input_grad
    frozen = jax.lax.stop_gradient(obs)
    return frozen + lam * (obs - frozen)


def check_policy_input_grad(value) -> None:
    if value in ("stop", "full"):
        return
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0.0 <= value <= 1.0:
        return
    raise ValueError(f"policy_input_grad must be 'stop', 'full' or a float λ in [0, 1], got {value!r}")


def check_reverse(value) -> None:
    if not (isinstance(value, str) and value in REVERSE_MODES):
        raise ValueError(f"reverse must be one of {', '.join(map(repr, REVERSE_MODES))}, got {value!r}")


def _cut(carry, t: Array, every: int | None):
    """The rollout's carry at step t, its gradient stopped when t is a truncation boundary (t % every == 0, t > 0)."""
    if every is None:
        return carry
    boundary = (t % every == 0) & (t > 0)
    return jax.tree.map(lambda x: jnp.where(boundary, jax.lax.stop_gradient(x), x), carry)


def rollout(
    dynamics,
    policy: Array | Policy,
    s1: Array,
    horizon: int | None = None,
    key: Array | None = None,
    *,
    policy_input_grad: PolicyInputGrad = "stop",
    reverse: str = "store",
    truncate: int | None = None,
) -> Trajectory:
    """Unroll `dynamics` for `horizon` steps from `s1` [O] under `policy`.

    Args:
      dynamics: a `System`, a `(world_model, params)` pair, or a `gradlens.dynamics.Dynamics`.
      policy: open-loop actions [H, A] (rows in [-1, 1]) or a state-feedback callable `policy(obs [O], key) -> [A]`.
      s1: initial observation [O] (time index 0 as its last component).
      horizon: H, 1 <= H <= the dynamics' horizon; defaults to the dynamics' horizon (or the number of action rows).
      key: PRNG key, split into one key per step for the policy and the dynamics; required with process noise.
        Without one, a fixed key is used: fine for deterministic policies, pass your own for stochastic ones.
      policy_input_grad: for callables, whether gradient flows through the policy's state input:
        "stop" (default, as the paper), "full", or a per-step factor λ in [0, 1].
      reverse: how reverse mode (jax.grad / vjp) gets each step's intermediate values; values and gradients are the
        same either way, to rounding.
        "store" (default): autodiff of the scan keeps every step's activations (residuals O(H × activations)); the
          only mode for forward-mode derivatives (jax.jvp / jacfwd) of dynamics with a custom reverse pass.
        "recompute": the backward pass recomputes them: residuals of O(H × carry), for about one more forward step
          per step. It pays when many rollouts are vmapped (seeds × batch) and the stored activations outgrow the
          CPU caches; the trainer's default. Where the dynamics declare `capabilities.custom_reverse` and the scan
          runs (a KV-cached transformer read in closed loop: HWM, or an AWM with policy_input_grad != "stop"), their
          own reverse pass is used (`gradlens.models.kv_reverse`: each step recomputed against the final cache, no
          cache stored per step; reverse mode only); otherwise `jax.checkpoint` of the scanned step.
      truncate: None (default), or k >= 1: truncated backpropagation through time. The gradient of the carried
        state (the observation and the dynamics' memory: hidden state, KV cache) is stopped before every step t with
        t % k == 0, t > 0, so d s_t / d a_j = 0 unless t and j fall in the same block of k steps; values unchanged.
        A truncated rollout always scans `transition` (no one-pass open loop, no custom reverse pass).
      Dynamics declaring `capabilities.open_loop` (AWMs) take open-loop actions in one pass, and with
      policy_input_grad="stop" replay a callable policy's actions through it (below), in either reverse mode.

    Returns a `Trajectory` (states [H+1, O], actions [H, A], rewards [H]); `traj.ret` is the return.
    Pure: jit-, grad- and vmap-compatible (vmap over s1, keys, or policy parameters closed over by `policy`).
    """
    dyn = as_dynamics(dynamics)
    open_loop = not callable(policy)
    horizon = _checked_horizon(dyn, policy, horizon, open_loop)
    check_shape(s1, (dyn.obs_dim,), "s1 (obs_dim = state_dim + 1 time index)")
    check_finite(s1, "s1")
    check_policy_input_grad(policy_input_grad)
    check_reverse(reverse)
    validate.truncation(truncate)
    actions = _checked_actions(dyn, policy, horizon) if open_loop else None
    if key is None:
        if dyn.needs_key:
            raise ValueError("these dynamics have process noise (noise_std > 0): pass key=jax.random.PRNGKey(...)")
        key = jax.random.PRNGKey(0)  # deterministic dynamics ignore it; so must the policy, or pass your own key
    caps = dyn.capabilities if truncate is None else STEP_ONLY  # truncation cuts the scan's carry: no fast path

    if open_loop and caps.open_loop:
        return _one_pass(dyn, s1, actions, key)
    if open_loop:
        step_policy = lambda obs, t, k: actions[t]
    else:
        step_policy = lambda obs, t, k: policy(policy_input(obs, policy_input_grad), k)
    step_keys = jax.random.split(key, horizon)
    replay = policy_input_grad == "stop" and caps.open_loop  # see `_replay`
    if reverse == "recompute" and not replay and caps.custom_reverse:
        return dyn.custom_reverse(step_policy, s1, horizon, step_keys, not open_loop and policy_input_grad != "stop")
    traj = _scan(dyn, step_policy, s1, step_keys, reverse, truncate)
    return _replay(dyn, policy, s1, traj.states, step_keys, key) if replay else traj


def _checked_horizon(dyn: Dynamics, policy, horizon, open_loop: bool) -> int:
    """H: as given, else the number of open-loop action rows, else the dynamics' horizon; ValueError if out of range."""
    if horizon is None:
        horizon = jnp.shape(policy)[0] if open_loop and jnp.ndim(policy) == 2 else dyn.horizon
    if isinstance(horizon, bool) or not isinstance(horizon, int) or not 1 <= horizon <= dyn.horizon:
        raise ValueError(
            f"horizon must be an integer in [1, {dyn.horizon}] (the dynamics' horizon; make the system or model "
            f"with a larger horizon to roll out further), got {horizon!r}"
        )
    return horizon


def _checked_actions(dyn: Dynamics, policy, horizon: int) -> Array:
    """Open-loop actions [H, A], checked for shape, finiteness and bounds."""
    actions = jnp.asarray(policy)
    check_shape(actions, (horizon, dyn.action_dim), "open-loop actions [horizon, action_dim]")
    check_finite(actions, "open-loop actions")
    check_action_bounds(actions, "open-loop actions")
    return actions


def _one_pass(dyn: Dynamics, s1: Array, actions: Array, key: Array) -> Trajectory:
    """Open-loop actions [H, A] through dynamics that predict every state in one pass (`capabilities.open_loop`)."""
    states = dyn.open_loop(s1, actions, key)
    return Trajectory(states, actions, jax.vmap(dyn.reward)(states[:-1], actions))


def _scan(dyn: Dynamics, step_policy, s1: Array, step_keys: Array, reverse: str, truncate: int | None) -> Trajectory:
    """`jax.lax.scan` of `rollout_step` over H = len(step_keys) steps, each recomputed in the backward pass under
    reverse="recompute", the carry's gradient cut every `truncate` steps."""
    horizon = step_keys.shape[0]
    body = lambda carry, inputs: rollout_step(dyn, step_policy, _cut(carry, inputs[0], truncate), inputs)
    init = (dyn.reset(s1, horizon), s1)
    _, (next_states, acts, rewards) = jax.lax.scan(jax.checkpoint(body) if reverse == "recompute" else body, init,
                                                   (jnp.arange(horizon), step_keys))
    return Trajectory(jnp.concatenate([s1[None], next_states]), acts, rewards)


def _replay(dyn: Dynamics, policy: Policy, s1: Array, states: Array, step_keys: Array, key: Array) -> Trajectory:
    """An action-conditioned model never reads its predictions and the policy's input is detached, so every gradient
    path runs action -> later state inside one causal pass: replay the actions chosen along the (gradient-free)
    stepped rollout `states` [H+1, O] through `open_loop`. Same values up to rounding, same gradient, and the backward
    pass is one parallel pass instead of a scan that stores every step's memory."""
    states = jax.lax.stop_gradient(states)
    policy_keys = jax.vmap(lambda k: jax.random.split(k)[0])(step_keys)
    acts = jax.vmap(policy)(states[:-1], policy_keys)
    states = dyn.open_loop(s1, acts, key)
    return Trajectory(states, acts, jax.vmap(dyn.reward)(states[:-1], acts))
