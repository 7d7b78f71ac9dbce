"""Offline data for world models: a validated batch of episodes, collection from a true system, splits, statistics.

Glossary of shapes: N episodes, H horizon (actions per episode), O observation dim (D physical state + time index),
D physical state dim, A action dim.

`collect(system, scheme, n_episodes, key)` rolls a true `System` out under an exploration scheme, vmapped over
episodes and jitted, one PRNG key per episode (deterministic given `key`). Schemes (actions always in [-1, 1]):
  "uniform"      `Uniform()`: i.i.d. a_t ~ U[-1, 1].
  "random_walk"  `RandomWalk(step_std=0.1)`: Myriad's default sampler (MYRIAD.md): a_1 ~ U[-1, 1], then
                 a_{t+1} = clip(a_t + N(0, step_std²), -1, 1); 0.1 = 0.05 × the action range 2.
  "toy"          `Toy(smearing=(0.0, 0.5))`: the paper's offline toy data set (PAPER.md §5.1, offline_arm
                 `get_dataset`), as we read it: base actions a_1 ~ U[-1, 1], a_{t>1} = 0; each episode draws a
                 smearing level σ uniformly from `smearing` and adds σ·ε to EVERY row of its action sequence, where
                 ε is a standard normal truncated so that the result stays inside [-1, 1] (a_t + σ ε ∈ [-1, 1], no
                 mass piled on the bounds). So unsmeared episodes have a_{t>1} = 0 exactly. The paper's text does not
                 say whether the smearing touches a_{t>1}; on its toys (pendulum, one-bounce) later actions are
                 ignored by the dynamics, so the choice only matters on other systems.
  a callable     `NoisyPolicy(policy, action_noise=0.0)`: closed-loop a_t = clip(policy(s_t, key) + action_noise·ε,
                 -1, 1), ε ~ N(0, I); with action_noise = 0 it is the policy itself (random or trained policy).
                 Pass a trained policy as `jax.tree_util.Partial(apply, params)`: its params are traced, so
                 collecting again with new params reuses the compiled collection.
"""
from __future__ import annotations

import dataclasses
import math
from functools import partial
from typing import Callable, NamedTuple, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

from gradlens import validate
from gradlens.compilation_cache import jit_once
from gradlens.envs.base import System, float_dtype, physical, time_index, with_time
from gradlens.rollout import rollout

Array = jax.Array


class Trajectories(NamedTuple):
    """A batch of N whole episodes (a pytree): states [N, H+1, O] (states[:, 0] = s_1), actions [N, H, A] in
    [-1, 1], rewards [N, H]. Build it with `trajectories(...)`, which validates; `gradlens.Trajectory` batches from a
    vmapped `rollout` convert with `trajectories(*traj)`."""

    states: Array
    actions: Array
    rewards: Array

    @property
    def n_episodes(self) -> int:
        return self.states.shape[0]

    @property
    def horizon(self) -> int:
        return self.actions.shape[1]


def _stack(value, what: str) -> np.ndarray:
    """A list of per-episode arrays or one array -> one NumPy float array; ValueError if ragged or not numeric."""
    if isinstance(value, (list, tuple)):
        if len(value) == 0:
            raise ValueError(f"{what} is empty: need at least one episode")
        shapes = [np.shape(v) for v in value]
        for i, shape in enumerate(shapes):
            if shape != shapes[0]:
                raise ValueError(f"{what} is ragged: episode {i} has shape {shape} but episode 0 has {shapes[0]}; "
                                 "all episodes must have the same horizon and dimensions")
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{what} must be a numeric array (or a list of equally shaped arrays): {err}") from None


def _check_all_finite(x: np.ndarray, what: str) -> None:
    bad = ~np.isfinite(x)
    if bad.any():
        episodes = np.unique(np.nonzero(bad)[0])
        raise ValueError(f"{what} contains {int(bad.sum())} NaN/Inf value(s), in episode(s) {episodes[:10].tolist()}"
                         f"{' ...' if len(episodes) > 10 else ''}; remove or fix them before fitting")


def trajectories(states, actions, rewards=None) -> Trajectories:
    """Validated `Trajectories` from states [N, H+1, O], actions [N, H, A] and optional rewards [N, H] (zeros if None).

    Each argument is an array or a list of per-episode arrays. Raises ValueError for an empty set, ragged episodes,
    wrong ranks, mismatched N or H, or NaN/Inf values. Arrays are stored in the current default float dtype.
    """
    states, actions = _stack(states, "states"), _stack(actions, "actions")
    if states.ndim != 3 or actions.ndim != 3:
        raise ValueError(f"states must be [N, H+1, O] and actions [N, H, A], got states {states.shape} and "
                         f"actions {actions.shape}")
    n, h = actions.shape[:2]
    if n == 0 or h == 0 or states.shape[2] < 2 or actions.shape[2] == 0:
        raise ValueError(f"the data set is empty or degenerate: states {states.shape}, actions {actions.shape} "
                         "(need N >= 1 episodes, H >= 1 steps, O >= 2 = state + time, A >= 1)")
    if states.shape[:2] != (n, h + 1):
        raise ValueError(f"states must be [N, H+1, O] = [{n}, {h + 1}, O] to match actions {actions.shape}, "
                         f"got {states.shape}")
    rewards = np.zeros((n, h)) if rewards is None else _stack(rewards, "rewards")
    if rewards.shape != (n, h):
        raise ValueError(f"rewards must be [N, H] = [{n}, {h}], got {rewards.shape}")
    for x, what in ((states, "states"), (actions, "actions"), (rewards, "rewards")):
        _check_all_finite(x, what)
    dtype = float_dtype()
    return Trajectories(jnp.asarray(states, dtype), jnp.asarray(actions, dtype), jnp.asarray(rewards, dtype))


def concatenate(parts: Sequence[Trajectories]) -> Trajectories:
    """One `Trajectories` holding the episodes of all `parts` (a growing replay buffer); same H, O, A required."""
    if len(parts) == 0:
        raise ValueError("concatenate needs at least one Trajectories")
    shapes = {(p.states.shape[1:], p.actions.shape[1:]) for p in parts}
    if len(shapes) != 1:
        raise ValueError(f"cannot concatenate data sets with different (states, actions) episode shapes: {shapes}")
    return Trajectories(*(jnp.concatenate(xs) for xs in zip(*parts)))


def split(data: Trajectories, fraction: float, key: Array) -> tuple[Trajectories, Trajectories]:
    """Random (train, validation) split of whole episodes; validation gets max(1, round(fraction·N)) episodes."""
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0.0 < fraction < 1.0:
        raise ValueError(f"validation fraction must be a number in (0, 1), got {fraction!r}")
    n = data.n_episodes
    n_val = max(1, int(round(fraction * n)))
    if n - n_val < 1:
        raise ValueError(f"cannot split {n} episode(s) with fraction {fraction}: need at least one training and one "
                         "validation episode")
    perm = jax.random.permutation(key, n)
    take = lambda idx: Trajectories(*(x[idx] for x in data))
    return take(perm[n_val:]), take(perm[:n_val])


def state_stats(data: Trajectories, min_std: float = 1e-6) -> tuple[Array, Array]:
    """Mean [D] and std [D] of the physical state over all episodes and times (std < min_std replaced by 1)."""
    x = physical(data.states).reshape(-1, data.states.shape[-1] - 1)
    mean, std = jnp.mean(x, axis=0), jnp.std(x, axis=0)
    return mean, jnp.where(std < min_std, 1.0, std)


# ---------------------------------------------------------------------------------------------------------------- #
# Exploration schemes: small frozen dataclasses; `actions(key, H, A)` samples an open-loop sequence [H, A].


@dataclasses.dataclass(frozen=True)
class Uniform:
    """i.i.d. a_t ~ U[-1, 1]^A."""

    def actions(self, key: Array, horizon: int, action_dim: int) -> Array:
        return jax.random.uniform(key, (horizon, action_dim), float_dtype(), -1.0, 1.0)


@dataclasses.dataclass(frozen=True)
class RandomWalk:
    """a_1 ~ U[-1, 1]^A, a_{t+1} = clip(a_t + step_std·ε_t, -1, 1) (Myriad's default: step_std = 0.05 × range 2)."""

    step_std: float = 0.1

    def __post_init__(self):
        validate.positive(self.step_std, "RandomWalk: step_std")

    def actions(self, key: Array, horizon: int, action_dim: int) -> Array:
        k0, k1 = jax.random.split(key)
        a1 = jax.random.uniform(k0, (action_dim,), float_dtype(), -1.0, 1.0)
        steps = self.step_std * jax.random.normal(k1, (horizon - 1, action_dim), float_dtype())

        def walk(a, da):
            a = jnp.clip(a + da, -1.0, 1.0)
            return a, a

        _, rest = jax.lax.scan(walk, a1, steps)
        return jnp.concatenate([a1[None], rest])  # [H, A]


@dataclasses.dataclass(frozen=True)
class Toy:
    """The paper's toy data (module docstring): a_1 ~ U[-1, 1], a_{t>1} = 0, plus per-episode smearing σ."""

    smearing: tuple[float, ...] = (0.0, 0.5)

    def __post_init__(self):
        levels = self.smearing
        if (not isinstance(levels, tuple) or len(levels) == 0
                or not all(isinstance(s, (int, float)) and math.isfinite(s) and s >= 0 for s in levels)):
            raise ValueError(f"Toy: smearing must be a non-empty tuple of finite numbers >= 0, got {levels!r}")

    def actions(self, key: Array, horizon: int, action_dim: int) -> Array:
        k_base, k_level, k_eps = jax.random.split(key, 3)
        dtype = float_dtype()
        base = jnp.zeros((horizon, action_dim), dtype)
        base = base.at[0].set(jax.random.uniform(k_base, (action_dim,), dtype, -1.0, 1.0))
        sigma = jax.random.choice(k_level, jnp.asarray(self.smearing, dtype))
        safe = jnp.where(sigma > 0, sigma, 1.0)  # σ = 0: any finite bounds; the noise is multiplied by 0
        eps = jax.random.truncated_normal(k_eps, (-1.0 - base) / safe, (1.0 - base) / safe, base.shape, dtype)
        return jnp.clip(base + sigma * eps, -1.0, 1.0)  # clip only guards rounding at the bounds


@dataclasses.dataclass(frozen=True)
class NoisyPolicy:
    """Closed loop: a_t = clip(policy(s_t, key) + action_noise·ε, -1, 1), ε ~ N(0, I)."""

    policy: Callable[[Array, Array], Array]
    action_noise: float = 0.0

    def __post_init__(self):
        if not callable(self.policy):
            raise ValueError(f"NoisyPolicy: policy must be callable policy(obs, key) -> action, got {self.policy!r}")
        validate.finite(self.action_noise, "NoisyPolicy: action_noise", low=0)

    def act(self, obs: Array, key: Array) -> Array:
        k_policy, k_noise = jax.random.split(key)
        a = self.policy(obs, k_policy)
        return jnp.clip(a + self.action_noise * jax.random.normal(k_noise, jnp.shape(a), a.dtype), -1.0, 1.0)


jax.tree_util.register_pytree_node(
    NoisyPolicy, lambda p: ((p.policy,), p.action_noise), lambda noise, children: NoisyPolicy(children[0], noise))
Scheme = Union[Uniform, RandomWalk, Toy, NoisyPolicy]
SCHEMES: dict[str, Callable[[], Scheme]] = {"uniform": Uniform, "random_walk": RandomWalk, "toy": Toy}


def as_scheme(scheme) -> Scheme:
    """A scheme name, a scheme dataclass, or a policy callable (-> NoisyPolicy without noise) -> a scheme."""
    if isinstance(scheme, (Uniform, RandomWalk, Toy, NoisyPolicy)):
        return scheme
    if isinstance(scheme, str) and scheme in SCHEMES:
        return SCHEMES[scheme]()
    if callable(scheme) and not isinstance(scheme, (str, type)):
        return NoisyPolicy(scheme)
    raise ValueError(f"unknown collection scheme {scheme!r}; valid: {', '.join(map(repr, SCHEMES))}, a scheme "
                     "dataclass (Uniform, RandomWalk, Toy, NoisyPolicy) or a policy callable policy(obs, key)")


def _initial_states(system: System, s1, n: int) -> Array:
    if s1 is None:
        return jnp.broadcast_to(system.initial_state(), (n, system.obs_dim))
    s1 = jnp.asarray(s1, float_dtype())
    if s1.shape == (system.obs_dim,):
        return jnp.broadcast_to(s1, (n, system.obs_dim))
    if s1.shape != (n, system.obs_dim):
        raise ValueError(f"s1 must be [O] = [{system.obs_dim}] or [N, O] = [{n}, {system.obs_dim}], got {s1.shape}")
    _check_all_finite(np.asarray(s1), "s1")
    return s1


def collect(system: System, scheme, n_episodes: int, key: Array, horizon: int | None = None, *, s1=None,
            start_noise: float = 0.0) -> Trajectories:
    """Roll `system` out for `n_episodes` episodes under an exploration `scheme` (see the module docstring).

    Args:
      system: the true `System`.
      scheme: "uniform", "random_walk", "toy", a scheme dataclass, or a policy callable `policy(obs, key) -> [A]`.
      n_episodes: N >= 1.
      key: PRNG key; split into one key per episode (same key -> same data, bit for bit).
      horizon: H, 1 <= H <= system.horizon (default system.horizon).
      s1: initial observation [O] or per-episode [N, O] (default `system.initial_state()`).
      start_noise: std of Gaussian noise added to the physical part of s1, per episode (Myriad uses 0.1), clipped
        to the state bounds when the system clips states.

    Returns `Trajectories` (states [N, H+1, O], actions [N, H, A], rewards [N, H]); ValueError if the system produced
    NaN/Inf (named with the episodes).
    """
    scheme = as_scheme(scheme)
    validate.positive_int(n_episodes, "n_episodes")
    horizon = system.horizon if horizon is None else horizon
    validate.horizon(horizon, high=system.horizon, why="the system's horizon")
    validate.finite(start_noise, "start_noise", low=0)
    starts = _initial_states(system, s1, n_episodes)
    # The scheme goes through jit as a pytree: its arrays (e.g. the params inside a jax.tree_util.Partial policy)
    # are traced, everything else (functions, floats) is static. So a new policy *function* recompiles, new params
    # of the same Partial do not.
    leaves, treedef = jax.tree_util.tree_flatten(scheme)
    traced = tuple(isinstance(leaf, (jax.Array, np.ndarray)) for leaf in leaves)
    static = tuple(None if t else leaf for leaf, t in zip(leaves, traced))
    arrays = [leaf for leaf, t in zip(leaves, traced) if t]
    traj = _collect(system, (treedef, traced, static), horizon, float(start_noise), arrays,
                    jax.random.split(key, n_episodes), starts)
    return trajectories(traj.states, traj.actions, traj.rewards)


@partial(jit_once, static_argnames=("system", "scheme_spec", "horizon", "start_noise"))
def _collect(system: System, scheme_spec, horizon: int, start_noise: float, arrays, keys: Array, starts: Array):
    """vmap over episodes (keys [N, 2], starts [N, O]); jitted once per (system, scheme structure, H, start_noise)."""
    treedef, traced, static = scheme_spec
    it = iter(arrays)
    scheme = jax.tree_util.tree_unflatten(treedef, [next(it) if t else leaf for leaf, t in zip(static, traced)])

    def episode(k, s):
        k_start, k_act, k_roll = jax.random.split(k, 3)
        x = physical(s) + start_noise * jax.random.normal(k_start, (system.state_dim,), s.dtype)
        if system.clip_states and system.state_low is not None:
            x = jnp.clip(x, jnp.asarray(system.state_low, x.dtype), jnp.asarray(system.state_high, x.dtype))
        s = with_time(x, time_index(s))
        if isinstance(scheme, NoisyPolicy):
            return rollout(system, scheme.act, s, horizon, k_roll)
        return rollout(system, scheme.actions(k_act, horizon, system.action_dim), s, horizon, k_roll)

    return jax.vmap(episode)(keys, starts)


__all__ = ["NoisyPolicy", "RandomWalk", "SCHEMES", "Scheme", "Toy", "Trajectories", "Uniform", "as_scheme",
           "collect", "concatenate", "split", "state_stats", "trajectories"]
