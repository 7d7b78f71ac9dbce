"""What a training method gives the trainer (`gradlens.training.loop`): pure functions of one seed's state, and the
per-chunk sums it keeps, by name.

A method's state is a NamedTuple (a checkpoint is exactly this pytree) with at least the fields
    key              PRNG key of the seed's run
    sums             [n] float: the chunk's running totals, named by a NamedTuple class of the method's (`add`)
    first_nonfinite  int32: first iteration with a non-finite loss or gradient, or -1
    nonfinite_what   int32: index into NONFINITE
The trainer jits once, at the chunk, and vmaps over seeds; a method does neither (it may mark an update to run
sequentially over seeds on the CPU: `sequential_on_cpu`).
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from gradlens.envs.base import System

Array = jax.Array
State = Any
# the quantities a run stops on when NaN/Inf; `nonfinite_what` indexes this tuple
NONFINITE = ("world-model loss", "policy gradient", "SAC critic loss", "SAC actor loss", "ODT loss")


class Means(NamedTuple):
    """A chunk's summary of its updates, per seed (NaN where no update happened)."""

    model_loss: Array  # world-model MSE, SAC's critic loss or ODT's action NLL
    policy_grad_norm: Array  # global norm of the policy's (actor's, transformer's) gradient
    cosine_to_simulator: Array  # of the model gradient to the simulator's; NaN without one
    relative_error_to_simulator: Array
    zeroed_policy_grads: Array  # int32: updates whose non-finite gradient was zeroed (0 unless a BPO method asks)


class Method(NamedTuple):
    """One training method of one configuration, as pure functions.

    init: key -> a seed's state.
    iteration: (state, i) -> state after real-environment step i and the updates scheduled at i.
    evaluate: (state, key) -> return (scalar) of one episode of the deterministic policy in the true system.
    means: sums [n] -> Means of the chunk.
    model_step, policy_step: the updates alone, (state, i, key, n) -> state with n the episodes (SAC: transitions)
      to sample from; model_step is None without a second learner (the simulator, ODT). For benchmarks and tests.
    """

    system: System
    init: Callable[[Array], State]
    iteration: Callable[[State, Array], State]
    evaluate: Callable[[State, Array], Array]
    means: Callable[[Array], Means]
    model_step: Callable[..., State] | None
    policy_step: Callable[..., State]


def sequential_on_cpu(update: Callable[..., State]) -> Callable[..., State]:
    """`update` such that, vmapped over seeds on the CPU, the seeds run it one after another; unchanged elsewhere.

    XLA's CPU backend ran ten seeds' vmapped (batched) matmuls slower than ten single-seed updates in a row (awm-rnn
    world-model update: 12.4x one seed vmapped, 8.1x in a loop; benchmarks/README.md). On accelerators everything
    stays batched.
    """
    return jax.custom_batching.sequential_vmap(update) if jax.default_backend() == "cpu" else update


def nonfinite_code(what: str) -> int:
    """Index of `what` in NONFINITE (the name `train` prints when that quantity goes NaN/Inf)."""
    return NONFINITE.index(what)


def flag(state: State, i: Array, finite: Array, what: int) -> State:
    """Record iteration i as the first non-finite one (quantity `what`) unless one is recorded already."""
    new = (state.first_nonfinite < 0) & ~finite
    return state._replace(first_nonfinite=jnp.where(new, i, state.first_nonfinite).astype(jnp.int32),
                          nonfinite_what=jnp.where(new, what, state.nonfinite_what).astype(jnp.int32))


def add(sums: Array, names: type[NamedTuple], **amounts) -> Array:
    """`sums` [n] with `amounts` added to the entries named by the NamedTuple class `names`, in the order given."""
    for field, amount in amounts.items():
        sums = sums.at[names._fields.index(field)].add(amount)
    return sums


def mean(total: Array, count: Array) -> Array:
    """total / count, NaN where count is 0 (nothing was updated)."""
    return jnp.where(count > 0, total / jnp.maximum(count, 1.0), jnp.nan)


class LossSums(NamedTuple):
    """Names of the running totals of a method with one loss and one gradient (SAC: critic loss and actor gradient;
    ODT: action NLL and transformer gradient)."""

    loss: Array
    loss_updates: Array
    grad_norm: Array
    grad_updates: Array


def loss_means(sums: Array) -> Means:
    """The Means of LossSums `sums` [4]; there is no simulator gradient to compare to, so cosine and error are NaN."""
    m = LossSums(*sums)
    nan = jnp.full((), jnp.nan, sums.dtype)
    return Means(mean(m.loss, m.loss_updates), mean(m.grad_norm, m.grad_updates), nan, nan, jnp.zeros((), jnp.int32))
