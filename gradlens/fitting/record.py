"""Fit records: how well a fitted world model predicts held-out episodes open loop, beside two trivial predictors.

Glossary of shapes: N episodes, H horizon (steps), O observation dim (D physical state + time index), A action dim.

Every error curve is [H]: entry t - 1 (t = 1 … H) is the mean squared error, over (episodes, physical dims), of the
prediction of s_{t+1} made open loop from s_1 and the true actions a_{1:t} (what a rollout of t steps sees):
  `open_loop_error`  the world model's `predict`;
  `repeat_error`     the repeat-last-state baseline: open loop from s_1 the last known state is s_1 itself, so it
                     predicts ŝ_{t+1} = s_1 for every t;
  `linear_error`     a least-squares linear model s_{t+1} = A s_t + B a_t + c (`fit_linear`, on the training
                     episodes' transitions) rolled out open loop from s_1;
  `divergence`       not a predictor: the true simulator against itself started δ away (s_1 + δ on every physical
                     dim, every action moved δ towards 0), in float64. Where it reaches the repeat baseline's error,
                     the system is chaotic at that horizon and no model can be expected to predict it.
A model passes the fit bar at horizon H when its error averaged over steps 1 … H is at most `FIT_BAR` (0.5) times
the repeat baseline's: it beats repeating the last state at least 2x over the horizon whose gradients are read.
"""
from __future__ import annotations

import dataclasses
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradlens import validate
from gradlens.compilation_cache import jit_once
from gradlens.envs.base import System, physical, time_index, with_time
from gradlens.fitting.data import Trajectories
from gradlens.rollout import rollout

Array = jax.Array
Params = Any
FIT_BAR = 0.5  # a model must reach at most this fraction of the repeat-last-state error
CHAOS_DELTA = 1e-6


def _check_horizon(curve, horizon: int, what: str) -> None:
    validate.horizon(horizon, f"{what}: horizon", high=len(curve), why="the length of the error curve")


def horizon_ratio(error, reference, horizon: int) -> float:
    """mean(error[:H]) / mean(reference[:H]) for curves [≥H]: the error relative to a reference over steps 1 … H."""
    _check_horizon(error, horizon, "horizon_ratio")
    _check_horizon(reference, horizon, "horizon_ratio")
    return float(np.mean(error[:horizon]) / np.mean(reference[:horizon]))


@partial(jit_once, static_argnames=("model",))
def _open_loop_error(model, params: Params, states: Array, actions: Array) -> Array:
    pred = jax.vmap(model.predict, (None, 0, 0))(params, states[:, 0], actions)  # [N, H+1, O]
    return jnp.mean((physical(pred[:, 1:]) - physical(states[:, 1:])) ** 2, axis=(0, 2))  # [H]


def open_loop_error(model, params: Params, data: Trajectories) -> np.ndarray:
    """[H] per-step MSE of the model's open-loop `predict` from s_1 on the episodes `data`."""
    return np.asarray(_open_loop_error(model, params, data.states, data.actions), np.float64)


def repeat_error(data: Trajectories) -> np.ndarray:
    """[H] per-step MSE of the repeat-last-state baseline ŝ_{t+1} = s_1 (open loop, s_1 is the last known state)."""
    states = physical(np.asarray(data.states, np.float64))  # [N, H+1, D]
    return np.mean((states[:, 1:] - states[:, :1]) ** 2, axis=(0, 2))


@dataclasses.dataclass(frozen=True)
class LinearBaseline:
    """s_{t+1} = A s_t + B a_t + c on physical states (float64): A [D, D], B [D, A], c [D]."""

    A: np.ndarray
    B: np.ndarray
    c: np.ndarray


def fit_linear(data: Trajectories) -> LinearBaseline:
    """Least squares over every transition (s_t, a_t) -> s_{t+1} of `data` (numpy lstsq, minimum-norm solution)."""
    states = physical(np.asarray(data.states, np.float64))  # [N, H+1, D]
    actions = np.asarray(data.actions, np.float64)  # [N, H, A]
    d, a = states.shape[-1], actions.shape[-1]
    x = np.concatenate([states[:, :-1], actions, np.ones(actions.shape[:-1] + (1,))], -1).reshape(-1, d + a + 1)
    w, *_ = np.linalg.lstsq(x, states[:, 1:].reshape(-1, d), rcond=None)  # [D + A + 1, D]
    return LinearBaseline(A=w[:d].T, B=w[d:d + a].T, c=w[-1])


def linear_error(baseline: LinearBaseline, data: Trajectories) -> np.ndarray:
    """[H] per-step MSE of `baseline` rolled out open loop from s_1 with the true actions."""
    states = physical(np.asarray(data.states, np.float64))  # [N, H+1, D]
    actions = np.asarray(data.actions, np.float64)  # [N, H, A]
    s, errors = states[:, 0], []
    with np.errstate(over="ignore", invalid="ignore"):  # an unstable fit grows to Inf: reported, not raised
        for t in range(actions.shape[1]):
            s = s @ baseline.A.T + actions[:, t] @ baseline.B.T + baseline.c  # [N, D]
            errors.append(np.mean((s - states[:, t + 1]) ** 2))
    return np.asarray(errors)


def divergence(system: System, data: Trajectories, delta: float = CHAOS_DELTA) -> np.ndarray:
    """[H] per-step mean squared distance between two float64 simulator rollouts of each episode of `data`: from s_1
    with its actions, and from s_1 + δ (physical dims) with every action moved δ towards 0 (so it stays in [-1, 1];
    a perturbation of the actions matters on systems that overwrite s_1, such as the double pendulum). With process
    noise both rollouts of an episode draw the same noise (common random numbers, a fixed key): what is measured is
    the sensitivity to the start, not the noise."""
    validate.positive(delta, "divergence: delta")
    with jax.enable_x64(True):
        s1 = jnp.asarray(np.asarray(data.states[:, 0], np.float64))  # [N, O]
        a = jnp.asarray(np.asarray(data.actions, np.float64))  # [N, H, A]
        shift = with_time(jnp.full(physical(s1).shape, delta), jnp.zeros_like(time_index(s1)))  # δ on x, 0 on t
        keys = jax.random.split(jax.random.PRNGKey(0), s1.shape[0])
        pair = _pair_rollouts(system, s1, a, s1 + shift, a - delta * jnp.sign(a), keys)
        return np.asarray(pair)


@partial(jit_once, static_argnames=("system",))
def _pair_rollouts(system: System, s1: Array, a: Array, s1_b: Array, a_b: Array, keys: Array) -> Array:
    noisy = system.noise_std > 0
    run = jax.vmap(lambda s, u, k: physical(rollout(system, u, s, key=k if noisy else None).states[1:]))  # [N, H, D]
    return jnp.mean((run(s1, a, keys) - run(s1_b, a_b, keys)) ** 2, axis=(0, 2))  # [H]


@dataclasses.dataclass(frozen=True)
class FitRecord:
    """What one fit achieved, on held-out episodes (curves [H] as above; losses 0.5 · MSE teacher-forced, per epoch).

    Fields:
      train_loss, val_loss: per-epoch losses [E] (empty for given parameters).
      epochs: epochs run; max_epochs: the cap (None for given parameters); best_epoch: the epoch kept (or None).
      converged: stopped by a validation plateau (patience), not by the cap; None for given parameters.
      val_error_by_horizon, baseline_repeat_by_horizon, baseline_linear_by_horizon: `open_loop_error`,
        `repeat_error`, `linear_error` on the validation episodes.
    """

    train_loss: tuple[float, ...]
    val_loss: tuple[float, ...]
    epochs: int
    max_epochs: int | None
    best_epoch: int | None
    converged: bool | None
    val_error_by_horizon: tuple[float, ...]
    baseline_repeat_by_horizon: tuple[float, ...]
    baseline_linear_by_horizon: tuple[float, ...]

    def ratio_to_repeat(self, horizon: int) -> float:
        """Validation error over steps 1 … H relative to the repeat-last-state baseline's."""
        return horizon_ratio(self.val_error_by_horizon, self.baseline_repeat_by_horizon, horizon)

    def passes(self, horizon: int) -> bool:
        """Beats repeating the last state at least 2x (ratio <= FIT_BAR) over steps 1 … H (False if NaN)."""
        return bool(self.ratio_to_repeat(horizon) <= FIT_BAR)

    def to_dict(self) -> dict:
        return {f.name: list(v) if isinstance(v, tuple) else v
                for f in dataclasses.fields(self) for v in [getattr(self, f.name)]}

    @classmethod
    def from_dict(cls, entry: dict) -> "FitRecord":
        """The record inside `entry` (other keys, such as an audit's, are ignored); ValueError naming missing keys."""
        names = [f.name for f in dataclasses.fields(cls)]
        missing = [n for n in names if n not in entry]
        if missing:
            raise ValueError(f"not a fit record: missing keys {missing}")
        return cls(**{n: tuple(float(x) for x in entry[n]) if isinstance(entry[n], (list, tuple)) else entry[n]
                      for n in names})


def fit_record(model, params: Params, history, train: Trajectories, val: Trajectories,
               max_epochs: int | None) -> FitRecord:
    """The `FitRecord` of `params` (from `fit` with `FitHistory` `history`, or given: history None) on the split
    (train, val) the fit used: the linear baseline is fitted on `train`, every curve measured on `val`."""
    if val is None or val.n_episodes < 1:
        raise ValueError("fit_record needs held-out validation episodes (FitConfig.validation_fraction > 0)")
    return FitRecord(
        train_loss=tuple(history.train_loss) if history else (), val_loss=tuple(history.val_loss) if history else (),
        epochs=len(history.train_loss) if history else 0, max_epochs=max_epochs if history else None,
        best_epoch=history.best_epoch if history else None, converged=history.stopped_early if history else None,
        val_error_by_horizon=tuple(open_loop_error(model, params, val).tolist()),
        baseline_repeat_by_horizon=tuple(repeat_error(val).tolist()),
        baseline_linear_by_horizon=tuple(linear_error(fit_linear(train), val).tolist()))


__all__ = ["CHAOS_DELTA", "FIT_BAR", "FitRecord", "LinearBaseline", "divergence", "fit_linear", "fit_record",
           "horizon_ratio", "linear_error", "open_loop_error", "repeat_error"]
