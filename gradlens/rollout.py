"""One rollout for true systems and world models alike: what is analysed is exactly what is optimised.

Glossary of shapes: H horizon, O observation dim (physical state + time index), A action dim.

`rollout(dynamics, policy, s1, horizon, key)` unrolls
    a_t     = policy(s_t)  (or the t-th row of an open-loop action array [H, A])
    s_{t+1} = dynamics.transition(carry, s_t, a_t)      r_t = dynamics.reward(s_t, a_t)
with `jax.lax.scan`, and returns a `Trajectory`. `dynamics` is a `System`, a `(model, params)` pair of a fitted
world model, or anything implementing the `Dynamics` protocol below.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Protocol, Union, runtime_checkable

import jax
import jax.numpy as jnp

from gradlens.envs.base import System, check_action_bounds, check_finite, check_shape

Array = jax.Array
Policy = Callable[[Array, Array], Array]  # (obs [O], key) -> action [A]
PolicyInputGrad = Union[str, float]


class Trajectory(NamedTuple):
    """An unrolled episode: states [H+1, O] (states[0] = s_1), actions [H, A], rewards [H]."""

    states: Array
    actions: Array
    rewards: Array

    @property
    def ret(self) -> Array:
        """Undiscounted return Σ_t r_t (scalar, or [B] for a batch of trajectories)."""
        return jnp.sum(self.rewards, axis=-1)


@runtime_checkable
class Dynamics(Protocol):
    """What `rollout` needs from a transition model (a `System` adapter or a bound world model).

    reset(s1, horizon) -> carry          model memory before the first step (e.g. KV cache), a pytree
    transition(carry, obs, action, key) -> (carry, next_obs)
    reward(obs, action) -> scalar        the true reward, applied to (predicted) states
    Optional: open_loop(s1, actions, key) -> states [H+1, O], a faster equivalent of an open-loop scan.
    """

    obs_dim: int
    action_dim: int
    horizon: int

    def reset(self, s1: Array, horizon: int) -> Any: ...

    def transition(self, carry: Any, obs: Array, action: Array, key: Array) -> tuple[Any, Array]: ...

    def reward(self, obs: Array, action: Array) -> Array: ...


class SystemDynamics(NamedTuple):
    """`Dynamics` view of a true `System`: no memory, the system's own step and reward."""

    system: System

    @property
    def obs_dim(self) -> int:
        return self.system.obs_dim

    @property
    def action_dim(self) -> int:
        return self.system.action_dim

    @property
    def horizon(self) -> int:
        return self.system.horizon

    @property
    def needs_key(self) -> bool:
        return self.system.noise_std > 0

    def reset(self, s1, horizon):
        return ()

    def transition(self, carry, obs, action, key):
        return carry, self.system.step(obs, action, key)

    def reward(self, obs, action):
        return self.system.reward(obs, action)


def as_dynamics(dynamics) -> Dynamics:
    """A `System`, a `(model, params)` pair, or a `Dynamics` -> `Dynamics`."""
    if isinstance(dynamics, System):
        return SystemDynamics(dynamics)
    if isinstance(dynamics, Dynamics):
        return dynamics
    if isinstance(dynamics, tuple) and len(dynamics) == 2 and hasattr(dynamics[0], "bind"):
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


def rollout_step(dyn: Dynamics, step_policy: Callable, carry, inputs):
    """One step of `rollout`'s scan: carry (dynamics carry, obs [O]), inputs (t, key), step_policy(obs, t, key) -> [A];
    returns (carry, (next obs [O], action [A], reward))."""
    model_carry, obs = carry
    t, k = inputs
    k_policy, k_dyn = jax.random.split(k)
    action = step_policy(obs, t, k_policy)
    reward = dyn.reward(obs, action)
    model_carry, next_obs = dyn.transition(model_carry, obs, action, k_dyn)
    return (model_carry, next_obs), (next_obs, action, reward)


def rollout(
    dynamics,
    policy: Array | Policy,
    s1: Array,
    horizon: int | None = None,
    key: Array | None = None,
    *,
    policy_input_grad: PolicyInputGrad = "stop",
    remat: bool = False,
) -> Trajectory:
    """Unroll `dynamics` for `horizon` steps from `s1` [O] under `policy`.

    Args:
      dynamics: a `System`, a `(world_model, params)` pair, or a `Dynamics`.
      policy: open-loop actions [H, A] (rows in [-1, 1]) or a state-feedback callable `policy(obs [O], key) -> [A]`.
      s1: initial observation [O] (time index 0 as its last component).
      horizon: H, 1 <= H <= the dynamics' horizon; defaults to the dynamics' horizon (or the number of action rows).
      key: PRNG key, split into one key per step for the policy and the dynamics; required with process noise.
        Without one, a fixed key is used: fine for deterministic policies, pass your own for stochastic ones.
      policy_input_grad: for callables, whether gradient flows through the policy's state input:
        "stop" (default, as the paper), "full", or a per-step factor λ in [0, 1].
      remat: recompute each step's activations in reverse mode (`jax.checkpoint` on the step) instead of storing
        them: residuals of O(H × carry) instead of O(H × activations), for one more forward step per step of the
        backward pass. Same values and gradients; it pays when many rollouts are vmapped (seeds × batch) and the
        stored activations outgrow the CPU caches. A KV-cached transformer world model read in closed loop
        (HWM, or an AWM with policy_input_grad != "stop") instead recomputes each step against the final cache in a
        blocked reverse pass (`gradlens.models.kv_reverse`), which stores no cache per step; that path is reverse
        mode only (jax.grad / vjp; forward-mode derivatives need remat=False).

    Returns a `Trajectory` (states [H+1, O], actions [H, A], rewards [H]); `traj.ret` is the return.
    Pure: jit-, grad- and vmap-compatible (vmap over s1, keys, or policy parameters closed over by `policy`).
    """
    dyn = as_dynamics(dynamics)
    open_loop = not callable(policy)
    if horizon is None:
        horizon = jnp.shape(policy)[0] if open_loop and jnp.ndim(policy) == 2 else dyn.horizon
    if isinstance(horizon, bool) or not isinstance(horizon, int) or not 1 <= horizon <= dyn.horizon:
        raise ValueError(
            f"horizon must be an integer in [1, {dyn.horizon}] (the dynamics' horizon; make the system or model "
            f"with a larger horizon to roll out further), got {horizon!r}"
        )
    check_shape(s1, (dyn.obs_dim,), "s1 (obs_dim = state_dim + 1 time index)")
    check_finite(s1, "s1")
    check_policy_input_grad(policy_input_grad)
    if not isinstance(remat, bool):
        raise ValueError(f"remat must be True or False, got {remat!r}")
    if open_loop:
        actions = jnp.asarray(policy)
        check_shape(actions, (horizon, dyn.action_dim), "open-loop actions [horizon, action_dim]")
        check_finite(actions, "open-loop actions")
        check_action_bounds(actions, "open-loop actions")
    if key is None:
        if getattr(dyn, "needs_key", False):
            raise ValueError("these dynamics have process noise (noise_std > 0): pass key=jax.random.PRNGKey(...)")
        key = jax.random.PRNGKey(0)  # deterministic dynamics ignore it; so must the policy, or pass your own key
    step_keys = jax.random.split(key, horizon)

    if open_loop and hasattr(dyn, "open_loop"):
        states = dyn.open_loop(s1, actions, key)
        rewards = jax.vmap(dyn.reward)(states[:-1], actions)
        return Trajectory(states, actions, rewards)

    if open_loop:
        step_policy = lambda obs, t, k: actions[t]
    else:
        step_policy = lambda obs, t, k: policy(policy_input(obs, policy_input_grad), k)
    replay = policy_input_grad == "stop" and hasattr(dyn, "open_loop")  # see below
    if remat and not replay and getattr(dyn, "has_kv_reverse", False):
        return dyn.kv_reverse(step_policy, s1, horizon, step_keys, not open_loop and policy_input_grad != "stop")

    body = lambda carry, inputs: rollout_step(dyn, step_policy, carry, inputs)
    init = (dyn.reset(s1, horizon), s1)
    _, (next_states, acts, rewards) = jax.lax.scan(jax.checkpoint(body) if remat else body, init,
                                                   (jnp.arange(horizon), step_keys))
    states = jnp.concatenate([s1[None], next_states])
    if replay:
        # An action-conditioned model never reads its predictions and the policy's input is detached, so every
        # gradient path runs action -> later state inside one causal pass: replay the actions chosen along the
        # (gradient-free) stepped rollout through `open_loop`. Same values up to rounding, same gradient, and the
        # backward pass is one parallel pass instead of a scan that stores every step's memory.
        states = jax.lax.stop_gradient(states)
        policy_keys = jax.vmap(lambda k: jax.random.split(k)[0])(step_keys)
        acts = jax.vmap(policy)(states[:-1], policy_keys)
        states = dyn.open_loop(s1, acts, key)
        rewards = jax.vmap(dyn.reward)(states[:-1], acts)
    return Trajectory(states, acts, rewards)
