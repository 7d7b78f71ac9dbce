"""Wall time of the paper's 5000-step schedule for the model-free baselines (SAC, Online DT) on cancer, H = 100.

    python benchmarks/baselines_speed.py [--methods sac,odt] [--seeds 1,10] [--steps 5000]
                                         [--quick]   (SAC, H = 10, 96 steps, warmup 32, 1 and 2 seeds: a smoke run)

For each method and seed count: compile time of the seed-vmapped chunk (ahead of time, apart), wall time of the whole
run after it (as `train` drives it: one jitted chunk per evaluation of 32 env steps, no checkpoints), that time per
env step, the number of gradient updates (SAC: critic + actor steps; ODT: pre-training + online updates) and the
time of one alone (SAC: a critic plus an actor step; jitted on its own and vmapped over the seeds, so it includes a
dispatch the chunk does not pay), and the final return (mean over seeds, one deterministic episode each).
Defaults throughout: SACConfig(), ODTConfig(), their default warmup of 1000 env steps.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from gradlens.training.loop import TrainConfig
from schedule import parse_args, print_seed_ratios, run_schedule, timed


def _updates(cfg: TrainConfig) -> int:
    """Gradient updates in the schedule: SAC critic + actor steps; ODT pre-training + online updates."""
    b, live = cfg.baseline, range(cfg.warmup_steps, cfg.total_steps)
    if cfg.method == "sac":
        return sum(1 for i in live if i % b.critic_every == 0) + sum(1 for i in live if i % b.actor_every == 0)
    pretrain_at = -(-cfg.warmup_steps // cfg.horizon) * cfg.horizon - 1
    online = sum(1 for i in range(pretrain_at + 1, cfg.total_steps) if i % b.update_every == 0)
    return (b.pretrain_updates if pretrain_at < cfg.total_steps else 0) + online


def measure(method: str, seeds: int, steps: int, horizon: int = 100, warmup: int | None = None) -> dict:
    cfg = TrainConfig(system="cancer", method=method, horizon=horizon, total_steps=steps, seeds=seeds,
                      warmup_steps=warmup)
    trainer, state, stats, compile_s, run_s = run_schedule(cfg)

    # one update alone on the final state: the Trainer's policy_step (SAC's actor step, ODT's update) and SAC's
    # critic step (model_step)
    i, key, n = jnp.int32(steps), jax.random.PRNGKey(1), jnp.int32(steps if method == "sac" else steps // horizon)
    update_ms = 1e3 * timed(jax.jit(jax.vmap(lambda s: trainer.policy_step(s, i, key, n))), state)
    if trainer.model_step is not None:
        update_ms += 1e3 * timed(jax.jit(jax.vmap(lambda s: trainer.model_step(s, i, key, n))), state)
    return {"method": method, "seeds": seeds, "compile_s": compile_s, "run_s": run_s, "updates": _updates(cfg),
            "update_ms": update_ms, "final_return": float(np.mean(stats.eval_return))}


def main():
    args = parse_args(__doc__.split("\n")[0], "sac,odt", "sac")
    rows = []
    print("| method | seeds | compile s | run s (excl. compile) | ms / env step | updates | ms / update alone | "
          "final return |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for method in args.methods.split(","):
        for seeds in map(int, args.seeds.split(",")):
            r = measure(method, seeds, args.steps, args.horizon, args.warmup)
            rows.append(r)
            print(f"| {method} | {seeds} | {r['compile_s']:.1f} | {r['run_s']:.1f} | "
                  f"{1e3 * r['run_s'] / args.steps:.2f} | {r['updates']} | {r['update_ms']:.2f} | "
                  f"{r['final_return']:.4g} |", flush=True)
    print_seed_ratios(rows, args.methods.split(","))


if __name__ == "__main__":
    main()
