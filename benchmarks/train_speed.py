"""Wall time of the paper's full BPO schedule (PAPER.md §6, §10) on cancer, H = 100, and where it goes.

    python benchmarks/train_speed.py [--methods awm-transformer,awm-rnn,simulator] [--seeds 1,10] [--steps 5000]
                                     [--quick]   (simulator, H = 10, 96 steps, warmup 32, 1 and 2 seeds: a smoke
                                                  run for tests)

For each method and seed count: compile time (ahead of time, apart), wall time of the whole run after it,
and where it goes. "rest" is measured directly: the same compiled schedule with warmup_steps = total_steps, so no
update runs (env steps, evaluations, the schedule's branches, Python dispatch; checkpoints are off); its share is
rest / run. The world-model and policy columns time one jitted update alone (vmapped over the seeds, on the final
state) times the schedule's update counts: an estimate, which can exceed the in-loop cost (XLA fuses the update
into the scan).
The authors' code on this kind of machine (2 CPU cores): 440 s (transformer AWM), 147 s (LSTM AWM), 130 s (simulator).
"""
from __future__ import annotations

import argparse
import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np

from gradlens.training.loop import TrainConfig, make_trainer

AUTHORS = {"awm-transformer": 440.0, "awm-rnn": 147.0, "simulator": 130.0}


def _timed(fn, *args, repeats=5):
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def measure(method: str, seeds: int, steps: int, horizon: int = 100, warmup: int | None = None) -> dict:
    cfg = TrainConfig(system="cancer", method=method, horizon=horizon, total_steps=steps, seeds=seeds,
                      warmup_steps=warmup)
    trainer = make_trainer(cfg)
    state = jax.vmap(trainer.init)(jnp.stack([jax.random.PRNGKey(i) for i in range(seeds)]))
    start = time.perf_counter()
    chunk = jax.jit(jax.vmap(trainer.chunk, in_axes=(0, None))).lower(state, jnp.int32(0)).compile()
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    for c in range(trainer.n_chunks):
        state, _ = chunk(state, jnp.int32(c * cfg.eval_every))
    jax.block_until_ready(state)
    run_s = time.perf_counter() - start

    # the rest: the same schedule and state with every update switched off
    idle = make_trainer(dataclasses.replace(cfg, warmup_steps=steps))
    idle_chunk = jax.jit(jax.vmap(idle.chunk, in_axes=(0, None))).lower(state, jnp.int32(0)).compile()
    idle_state = state
    start = time.perf_counter()
    for c in range(idle.n_chunks):
        idle_state, _ = idle_chunk(idle_state, jnp.int32(c * cfg.eval_every))
    jax.block_until_ready(idle_state)
    rest_s = time.perf_counter() - start

    # the update steps alone, on the final state (full buffer), vmapped over seeds like inside the chunk
    n_ep = jnp.int32(steps // cfg.horizon)
    i = jnp.int32(steps)
    keys = jax.random.PRNGKey(1)
    live = [k for k in range(steps) if k > cfg.warmup_steps]
    n_model = sum(1 for k in live if k % cfg.model_every == 0 and (k + 1) // cfg.horizon > 0)
    n_policy = sum(1 for k in live if k % cfg.policy_every == 0 and (k + 1) // cfg.horizon > 0)
    t_policy = _timed(jax.jit(jax.vmap(lambda s: trainer.policy_step(s, i, keys, n_ep))), state)
    t_model = 0.0
    if trainer.model_step is not None:
        t_model = _timed(jax.jit(jax.vmap(lambda s: trainer.model_step(s, i, keys, n_ep))), state)
    model_total, policy_total = n_model * t_model, n_policy * t_policy
    return {
        "method": method, "seeds": seeds, "compile_s": compile_s, "run_s": run_s,
        "model_updates": n_model, "model_ms": 1e3 * t_model, "policy_updates": n_policy, "policy_ms": 1e3 * t_policy,
        "model_share": model_total / run_s, "policy_share": policy_total / run_s, "rest_share": rest_s / run_s,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", default="awm-transformer,awm-rnn,simulator")
    parser.add_argument("--seeds", default="1,10")
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--quick", action="store_true", help="a smoke run: H = 10, 96 steps (warmup 32), seeds 1,2")
    args = parser.parse_args()
    horizon, warmup = (10, 32) if args.quick else (100, None)
    if args.quick:
        args.steps, args.seeds, args.methods = 96, "1,2", "simulator"
    rows = []
    print("| method | seeds | compile s | run s (excl. compile) | authors' s (1 seed) | speed-up | WM updates × ms | "
          "policy updates × ms | WM share (est.) | policy share (est.) | rest share (measured) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for method in args.methods.split(","):
        for seeds in map(int, args.seeds.split(",")):
            r = measure(method, seeds, args.steps, horizon, warmup)
            rows.append(r)
            authors = AUTHORS.get(method) if horizon == 100 else None  # theirs: H = 100 only
            theirs = "–" if authors is None else f"{authors * args.steps / 5000:.0f}"
            speedup = "–" if authors is None or seeds > 1 else f"{authors * args.steps / 5000 / r['run_s']:.1f}"
            print(f"| {method} | {seeds} | {r['compile_s']:.1f} | {r['run_s']:.1f} | {theirs} | "
                  f"{speedup} | {r['model_updates']} × "
                  f"{r['model_ms']:.1f} | {r['policy_updates']} × {r['policy_ms']:.1f} | {r['model_share']:.0%} | "
                  f"{r['policy_share']:.0%} | {r['rest_share']:.1%} |", flush=True)
    for method in args.methods.split(","):
        one = [r for r in rows if r["method"] == method and r["seeds"] == 1]
        many = [r for r in rows if r["method"] == method and r["seeds"] > 1]
        if one and many:
            print(f"{method}: {many[0]['seeds']} vmapped seeds take {many[0]['run_s'] / one[0]['run_s']:.2f}× "
                  f"the time of one")


if __name__ == "__main__":
    main()
