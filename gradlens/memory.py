"""Memory guard: estimate from shapes what a `train` or `audit` configuration needs, before anything is compiled or
written, and refuse it in one line when it exceeds the memory available.

The estimate is an upper-bound-minded sum of the big arrays (bytes), not a simulation of XLA's allocator: the trainer
state [S, C, H+1, O] (with the jitted chunk's copy), the world model's activations over a fit batch of whole
episodes [B, H+1, width] (transformers: attention [B, layers, heads, H+1, H+1]), the imagined rollouts of a policy
update [policy_batch, H, width] (a transformer whose rollout stores its activations, reverse="store", i.e.
TrainConfig.remat=False, keeps its cache [layers, 2, H+1, width] at every step),
and, for an audit, the Jacobian chains [H+1, O, H, A] and the gradient samples. tests/test_memory.py checks it grows
with H (H² for transformers) and seeds, and stays within a stated factor of XLA's compiled peak for a small case.

The limit is `GRADLENS_MEMORY_LIMIT` (bytes, or a number with K/M/G/T[i][B], e.g. "2GiB") when set, else MemAvailable
of /proc/meminfo; where neither exists (not Linux) nothing is refused.
"""
from __future__ import annotations

import math
import os
import re
from pathlib import Path

import jax
import jax.numpy as jnp

LIMIT_ENV = "GRADLENS_MEMORY_LIMIT"
_UNITS = {"": 1, "K": 2 ** 10, "M": 2 ** 20, "G": 2 ** 30, "T": 2 ** 40}
_OOM_MARKERS = ("RESOURCE_EXHAUSTED", "out of memory", "Out of memory", "OOM")


class OutOfMemory(ValueError):
    """A configuration needs more memory than is available (estimated, or XLA failed to allocate); one line."""


def parse_bytes(text: str) -> int:
    """'2GiB', '512M', '1.5G' or '123456' -> bytes (binary units); ValueError naming the text otherwise."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]?)(i?B)?\s*", str(text), re.IGNORECASE)
    if match is None or float(match[1]) <= 0:
        raise ValueError(f"{LIMIT_ENV} must be a positive size in bytes or with a unit (e.g. 2GiB, 512M), "
                         f"got {text!r}")
    return int(float(match[1]) * _UNITS[match[2].upper()])


def limit() -> tuple[int | None, str]:
    """(bytes available, where that number comes from); (None, reason) when it cannot be known."""
    if os.environ.get(LIMIT_ENV):
        return parse_bytes(os.environ[LIMIT_ENV]), LIMIT_ENV
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024, "MemAvailable"
    except (OSError, ValueError, IndexError):
        pass
    return None, "unknown on this platform"


def gib(n: float) -> str:
    """Bytes as '1.23 GiB', '645,928 GiB' (or MiB below 1 GiB)."""
    if n >= 1000 * 2 ** 30:
        return f"{n / 2 ** 30:,.0f} GiB"
    return f"{n / 2 ** 30:.3g} GiB" if n >= 2 ** 30 else f"{n / 2 ** 20:.3g} MiB"


def _itemsize() -> int:
    return jnp.zeros(()).dtype.itemsize  # 4, or 8 with jax_enable_x64


def _model_shape(model) -> tuple[int, int, int, bool]:
    """(parameters, width, layers, transformer?) of a world model, from its config and `jax.eval_shape` (no compile)."""
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0))
    n_params = sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(shapes))
    cfg = model.config
    hidden = [*getattr(cfg, "hidden", ()), *getattr(cfg, "embed_hidden", ()), *getattr(cfg, "decoder_hidden", ())]
    width = max([getattr(cfg, "width", 0), getattr(cfg, "state", 0), *hidden, 1])
    layers = getattr(cfg, "layers", 1) + len(hidden)
    return n_params, width, layers, hasattr(cfg, "heads")


def _sequence_bytes(model, shape: tuple, batch: int, horizon: int, kept_cache: bool = False) -> float:
    """Elements a reverse pass keeps for `batch` sequences of `horizon` steps through `model` (`shape`: its
    `_model_shape`): activations ~ 8·width per layer and token; a transformer adds attention weights
    [layers, heads, T, T] and, when its rollout keeps the cache at every step (`kept_cache`), [layers, 2, T, width]
    per step."""
    _, width, layers, transformer = shape
    tokens = horizon + 1
    per_sequence = tokens * 8 * width * layers
    if transformer:
        heads, attn_layers = model.config.heads, model.config.layers
        per_sequence += 2 * attn_layers * heads * tokens * tokens
        if kept_cache:
            per_sequence += attn_layers * 2 * tokens * width * horizon
    return batch * per_sequence


def train_estimate(config) -> int:
    """Bytes a `TrainConfig` run needs (see the module docstring); BPO methods only, a baseline's replay buffer
    and networks are counted as the trainer state [S, C, H+1, O] alone."""
    from gradlens import envs, models
    from gradlens.objective import reverse_mode
    from gradlens.training.methods import BASELINES, SIMULATOR

    system = envs.make(config.system, horizon=config.horizon, noise_std=config.noise_std)
    stores = reverse_mode(config.remat) == "store"  # the imagined rollouts keep every step's activations
    H, O, A, S = config.horizon, system.obs_dim, system.action_dim, config.seeds
    capacity = -(-config.total_steps // H)
    state = capacity * ((H + 1) * O + H * A)
    elements = 3 * S * state  # the state, the chunk's output, a host copy for the checkpoint
    rollout = config.policy_batch * (H + 1) * (4 * O + 4 * A + 4 * sum(config.policy_hidden))  # per gradient
    if config.method not in BASELINES:
        elements += S * rollout * (2 if config.compare_to_simulator else 1)
        if config.method != SIMULATOR:
            model = models.make(config.method, system)
            shape = _model_shape(model)
            elements += S * (4 * shape[0]  # params, gradient, Adam's two moments
                             + _sequence_bytes(model, shape, config.model_batch, H, config.method.startswith("hwm"))
                             + _sequence_bytes(model, shape, config.policy_batch, H, kept_cache=stores))
    return int(elements * _itemsize())


def audit_estimate(system_at, grid: list[int], chosen: dict, config) -> int:
    """Bytes an audit over the horizon grid `grid` needs at its largest horizon: the fit data and batches, per
    method the Jacobian chain [H+1, O, H, A] (and its norms) and `n_samples` gradient rollouts."""
    H = grid[-1]
    system = system_at(H)
    O, A = system.obs_dim, system.action_dim
    elements = 2 * config.n_episodes * ((H + 1) * O + H * A)  # collected episodes, normalised copy
    per_method = 2 * (H + 1) * O * H * A + 2 * config.n_samples * (H + 1) * (O + A) * 8
    elements += (1 + len(chosen)) * per_method
    for model, _ in chosen.values():
        shape = _model_shape(model)
        elements += 4 * shape[0] + _sequence_bytes(model, shape, config.fit_batch + config.n_samples, H)
    return int(elements * _itemsize())


def check(estimate: int, what: str, lower: str) -> None:
    """Raise OutOfMemory (one line: the estimate, the limit, what to lower) when `estimate` exceeds the limit."""
    available, source = limit()
    if available is not None and estimate > available:
        raise OutOfMemory(f"{what} needs about {gib(estimate)} of memory, more than the {gib(available)} "
                          f"available ({source}); lower {lower}")


def check_train(config) -> None:
    """`check` of a TrainConfig (cheap: shapes only, nothing compiled)."""
    from gradlens.training.config import run_name

    check(train_estimate(config), f"training {run_name(config)}", "--horizon, --seeds or the batch sizes "
          "(model_batch, policy_batch)" + ("" if config.remat else ", or turn remat on"))


def is_oom(err: BaseException) -> bool:
    """True for an allocation failure: MemoryError, or XLA's RESOURCE_EXHAUSTED / out of memory."""
    return isinstance(err, MemoryError) or any(marker in str(err) for marker in _OOM_MARKERS)


def oom_error(err: BaseException, what: str, lower: str) -> OutOfMemory:
    """The one-line OutOfMemory for an allocation failure `err` that still happened."""
    available, source = limit()
    first = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
    where = f" ({gib(available)} available, {source})" if available is not None else ""
    return OutOfMemory(f"{what} ran out of memory{where}: {first}; lower {lower}")
