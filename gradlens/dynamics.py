"""The dynamics contract: what `gradlens.rollout` unrolls, and what each dynamics object declares it offers.

Glossary of shapes: H horizon, O observation dim (physical state + time index), A action dim.

Every dynamics object (the simulator's `SystemDynamics`, a world model's `model.bind(params)`, a user's own) offers
one step, and declares in `capabilities` which optional modes it also implements:

    reset(s1 [O], horizon) -> carry                        memory before the first step (e.g. KV cache), a pytree
    transition(carry, obs [O], action [A], key) -> (carry, next obs [O])
    reward(obs [O], action [A]) -> scalar                   the true reward, applied to (predicted) states
    capabilities.open_loop:  open_loop(s1 [O], actions [H, A], key) -> states [H+1, O], one pass equal to a scan
                             of `transition` that never reads the states it is fed (an AWM)
    capabilities.custom_reverse:  custom_reverse(step_policy, s1, horizon, step_keys [H, ...], policy_reads_state)
                             -> Trajectory: the values of a scan of `rollout_step`, with the dynamics' own reverse
                             pass that stores less than autodiff (the KV-cached transformer's,
                             `gradlens.models.kv_reverse`)

`rollout_step` is the body of the rollout's scan; `Trajectory` its result. Imports only `gradlens.envs`.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple, Protocol, runtime_checkable

import jax
import jax.numpy as jnp

from gradlens.envs.base import System

Array = jax.Array
StepPolicy = Callable[[Array, Array, Array], Array]  # (obs [O], t int, key) -> action [A]


class Trajectory(NamedTuple):
    """An unrolled episode: states [H+1, O] (states[0] = s_1), actions [H, A], rewards [H]."""

    states: Array
    actions: Array
    rewards: Array

    @property
    def ret(self) -> Array:
        """Undiscounted return Σ_t r_t (scalar, or [B] for a batch of trajectories)."""
        return jnp.sum(self.rewards, axis=-1)


@dataclasses.dataclass(frozen=True)
class Capabilities:
    """What a dynamics object offers besides one step (module docstring): `open_loop`, `custom_reverse`."""

    open_loop: bool = False
    custom_reverse: bool = False


STEP_ONLY = Capabilities()


@runtime_checkable
class Dynamics(Protocol):
    """What `rollout` needs from a transition model (module docstring); needs_key: process noise, a key is required."""

    obs_dim: int
    action_dim: int
    horizon: int
    needs_key: bool
    capabilities: Capabilities

    def reset(self, s1: Array, horizon: int) -> Any: ...

    def transition(self, carry: Any, obs: Array, action: Array, key: Array) -> tuple[Any, Array]: ...

    def reward(self, obs: Array, action: Array) -> Array: ...


class SystemDynamics(NamedTuple):
    """`Dynamics` of a true `System`: no memory, the system's own step and reward, one step only."""

    system: System

    capabilities = STEP_ONLY

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


def rollout_step(dyn: Dynamics, step_policy: StepPolicy, carry, inputs):
    """One step of the rollout's scan: carry (dynamics carry, obs [O]), inputs (t, key), step_policy(obs, t, key)
    -> [A]; returns (carry, (next obs [O], action [A], reward))."""
    model_carry, obs = carry
    t, k = inputs
    k_policy, k_dyn = jax.random.split(k)
    action = step_policy(obs, t, k_policy)
    reward = dyn.reward(obs, action)
    model_carry, next_obs = dyn.transition(model_carry, obs, action, k_dyn)
    return (model_carry, next_obs), (next_obs, action, reward)
