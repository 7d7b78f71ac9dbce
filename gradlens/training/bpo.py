"""The policy's update in backpropagation-based policy optimisation (BPO): Adam on the imagined objective's gradient
(the paper's, `gradlens.objective`), or a natural-gradient step (a stabiliser, issue 21).

Glossary of shapes: N states, O observation dim, A action dim.

The natural-gradient step solves (F + λI) x = g by conjugate gradients, F the Fisher information of the policy's
action distribution averaged over N states (exact, through Fisher-vector products; the tanh-Gaussian's Fisher is
its pre-tanh Gaussian's, tanh being a bijection), and steps along x with the size that moves the policy by a KL
divergence of about δ: θ += sqrt(2δ / gᵀx) · x (natural policy gradient with a trust region, as TRPO without its
line search). The step's size is then set by δ, not by ‖g‖: an exploding gradient cannot blow the policy up (g is
rescaled to max|g| = 1 first, which leaves the step unchanged and keeps gᵀx finite in float32).
kfac-jax's K-FAC was the first choice; version 0.0.8, the newest, imports but fails under the project's JAX 0.10
(its graph matcher unpacks `Primitive.get_bind_params` into two values, JAX now returns three), hence this exact
Fisher with `jax.scipy.sparse.linalg.cg`, cheap for the policy's few thousand parameters.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

Array = jax.Array
UPDATE_RULES = ("adam", "natural")
NATURAL_DAMPING = 1e-3  # λ, added to the Fisher (units of 1/σ²; σ the policy's pre-tanh std)
NATURAL_CG_ITERATIONS = 10


def policy_optimizer(learning_rate: float, grad_clip: float | None,
                     update_rule: str = "adam") -> optax.GradientTransformation:
    """"adam": global-norm clipping (none when `grad_clip` is None) then Adam, descending -J (the paper's
    optimiser; NaNs are NOT zeroed). "natural": the update is the natural step itself (`natural_step`), applied as
    is (the trust region bounds it; no clipping, no learning rate)."""
    if update_rule == "natural":
        return optax.sgd(1.0)
    if grad_clip is None:
        return optax.adam(learning_rate)
    return optax.chain(optax.clip_by_global_norm(grad_clip), optax.adam(learning_rate))


def policy_update(policy_params, opt_state, grad, optimizer: optax.GradientTransformation) -> tuple[Any, Any]:
    """One ascent step on J given its gradient (or, for "natural", the natural step)."""
    updates, opt_state = optimizer.update(jax.tree.map(jnp.negative, grad), opt_state, policy_params)
    return optax.apply_updates(policy_params, updates), opt_state


def fisher_vector_product(policy, policy_params, obs: Array, damping: float = NATURAL_DAMPING):
    """v -> (F + λI) v, F = mean_n J_nᵀ diag(1/σ², 2/σ²) J_n the Fisher of the policy's Gaussian (μ, σ) at the
    states obs [N, O]; v and the result are pytrees shaped like `policy_params`."""
    dist = lambda p: jax.vmap(lambda o: policy.distribution(p, o))(obs)
    (_, scale), vjp = jax.vjp(dist, policy_params)
    precision = jax.lax.stop_gradient(1.0 / scale**2) / obs.shape[0]

    def product(v):
        _, (d_loc, d_scale) = jax.jvp(dist, (policy_params,), (v,))
        (fv,) = vjp((precision * d_loc, 2.0 * precision * d_scale))
        return jax.tree.map(lambda f, x: f + damping * x, fv, v)

    return product


def natural_step(policy, policy_params, grad, obs: Array, max_kl: float) -> tuple[Any, Array]:
    """(step, ĝᵀx): the natural-gradient ascent step of KL radius about `max_kl` for the gradient `grad` (a pytree
    like the parameters), the Fisher measured at obs [N, O] (module docstring).

    The step does not depend on ‖g‖ (g → cg gives x → cx and the same step), so it is computed for ĝ = g / max|g|:
    a finite gradient as large as 1e19, which a model's exploding gradient reaches, would otherwise overflow gᵀx in
    float32 and turn the parameters into NaN (measured: Markov BPO on one-bounce, H = 25). g = 0 gives a zero step."""
    flat, unravel = ravel_pytree(grad)
    unit = flat / jnp.maximum(jnp.max(jnp.abs(flat)), jnp.finfo(flat.dtype).tiny)
    x, _ = jax.scipy.sparse.linalg.cg(fisher_vector_product(policy, policy_params, obs), unravel(unit),
                                      maxiter=NATURAL_CG_ITERATIONS)
    g_x = jnp.dot(unit, ravel_pytree(x)[0])
    scale = jnp.where(g_x > 0, jnp.sqrt(2.0 * max_kl / jnp.where(g_x > 0, g_x, 1.0)), 0.0)
    return jax.tree.map(lambda v: scale * v, x), g_x
