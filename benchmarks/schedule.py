"""What `train_speed.py` and `baselines_speed.py` share: the CLI, running a compiled schedule, timing one update.

Run from the repository root as `python benchmarks/<script>.py`; Python puts benchmarks/ on the path, so the scripts
import this module by its name.
"""
from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from gradlens.training.loop import TrainConfig, make_trainer



def parse_args(description: str, methods: str, quick_methods: str) -> argparse.Namespace:
    """--methods, --seeds, --steps, --quick; adds .horizon (100, or 10 with --quick) and .warmup (None = default)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--methods", default=methods)
    parser.add_argument("--seeds", default="1,10")
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--quick", action="store_true",
                        help=f"a smoke run: {quick_methods}, H = 10, 96 steps (warmup 32), seeds 1,2")
    args = parser.parse_args()
    args.horizon, args.warmup = 100, None
    if args.quick:
        args.horizon, args.steps, args.warmup, args.seeds, args.methods = 10, 96, 32, "1,2", quick_methods
    return args


def timed(fn, *args, repeats: int = 5) -> float:
    """Median seconds of fn(*args) after one warm-up call."""
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def run_schedule(cfg: TrainConfig, state=None):
    """(trainer, final state, last ChunkStats, compile s, run s) of cfg's whole schedule, seeds vmapped, compiled
    ahead of time (compile apart), as `train` drives it without checkpoints; `state`: start from it instead."""
    trainer = make_trainer(cfg)
    if state is None:
        state = jax.vmap(trainer.init)(jnp.stack([jax.random.PRNGKey(i) for i in range(cfg.seeds)]))
    start = time.perf_counter()
    chunk = jax.jit(jax.vmap(trainer.chunk, in_axes=(0, None))).lower(state, jnp.int32(0)).compile()
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    stats = None
    for c in range(trainer.n_chunks):
        state, stats = chunk(state, jnp.int32(c * cfg.eval_every))
    jax.block_until_ready(state)
    return trainer, state, stats, compile_s, time.perf_counter() - start


def print_seed_ratios(rows: list[dict], methods) -> None:
    """One line per method measured with 1 seed and more: how many times one seed's run time the vmapped run took."""
    for method in methods:
        one = [r for r in rows if r["method"] == method and r["seeds"] == 1]
        many = [r for r in rows if r["method"] == method and r["seeds"] > 1]
        if one and many:
            print(f"{method}: {many[0]['seeds']} vmapped seeds take {many[0]['run_s'] / one[0]['run_s']:.2f}× "
                  f"the time of one")
