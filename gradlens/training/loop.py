"""The paper's Algorithm 1 (PAPER.md §1.2), compiled: collect -> fit the world model -> BPO -> evaluate.

Glossary of shapes: S seeds (vmapped), C episode capacity = ceil(total_steps / H), H horizon, O obs dim, A action dim.

One loop iteration i = one environment step with the current stochastic policy, then
    if i > warmup and i % model_every == 0:   one Adam step on the world-model MSE (batch of whole episodes)
    if i > warmup and i % policy_every == 0:  one BPO step (batch of imagined rollouts from buffered s_1), and the
                                              same gradient through the true simulator for comparison (cosine, error)
A *chunk* of `eval_every` iterations is one `lax.scan`, jitted once and `vmap`-ped over seeds; it ends with an
evaluation of the deterministic policy in the true system, which is one metrics row per seed. The iteration index
is not vmapped, so the schedule's `lax.cond`s stay real branches under `vmap` (no wasted updates).
Evaluation also runs during warmup (the paper starts after it), so every curve starts at the initial policy.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from gradlens import envs
from gradlens.envs.base import System
from gradlens.policies import check_time_input, make_policy
from gradlens.rollout import check_policy_input_grad, rollout
from gradlens.training.bpo import gradient_agreement, policy_gradient, policy_optimizer, policy_update, reverse_mode
from gradlens.training.fit import model_loss

Array = jax.Array
SIMULATOR = "simulator"
BPO_WARMUP_STEPS = 1500


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Run configuration; defaults are the paper's (PAPER.md §6). Steps count real-environment steps.

    The model-free baselines ("sac", "odt") read only some of these fields and take their own hyperparameters from
    `baseline` (see `gradlens.training.baselines`).
    """

    system: str = "cancer"
    method: str = "awm-transformer"  # "simulator", a gradlens.models name, or a baseline ("sac", "odt")
    horizon: int = 100
    total_steps: int = 5000
    warmup_steps: int | None = None  # None: the method's default (BPO_WARMUP_STEPS; a baseline's default_warmup)
    model_every: int = 2
    policy_every: int = 16
    eval_every: int = 32
    model_batch: int = 64  # episodes per world-model update
    policy_batch: int = 16  # imagined rollouts per policy update
    model_lr: float = 1e-3
    policy_lr: float = 1e-4
    entropy_coef: float = 0.1
    grad_clip: float = 100.0  # global-norm clip of the policy gradient through a world model
    simulator_grad_clip: float | None = None  # the same through the true simulator; None: unclipped, as the reference
    policy: str = "mlp"  # "mlp" (tanh-Gaussian state feedback) or "open_loop"
    policy_hidden: tuple[int, ...] = (64, 64)
    policy_time_input: str = "raw"  # the MLP reads the step index raw (the paper) or as t / H ("unit"; docs/fidelity.md)
    policy_input_grad: str | float = "stop"
    nonfinite_policy_grad: str = "stop"  # BPO: "stop" the run, or "zero" non-finite entries and go on (the reference)
    noise_std: float = 0.0
    compare_to_simulator: bool = True  # log cosine / relative error of each model gradient to the simulator's
    remat: bool = True  # recompute imagined rollout steps in the backward pass (gradlens.rollout): less memory traffic
    seed: int = 0
    seeds: int = 1  # seeds seed, seed+1, ... trained together under vmap
    baseline: Any = None  # "sac" / "odt" only: a SACConfig / ODTConfig, or a dict of its fields; None = defaults

    def __post_init__(self):
        from gradlens.training import baselines  # lazy: the baselines import this module

        for name in ("system", "method"):
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"{name} must be a name (a string), got {getattr(self, name)!r}")
        if self.warmup_steps is None:
            default = baselines.default_warmup(self.method)
            object.__setattr__(self, "warmup_steps", BPO_WARMUP_STEPS if default is None else default)
        for name in ("horizon", "total_steps", "model_every", "policy_every", "eval_every", "model_batch",
                     "policy_batch", "seeds"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if isinstance(self.warmup_steps, bool) or not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be an integer >= 0, got {self.warmup_steps!r}")
        if self.total_steps <= self.warmup_steps:
            raise ValueError(f"total_steps ({self.total_steps}) must exceed warmup_steps ({self.warmup_steps}): no "
                             "update would run; raise --steps or lower --warmup")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {self.seed!r}")
        for name in ("model_lr", "policy_lr", "grad_clip"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive finite number, got {value!r}")
        if not (isinstance(self.entropy_coef, (int, float)) and math.isfinite(self.entropy_coef)):
            raise ValueError(f"entropy_coef must be a finite number, got {self.entropy_coef!r}")
        clip = self.simulator_grad_clip
        if clip is not None and not (isinstance(clip, (int, float)) and not isinstance(clip, bool)
                                     and math.isfinite(clip) and clip > 0):
            raise ValueError(f"simulator_grad_clip must be a positive finite number or None (unclipped), got {clip!r}")
        check_time_input(self.policy_time_input)
        if self.nonfinite_policy_grad not in NONFINITE_POLICY_GRAD:
            raise ValueError(f"nonfinite_policy_grad must be one of {', '.join(NONFINITE_POLICY_GRAD)}, "
                             f"got {self.nonfinite_policy_grad!r}")
        for name in ("compare_to_simulator", "remat"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.method not in methods():
            raise ValueError(f"unknown method {self.method!r}; valid methods: {', '.join(methods())}")
        if self.system not in envs.names():
            raise ValueError(f"unknown system {self.system!r}; valid systems: {', '.join(envs.names())}")
        check_policy_input_grad(self.policy_input_grad)
        # building the system and the policy checks horizon, noise_std, policy and policy_hidden before any run starts
        if not isinstance(self.policy_hidden, (tuple, list)):
            raise ValueError(f"policy_hidden must be a list of positive integers, got {self.policy_hidden!r}")
        system = envs.make(self.system, horizon=self.horizon, noise_std=self.noise_std)
        make_policy(self.policy, system, tuple(self.policy_hidden), time_input=self.policy_time_input)
        object.__setattr__(self, "baseline", baselines.resolve(self))

    @property
    def zeroes_nonfinite_policy_grad(self) -> bool:
        """True when the run zeroes non-finite policy gradients (a BPO method with nonfinite_policy_grad="zero")."""
        from gradlens.training import baselines

        return self.nonfinite_policy_grad == "zero" and self.method not in baselines.names()

    def to_dict(self) -> dict:
        """JSON-ready fields; `baseline` is left out for BPO methods and the fields added after the first runs
        (`_LATER_FIELDS`) at their defaults, so the config.json files of older runs stay the same and they resume."""
        data = dataclasses.asdict(self)
        if data["baseline"] is None:
            del data["baseline"]
        for name, default in _LATER_FIELDS.items():
            if data[name] == default:
                del data[name]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        """Inverse of `to_dict`; unknown keys raise ValueError listing the valid ones."""
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - fields)
        if unknown:
            raise ValueError(f"unknown config key(s) {', '.join(map(repr, unknown))}; valid keys: "
                             f"{', '.join(sorted(fields))}")
        data = dict(data)
        if isinstance(data.get("policy_hidden"), list):
            data["policy_hidden"] = tuple(data["policy_hidden"])
        return cls(**data)


_LATER_FIELDS = {"remat": True, "simulator_grad_clip": None, "policy_time_input": "raw",
                 "nonfinite_policy_grad": "stop"}
# What BPO does with a policy gradient holding NaN/Inf: "stop" the run loudly (naming step, seed and quantity), or
# "zero" its non-finite entries and go on, as the reference implementation does, counting each such update per seed
# (metrics column `zeroed_policy_grads`). The model-free baselines always stop on a non-finite loss.
NONFINITE_POLICY_GRAD = ("stop", "zero")


def methods() -> list[str]:
    """Training methods: the true differentiable simulator, every world-model class, the model-free baselines."""
    from gradlens import models
    from gradlens.training import baselines

    return [SIMULATOR, *models.names(), *baselines.names()]


class TrainState(NamedTuple):
    """Everything a seed's run carries between iterations (a checkpoint is exactly this pytree)."""

    key: Array
    policy_params: Any
    policy_opt: Any
    model_params: Any
    model_opt: Any
    buffer_states: Array  # [C, H+1, O]; episode e holds env steps e·H … e·H + H
    buffer_actions: Array  # [C, H, A]
    obs: Array  # [O] current real-environment state
    sums: Array  # [6] per-chunk sums: model loss, #model updates, grad norm, cosine, rel. error, #policy updates
    #              (+ #zeroed policy gradients with nonfinite_policy_grad="zero"; sums 2-5 then count finite ones)
    first_nonfinite: Array  # int32: first iteration with a non-finite loss or gradient, or -1
    nonfinite_what: Array  # int32 index into NONFINITE


NONFINITE = ("world-model loss", "policy gradient", "SAC critic loss", "SAC actor loss", "ODT loss")


class ChunkStats(NamedTuple):
    """One metrics row per seed, returned by a chunk."""

    eval_return: Array
    model_loss: Array
    policy_grad_norm: Array
    cosine_to_simulator: Array
    relative_error_to_simulator: Array
    first_nonfinite: Array
    nonfinite_what: Array
    zeroed_policy_grads: Array  # policy updates in the chunk whose non-finite gradient was zeroed (0 unless "zero")


class Trainer(NamedTuple):
    """Pure functions of one configuration. `chunk` is vmapped over seeds and jitted by the caller (`train`)."""

    config: TrainConfig
    system: System
    init: Callable[[Array], TrainState]
    chunk: Callable[[TrainState, Array], tuple[TrainState, ChunkStats]]
    n_chunks: int
    model_step: Callable[..., TrainState] | None  # (state, i, key, n_episodes) -> state; None for the simulator
    policy_step: Callable[..., TrainState]  # (state, i, key, n_episodes) -> state


def make_trainer(config: TrainConfig) -> Trainer:
    """Build the system, model, policy and optimisers of `config`, and the pure `init` / `chunk` functions."""
    from gradlens import models
    from gradlens.training import baselines

    if config.method in baselines.names():
        return baselines.make_trainer(config)
    cfg = config
    system = envs.make(cfg.system, horizon=cfg.horizon, noise_std=cfg.noise_std)
    H = cfg.horizon
    capacity = -(-cfg.total_steps // H)
    policy = make_policy(cfg.policy, system, cfg.policy_hidden, time_input=cfg.policy_time_input)
    use_model = cfg.method != SIMULATOR
    pol_opt = policy_optimizer(cfg.policy_lr, cfg.grad_clip if use_model else cfg.simulator_grad_clip)
    model = models.make(cfg.method, system) if use_model else None
    model_opt = optax.adam(cfg.model_lr)
    s1 = system.initial_state()
    zero_nonfinite = cfg.zeroes_nonfinite_policy_grad

    def init(key: Array) -> TrainState:
        k_run, k_policy, k_model = jax.random.split(key, 3)
        policy_params = policy.init(k_policy)
        model_params = model.init(k_model) if use_model else ()
        return TrainState(
            key=k_run, policy_params=policy_params, policy_opt=pol_opt.init(policy_params),
            model_params=model_params, model_opt=model_opt.init(model_params) if use_model else (),
            buffer_states=jnp.zeros((capacity, H + 1, system.obs_dim), s1.dtype),
            buffer_actions=jnp.zeros((capacity, H, system.action_dim), s1.dtype),
            obs=s1, sums=jnp.zeros(7 if zero_nonfinite else 6, s1.dtype),
            first_nonfinite=jnp.array(-1, jnp.int32), nonfinite_what=jnp.array(-1, jnp.int32),
        )

    def flag(state: TrainState, i, finite, what: int) -> TrainState:
        new = (state.first_nonfinite < 0) & ~finite
        return state._replace(first_nonfinite=jnp.where(new, i, state.first_nonfinite).astype(jnp.int32),
                              nonfinite_what=jnp.where(new, what, state.nonfinite_what).astype(jnp.int32))

    def env_step(state: TrainState, i, key) -> TrainState:
        t, episode = i % H, i // H
        k_act, k_env = jax.random.split(key)
        action = policy.sample(state.policy_params, state.obs, k_act)
        nxt = system.step(state.obs, action, k_env if cfg.noise_std > 0 else None)
        return state._replace(
            buffer_states=state.buffer_states.at[episode, t].set(state.obs).at[episode, t + 1].set(nxt),
            buffer_actions=state.buffer_actions.at[episode, t].set(action),
            obs=jnp.where(t == H - 1, s1, nxt),
        )

    def model_step(state: TrainState, i, key, n_episodes) -> TrainState:
        idx = jax.random.randint(key, (cfg.model_batch,), 0, n_episodes)
        loss, grad = jax.value_and_grad(model_loss, argnums=1)(
            model, state.model_params, state.buffer_states[idx], state.buffer_actions[idx])
        updates, opt = model_opt.update(grad, state.model_opt, state.model_params)
        state = flag(state, i, jnp.isfinite(loss), 0)
        return state._replace(model_params=optax.apply_updates(state.model_params, updates), model_opt=opt,
                              sums=state.sums.at[0].add(loss).at[1].add(1.0))

    if jax.default_backend() == "cpu":
        # On the CPU the seeds take the world-model update one after another: XLA's CPU backend ran ten seeds'
        # vmapped (batched) matmuls slower than ten single-seed updates in a row (awm-rnn: 12.4x one seed vmapped,
        # 8.1x in a loop; benchmarks/README.md). Everything else stays vmapped, as is everything on accelerators.
        model_step = jax.custom_batching.sequential_vmap(model_step)

    def policy_step(state: TrainState, i, key, n_episodes) -> TrainState:
        k_idx, k_roll = jax.random.split(key)
        starts = state.buffer_states[jax.random.randint(k_idx, (cfg.policy_batch,), 0, n_episodes), 0]
        dynamics = (model, state.model_params) if use_model else system
        args = (starts, k_roll, H, cfg.entropy_coef, cfg.policy_input_grad, reverse_mode(cfg.remat))
        grad, stats = policy_gradient(state.policy_params, policy, dynamics, *args)
        if use_model and cfg.compare_to_simulator:
            reference, _ = policy_gradient(state.policy_params, policy, system, *args)
            cosine, rel_err = gradient_agreement(grad, reference)
        else:
            cosine, rel_err = jnp.ones((), s1.dtype), jnp.zeros((), s1.dtype)
        finite = jnp.isfinite(stats.grad_norm)
        if zero_nonfinite:  # the reference's handling; the update is counted, its statistics left out of the means
            grad = jax.tree.map(lambda g: jnp.where(jnp.isfinite(g), g, 0.0), grad)
            keep = lambda value: jnp.where(finite, value, 0.0)
            sums = (state.sums.at[2].add(keep(stats.grad_norm)).at[3].add(keep(cosine)).at[4].add(keep(rel_err))
                    .at[5].add(finite.astype(s1.dtype)).at[6].add(1.0 - finite.astype(s1.dtype)))
        else:
            state = flag(state, i, finite, 1)
            sums = state.sums.at[2].add(stats.grad_norm).at[3].add(cosine).at[4].add(rel_err).at[5].add(1.0)
        params, opt = policy_update(state.policy_params, state.policy_opt, grad, pol_opt)
        return state._replace(policy_params=params, policy_opt=opt, sums=sums)

    def iteration(state: TrainState, i):
        key, k_env, k_model, k_policy = jax.random.split(state.key, 4)
        state = state._replace(key=key)
        live = i < cfg.total_steps
        state = jax.lax.cond(live, lambda s: env_step(s, i, k_env), lambda s: s, state)
        n_episodes = (i + 1) // H  # complete episodes in the buffer after this step
        learn = live & (i > cfg.warmup_steps) & (n_episodes > 0)
        if use_model:
            state = jax.lax.cond(learn & (i % cfg.model_every == 0),
                                 lambda s: model_step(s, i, k_model, n_episodes), lambda s: s, state)
        state = jax.lax.cond(learn & (i % cfg.policy_every == 0),
                             lambda s: policy_step(s, i, k_policy, n_episodes), lambda s: s, state)
        return state, None

    def chunk(state: TrainState, start: Array) -> tuple[TrainState, ChunkStats]:
        state = state._replace(sums=jnp.zeros_like(state.sums))
        state, _ = jax.lax.scan(iteration, state, start + jnp.arange(cfg.eval_every))
        key, k_eval = jax.random.split(state.key)
        traj = rollout(system, policy.bind(state.policy_params, deterministic=True), s1, H, k_eval)
        m = state.sums
        mean = lambda total, count: jnp.where(count > 0, total / jnp.maximum(count, 1.0), jnp.nan)
        zeroed = m[6].astype(jnp.int32) if zero_nonfinite else jnp.zeros((), jnp.int32)
        stats = ChunkStats(traj.ret, mean(m[0], m[1]), mean(m[2], m[5]), mean(m[3], m[5]), mean(m[4], m[5]),
                           state.first_nonfinite, state.nonfinite_what, zeroed)
        return state._replace(key=key), stats

    return Trainer(cfg, system, init, chunk, -(-cfg.total_steps // cfg.eval_every),
                   model_step if use_model else None, policy_step)
