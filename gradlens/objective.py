"""The imagined objective of backpropagation-based policy optimisation (BPO) and its gradient, shared by the trainer
(`gradlens.training`) and the analysis (`gradlens.analysis.gradients`, hence `audit`), so that the gradient analysed
is the gradient optimised.

Glossary of shapes: B imagined rollouts per update, H horizon, O observation dim, A action dim.

    J(θ) = mean_b Σ_t γ^t r(ŝ_t, a_t) + α · mean_{b,t} Ĥ[π_θ(·|ŝ_t)]       (PAPER.md §1.1: γ = 1)

with ŝ unrolled through `dynamics` (a true `System` = the simulator baseline, or a `(model, params)` pair) by
`gradlens.rollout`, in the reverse mode `DEFAULT_REVERSE` unless told otherwise. Two of the stabilisers that BPO
offers act here (issue 21; `docs/stability.md`): the discount γ < 1, and truncated backpropagation through time
(`truncate` k: the rollout stops the gradient of its carried state every k steps).
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

from gradlens.rollout import check_reverse, policy_input, rollout

Array = jax.Array
DEFAULT_REVERSE = "recompute"  # `rollout`'s reverse mode under the trainer's default BPOConfig.remat=True


def reverse_mode(remat: bool) -> str:
    """`rollout`'s reverse mode for the trainer's `remat` option: "recompute" (True) or "store" (False)."""
    return "recompute" if remat else "store"


class PolicyStats(NamedTuple):
    """Per-update diagnostics: objective J, mean (discounted) return, mean entropy, gradient global norm."""

    objective: Array
    ret: Array
    entropy: Array
    grad_norm: Array


def discounted_return(rewards: Array, discount: float) -> Array:
    """Σ_t γ^t r_t over the last axis of `rewards` [..., H]; exactly `rewards.sum(-1)` when γ = 1."""
    if discount == 1.0:
        return jnp.sum(rewards, axis=-1)
    weights = discount ** jnp.arange(rewards.shape[-1], dtype=rewards.dtype)
    return jnp.sum(rewards * weights, axis=-1)


def imagined_objective(policy_params, policy, dynamics, s1: Array, key: Array, horizon: int,
                       entropy_coef: float, policy_input_grad="stop", reverse: str = DEFAULT_REVERSE,
                       discount: float = 1.0, truncate: int | None = None) -> tuple[Array, tuple[Array, Array]]:
    """J for B rollouts from s1 [B, O] with one key each; returns (J, (mean discounted return, mean entropy)).

    reverse: how the backward pass gets each rollout step's values, "store" or "recompute" (`gradlens.rollout`).
    discount: γ in (0, 1] on the imagined return; truncate: None, or k >= 1 to stop the gradient every k steps."""
    check_reverse(reverse)

    def one(s, k):
        traj = rollout(dynamics, policy.bind(policy_params), s, horizon, k, policy_input_grad=policy_input_grad,
                       reverse=reverse, truncate=truncate)
        obs = jax.vmap(lambda o: policy_input(o, policy_input_grad))(traj.states[:-1])
        entropy = jnp.mean(jax.vmap(lambda o, a: policy.entropy(policy_params, o, a))(obs, traj.actions))
        return discounted_return(traj.rewards, discount), entropy

    rets, entropies = jax.vmap(one)(s1, jax.random.split(key, s1.shape[0]))
    ret, entropy = jnp.mean(rets), jnp.mean(entropies)
    return ret + entropy_coef * entropy, (ret, entropy)


def policy_gradient(policy_params, policy, dynamics, s1, key, horizon, entropy_coef, policy_input_grad="stop",
                    reverse: str = DEFAULT_REVERSE, discount: float = 1.0, truncate: int | None = None):
    """(∇_θ J, PolicyStats) — the gradient of the imagined objective (ascent direction)."""
    (objective, (ret, entropy)), grad = jax.value_and_grad(imagined_objective, has_aux=True)(
        policy_params, policy, dynamics, s1, key, horizon, entropy_coef, policy_input_grad, reverse, discount,
        truncate)
    return grad, PolicyStats(objective, ret, entropy, optax.tree.norm(grad))


def gradient_agreement(grad, reference) -> tuple[Array, Array]:
    """(cosine similarity, relative error ‖g - g_ref‖ / ‖g_ref‖) between two gradient pytrees."""
    g, r = ravel_pytree(grad)[0], ravel_pytree(reference)[0]
    r_norm = jnp.linalg.norm(r)
    cosine = jnp.dot(g, r) / jnp.maximum(jnp.linalg.norm(g) * r_norm, 1e-30)
    return cosine, jnp.linalg.norm(g - r) / jnp.maximum(r_norm, 1e-30)
