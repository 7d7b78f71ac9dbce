"""Online Decision Transformer (Zheng, Zhang, Grover 2022), the paper's second model-free baseline, a
`protocol.Method`.

Glossary of shapes: C episode capacity = ceil(total_steps / H), H horizon, K context, B batch of windows,
O observation dim (state + time index), A action dim.

Protocol, counted in real-environment steps like every other method:
  1. offline data: the episodes that start during warmup (n_off = ceil(warmup / H)) act uniformly at random;
  2. pre-training, when the last of them ends: observation mean/std and the return scale are taken from them, the
     target return is R_target = R* + target_gain · |R*| (R* their best return; = 2 R* for R* > 0, PAPER.md §6's guess), and
     `pretrain_updates` updates are made on them;
  3. online fine-tuning: every later episode acts with a sample of π conditioned on R̂_t = R_target - Σ_{k<t} r_k,
     is stored, and is relabelled in hindsight (R̂_t = Σ_{k>=t} r_k, its achieved return-to-go) when sampled;
     one update every `update_every` env steps on windows from all complete episodes.
One update (ODT's objective): minimise NLL(a) - λ·Ĥ[π] for the policy and λ·(Ĥ[π] - β) for the temperature
λ = exp(log λ), each with the other's factor held fixed, Ĥ the sampled entropy estimate and β = target_entropy · A.
Evaluation is one episode of the deterministic policy (tanh of the mean) conditioned on R_target, in the true system.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import optax

from gradlens import envs, validate
from gradlens.training.methods.decision_transformer import DecisionTransformer
from gradlens.training.methods.tanh_gaussian import tanh_gaussian_log_prob, tanh_gaussian_sample
from gradlens.training.protocol import LossSums, Method, flag, loss_means, nonfinite_code

Array = jax.Array
ODT_LOSS = nonfinite_code("ODT loss")


@dataclasses.dataclass(frozen=True)
class ODTConfig:
    """ODT hyperparameters, scaled down from ODT's MuJoCo settings to these small tasks (PAPER.md §6 "Online DT")."""

    context: int = 10  # K time steps per window (ODT: 20); must be <= horizon
    width: int = 64  # E (ODT: 512; PAPER.md's guess: 128)
    layers: int = 2  # (ODT: 4)
    heads: int = 2  # (ODT: 4)
    batch_size: int = 64  # windows per update (ODT: 256)
    lr: float = 1e-3  # AdamW (ODT: 1e-4 with 10k warm-up updates)
    weight_decay: float = 5e-4
    grad_clip: float = 0.25  # global norm
    pretrain_updates: int = 500  # on the offline data (ODT: thousands)
    update_every: int = 4  # env steps between online updates (ODT: 300 updates per 1000-step episode)
    init_temperature: float = 0.1
    temperature_lr: float = 1e-4  # Adam on log λ
    target_entropy: float = -1.0  # β per action dimension (ODT: β = -A)
    target_gain: float = 1.0  # R_target = R* + target_gain · |R*|
    default_warmup: ClassVar[int] = 1000  # TrainConfig.warmup_steps when left unset: the random offline data

    def __post_init__(self):
        for name in ("context", "width", "layers", "heads", "batch_size", "pretrain_updates", "update_every"):
            validate.positive_int(getattr(self, name), f"odt {name}")
        for name in ("lr", "grad_clip", "init_temperature", "temperature_lr"):
            validate.positive(getattr(self, name), f"odt {name}")
        for name in ("weight_decay", "target_gain"):
            validate.finite(getattr(self, name), f"odt {name}", low=0)
        validate.finite(self.target_entropy, "odt target_entropy")
        if self.width % self.heads:
            raise ValueError(f"odt width {self.width} must be divisible by heads {self.heads}")

    def check(self, config) -> None:
        """Constraints involving the run config: the context fits in one episode; there is offline data."""
        validate.integer(self.context, "odt context", high=config.horizon,
                         why=f"a window lies inside one episode of horizon {config.horizon}")
        validate.integer(config.warmup_steps, "odt warmup_steps",
                         why="its offline data are the random-policy episodes started during warmup")


class Normaliser(NamedTuple):
    """Set at pre-training from the offline data: obs_mean, obs_std [O]; return_scale () divides returns-to-go."""

    obs_mean: Array
    obs_std: Array
    return_scale: Array


class Windows(NamedTuple):
    """A batch of K-step windows, normalised: rtg [B, K], states [B, K, O], actions [B, K, A], timesteps [B, K]."""

    rtg: Array
    states: Array
    actions: Array
    timesteps: Array


class Learner(NamedTuple):
    """Transformer params and optimiser state, log-temperature log λ () and its optimiser state."""

    params: Any
    opt: Any
    log_temp: Array
    temp_opt: Any


class UpdateStats(NamedTuple):
    """Per update: action NLL, entropy estimate, policy gradient global norm (before clipping), total loss."""

    nll: Array
    entropy: Array
    grad_norm: Array
    loss: Array


def returns_to_go(rewards: Array) -> Array:
    """Hindsight R̂_t = Σ_{k>=t} r_k: [..., H] -> [..., H]."""
    return jnp.flip(jnp.cumsum(jnp.flip(rewards, -1), -1), -1)


def offline_statistics(states: Array, rewards: Array, n_episodes, target_gain: float) -> tuple[Normaliser, Array]:
    """(Normaliser, R_target) from the first n_episodes rows of states [C, H, O] and rewards [C, H]."""
    used = (jnp.arange(states.shape[0]) < n_episodes).astype(states.dtype)  # [C]
    count = jnp.sum(used) * states.shape[1]
    mean = jnp.einsum("c,cho->o", used, states) / count
    std = jnp.sqrt(jnp.einsum("c,cho->o", used, (states - mean) ** 2) / count)
    returns = jnp.sum(rewards, axis=1)  # [C]
    best = jnp.max(jnp.where(used > 0, returns, -jnp.inf))
    scale = jnp.max(jnp.where(used > 0, jnp.abs(returns), 0.0))
    return Normaliser(mean, jnp.maximum(std, 1e-3), jnp.maximum(scale, 1e-6)), best + target_gain * jnp.abs(best)


def sample_windows(states: Array, actions: Array, rewards: Array, n_episodes, key: Array, batch: int, context: int,
                   norm: Normaliser) -> Windows:
    """B windows of K steps from the first n_episodes of states [C, H, O], actions [C, H, A], rewards [C, H], with
    hindsight returns-to-go: episode uniform, start uniform in 0 … H - K."""
    k_episode, k_start = jax.random.split(key)
    episode = jax.random.randint(k_episode, (batch,), 0, n_episodes)
    start = jax.random.randint(k_start, (batch,), 0, rewards.shape[1] - context + 1)
    rtg = returns_to_go(rewards)

    def window(e, s):
        cut = lambda x: jax.lax.dynamic_slice_in_dim(x[e], s, context)
        return cut(rtg), cut(states), cut(actions)

    r, s, a = jax.vmap(window)(episode, start)
    return Windows(r / norm.return_scale, (s - norm.obs_mean) / norm.obs_std, a, start[:, None] + jnp.arange(context))


def action_nll(params, dt: DecisionTransformer, windows: Windows) -> tuple[Array, Array, Array]:
    """(mean NLL of the windows' actions, loc [B, K, A], scale [B, K, A])."""
    loc, scale = jax.vmap(dt.apply, in_axes=(None, 0, 0, 0, 0))(params, *windows)
    return -jnp.mean(jax.vmap(jax.vmap(tanh_gaussian_log_prob))(loc, scale, windows.actions)), loc, scale


def loss(params, log_temp: Array, dt: DecisionTransformer, windows: Windows, key: Array, target_entropy: float):
    """ODT's two losses in one: NLL - sg(λ)·Ĥ (policy) + λ·sg(Ĥ - β) (temperature); aux (NLL, Ĥ)."""
    nll, loc, scale = action_nll(params, dt, windows)
    keys = jax.random.split(key, loc.shape[0] * loc.shape[1]).reshape(*loc.shape[:2], -1)
    entropy = -jnp.mean(jax.vmap(jax.vmap(tanh_gaussian_sample))(loc, scale, keys)[1])
    temp = jnp.exp(log_temp)
    beta = target_entropy * dt.action_dim
    return nll - jax.lax.stop_gradient(temp) * entropy + temp * jax.lax.stop_gradient(entropy - beta), (nll, entropy)


def optimizers(odt: ODTConfig) -> tuple[optax.GradientTransformation, optax.GradientTransformation]:
    """(transformer: clip + AdamW, temperature: Adam)."""
    return (optax.chain(optax.clip_by_global_norm(odt.grad_clip), optax.adamw(odt.lr, weight_decay=odt.weight_decay)),
            optax.adam(odt.temperature_lr))


def init_learner(dt: DecisionTransformer, odt: ODTConfig, key: Array) -> Learner:
    params = dt.init(key, odt.context)
    log_temp = jnp.log(jnp.asarray(odt.init_temperature, jax.tree.leaves(params)[0].dtype))
    opt, temp_opt = optimizers(odt)
    return Learner(params, opt.init(params), log_temp, temp_opt.init(log_temp))


def update(learner: Learner, dt: DecisionTransformer, odt: ODTConfig, windows: Windows, key: Array
           ) -> tuple[Learner, UpdateStats]:
    """One step of both optimisers on `windows`."""
    (value, (nll, entropy)), (g_params, g_temp) = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(
        learner.params, learner.log_temp, dt, windows, key, odt.target_entropy)
    opt, temp_opt = optimizers(odt)
    updates, opt_state = opt.update(g_params, learner.opt, learner.params)
    temp_updates, temp_state = temp_opt.update(g_temp, learner.temp_opt, learner.log_temp)
    new = Learner(optax.apply_updates(learner.params, updates), opt_state,
                  optax.apply_updates(learner.log_temp, temp_updates), temp_state)
    return new, UpdateStats(nll, entropy, optax.tree.norm(g_params), value)


def act(dt: DecisionTransformer, params, norm: Normaliser, target: Array, states: Array, actions: Array,
        rewards: Array, t, context: int, key: Array | None = None) -> Array:
    """Action [A] at step t of an episode whose states [H, O] are filled up to t and actions, rewards [H] up to t - 1,
    conditioned on R̂_k = target - Σ_{j<k} r_j: a sample of π, or tanh(mean) when key is None."""
    rtg = target - (jnp.cumsum(rewards) - rewards)  # [H]
    start = jnp.clip(t - context + 1, 0, rewards.shape[0] - context)
    cut = lambda x: jax.lax.dynamic_slice_in_dim(x, start, context)
    loc, scale = dt.apply(params, cut(rtg) / norm.return_scale, (cut(states) - norm.obs_mean) / norm.obs_std,
                          cut(actions), start + jnp.arange(context))
    loc, scale = loc[t - start], scale[t - start]  # positions after t are unfilled; causality ignores them
    return jnp.tanh(loc) if key is None else tanh_gaussian_sample(loc, scale, key)[0]


class ODTState(NamedTuple):
    """Everything a seed's ODT run carries between iterations (a checkpoint is exactly this pytree)."""

    key: Array
    learner: Learner
    states: Array  # [C, H, O]; episode e holds env steps e·H … e·H + H - 1
    actions: Array  # [C, H, A]
    rewards: Array  # [C, H]
    obs: Array  # [O] current real-environment state
    norm: Normaliser  # identity until pre-training
    target: Array  # () R_target, 0 until pre-training
    sums: Array  # [4] LossSums: action NLL, #updates, gradient norm, #updates
    first_nonfinite: Array  # int32: first iteration with a non-finite loss, or -1
    nonfinite_what: Array  # int32 index into protocol.NONFINITE


class _Parts(NamedTuple):
    """What ODT's pure functions share: the run config, its ODT settings and the objects built from them."""

    cfg: Any
    odt: Any  # ODTConfig
    system: Any
    dt: Any  # DecisionTransformer
    capacity: int  # C episodes in the buffer
    n_offline: int  # episodes of uniform actions before pre-training
    s1: Array  # [O]

    @property
    def pretrain_at(self) -> int:
        """The iteration that completes the offline data."""
        return self.n_offline * self.cfg.horizon - 1

    def noise_key(self, key):
        return key if self.cfg.noise_std > 0 else None


def make_odt(config) -> Method:
    """ODT for the run config `config` (method "odt"), its settings `config.baseline`.

    `policy_step` is one update `(state, i, key, n_episodes) -> state`; there is no `model_step`.
    """
    cfg, odt = config, config.baseline
    system = envs.make(cfg.system, horizon=cfg.horizon, noise_std=cfg.noise_std)
    dt = DecisionTransformer(system.obs_dim, system.action_dim, cfg.horizon, odt.width, odt.layers, odt.heads)
    p = _Parts(cfg, odt, system, dt, -(-cfg.total_steps // cfg.horizon), -(-cfg.warmup_steps // cfg.horizon),
               system.initial_state())
    learn_step = functools.partial(_learn_step, p)
    return Method(system, functools.partial(_init, p), functools.partial(_iteration, p, learn_step),
                  functools.partial(_evaluate, p), loss_means, None, learn_step)


def _init(p: _Parts, key: Array) -> ODTState:
    k_run, k_net = jax.random.split(key)
    s1, H, A = p.s1, p.cfg.horizon, p.system.action_dim
    identity = Normaliser(jnp.zeros_like(s1), jnp.ones_like(s1), jnp.ones((), s1.dtype))
    return ODTState(k_run, init_learner(p.dt, p.odt, k_net), jnp.zeros((p.capacity, H, p.system.obs_dim), s1.dtype),
                    jnp.zeros((p.capacity, H, A), s1.dtype), jnp.zeros((p.capacity, H), s1.dtype), s1, identity,
                    jnp.zeros((), s1.dtype), jnp.zeros(4, s1.dtype), jnp.array(-1, jnp.int32),
                    jnp.array(-1, jnp.int32))


def _env_step(p: _Parts, state: ODTState, i, key) -> ODTState:
    """One real-environment step: uniform actions for the offline episodes, then the transformer's."""
    H, K, A = p.cfg.horizon, p.odt.context, p.system.action_dim
    e, t = i // H, i % H
    k_act, k_env = jax.random.split(key)
    states = state.states.at[e, t].set(state.obs)
    action = jax.lax.cond(
        e < p.n_offline, lambda: jax.random.uniform(k_act, (A,), p.s1.dtype, -1.0, 1.0),
        lambda: act(p.dt, state.learner.params, state.norm, state.target, states[e], state.actions[e],
                    state.rewards[e], t, K, k_act))
    nxt = p.system.step(state.obs, action, p.noise_key(k_env))
    return state._replace(states=states, actions=state.actions.at[e, t].set(action),
                          rewards=state.rewards.at[e, t].set(p.system.reward(state.obs, action)),
                          obs=jnp.where(t == H - 1, p.s1, nxt))


def _learn_step(p: _Parts, state: ODTState, i, key, n_episodes) -> ODTState:
    """One update of the transformer on a batch of context windows."""
    k_batch, k_loss = jax.random.split(key)
    windows = sample_windows(state.states, state.actions, state.rewards, n_episodes, k_batch, p.odt.batch_size,
                             p.odt.context, state.norm)
    learner, stats = update(state.learner, p.dt, p.odt, windows, k_loss)
    state = flag(state, i, jnp.isfinite(stats.loss) & jnp.isfinite(stats.grad_norm), ODT_LOSS)
    sums = state.sums + jnp.stack(LossSums(stats.nll, 1.0, stats.grad_norm, 1.0)).astype(state.sums.dtype)
    return state._replace(learner=learner, sums=sums)


def _start_pretraining(p: _Parts, state: ODTState) -> ODTState:
    norm, target = offline_statistics(state.states, state.rewards, p.n_offline, p.odt.target_gain)
    return state._replace(norm=norm, target=target)


def _iteration(p: _Parts, learn_step, state: ODTState, i) -> ODTState:
    """Real-environment step i; at the end of the offline data the pre-training updates, later one update every
    `update_every` steps."""
    cfg, odt, H = p.cfg, p.odt, p.cfg.horizon
    key, k_env, k_learn = jax.random.split(state.key, 3)
    state = state._replace(key=key)
    live = i < cfg.total_steps
    state = jax.lax.cond(live, lambda s: _env_step(p, s, i, k_env), lambda s: s, state)
    pretrain = live & (i == p.pretrain_at)
    state = jax.lax.cond(pretrain, lambda s: _start_pretraining(p, s), lambda s: s, state)
    online = live & (i > p.pretrain_at) & (i % odt.update_every == 0)
    n_updates = jnp.where(pretrain, odt.pretrain_updates, jnp.where(online, 1, 0))  # one copy of the update
    body = lambda j, s: learn_step(s, i, jax.random.fold_in(k_learn, j), (i + 1) // H)
    return jax.lax.fori_loop(0, n_updates, body, state)


def _evaluate(p: _Parts, state: ODTState, key) -> Array:
    """Return of one episode of tanh(mean) conditioned on R_target, in the true system."""
    system, H, K, A, s1 = p.system, p.cfg.horizon, p.odt.context, p.system.action_dim, p.s1

    def body(carry, inputs):
        states, actions, rewards, obs = carry
        t, k = inputs
        states = states.at[t].set(obs)
        a = act(p.dt, state.learner.params, state.norm, state.target, states, actions, rewards, t, K)
        carry = (states, actions.at[t].set(a), rewards.at[t].set(system.reward(obs, a)),
                 system.step(obs, a, p.noise_key(k)))
        return carry, None

    empty = (jnp.zeros((H, system.obs_dim), s1.dtype), jnp.zeros((H, A), s1.dtype), jnp.zeros(H, s1.dtype), s1)
    (_, _, rewards, _), _ = jax.lax.scan(body, empty, (jnp.arange(H), jax.random.split(key, H)))
    return jnp.sum(rewards)
