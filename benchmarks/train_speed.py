"""Wall time of the paper's full BPO schedule (PAPER.md §6, §10) on cancer, H = 100, and where it goes.

    python benchmarks/train_speed.py [--methods awm-transformer,awm-rnn,simulator] [--seeds 1,10] [--steps 5000]
                                     [--quick]   (simulator, H = 10, 96 steps, warmup 32, 1 and 2 seeds: a smoke
                                                  run for tests)

For each method and seed count: compile time (ahead of time, apart), wall time of the whole run after it,
and where it goes. "rest" is measured directly: the same compiled schedule with warmup_steps = total_steps - 1, so no
update runs (env steps, evaluations, the schedule's branches, Python dispatch; checkpoints are off); its share is
rest / run. The world-model and policy columns time one jitted update alone (vmapped over the seeds, on the final
state) times the schedule's update counts: an estimate, which can exceed the in-loop cost (XLA fuses the update
into the scan).
The authors' code on this kind of machine (2 CPU cores): 440 s (transformer AWM), 147 s (LSTM AWM), 130 s (simulator).
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from gradlens.training.loop import TrainConfig
from schedule import parse_args, print_seed_ratios, run_schedule, timed

AUTHORS = {"awm-transformer": 440.0, "awm-rnn": 147.0, "simulator": 130.0}


def measure(method: str, seeds: int, steps: int, horizon: int = 100, warmup: int | None = None) -> dict:
    cfg = TrainConfig(system="cancer", method=method, horizon=horizon, total_steps=steps, seeds=seeds,
                      warmup_steps=warmup)
    trainer, state, _, compile_s, run_s = run_schedule(cfg)

    # the rest: the same schedule and state with every update switched off
    # (updates need env step i > warmup_steps and i < total_steps: with warmup_steps = steps - 1 none runs)
    rest_s = run_schedule(dataclasses.replace(cfg, warmup_steps=steps - 1), state)[4]

    # the update steps alone, on the final state (full buffer), vmapped over seeds like inside the chunk
    n_ep = jnp.int32(steps // cfg.horizon)
    i = jnp.int32(steps)
    keys = jax.random.PRNGKey(1)
    live = [k for k in range(steps) if k > cfg.warmup_steps]
    n_model = sum(1 for k in live if k % cfg.model_every == 0 and (k + 1) // cfg.horizon > 0)
    n_policy = sum(1 for k in live if k % cfg.policy_every == 0 and (k + 1) // cfg.horizon > 0)
    t_policy = timed(jax.jit(jax.vmap(lambda s: trainer.policy_step(s, i, keys, n_ep))), state)
    t_model = 0.0
    if trainer.model_step is not None:
        t_model = timed(jax.jit(jax.vmap(lambda s: trainer.model_step(s, i, keys, n_ep))), state)
    model_total, policy_total = n_model * t_model, n_policy * t_policy
    return {
        "method": method, "seeds": seeds, "compile_s": compile_s, "run_s": run_s,
        "model_updates": n_model, "model_ms": 1e3 * t_model, "policy_updates": n_policy, "policy_ms": 1e3 * t_policy,
        "model_share": model_total / run_s, "policy_share": policy_total / run_s, "rest_share": rest_s / run_s,
    }


def main():
    args = parse_args(__doc__.split("\n")[0], "awm-transformer,awm-rnn,simulator", "simulator")
    rows = []
    print("| method | seeds | compile s | run s (excl. compile) | authors' s (1 seed) | speed-up | WM updates × ms | "
          "policy updates × ms | WM share (est.) | policy share (est.) | rest share (measured) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for method in args.methods.split(","):
        for seeds in map(int, args.seeds.split(",")):
            r = measure(method, seeds, args.steps, args.horizon, args.warmup)
            rows.append(r)
            authors = AUTHORS.get(method) if args.horizon == 100 else None  # theirs: H = 100 only
            theirs = "–" if authors is None else f"{authors * args.steps / 5000:.0f}"
            speedup = "–" if authors is None or seeds > 1 else f"{authors * args.steps / 5000 / r['run_s']:.1f}"
            print(f"| {method} | {seeds} | {r['compile_s']:.1f} | {r['run_s']:.1f} | {theirs} | "
                  f"{speedup} | {r['model_updates']} × "
                  f"{r['model_ms']:.1f} | {r['policy_updates']} × {r['policy_ms']:.1f} | {r['model_share']:.0%} | "
                  f"{r['policy_share']:.0%} | {r['rest_share']:.1%} |", flush=True)
    print_seed_ratios(rows, args.methods.split(","))


if __name__ == "__main__":
    main()
