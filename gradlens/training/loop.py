"""The compiled training loop, the same for every method (`gradlens.training.methods`): chunks of iterations, each
ending in an evaluation.

Glossary of shapes: S seeds (vmapped).

A *chunk* of `eval_every` iterations (real-environment steps and the method's updates due at them) is one
`lax.scan`; it ends with an evaluation of the method's deterministic policy in the true system, which is one metrics
row per seed. `train` jits the chunk once and vmaps it over seeds. Evaluation also runs during warmup (the paper
starts after it), so every curve starts at the initial policy.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from gradlens.envs.base import System
from gradlens.training.config import TrainConfig
from gradlens.training.methods import make as make_method
from gradlens.training.methods import names as methods  # `loop.methods()`: every method's name
from gradlens.training.methods.bpo import NONFINITE_POLICY_GRAD, SIMULATOR
from gradlens.training.protocol import NONFINITE, Method, State

Array = jax.Array


class ChunkStats(NamedTuple):
    """One metrics row per seed, returned by a chunk (see `protocol.Means`)."""

    eval_return: Array
    model_loss: Array
    policy_grad_norm: Array
    cosine_to_simulator: Array
    relative_error_to_simulator: Array
    first_nonfinite: Array
    nonfinite_what: Array
    zeroed_policy_grads: Array


class Trainer(NamedTuple):
    """Pure functions of one configuration. `chunk` is vmapped over seeds and jitted by the caller (`train`);
    `model_step` and `policy_step` are the method's (`protocol.Method`)."""

    config: TrainConfig
    system: System
    init: Callable[[Array], State]
    chunk: Callable[[State, Array], tuple[State, ChunkStats]]
    n_chunks: int
    model_step: Callable[..., State] | None
    policy_step: Callable[..., State]


def make_chunk(method: Method, eval_every: int) -> Callable[[State, Array], tuple[State, ChunkStats]]:
    """(state, first iteration) -> (state, ChunkStats) of `eval_every` iterations of `method`, then an evaluation."""

    def chunk(state: State, start: Array) -> tuple[State, ChunkStats]:
        state = state._replace(sums=jnp.zeros_like(state.sums))
        state, _ = jax.lax.scan(lambda s, i: (method.iteration(s, i), None), state, start + jnp.arange(eval_every))
        key, k_eval = jax.random.split(state.key)
        eval_return = method.evaluate(state, k_eval)
        m = method.means(state.sums)
        stats = ChunkStats(eval_return, m.model_loss, m.policy_grad_norm, m.cosine_to_simulator,
                           m.relative_error_to_simulator, state.first_nonfinite, state.nonfinite_what,
                           m.zeroed_policy_grads)
        return state._replace(key=key), stats

    return chunk


def make_trainer(config: TrainConfig) -> Trainer:
    """Build `config`'s method (system, networks, optimisers) and the pure `init` / `chunk` functions."""
    method = make_method(config)
    return Trainer(config, method.system, method.init, make_chunk(method, config.eval_every),
                   -(-config.total_steps // config.eval_every), method.model_step, method.policy_step)


__all__ = ["NONFINITE", "NONFINITE_POLICY_GRAD", "SIMULATOR", "ChunkStats", "TrainConfig", "Trainer", "make_chunk",
           "make_trainer", "methods"]
