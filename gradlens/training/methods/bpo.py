"""BPO, the paper's Algorithm 1 (PAPER.md §1.2): collect -> fit the world model -> BPO, or BPO through the true
simulator (method "simulator", no model).

Glossary of shapes: C episode capacity = ceil(total_steps / H), H horizon, O obs dim, A action dim.

One iteration i = one environment step with the current stochastic policy, then
    if i > warmup and i % model_every == 0:   one Adam step on the world-model MSE (batch of whole episodes)
    if i > warmup and i % policy_every == 0:  one BPO step (batch of imagined rollouts from buffered s_1), and the
                                              same gradient through the true simulator for comparison (cosine, error)
The iteration index is not vmapped, so the schedule's `lax.cond`s stay real branches under `vmap` (no wasted
updates). Evaluation is one episode of the deterministic policy in the true system.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from gradlens import envs, models, validate
from gradlens.policies import check_time_input, make_policy
from gradlens.fitting.fit import model_loss
from gradlens.objective import gradient_agreement, policy_gradient, reverse_mode
from gradlens.rollout import check_policy_input_grad, rollout
from gradlens.training.bpo import UPDATE_RULES, natural_step, policy_optimizer, policy_update
from gradlens.training.protocol import Means, Method, add, flag, mean, nonfinite_code, sequential_on_cpu

Array = jax.Array
SIMULATOR = "simulator"
BPO_WARMUP_STEPS = 1500
# What BPO does with a policy gradient holding NaN/Inf: "stop" the run loudly (naming step, seed and quantity), or
# "zero" its non-finite entries and go on, as the reference implementation does, counting each such update per seed
# (metrics column `zeroed_policy_grads`). The model-free baselines always stop on a non-finite loss.
NONFINITE_POLICY_GRAD = ("stop", "zero")
MODEL_LOSS, POLICY_GRADIENT = nonfinite_code("world-model loss"), nonfinite_code("policy gradient")


@dataclasses.dataclass(frozen=True)
class BPOConfig:
    """BPO hyperparameters; defaults are the paper's (PAPER.md §6). Periods count real-environment steps.

    Every run config holds one (its fields are top-level keys of config.json); the baselines read only
    `entropy_coef` (SAC's fixed α).
    """

    model_every: int = 2
    policy_every: int = 16
    model_batch: int = 64  # episodes per world-model update
    policy_batch: int = 16  # imagined rollouts per policy update
    model_lr: float = 1e-3
    policy_lr: float = 1e-4
    entropy_coef: float = 0.1
    grad_clip: float = 100.0  # global-norm clip of the policy gradient through a world model
    simulator_grad_clip: float | None = None  # the same through the true simulator; None: unclipped, as the reference
    policy: str = "mlp"  # "mlp" (tanh-Gaussian state feedback) or "open_loop"
    policy_hidden: tuple[int, ...] = (64, 64)
    policy_time_input: str = "raw"  # the MLP reads the step index raw (the paper) or t / H ("unit"; docs/fidelity.md)
    policy_input_grad: str | float = "stop"
    nonfinite_policy_grad: str = "stop"  # "stop" the run, or "zero" non-finite entries and go on (the reference)
    compare_to_simulator: bool = True  # log cosine / relative error of each model gradient to the simulator's (NaN
    # when False: the extra simulator gradient per update is skipped)
    remat: bool = True  # recompute imagined rollout steps in the backward pass (gradlens.rollout): less memory traffic
    # Stabilisers (issue 21, docs/stability.md), off by default; grad_clip above is the fourth.
    discount: float = 1.0  # γ in (0, 1] on the imagined return
    truncate: int | None = None  # truncated backpropagation through time: stop the gradient every k steps
    update_rule: str = "adam"  # "adam" (the paper's) or "natural": natural-gradient steps (gradlens.training.bpo)
    natural_kl: float = 0.01  # "natural": the KL radius δ of each step

    def __post_init__(self):
        for name in ("model_every", "policy_every", "model_batch", "policy_batch"):
            validate.positive_int(getattr(self, name), name)
        for name in ("model_lr", "policy_lr", "grad_clip"):
            validate.positive(getattr(self, name), name)
        validate.finite(self.entropy_coef, "entropy_coef")
        validate.positive(self.simulator_grad_clip, "simulator_grad_clip", or_none=True)
        check_time_input(self.policy_time_input)
        validate.one_of(self.nonfinite_policy_grad, NONFINITE_POLICY_GRAD, "nonfinite_policy_grad")
        validate.flag(self.compare_to_simulator, "compare_to_simulator")
        validate.flag(self.remat, "remat")
        validate.discount(self.discount)
        validate.truncation(self.truncate)
        validate.one_of(self.update_rule, UPDATE_RULES, "update_rule")
        validate.positive(self.natural_kl, "natural_kl")
        if self.update_rule == "natural" and self.policy != "mlp":
            raise ValueError(f"update_rule 'natural' needs the 'mlp' policy (its Fisher is the Gaussian's), got "
                             f"policy {self.policy!r}")
        check_policy_input_grad(self.policy_input_grad)
        if not isinstance(self.policy_hidden, (tuple, list)):
            raise ValueError(f"policy_hidden must be a list of positive integers, got {self.policy_hidden!r}")
        object.__setattr__(self, "policy_hidden", tuple(self.policy_hidden))

    def check(self, config) -> None:
        """Constraints involving the run config: the policy fits the system (builds both, ValueError naming the bad
        value otherwise)."""
        system = envs.make(config.system, horizon=config.horizon, noise_std=config.noise_std)
        make_policy(self.policy, system, self.policy_hidden, time_input=self.policy_time_input)


class BPOSums(NamedTuple):
    """Names of a chunk's running totals (`state.sums`); `zeroed` exists only with nonfinite_policy_grad="zero",
    and then the policy-gradient totals count the finite updates only."""

    model_loss: Array
    model_updates: Array
    grad_norm: Array
    cosine: Array
    relative_error: Array
    policy_updates: Array
    zeroed: Array


class TrainState(NamedTuple):
    """Everything a seed's BPO run carries between iterations (a checkpoint is exactly this pytree)."""

    key: Array
    policy_params: Any
    policy_opt: Any
    model_params: Any
    model_opt: Any
    buffer_states: Array  # [C, H+1, O]; episode e holds env steps e·H … e·H + H
    buffer_actions: Array  # [C, H, A]
    obs: Array  # [O] current real-environment state
    sums: Array  # [6], or [7] with nonfinite_policy_grad="zero": BPOSums
    first_nonfinite: Array  # int32: first iteration with a non-finite loss or gradient, or -1
    nonfinite_what: Array  # int32 index into protocol.NONFINITE


class _Parts(NamedTuple):
    """What BPO's pure functions share: the run config, its BPO options and the objects built from them."""

    cfg: Any
    bpo: BPOConfig
    system: Any
    policy: Any
    model: Any  # None for the simulator
    policy_opt: optax.GradientTransformation
    model_opt: optax.GradientTransformation
    s1: Array  # [O]
    capacity: int  # C episodes in the buffer

    @property
    def zero_nonfinite(self) -> bool:
        return self.bpo.nonfinite_policy_grad == "zero"


def make_bpo(config) -> Method:
    """BPO for the run config `config` (method "simulator" or a gradlens.models name), its options `config.bpo`.

    `model_step` (None for the simulator) and `policy_step` are `(state, i, key, n_episodes) -> state`.
    """
    cfg, bpo = config, config.bpo
    system = envs.make(cfg.system, horizon=cfg.horizon, noise_std=cfg.noise_std)
    use_model = cfg.method != SIMULATOR
    parts = _Parts(
        cfg=cfg, bpo=bpo, system=system,
        policy=make_policy(bpo.policy, system, bpo.policy_hidden, time_input=bpo.policy_time_input),
        model=models.make(cfg.method, system) if use_model else None,
        policy_opt=policy_optimizer(bpo.policy_lr, bpo.grad_clip if use_model else bpo.simulator_grad_clip,
                                    bpo.update_rule),
        model_opt=optax.adam(bpo.model_lr), s1=system.initial_state(), capacity=-(-cfg.total_steps // cfg.horizon))
    # the world-model update is the only one not batched over seeds on the CPU
    model_step = sequential_on_cpu(functools.partial(_model_step, parts)) if use_model else None
    policy_step = functools.partial(_policy_step, parts)
    return Method(system, functools.partial(_init, parts), functools.partial(_iteration, parts, model_step, policy_step),
                  functools.partial(_evaluate, parts), functools.partial(_means, parts), model_step, policy_step)


def _init(p: _Parts, key: Array) -> TrainState:
    k_run, k_policy, k_model = jax.random.split(key, 3)
    policy_params = p.policy.init(k_policy)
    model_params = p.model.init(k_model) if p.model is not None else ()
    H, dtype = p.cfg.horizon, p.s1.dtype
    return TrainState(
        key=k_run, policy_params=policy_params, policy_opt=p.policy_opt.init(policy_params),
        model_params=model_params, model_opt=p.model_opt.init(model_params) if p.model is not None else (),
        buffer_states=jnp.zeros((p.capacity, H + 1, p.system.obs_dim), dtype),
        buffer_actions=jnp.zeros((p.capacity, H, p.system.action_dim), dtype),
        obs=p.s1, sums=jnp.zeros(len(BPOSums._fields) - (0 if p.zero_nonfinite else 1), dtype),
        first_nonfinite=jnp.array(-1, jnp.int32), nonfinite_what=jnp.array(-1, jnp.int32),
    )


def _env_step(p: _Parts, state: TrainState, i, key) -> TrainState:
    """One real-environment step with the stochastic policy, stored in the buffer; the episode restarts at s1."""
    H = p.cfg.horizon
    t, episode = i % H, i // H
    k_act, k_env = jax.random.split(key)
    action = p.policy.sample(state.policy_params, state.obs, k_act)
    nxt = p.system.step(state.obs, action, k_env if p.cfg.noise_std > 0 else None)
    return state._replace(
        buffer_states=state.buffer_states.at[episode, t].set(state.obs).at[episode, t + 1].set(nxt),
        buffer_actions=state.buffer_actions.at[episode, t].set(action),
        obs=jnp.where(t == H - 1, p.s1, nxt),
    )


def _model_step(p: _Parts, state: TrainState, i, key, n_episodes) -> TrainState:
    """One Adam step on the world-model MSE over `model_batch` buffered episodes."""
    idx = jax.random.randint(key, (p.bpo.model_batch,), 0, n_episodes)
    loss, grad = jax.value_and_grad(model_loss, argnums=1)(
        p.model, state.model_params, state.buffer_states[idx], state.buffer_actions[idx])
    updates, opt = p.model_opt.update(grad, state.model_opt, state.model_params)
    state = flag(state, i, jnp.isfinite(loss), MODEL_LOSS)
    return state._replace(model_params=optax.apply_updates(state.model_params, updates), model_opt=opt,
                          sums=add(state.sums, BPOSums, model_loss=loss, model_updates=1.0))


def _policy_step(p: _Parts, state: TrainState, i, key, n_episodes) -> TrainState:
    """One BPO step: the imagined objective's gradient from `policy_batch` buffered start states, compared with the
    simulator's, checked for NaN/Inf, then Adam (or a natural-gradient step)."""
    bpo, H = p.bpo, p.cfg.horizon
    k_idx, k_roll = jax.random.split(key)
    idx = jax.random.randint(k_idx, (bpo.policy_batch,), 0, n_episodes)
    dynamics = (p.model, state.model_params) if p.model is not None else p.system
    args = (state.buffer_states[idx, 0], k_roll, H, bpo.entropy_coef, bpo.policy_input_grad, reverse_mode(bpo.remat),
            bpo.discount, bpo.truncate)
    grad, stats = policy_gradient(state.policy_params, p.policy, dynamics, *args)
    if p.model is None:  # the simulator's gradient is the reference
        cosine, rel_err = jnp.ones((), p.s1.dtype), jnp.zeros((), p.s1.dtype)
    elif bpo.compare_to_simulator:
        reference, _ = policy_gradient(state.policy_params, p.policy, p.system, *args)
        cosine, rel_err = gradient_agreement(grad, reference)
    else:  # not measured: NaN in the logs, never a made-up agreement
        cosine = rel_err = jnp.full((), jnp.nan, p.s1.dtype)
    grad, state = _checked(p, state, i, grad, stats.grad_norm, cosine, rel_err)
    if bpo.update_rule == "natural":  # the Fisher at the sampled episodes' real states
        visited = state.buffer_states[idx, :-1]  # [B, H, O]
        grad, _ = natural_step(p.policy, state.policy_params, grad, visited.reshape(-1, visited.shape[-1]),
                               bpo.natural_kl)
    params, opt = policy_update(state.policy_params, state.policy_opt, grad, p.policy_opt)
    return state._replace(policy_params=params, policy_opt=opt)


def _checked(p: _Parts, state: TrainState, i, grad, grad_norm, cosine, rel_err) -> tuple[Any, TrainState]:
    """(gradient, state with the update's statistics added): a non-finite gradient is flagged (the run stops), or
    with nonfinite_policy_grad="zero" its bad entries zeroed, counted, and its statistics left out of the means."""
    finite = jnp.isfinite(grad_norm)
    dtype = p.s1.dtype
    if p.zero_nonfinite:
        grad = jax.tree.map(lambda g: jnp.where(jnp.isfinite(g), g, 0.0), grad)
        keep = lambda value: jnp.where(finite, value, 0.0)
        sums = add(state.sums, BPOSums, grad_norm=keep(grad_norm), cosine=keep(cosine), relative_error=keep(rel_err),
                   policy_updates=finite.astype(dtype), zeroed=1.0 - finite.astype(dtype))
        return grad, state._replace(sums=sums)
    state = flag(state, i, finite, POLICY_GRADIENT)
    return grad, state._replace(sums=add(state.sums, BPOSums, grad_norm=grad_norm, cosine=cosine,
                                         relative_error=rel_err, policy_updates=1.0))


def _iteration(p: _Parts, model_step, policy_step, state: TrainState, i) -> TrainState:
    """Real-environment step i, then the updates the schedule (module docstring) runs at i."""
    cfg, bpo = p.cfg, p.bpo
    key, k_env, k_model, k_policy = jax.random.split(state.key, 4)
    state = state._replace(key=key)
    live = i < cfg.total_steps
    state = jax.lax.cond(live, lambda s: _env_step(p, s, i, k_env), lambda s: s, state)
    n_episodes = (i + 1) // cfg.horizon  # complete episodes in the buffer after this step
    learn = live & (i > cfg.warmup_steps) & (n_episodes > 0)
    if model_step is not None:
        state = jax.lax.cond(learn & (i % bpo.model_every == 0),
                             lambda s: model_step(s, i, k_model, n_episodes), lambda s: s, state)
    return jax.lax.cond(learn & (i % bpo.policy_every == 0),
                        lambda s: policy_step(s, i, k_policy, n_episodes), lambda s: s, state)


def _evaluate(p: _Parts, state: TrainState, key) -> Array:
    """Return of one episode of the deterministic policy in the true system."""
    return rollout(p.system, p.policy.bind(state.policy_params, deterministic=True), p.s1, p.cfg.horizon, key).ret


def _means(p: _Parts, sums: Array) -> Means:
    m = BPOSums(*sums) if p.zero_nonfinite else BPOSums(*sums, zeroed=None)
    zeroed = m.zeroed.astype(jnp.int32) if p.zero_nonfinite else jnp.zeros((), jnp.int32)
    return Means(mean(m.model_loss, m.model_updates), mean(m.grad_norm, m.policy_updates),
                 mean(m.cosine, m.policy_updates), mean(m.relative_error, m.policy_updates), zeroed)
