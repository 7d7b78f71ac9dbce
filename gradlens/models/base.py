"""The world-model interface: `WorldModel`, its config base, state normalisation and the `Dynamics` adapters.

Glossary of shapes: H horizon (number of actions), O = D + 1 observation dim (physical state + time index), D physical
state dim, A action dim. Indices are 0-based: states[0] = s_1, actions[t] = a_{t+1}.

Every model is a Haiku *core*, an `hk.Module` built as `core(config, system)`, with these methods. They work on the
normalised physical state only: the time channel never enters a core, the wrapper appends it exactly (t + 1).

    prime(x1 [D], horizon: int) -> carry           memory after reading s_1 (token position 0), sized for `horizon`
    step(carry, x [D], action [A], t) -> (carry, y [D])
                                                   read the current (predicted) state x = states[t] (an AWM ignores
                                                   it) and the action a = actions[t] (t: int32 step index);
                                                   y predicts states[t + 1]
    sequence(xs [H, D], actions [H, A]) -> ys [H, D]   optional parallel pass: ys[t] predicts states[t + 1] from
                                                   xs[:t + 1] and actions[:t + 1] (an AWM reads xs[0] only);
                                                   without it, a scan over `step` is used

`WorldModel` wraps a core with validation, normalisation, open-loop prediction, teacher forcing and `bind` (the
`gradlens.dynamics.Dynamics` that `gradlens.rollout` unrolls: one step at a time with the carried memory, and the
optional modes its `capabilities` declare).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np

from gradlens.dynamics import STEP_ONLY, Capabilities
from gradlens.envs.base import (System, check_finite, check_shape, float_dtype, is_concrete, physical, time_index,
                                with_time)
from gradlens.models.kv_reverse import kv_reverse_rollout

Array = jax.Array
Params = Any  # a Haiku params mapping {module: {name: array}}, plus NORMALIZER when config.normalize
CoreFactory = Callable[[Any, System], hk.Module]  # (config, system) -> core module (call inside hk.transform)
NORMALIZER = "normalizer"  # params[NORMALIZER] = {"mean": [D], "std": [D]}


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Fields every model config has (subclass it and add the model's sizes, all with defaults).

    Fields:
      max_horizon: longest action sequence the model accepts (transformers: rows of the time embedding - 1);
        None = the system's horizon.
      normalize: normalise physical states by the (mean, std) stored in params before the network and de-normalise
        its outputs (off by default, as in the paper; use it for large-scale states such as HIV's).
    Fields annotated `int` must be positive integers, `tuple[int, ...]` tuples of positive integers (layer sizes;
    lists are accepted and converted, so configs stay hashable).
    """

    max_horizon: int | None = None
    normalize: bool = False

    def __post_init__(self):
        if not isinstance(self.normalize, bool):
            raise ValueError(f"normalize must be True or False, got {self.normalize!r}")
        if self.max_horizon is not None and not _positive_int(self.max_horizon):
            raise ValueError(f"max_horizon must be a positive integer or None, got {self.max_horizon!r}")
        for field in dataclasses.fields(self):
            value, kind = getattr(self, field.name), str(field.type)
            if kind.startswith("tuple"):
                value = tuple(value) if isinstance(value, (list, tuple)) else value
                if not (isinstance(value, tuple) and all(_positive_int(v) for v in value)):
                    raise ValueError(f"{field.name} must be a tuple of positive integers, got {value!r}")
                object.__setattr__(self, field.name, value)
            elif kind == "int" and not _positive_int(value):
                raise ValueError(f"{field.name} must be a positive integer, got {value!r}")


def _positive_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value > 0


def build_config(cls: type, model: str, overrides: dict) -> ModelConfig:
    """`cls(**overrides)`; ValueError naming `model` and the unknown overrides (listing the allowed ones) or the
    invalid value."""
    allowed = sorted(f.name for f in dataclasses.fields(cls))
    unknown = sorted(set(overrides) - set(allowed))
    if unknown:
        raise ValueError(f"unknown override(s) {', '.join(map(repr, unknown))} for model {model!r}; "
                         f"allowed: {', '.join(allowed)}")
    try:
        return cls(**overrides)
    except ValueError as err:
        raise ValueError(f"model {model!r}: {err}") from None


@dataclasses.dataclass(frozen=True)
class WorldModel:
    """A world model of `system`: pure functions of (params, inputs); hashable, so it can key a jit cache.

    Fields:
      name: registry name.
      system: the `System` whose observations [O] and actions [A] the model takes; `bind` uses its reward.
      config: a frozen `ModelConfig` subclass (sizes, normalize, max_horizon; None resolved to system.horizon).
      reads_states: True if predictions read (predicted) states (Markov, HWM), False if only s_1 and actions (AWM).
      core: `core(config, system) -> hk.Module` with prime / step (/ sequence), see the module docstring.
    """

    name: str
    system: System
    config: ModelConfig
    reads_states: bool
    core: CoreFactory

    def __post_init__(self):
        if not isinstance(self.system, System):
            raise ValueError(f"model {self.name!r}: system must be a gradlens System, got {type(self.system).__name__}")
        if not isinstance(self.config, ModelConfig):
            raise ValueError(f"model {self.name!r}: config must be a frozen dataclass deriving from ModelConfig, "
                             f"got {type(self.config).__name__}")
        if self.config.max_horizon is None:
            object.__setattr__(self, "config", dataclasses.replace(self.config, max_horizon=self.system.horizon))

    @property
    def max_horizon(self) -> int:
        """The longest action sequence (and rollout) this model accepts."""
        return self.config.max_horizon

    @functools.cached_property
    def _fns(self) -> hk.MultiTransformed:
        def f():
            core = self.core(self.config, self.system)

            def template(xs, actions):  # touches every parameter once
                carry = core.prime(xs[0], xs.shape[0])
                _, y = core.step(carry, xs[0], actions[0], jnp.zeros((), jnp.int32))
                return core.sequence(xs, actions) if hasattr(core, "sequence") else y

            fns = {"prime": core.prime, "step": core.step}
            if hasattr(core, "sequence"):
                fns["sequence"] = core.sequence
            if hasattr(getattr(core, "backbone", None), "step_probed"):
                fns["step_probed"] = core.step_probed
            return template, fns

        return hk.without_apply_rng(hk.multi_transform(f))

    # -- parameters ---------------------------------------------------------------------------------------------- #

    def init(self, key: Array) -> Params:
        """Fresh parameters (a Haiku mapping) in the default float dtype; an identity normaliser if config.normalize."""
        dtype = float_dtype()
        d, a = self.system.state_dim, self.system.action_dim
        params = self._fns.init(key, jnp.zeros((2, d), dtype), jnp.zeros((2, a), dtype))
        if self.config.normalize:
            params = {**params, NORMALIZER: {"mean": jnp.zeros(d, dtype), "std": jnp.ones(d, dtype)}}
        return params

    def set_normalizer(self, params: Params, mean: Array, std: Array) -> Params:
        """Params with state statistics mean [D], std [D] (> 0) installed; unchanged if not config.normalize.

        The statistics are constants to the network (gradient stopped), so fitting never moves them.
        """
        d = self.system.state_dim
        check_shape(mean, (d,), f"{self.name}: normaliser mean (state_dim)")
        check_shape(std, (d,), f"{self.name}: normaliser std (state_dim)")
        check_finite(mean, f"{self.name}: normaliser mean")
        check_finite(std, f"{self.name}: normaliser std")
        if is_concrete(std) and not bool(np.all(np.asarray(std) > 0)):
            raise ValueError(f"{self.name}: normaliser std must be > 0 in every component, got {np.asarray(std)!r}")
        if not self.config.normalize:
            return params
        dtype = jax.tree_util.tree_leaves(params)[0].dtype
        return {**params, NORMALIZER: {"mean": jnp.asarray(mean, dtype), "std": jnp.asarray(std, dtype)}}

    # -- whole sequences ------------------------------------------------------------------------------------------ #

    def predict(self, params: Params, s1: Array, actions: Array) -> Array:
        """Open-loop prediction: states [H+1, O] from s1 [O] and actions [H, A]; states[0] == s1.

        An AWM reads s1 once and all actions in one causal pass; the other classes are fed their own predictions.
        """
        horizon = self._check_actions(actions)
        self._check_state(s1, "s1")
        if self.reads_states:
            dyn = self.bind(params)

            def body(carry, action):
                memory, obs = carry
                memory, nxt = dyn.transition(memory, obs, action, None)
                return (memory, nxt), nxt

            _, nxt = jax.lax.scan(body, (dyn.reset(s1, horizon), s1), actions)
            return jnp.concatenate([s1[None], nxt])
        z1 = self._encode(params, physical(s1))
        ys = self._sequence(params, jnp.broadcast_to(z1, (horizon, z1.shape[0])), actions)
        return self._with_time(s1, self._decode(params, ys))

    def teacher_forced(self, params: Params, states: Array, actions: Array) -> Array:
        """Predictions [H+1, O] from TRUE states [H+1, O] and actions [H, A], in one pass where the core allows it.

        Row 0 = states[0]; row t + 1 predicts states[t + 1] from states[:t + 1] and actions[:t + 1] (an AWM reads
        states[0] only, a Markov model states[t] only). Used for fitting.
        """
        horizon = self._check_actions(actions)
        check_shape(states, (horizon + 1, self.system.obs_dim),
                    f"{self.name}: states [H+1, obs_dim] (one more row than actions)")
        check_finite(states, f"{self.name}: states")
        ys = self._sequence(params, self._encode(params, physical(states[:-1])), actions)
        return self._with_time(states[0], self._decode(params, ys))

    def bind(self, params: Params, *, recompute: bool = False):
        """`gradlens.dynamics.Dynamics` for `gradlens.rollout`, stepping with carried memory (KV cache, LSTM or SSM
        state). Capabilities: an AWM's offers `open_loop` (= predict, one causal pass), a transformer's
        `custom_reverse` (`gradlens.models.kv_reverse`). recompute=True instead re-runs the whole-sequence pass over
        the padded prefix at every step (no cache; O(H^3) for a transformer; one step only): a reference for tests
        and benchmarks.
        """
        if recompute:
            return RecomputeDynamics(self, params)
        return ModelDynamics(self, params) if self.reads_states else OpenLoopDynamics(self, params)

    # -- internals ------------------------------------------------------------------------------------------------ #

    def _net(self, params: Params) -> Params:
        return {k: v for k, v in params.items() if k != NORMALIZER}

    def _stats(self, params: Params):
        if not self.config.normalize:
            return None
        if NORMALIZER not in params:
            raise ValueError(f"{self.name}: config.normalize is True but params hold no {NORMALIZER!r}; "
                             f"use params from model.init / model.set_normalizer")
        stats = jax.lax.stop_gradient(params[NORMALIZER])
        return stats["mean"], stats["std"]

    def _encode(self, params: Params, x: Array) -> Array:
        stats = self._stats(params)
        return x if stats is None else (x - stats[0]) / stats[1]

    def _decode(self, params: Params, z: Array) -> Array:
        stats = self._stats(params)
        return z if stats is None else stats[0] + stats[1] * z

    def _prime(self, params, z1, horizon):
        return self._fns.apply["prime"](self._net(params), z1, horizon)

    def _step(self, params, carry, z, action, t):
        return self._fns.apply["step"](self._net(params), carry, z, action, t)

    def _step_probed(self, params, frozen, z, action, t, probes):
        return self._fns.apply["step_probed"](self._net(params), z, action, t, frozen, probes)

    def _sequence(self, params: Params, zs: Array, actions: Array) -> Array:
        """ys [H, D] (normalised) from zs [H, D] and actions [H, A]: the core's parallel pass or a scan over step."""
        if "sequence" in self._fns.apply:
            return self._fns.apply["sequence"](self._net(params), zs, actions)

        def body(carry, inputs):
            z, action, t = inputs
            return self._step(params, carry, z, action, t)

        horizon = actions.shape[0]
        carry = self._prime(params, zs[0], horizon)
        return jax.lax.scan(body, carry, (zs, actions, jnp.arange(horizon, dtype=jnp.int32)))[1]

    def _with_time(self, s1: Array, xs_next: Array) -> Array:
        """[s1; [xs_next, t0 + 1 … t0 + H]]: [H+1, O] with the exact time channel."""
        times = time_index(s1) + jnp.arange(1, xs_next.shape[0] + 1, dtype=xs_next.dtype)
        return jnp.concatenate([s1[None], with_time(xs_next, times)])

    def _check_horizon(self, horizon) -> int:
        if isinstance(horizon, bool) or not isinstance(horizon, (int, np.integer)) or not (
                1 <= horizon <= self.max_horizon):
            raise ValueError(f"{self.name}: horizon must be an integer in [1, {self.max_horizon}] (the model's "
                             f"max_horizon; make it with max_horizon=... to go further), got {horizon!r}")
        return int(horizon)

    def _check_actions(self, actions) -> int:
        a = self.system.action_dim
        if jnp.ndim(actions) != 2 or jnp.shape(actions)[1] != a:
            raise ValueError(f"{self.name}: actions must have shape [H, {a}] (action_dim of system "
                             f"{self.system.name!r}), got {tuple(jnp.shape(actions))}")
        check_finite(actions, f"{self.name}: actions")
        return self._check_horizon(jnp.shape(actions)[0])

    def _check_state(self, obs, what: str) -> None:
        check_shape(obs, (self.system.obs_dim,),
                    f"{self.name}: {what} (obs_dim = state_dim {self.system.state_dim} + 1 time index)")
        check_finite(obs, f"{self.name}: {what}")


@dataclasses.dataclass(frozen=True, eq=False)
class ModelDynamics:
    """`Dynamics` of a world model with bound params: one step at a time, memory in the carry.

    carry = (core memory, step index t int32, time channel of the current state). Not a tuple, so that
    `gradlens.rollout` takes it as a `Dynamics` rather than as a (model, params) pair.
    """

    model: WorldModel
    params: Params

    @property
    def obs_dim(self) -> int:
        return self.model.system.obs_dim

    @property
    def action_dim(self) -> int:
        return self.model.system.action_dim

    @property
    def horizon(self) -> int:
        return self.model.max_horizon

    @property
    def needs_key(self) -> bool:
        return False

    def reset(self, s1: Array, horizon: int):
        """Memory after reading s1 [O] (position 0), sized for `horizon` steps."""
        m = self.model
        m._check_state(s1, "s1")
        horizon = m._check_horizon(horizon)
        memory = m._prime(self.params, m._encode(self.params, physical(s1)), horizon)
        return memory, jnp.zeros((), jnp.int32), time_index(s1)

    def transition(self, carry, obs: Array, action: Array, key=None):
        """(carry, s_{t+1} [O]) from the current (predicted) obs [O] and action [A]; an AWM never reads obs."""
        m = self.model
        self._check_step(obs, action)
        memory, t, time = carry
        memory, y = m._step(self.params, memory, m._encode(self.params, physical(obs)), action, t)
        nxt = with_time(m._decode(self.params, y), (time + 1).astype(y.dtype))
        return (memory, t + 1, time + 1), nxt

    def reward(self, obs: Array, action: Array) -> Array:
        """The system's true reward applied to a (predicted) state."""
        return self.model.system.reward(obs, action)

    @property
    def capabilities(self) -> Capabilities:
        """A custom reverse pass for a KV-cached transformer core; open loop for an AWM (`OpenLoopDynamics`)."""
        return Capabilities(open_loop=False, custom_reverse="step_probed" in self.model._fns.apply)

    def custom_reverse(self, step_policy, s1: Array, horizon: int, step_keys: Array, policy_reads_state: bool):
        """The `Trajectory` of `rollout(..., reverse="recompute")` with the blocked reverse pass of
        `gradlens.models.kv_reverse` (no KV cache stored per step; reverse mode only)."""
        self.model._check_horizon(horizon)
        return kv_reverse_rollout(self, step_policy, s1, horizon, step_keys, policy_reads_state)

    def _check_step(self, obs, action) -> None:
        check_shape(obs, (self.obs_dim,), f"{self.model.name}: obs")
        check_shape(action, (self.action_dim,), f"{self.model.name}: action")
        check_finite(action, f"{self.model.name}: action")


class OpenLoopDynamics(ModelDynamics):
    """An AWM's `Dynamics`: as `ModelDynamics`, plus the one-pass open-loop fast path."""

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(open_loop=True, custom_reverse="step_probed" in self.model._fns.apply)

    def open_loop(self, s1: Array, actions: Array, key=None) -> Array:
        """states [H+1, O] from s1 [O] and actions [H, A]: `model.predict`."""
        return self.model.predict(self.params, s1, actions)


class RecomputeDynamics(ModelDynamics):
    """Reference `Dynamics` without memory: each step writes (state, action) into padded buffers [H, D], [H, A] and
    re-runs the whole-sequence pass. Causality makes the padding irrelevant; cost O(H) passes per rollout."""

    capabilities = STEP_ONLY

    def reset(self, s1: Array, horizon: int):
        m = self.model
        m._check_state(s1, "s1")
        horizon = m._check_horizon(horizon)
        zs = jnp.zeros((horizon, m.system.state_dim), s1.dtype)
        actions = jnp.zeros((horizon, m.system.action_dim), s1.dtype)
        return zs, actions, jnp.zeros((), jnp.int32), time_index(s1)

    def transition(self, carry, obs: Array, action: Array, key=None):
        m = self.model
        self._check_step(obs, action)
        zs, actions, t, time = carry
        zs = zs.at[t].set(m._encode(self.params, physical(obs)))
        actions = actions.at[t].set(action.astype(actions.dtype))
        y = m._sequence(self.params, zs, actions)[t]
        nxt = with_time(m._decode(self.params, y), (time + 1).astype(y.dtype))
        return (zs, actions, t + 1, time + 1), nxt

