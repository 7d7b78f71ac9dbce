"""Soft actor-critic (Haarnoja et al. 2018), the paper's model-free baseline (PAPER.md §6), a `protocol.Method`.

Glossary of shapes: N replay capacity (= total_steps: nothing is ever evicted), B batch, Q critics, O observation dim
(state + time index), A action dim.

One iteration i = one real-environment step, with a uniform random action while i < warmup and the actor's
sample after, stored in the replay; then, from i = warmup on,
    if i % critic_every == 0:  one Adam step on every critic's soft Bellman error, then Polyak targets (τ)
    if i % actor_every == 0:   one Adam step on E_s[α log π(a|s) - min_q Q_q(s, a)], a ~ π(·|s) reparameterised
with the soft target y = r + γ (1 - done) (min_q Q̄_q(s', a') - α log π(a'|s')), a' ~ π(·|s'), and done = 1 at
t = H - 1 (the time index in the observation makes the finite-horizon task Markov). α = the run's entropy_coef.
Evaluation is one episode of the deterministic policy tanh(μ(s)) in the true system.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, ClassVar, NamedTuple

import haiku as hk
import jax
import jax.numpy as jnp
import optax

from gradlens import envs, validate
from gradlens.models.layers import mlp
from gradlens.rollout import rollout
from gradlens.training.methods.tanh_gaussian import tanh_gaussian_sample
from gradlens.training.protocol import LossSums, Method, add, flag, loss_means, nonfinite_code

Array = jax.Array
CRITIC_LOSS, ACTOR_LOSS = nonfinite_code("SAC critic loss"), nonfinite_code("SAC actor loss")


@dataclasses.dataclass(frozen=True)
class SACConfig:
    """SAC hyperparameters; defaults are the paper's (PAPER.md §6) except where noted."""

    hidden: tuple[int, ...] = (256, 256)  # actor and critic MLPs, relu
    lr: float = 3e-4  # Adam, actor and critics
    discount: float = 0.99
    batch_size: int = 128  # transitions per update
    tau: float = 0.005  # Polyak rate of the target critics
    n_critics: int = 2  # twin critics (PAPER.md's code has one Q network: n_critics=1)
    critic_every: int = 1  # env steps between critic updates (PAPER.md's code: 2)
    actor_every: int = 1  # env steps between actor updates (PAPER.md's code: 4)
    min_scale: float = 1e-3  # σ = softplus(·) + min_scale
    default_warmup: ClassVar[int] = 1000  # TrainConfig.warmup_steps when left unset: uniform random actions

    def __post_init__(self):
        for name in ("batch_size", "n_critics", "critic_every", "actor_every"):
            validate.positive_int(getattr(self, name), f"sac {name}")
        for name in ("lr", "tau", "min_scale"):
            validate.positive(getattr(self, name), f"sac {name}")
        object.__setattr__(self, "hidden", validate.positive_ints(self.hidden, "sac hidden"))
        validate.probability(self.discount, "sac discount")
        validate.probability(self.tau, "sac tau")

    def check(self, config) -> None:
        """Constraints involving the run config: α = entropy_coef must be >= 0."""
        validate.finite(config.bpo.entropy_coef, "sac's fixed entropy coefficient α (entropy_coef)", low=0)


class Transitions(NamedTuple):
    """(s, a, r, s', done): obs [..., O], action [..., A], reward [...], next_obs [..., O], done [...] in {0, 1}."""

    obs: Array
    action: Array
    reward: Array
    next_obs: Array
    done: Array


class Networks(NamedTuple):
    """actor: obs [O] -> (loc [A], scale [A]) of the pre-tanh Gaussian; critic: (obs [O], action [A]) -> Q scalar."""

    actor: hk.Transformed
    critic: hk.Transformed


def make_networks(action_dim: int, hidden: tuple[int, ...], min_scale: float = 1e-3) -> Networks:
    def actor(obs):
        loc, raw = jnp.split(mlp(hidden, 2 * action_dim, "relu", name="actor")(obs), 2, axis=-1)
        return loc, jax.nn.softplus(raw) + min_scale

    def critic(obs, action):
        return mlp(hidden, 1, "relu", name="critic")(jnp.concatenate([obs, action], axis=-1))[..., 0]

    return Networks(hk.without_apply_rng(hk.transform(actor)), hk.without_apply_rng(hk.transform(critic)))


def q_values(nets: Networks, critic_params, obs: Array, action: Array) -> Array:
    """Every critic's Q(s, a): obs [B, O], action [B, A] -> [Q, B] (critic params stacked along a leading Q axis)."""
    return jax.vmap(nets.critic.apply, in_axes=(0, None, None))(critic_params, obs, action)


def sample_actions(nets: Networks, actor_params, obs: Array, key: Array) -> tuple[Array, Array]:
    """a ~ π(·|s) reparameterised and log π(a|s): obs [B, O] -> ([B, A], [B])."""
    loc, scale = nets.actor.apply(actor_params, obs)  # [B, A]
    return jax.vmap(tanh_gaussian_sample)(loc, scale, jax.random.split(key, obs.shape[0]))


def critic_loss(critic_params, target_params, actor_params, nets: Networks, batch: Transitions, key: Array,
                alpha: float, discount: float) -> Array:
    """Mean over critics and batch of (Q_q(s, a) - y)², y the soft target (no gradient)."""
    next_action, next_log_prob = sample_actions(nets, actor_params, batch.next_obs, key)
    next_q = jnp.min(q_values(nets, target_params, batch.next_obs, next_action), axis=0)  # [B]
    y = batch.reward + discount * (1.0 - batch.done) * (next_q - alpha * next_log_prob)
    return jnp.mean((q_values(nets, critic_params, batch.obs, batch.action) - jax.lax.stop_gradient(y)) ** 2)


def actor_loss(actor_params, critic_params, nets: Networks, obs: Array, key: Array, alpha: float) -> Array:
    """E_s[α log π(a|s) - min_q Q_q(s, a)] over obs [B, O]; the critics are not differentiated."""
    action, log_prob = sample_actions(nets, actor_params, obs, key)
    q = jnp.min(q_values(nets, jax.lax.stop_gradient(critic_params), obs, action), axis=0)
    return jnp.mean(alpha * log_prob - q)


def soft_update(target, online, tau: float):
    """Polyak averaging: target ← (1 - τ) target + τ online."""
    return jax.tree.map(lambda t, o: (1.0 - tau) * t + tau * o, target, online)


class SACState(NamedTuple):
    """Everything a seed's SAC run carries between iterations (a checkpoint is exactly this pytree)."""

    key: Array
    actor_params: Any
    actor_opt: Any
    critic_params: Any  # every leaf [Q, ...]
    critic_opt: Any
    target_params: Any  # every leaf [Q, ...]
    replay: Transitions  # leading axis N; row i holds env step i
    obs: Array  # [O] current real-environment state
    sums: Array  # [4] LossSums: critic loss, #critic updates, actor grad norm, #actor updates
    first_nonfinite: Array  # int32: first iteration with a non-finite loss, or -1
    nonfinite_what: Array  # int32 index into protocol.NONFINITE


class _Parts(NamedTuple):
    """What SAC's pure functions share: the run config, its SAC settings and the objects built from them."""

    cfg: Any
    sac: Any  # SACConfig
    system: Any
    nets: Any
    optimizer: optax.GradientTransformation
    s1: Array  # [O]
    alpha: float  # the fixed entropy coefficient α


def make_sac(config) -> Method:
    """SAC for the run config `config` (method "sac"), its settings `config.baseline`, α = `config.bpo.entropy_coef`.

    `model_step` is the critic update and `policy_step` the actor update, both `(state, i, key, n_transitions) ->
    state`.
    """
    system = envs.make(config.system, horizon=config.horizon, noise_std=config.noise_std)
    sac = config.baseline
    p = _Parts(config, sac, system, make_networks(system.action_dim, sac.hidden, sac.min_scale), optax.adam(sac.lr),
               system.initial_state(), config.bpo.entropy_coef)
    critic_step, actor_step = functools.partial(_critic_step, p), functools.partial(_actor_step, p)
    return Method(system, functools.partial(_init, p), functools.partial(_iteration, p, critic_step, actor_step),
                  functools.partial(_evaluate, p), loss_means, critic_step, actor_step)


def _init(p: _Parts, key: Array) -> SACState:
    k_run, k_actor, k_critic = jax.random.split(key, 3)
    s1, system, n = p.s1, p.system, p.cfg.total_steps
    a0 = jnp.zeros(system.action_dim, s1.dtype)
    actor_params = p.nets.actor.init(k_actor, s1)
    critic_params = jax.vmap(p.nets.critic.init, in_axes=(0, None, None))(
        jax.random.split(k_critic, p.sac.n_critics), s1, a0)
    empty = Transitions(jnp.zeros((n, system.obs_dim), s1.dtype), jnp.zeros((n, system.action_dim), s1.dtype),
                        jnp.zeros(n, s1.dtype), jnp.zeros((n, system.obs_dim), s1.dtype), jnp.zeros(n, s1.dtype))
    return SACState(k_run, actor_params, p.optimizer.init(actor_params), critic_params,
                    p.optimizer.init(critic_params), critic_params, empty, p.s1, jnp.zeros(4, s1.dtype),
                    jnp.array(-1, jnp.int32), jnp.array(-1, jnp.int32))


def _env_step(p: _Parts, state: SACState, i, key) -> SACState:
    """One real-environment step (uniform actions during warm-up), stored as replay row i."""
    k_act, k_random, k_env = jax.random.split(key, 3)
    loc, scale = p.nets.actor.apply(state.actor_params, state.obs)
    uniform = jax.random.uniform(k_random, loc.shape, loc.dtype, -1.0, 1.0)
    action = jnp.where(i < p.cfg.warmup_steps, uniform, tanh_gaussian_sample(loc, scale, k_act)[0])
    nxt = p.system.step(state.obs, action, k_env if p.cfg.noise_std > 0 else None)
    done = p.system.is_terminal(envs.time_index(state.obs))
    row = Transitions(state.obs, action, p.system.reward(state.obs, action), nxt, done.astype(p.s1.dtype))
    replay = jax.tree.map(lambda buffer, x: buffer.at[i].set(x), state.replay, row)
    return state._replace(replay=replay, obs=jnp.where(done, p.s1, nxt))


def _batch(p: _Parts, state: SACState, key, n_transitions) -> Transitions:
    idx = jax.random.randint(key, (p.sac.batch_size,), 0, n_transitions)
    return jax.tree.map(lambda x: x[idx], state.replay)


def _critic_step(p: _Parts, state: SACState, i, key, n_transitions) -> SACState:
    """One Adam step on the critics' soft Bellman loss, then the targets' soft update."""
    k_batch, k_loss = jax.random.split(key)
    loss, grad = jax.value_and_grad(critic_loss)(
        state.critic_params, state.target_params, state.actor_params, p.nets, _batch(p, state, k_batch, n_transitions),
        k_loss, p.alpha, p.sac.discount)
    updates, opt = p.optimizer.update(grad, state.critic_opt, state.critic_params)
    params = optax.apply_updates(state.critic_params, updates)
    state = flag(state, i, jnp.isfinite(loss), CRITIC_LOSS)
    return state._replace(critic_params=params, critic_opt=opt,
                          target_params=soft_update(state.target_params, params, p.sac.tau),
                          sums=add(state.sums, LossSums, loss=loss, loss_updates=1.0))


def _actor_step(p: _Parts, state: SACState, i, key, n_transitions) -> SACState:
    """One Adam step on the actor's loss."""
    k_batch, k_loss = jax.random.split(key)
    obs = _batch(p, state, k_batch, n_transitions).obs
    loss, grad = jax.value_and_grad(actor_loss)(state.actor_params, state.critic_params, p.nets, obs, k_loss, p.alpha)
    grad_norm = optax.tree.norm(grad)
    updates, opt = p.optimizer.update(grad, state.actor_opt, state.actor_params)
    state = flag(state, i, jnp.isfinite(loss) & jnp.isfinite(grad_norm), ACTOR_LOSS)
    return state._replace(actor_params=optax.apply_updates(state.actor_params, updates), actor_opt=opt,
                          sums=add(state.sums, LossSums, grad_norm=grad_norm, grad_updates=1.0))


def _iteration(p: _Parts, critic_step, actor_step, state: SACState, i) -> SACState:
    """Real-environment step i, then the critic and actor updates scheduled at i."""
    cfg, sac = p.cfg, p.sac
    key, k_env, k_critic, k_actor = jax.random.split(state.key, 4)
    state = state._replace(key=key)
    live = i < cfg.total_steps
    state = jax.lax.cond(live, lambda s: _env_step(p, s, i, k_env), lambda s: s, state)
    learn = live & (i >= cfg.warmup_steps)
    state = jax.lax.cond(learn & (i % sac.critic_every == 0),
                         lambda s: critic_step(s, i, k_critic, i + 1), lambda s: s, state)
    return jax.lax.cond(learn & (i % sac.actor_every == 0),
                        lambda s: actor_step(s, i, k_actor, i + 1), lambda s: s, state)


def _evaluate(p: _Parts, state: SACState, key) -> Array:
    """Return of one episode of the deterministic policy tanh(μ(s)) in the true system."""
    mode = lambda obs, k: jnp.tanh(p.nets.actor.apply(state.actor_params, obs)[0])
    return rollout(p.system, mode, p.s1, p.cfg.horizon, key).ret
