"""`train(config)`: drive the compiled chunks of any method (`loop`), write the run store, stop loudly on NaN (or
count zeroed policy gradients when asked), resume after a kill.

The Python loop only dispatches one jitted, seed-vmapped chunk per evaluation period, turns its stats into metrics
rows, and checkpoints. Seeds `seed, seed + 1, …` use keys PRNGKey(seed + i), so a seed trained in a batch follows the
same random stream as the same seed trained alone.

Its numbers are the same to rounding, not bit for bit, in float32: the vmapped policy update and rollouts run
batched matrix products, which XLA's kernels may sum in another order than the unbatched ones (the world-model update
is sequential on the CPU and exact). Seed 3 alone vs inside a 10-seed batch (cancer, markov, H = 20,
tests/test_train.py): bit-identical through the first evaluations, then at env step 128 the return differs by 7.5e-6
and the policy-gradient norm and cosine by 0.6 % (relative). BPO amplifies such differences, so over a long run the
two decorrelate like different seeds (at step 512: returns up to 50 % apart); each seed's distribution is unchanged.
To reproduce a seed's bits, rerun it in the same batch (same `seed` and `seeds`); in float64 they agree to 1e-9.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from gradlens import memory, runs
from gradlens.training.config import run_name
from gradlens.training.loop import NONFINITE, TrainConfig, make_trainer


HEARTBEAT_S = 30.0  # seconds between renewals of a running run's heartbeat (runs.heartbeat)


class TrainingDiverged(ValueError):
    """A loss or gradient became NaN/Inf; the message names the env step, seed and quantity."""



def _rows(config: TrainConfig, stats, env_steps: int, wall: float) -> list[dict]:
    rows = [{
        "env_steps": env_steps, "seed": config.seed + s, "return": float(stats.eval_return[s]),
        "model_loss": float(stats.model_loss[s]), "policy_grad_norm": float(stats.policy_grad_norm[s]),
        "cosine_to_simulator": float(stats.cosine_to_simulator[s]),
        "relative_error_to_simulator": float(stats.relative_error_to_simulator[s]), "wall_time": wall,
    } for s in range(config.seeds)]
    if config.zeroes_nonfinite_policy_grad:
        for s, row in enumerate(rows):
            row["zeroed_policy_grads"] = int(stats.zeroed_policy_grads[s])
    return rows


def zeroed_line(metrics: pd.DataFrame) -> str | None:
    """'policy gradients zeroed (non-finite): seed 4 in 37 updates, …' from a run's metrics; None if none were."""
    if "zeroed_policy_grads" not in metrics or not metrics["zeroed_policy_grads"].fillna(0).any():
        return None
    per_seed = metrics.groupby("seed")["zeroed_policy_grads"].sum()
    per_seed = per_seed[per_seed > 0]
    return ("non-finite policy gradients zeroed (nonfinite_policy_grad='zero'): "
            + ", ".join(f"seed {seed} in {int(n)} update(s)" for seed, n in per_seed.items()))


def check_run_name(name, resume: bool, overwrite: bool) -> str:
    """`name` if it is a plain folder name and at most one of resume / overwrite is asked (ValueError otherwise)."""
    if not isinstance(name, str) or not name or Path(name).name != name or name.startswith((".", "_")):
        raise ValueError(f"run name must be a plain folder name (no '/', not starting with '.' or '_'), got {name!r}")
    if resume and overwrite:
        raise ValueError("--resume continues a run and --overwrite replaces it: pass one of them")
    return name


def _replace(run: Path) -> None:
    """Delete the run folder `run` for --overwrite; ValueError while its process is still running."""
    try:
        status = runs.status(run)
    except ValueError:  # a damaged run folder is replaced too
        status = {"state": "corrupt"}
    if status["state"] == "running" and "pid" in status and runs.interrupted(status) is None:
        raise ValueError(f"cannot overwrite {run}: it is still running (process {status['pid']} on {status['host']})")
    shutil.rmtree(run)


def _advance(bar, compiled: bool) -> None:
    """One more chunk done on `bar`; after the first (compiling) chunk its clock restarts, so that the rate and ETA
    it shows exclude compilation."""
    if not compiled:
        bar.update(1)
        return
    done = bar.n + 1
    bar.reset(total=bar.total)
    bar.initial = bar.n = bar.last_print_n = done


def _mean(values) -> float:
    """Mean over the finite values; NaN (no update happened) when there are none."""
    values = np.asarray(values, dtype=float)
    return float(np.mean(values[np.isfinite(values)])) if np.isfinite(values).any() else float("nan")


def _divergence(config: TrainConfig, stats) -> str | None:
    bad = np.asarray(stats.first_nonfinite)
    if np.all(bad < 0):
        return None
    s = int(np.argmin(np.where(bad >= 0, bad, np.iinfo(np.int32).max)))
    what = NONFINITE[int(np.asarray(stats.nonfinite_what)[s])]
    return f"non-finite {what} at env step {int(bad[s])} (seed {config.seed + s})"


def _open_run(config: TrainConfig, out: Path, name: str, state, resume: bool, overwrite: bool):
    """(run folder, state, metric rows, first chunk, wall time so far) of the run `out/name`, created (or replaced,
    with `overwrite`) or, with `resume`, read back from its last checkpoint; ValueError when it exists and neither is
    asked for, or when its stored config is not `config`."""
    run = out / name
    exists = (run / "config.json").exists()
    if exists and overwrite:
        _replace(run)
        exists = False
    if exists and not resume:
        raise ValueError(f"run folder {run} already exists: continue it with --resume, replace it with "
                         "--overwrite, or name another with --name")
    if exists:  # read everything first: a resume that fails leaves the stored status as it was
        runs.check_same_run(run, config.to_dict())
    loaded = runs.load_checkpoint(run, like=state) if exists else None
    runs.create(out, config.to_dict(), name=name, kind="train")
    if loaded is None:
        return run, state, [], 0, 0.0
    numpy_state, step, metrics = loaded
    wall = float(metrics["wall_time"].max()) if len(metrics) else 0.0
    return run, jax.tree.map(jnp.asarray, numpy_state), metrics.to_dict("records"), -(-step // config.eval_every), wall


def _show(bar, log, new_rows: list[dict], env_steps: int, compiled: bool) -> None:
    """One evaluation on the progress bar (its mean return), and its summary line above the bar through `log`."""
    mean_return = float(np.mean([r["return"] for r in new_rows]))
    _advance(bar, compiled=compiled)
    bar.set_postfix(ret=f"{mean_return:.4g}")
    if log is not None:
        loss, cos = (_mean([r[k] for r in new_rows]) for k in ("model_loss", "cosine_to_simulator"))
        with bar.external_write_mode():  # the line goes above the bar, which is redrawn below it
            log(f"step {env_steps:>6}  return {mean_return:>11.5g}  model loss {loss:>9.3g}  cos(sim) {cos:>6.3f}")


def train(config: TrainConfig, out: str | Path | None = None, *, resume: bool = False, progress: bool = True,
          checkpoint_every: int = 10, log=None, name: str | None = None, overwrite: bool = False) -> pd.DataFrame:
    """Train `config`'s method; return the metrics (one row per seed and evaluation; `attrs` "env_steps_trained", per
    seed, and "seconds": what this call trained, for its speed).

    Args:
      out: run-store root; the run folder is `out/<name>`. None keeps everything in memory.
      name: the run folder's name (default `run_name(config)`).
      resume: continue the run folder's last checkpoint (same config required); without it (or `overwrite`) an
        existing folder is an error, so nothing is overwritten by accident.
      overwrite: delete an existing run folder (not one still running) and start afresh.
      checkpoint_every: evaluations between checkpoints (the last one is always saved).
      log: callable taking one summary line per evaluation (e.g. `print`), called above the progress bar; None
        prints nothing.
    Raises TrainingDiverged (the run marked failed, the last good checkpoint kept) on NaN/Inf, and
    `memory.OutOfMemory` before anything is written or compiled when the configuration's estimated memory exceeds
    the memory available, or (the run marked failed with the reason) when an allocation fails anyway.
    """
    if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int) or checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be a positive integer, got {checkpoint_every!r}")
    name = check_run_name(run_name(config) if name is None else name, resume, overwrite)
    memory.check_train(config)
    trainer = make_trainer(config)
    keys = jnp.stack([jax.random.PRNGKey(config.seed + i) for i in range(config.seeds)])
    try:
        state = jax.vmap(trainer.init)(keys)
    except (RuntimeError, MemoryError) as err:  # before any folder exists: the one line, nothing to mark failed
        if not memory.is_oom(err):
            raise
        raise memory.oom_error(err, f"training {name}", "--horizon, --seeds or the batch sizes") from None
    chunk = jax.jit(jax.vmap(trainer.chunk, in_axes=(0, None)))
    run, state, rows, first, wall_offset = (None, state, [], 0, 0.0) if out is None else \
        _open_run(config, Path(out), name, state, resume, overwrite)
    start, beat = time.perf_counter(), time.monotonic()
    bar = tqdm(desc=name, unit="eval", disable=not progress, initial=first, total=trainer.n_chunks)
    bar.set_postfix_str("compiling…")  # the first chunk compiles: no rate or ETA until it returns
    env_steps = 0
    try:
        for c in range(first, trainer.n_chunks):
            new_state, stats = chunk(state, jnp.asarray(c * config.eval_every, jnp.int32))
            stats = jax.device_get(stats)
            problem = _divergence(config, stats)
            if problem is not None:
                if run is not None:
                    runs.set_status(run, "failed", reason=problem)
                raise TrainingDiverged(f"{name}: {problem}; training stopped"
                                       + (f", last good checkpoint kept in {run}" if run else ""))
            state = new_state
            env_steps = min((c + 1) * config.eval_every, config.total_steps)
            new_rows = _rows(config, stats, env_steps, wall_offset + time.perf_counter() - start)
            rows.extend(new_rows)
            _show(bar, log, new_rows, env_steps, compiled=c == first)
            last = c == trainer.n_chunks - 1
            if run is not None and ((c + 1 - first) % checkpoint_every == 0 or last):
                runs.save_checkpoint(run, jax.device_get(state), env_steps, rows)
            if run is not None and time.monotonic() - beat > HEARTBEAT_S:
                runs.heartbeat(run, env_steps=env_steps)
                beat = time.monotonic()
    except (RuntimeError, MemoryError) as err:  # XLA's RESOURCE_EXHAUSTED is a RuntimeError
        if not memory.is_oom(err):
            raise
        oom = memory.oom_error(err, f"training {name}", "--horizon, --seeds or the batch sizes")
        if run is not None:
            runs.set_status(run, "failed", reason=str(oom))
        raise oom from None
    except KeyboardInterrupt:
        if run is not None:
            runs.set_status(run, "failed", reason=f"interrupted after env step {env_steps}; resume with --resume")
        raise
    finally:
        bar.close()
    if run is not None:
        runs.set_status(run, "done")
    frame = pd.DataFrame(rows)
    frame.attrs.update(env_steps_trained=env_steps - min(first * config.eval_every, env_steps),
                       seconds=time.perf_counter() - start)
    return frame
