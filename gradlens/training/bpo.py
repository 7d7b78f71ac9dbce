"""Backpropagation-based policy optimisation (BPO): the imagined return, its gradient, one Adam step.

Glossary of shapes: B imagined rollouts per update, H horizon, O observation dim, A action dim.

    J(θ) = mean_b Σ_t r(ŝ_t, a_t) + α · mean_{b,t} Ĥ[π_θ(·|ŝ_t)]         (PAPER.md §1.1, γ = 1)

with ŝ unrolled through `dynamics` (a true `System` = the simulator baseline, or a `(model, params)` pair) by
`gradlens.rollout`. The trainer and the analysis (`gradlens.analysis.gradients`, hence `audit`) both differentiate
`imagined_objective` by `policy_gradient`, in the reverse mode `DEFAULT_REVERSE` unless told otherwise, so the
gradient analysed is the gradient optimised. Top-level pure functions, in the spirit of Brax's APG:
`imagined_objective`, `policy_gradient`, `policy_update`.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

from gradlens.rollout import check_reverse, policy_input, rollout

Array = jax.Array
DEFAULT_REVERSE = "recompute"  # `rollout`'s reverse mode under the trainer's default TrainConfig.remat=True


def reverse_mode(remat: bool) -> str:
    """`rollout`'s reverse mode for the trainer's `TrainConfig.remat`: "recompute" (True) or "store" (False)."""
    return "recompute" if remat else "store"


class PolicyStats(NamedTuple):
    """Per-update diagnostics: objective J, mean return, mean entropy, gradient global norm."""

    objective: Array
    ret: Array
    entropy: Array
    grad_norm: Array


def imagined_objective(policy_params, policy, dynamics, s1: Array, key: Array, horizon: int,
                       entropy_coef: float, policy_input_grad="stop",
                       reverse: str = DEFAULT_REVERSE) -> tuple[Array, tuple[Array, Array]]:
    """J for B rollouts from s1 [B, O] with one key each; returns (J, (mean return, mean entropy)).
    reverse: how the backward pass gets each rollout step's values, "store" or "recompute" (`gradlens.rollout`)."""
    check_reverse(reverse)

    def one(s, k):
        traj = rollout(dynamics, policy.bind(policy_params), s, horizon, k, policy_input_grad=policy_input_grad,
                       reverse=reverse)
        obs = jax.vmap(lambda o: policy_input(o, policy_input_grad))(traj.states[:-1])
        entropy = jnp.mean(jax.vmap(lambda o, a: policy.entropy(policy_params, o, a))(obs, traj.actions))
        return traj.ret, entropy

    rets, entropies = jax.vmap(one)(s1, jax.random.split(key, s1.shape[0]))
    ret, entropy = jnp.mean(rets), jnp.mean(entropies)
    return ret + entropy_coef * entropy, (ret, entropy)


def policy_gradient(policy_params, policy, dynamics, s1, key, horizon, entropy_coef, policy_input_grad="stop",
                    reverse: str = DEFAULT_REVERSE):
    """(∇_θ J, PolicyStats) — the gradient of the imagined objective (ascent direction)."""
    (objective, (ret, entropy)), grad = jax.value_and_grad(imagined_objective, has_aux=True)(
        policy_params, policy, dynamics, s1, key, horizon, entropy_coef, policy_input_grad, reverse)
    return grad, PolicyStats(objective, ret, entropy, optax.tree.norm(grad))


def policy_optimizer(learning_rate: float, grad_clip: float | None) -> optax.GradientTransformation:
    """Global-norm clipping (none when `grad_clip` is None) then Adam, descending -J (the paper's optimiser; NaNs are
    NOT zeroed)."""
    if grad_clip is None:
        return optax.adam(learning_rate)
    return optax.chain(optax.clip_by_global_norm(grad_clip), optax.adam(learning_rate))


def policy_update(policy_params, opt_state, grad, optimizer: optax.GradientTransformation) -> tuple[Any, Any]:
    """One ascent step on J given its gradient."""
    updates, opt_state = optimizer.update(jax.tree.map(jnp.negative, grad), opt_state, policy_params)
    return optax.apply_updates(policy_params, updates), opt_state


def gradient_agreement(grad, reference) -> tuple[Array, Array]:
    """(cosine similarity, relative error ‖g - g_ref‖ / ‖g_ref‖) between two gradient pytrees."""
    g, r = ravel_pytree(grad)[0], ravel_pytree(reference)[0]
    r_norm = jnp.linalg.norm(r)
    cosine = jnp.dot(g, r) / jnp.maximum(jnp.linalg.norm(g) * r_norm, 1e-30)
    return cosine, jnp.linalg.norm(g - r) / jnp.maximum(r_norm, 1e-30)
