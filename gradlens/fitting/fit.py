"""World-model fitting by MSE on predicted states (PAPER.md §2.2), one jitted call per epoch.

Glossary of shapes: N episodes, B minibatch of episodes, H horizon, O observation dim (D physical + time), A action.

Loss (`model_loss`): 0.5 · mean over (episodes, t = 1 … H, physical dims) of (s_{t+1} - ŝ_{t+1})², with
ŝ = `model.teacher_forced(params, states, actions)` vmapped over episodes. That one method carries each class's
training semantics: whole-sequence prediction from s_1 and the true actions (AWM), teacher forcing on the true
states s_{1:t} (HWM), one step from the true s_t (Markov). The time channel is appended exactly by every model and
left out of the mean (the paper's code averages it in as a constant 0, which only rescales the loss by D / (D + 1)).

`fit(model, data, key)`: split whole episodes into train / validation (`fit_split`, or a given validation set),
optionally set the model's state normaliser from the training states, then per epoch (one jitted `epoch` call):
shuffle the training episodes with the epoch key, cut them into n_batches = N_train // B minibatches of
B = min(batch_size, N_train) episodes (the remainder, fewer than B episodes, is dropped for that epoch only: the
shuffle changes every epoch, so every episode is used), and `lax.scan` Adam updates over the minibatches.
Validation loss (jitted, in chunks of B) after every epoch; early stopping keeps the parameters of the best
validation epoch and stops on a plateau (`FitHistory.stopped_early`: converged), `epochs` being the cap.
"""
from __future__ import annotations

import dataclasses
import math
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import optax
from tqdm.auto import tqdm

from gradlens import validate
from gradlens.compilation_cache import jit_once
from gradlens.envs.base import physical
from gradlens.fitting.data import Trajectories, split, state_stats, trajectories
from gradlens.rollout import Trajectory

Array = jax.Array
Params = Any


@dataclasses.dataclass(frozen=True)
class FitConfig:
    """Hyper-parameters of world-model fitting (defaults: the paper's Adam lr 1e-3 and batch of 64 episodes).

    Fields:
      learning_rate: Adam step size (no clipping, no weight decay, as the paper).
      batch_size: episodes per minibatch (capped at the number of training episodes).
      epochs: maximum number of passes over the training episodes.
      validation_fraction: share of episodes held out for validation and early stopping, in [0, 1); 0 = none
        (then the epoch's mean training loss selects the best parameters).
      patience: stop after this many epochs without a validation improvement larger than min_delta (None = never).
      min_delta: smallest decrease of the validation loss that counts as an improvement.
      rel_min_delta: smallest relative decrease that counts (an improvement must beat best · (1 - rel_min_delta)
        - min_delta), in [0, 1): a plateau in relative terms, whatever the scale of the states.
    """

    learning_rate: float = 1e-3
    batch_size: int = 64
    epochs: int = 200
    validation_fraction: float = 0.1
    patience: int | None = 20
    min_delta: float = 0.0
    rel_min_delta: float = 0.0

    def __post_init__(self):
        validate.positive(self.learning_rate, "FitConfig.learning_rate")
        validate.positive_int(self.batch_size, "FitConfig.batch_size")
        validate.positive_int(self.epochs, "FitConfig.epochs")
        vf = self.validation_fraction
        if isinstance(vf, bool) or not isinstance(vf, (int, float)) or not 0.0 <= vf < 1.0:
            raise ValueError(f"FitConfig.validation_fraction must be a number in [0, 1), got {vf!r}")
        if self.patience is not None:
            validate.positive_int(self.patience, "FitConfig.patience (or None)")
        validate.finite(self.min_delta, "FitConfig.min_delta", low=0)
        rd = self.rel_min_delta
        if isinstance(rd, bool) or not isinstance(rd, (int, float)) or not 0.0 <= rd < 1.0:
            raise ValueError(f"FitConfig.rel_min_delta must be a number in [0, 1), got {rd!r}")


@dataclasses.dataclass(frozen=True)
class FitHistory:
    """Per-epoch losses of one `fit` call (0.5 · MSE, see `model_loss`).

    train_loss[e]: mean minibatch loss during epoch e (parameters changing); val_loss[e]: validation loss after
    epoch e (empty tuple without a validation split); best_epoch: index of the kept parameters; best_loss: their
    validation (or training) loss; stopped_early: patience ran out before `epochs`.
    """

    train_loss: tuple[float, ...]
    val_loss: tuple[float, ...]
    best_epoch: int
    best_loss: float
    stopped_early: bool


def model_loss(model, params: Params, states: Array, actions: Array) -> Array:
    """0.5 · mean squared error of teacher-forced predictions: states [B, H+1, O], actions [B, H, A] -> scalar."""
    pred = jax.vmap(model.teacher_forced, (None, 0, 0))(params, states, actions)  # [B, H+1, O]
    return 0.5 * jnp.mean((physical(pred[:, 1:]) - physical(states[:, 1:])) ** 2)


@partial(jax.jit, static_argnames=("model", "learning_rate", "batch_size"))
def epoch(model, learning_rate: float, batch_size: int, params: Params, opt_state, states: Array, actions: Array,
          key: Array):
    """One pass of Adam over shuffled minibatches of B = batch_size episodes (remainder dropped), as one `lax.scan`.

    states [N, H+1, O], actions [N, H, A]; returns (params, opt_state, mean minibatch loss).
    """
    tx = optax.adam(learning_rate)
    n_batches = states.shape[0] // batch_size
    order = jax.random.permutation(key, states.shape[0])[: n_batches * batch_size].reshape(n_batches, batch_size)

    def update(carry, idx):
        params, opt_state = carry
        value, grads = jax.value_and_grad(lambda p: model_loss(model, p, states[idx], actions[idx]))(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), value

    (params, opt_state), losses = jax.lax.scan(update, (params, opt_state), order)
    return params, opt_state, jnp.mean(losses)


@partial(jax.jit, static_argnames=("model", "batch_size"))
def evaluate(model, batch_size: int, params: Params, states: Array, actions: Array) -> Array:
    """`model_loss` over all N episodes, computed in chunks of batch_size episodes (bounded memory) -> scalar."""
    n = states.shape[0]
    n_chunks = -(-n // batch_size)
    pad = n_chunks * batch_size - n
    chunk = lambda x: jnp.concatenate([x, jnp.repeat(x[:1], pad, 0)]).reshape(n_chunks, batch_size, *x.shape[1:])
    weights = (jnp.arange(n_chunks * batch_size) < n).reshape(n_chunks, batch_size)

    def chunk_loss(inputs):
        s, a, w = inputs
        pred = jax.vmap(model.teacher_forced, (None, 0, 0))(params, s, a)
        per_episode = jnp.mean((physical(pred[:, 1:]) - physical(s[:, 1:])) ** 2, axis=(1, 2))  # [B]
        return jnp.sum(w * per_episode)

    return 0.5 * jnp.sum(jax.lax.map(chunk_loss, (chunk(states), chunk(actions), weights))) / n


@partial(jit_once, static_argnums=0)
def _init(model, key: Array) -> Params:
    """`model.init`, compiled (2-3x faster than Haiku's eager init for the sequence models)."""
    return model.init(key)


def as_trajectories(data) -> Trajectories:
    """`Trajectories` as is; a batched `Trajectory` or a (states, actions[, rewards]) tuple is validated."""
    if isinstance(data, Trajectories):
        return data
    if isinstance(data, (Trajectory, tuple, list)) and len(data) in (2, 3):
        return trajectories(*data)
    raise ValueError(f"data must be gradlens Trajectories (see gradlens.collect / gradlens.trajectories), "
                     f"got {type(data).__name__}")


def check_compatible(model, data: Trajectories) -> None:
    """ValueError unless the data's H, O and A fit the model (horizon <= model.max_horizon, dims = its system's)."""
    system = model.system
    o, a = data.states.shape[-1], data.actions.shape[-1]
    if (o, a) != (system.obs_dim, system.action_dim):
        raise ValueError(f"data has obs_dim {o} and action_dim {a}, but model {model.name!r} is built for system "
                         f"{system.name!r} with obs_dim {system.obs_dim} (state_dim + 1 time index) and action_dim "
                         f"{system.action_dim}")
    if data.horizon > model.max_horizon:
        raise ValueError(f"data horizon {data.horizon} exceeds model {model.name!r}'s max_horizon "
                         f"{model.max_horizon}; make the model with a larger max_horizon or cut the episodes")


class FitDiverged(ValueError):
    """A NaN/Inf loss stopped `fit`; `.params` and `.history` hold the best parameters and the history up to then."""

    def __init__(self, message: str, params: Params, history: FitHistory):
        super().__init__(message)
        self.params, self.history = params, history


def fit_split(data, key: Array, config: FitConfig = FitConfig()) -> tuple[Trajectories, Trajectories | None]:
    """The (train, validation) split of whole episodes that `fit(model, data, key, config)` makes (validation None
    when config.validation_fraction is 0): the first of `key`'s three sub-keys draws it, whatever the model."""
    data = as_trajectories(data)
    if config.validation_fraction == 0:
        return data, None
    return split(data, config.validation_fraction, jax.random.split(key, 3)[0])


def fit(model, data, key: Array, config: FitConfig = FitConfig(), params: Params | None = None,
        progress: bool = True, validation=None) -> tuple[Params, FitHistory]:
    """Fit `model` to episodes `data` by teacher-forced MSE with Adam; returns (best params, `FitHistory`).

    Args:
      model: a `WorldModel` (gradlens.models.make(...)); hashable, it keys the jit cache.
      data: `Trajectories` (gradlens.collect), or a batched `Trajectory` / (states, actions[, rewards]).
      key: PRNG key for the split, the initialisation and the per-epoch shuffles (same key -> same bits).
      config: `FitConfig`.
      params: start from these parameters (their normaliser is kept); None = `model.init` and, when
        model.config.normalize, `model.set_normalizer` with the training states' mean / std.
      progress: show a tqdm bar over epochs.
      validation: held-out episodes to monitor; then `data` is all training and config.validation_fraction is not
        used. None = split `data` as `fit_split(data, key, config)` does (so that split is the held-out one).

    Raises ValueError for incompatible data or too few episodes to split, and `FitDiverged` (a ValueError naming the
    quantity and the epoch, carrying the best params so far) for a NaN/Inf training or validation loss.
    """
    data = as_trajectories(data)
    check_compatible(model, data)
    _, k_init, k_epochs = jax.random.split(key, 3)
    if validation is None:
        train, val = fit_split(data, key, config)
    else:
        train, val = data, as_trajectories(validation)
        check_compatible(model, val)
    if params is None:
        params = _init(model, k_init)
        if getattr(model.config, "normalize", False):
            params = model.set_normalizer(params, *state_stats(train))
    batch_size = min(config.batch_size, train.n_episodes)
    opt_state = optax.adam(config.learning_rate).init(params)

    best = (math.inf, -1, params)
    train_hist, val_hist, wait = [], [], 0
    history = lambda stopped: FitHistory(tuple(train_hist), tuple(val_hist), best[1], best[0], stopped)
    stopped = False
    bar = tqdm(range(config.epochs), desc=f"fit {model.name}", disable=not progress, leave=False)
    for e in bar:
        params, opt_state, train_loss = epoch(model, config.learning_rate, batch_size, params, opt_state,
                                              train.states, train.actions, jax.random.fold_in(k_epochs, e))
        losses = {"training loss": float(train_loss)}
        if val is not None:
            losses["validation loss"] = float(evaluate(model, batch_size, params, val.states, val.actions))
        for what, value in losses.items():
            if not math.isfinite(value):
                bar.close()
                raise FitDiverged(f"{what} is {value} at epoch {e}: training diverged (lower the learning rate, "
                                  "enable state normalisation, or check the data); the exception's .params hold the "
                                  f"best parameters so far (epoch {best[1]})", best[2], history(False))
        train_hist.append(losses["training loss"])
        monitored = losses.get("validation loss", train_hist[-1])
        if val is not None:
            val_hist.append(monitored)
        bar.set_postfix(train=f"{train_hist[-1]:.3g}", val=f"{monitored:.3g}")
        if monitored < best[0] * (1.0 - config.rel_min_delta) - config.min_delta:
            best, wait = (monitored, e, params), 0
        else:
            wait += 1
            if config.patience is not None and wait >= config.patience:
                stopped = True
                break
    bar.close()
    return best[2], history(stopped)


def mse(model, params: Params, data, open_loop: bool = True) -> Array:
    """Mean squared error over (episodes, t = 2 … H+1, physical dims) of open-loop `predict` (default: the model fed
    its own predictions, what a rollout sees) or of teacher-forced predictions (what `fit` optimises)."""
    data = as_trajectories(data)
    check_compatible(model, data)
    return _mse(model, open_loop, params, data.states, data.actions)


@partial(jit_once, static_argnames=("model", "open_loop"))
def _mse(model, open_loop: bool, params: Params, states: Array, actions: Array) -> Array:
    if open_loop:
        pred = jax.vmap(model.predict, (None, 0, 0))(params, states[:, 0], actions)  # [N, H+1, O]
    else:
        pred = jax.vmap(model.teacher_forced, (None, 0, 0))(params, states, actions)
    return jnp.mean((physical(pred[:, 1:]) - physical(states[:, 1:])) ** 2)


def baseline_mse(data: Trajectories) -> Array:
    """MSE of the trivial predictor ŝ_t = s_1 for all t (same averaging as `mse`): what a model must beat."""
    data = as_trajectories(data)
    return jnp.mean((physical(data.states[:, 1:]) - physical(data.states[:, :1])) ** 2)


__all__ = ["FitConfig", "FitDiverged", "FitHistory", "baseline_mse", "check_compatible", "epoch", "evaluate", "fit",
           "fit_split", "model_loss", "mse"]
