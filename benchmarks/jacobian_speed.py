"""Cost of a full Jacobian chain d ŝ_t / d a_k relative to forward rollouts, per model class and horizon H.

    python benchmarks/jacobian_speed.py [--horizons 8 16 32 64] [--modes auto] [--repeats 5] [--system cancer]
                                        [--quick]   (H = 4, 1 repeat, 3 classes: a smoke run for tests)

For the true system and every model class (random init) and each H: the time of one closed-loop forward rollout
through `gradlens.rollout` (state-feedback MLP policy (64, 64) swish, policy_input_grad="stop") and of
`jacobian_chain` on the same rollout, both jitted (compile time reported apart; medians of `--repeats` runs,
block_until_ready), and the ratio

    chain / (min(#inputs, #outputs) × forward),   #inputs = H·A (jacfwd tangents), #outputs = H·D (jacrev cotangents)

i.e. the cost per Jacobian row or column in units of one rollout. Target: <= 4 for every class and H.
"""
from __future__ import annotations

import argparse
import statistics
import time

import haiku as hk
import jax
import jax.numpy as jnp

import gradlens as gl
import gradlens.models as gm
from gradlens.analysis.jacobians import jacobian_chain

CLASSES = ["simulator", "markov", "hwm-rnn", "hwm-transformer", "awm-rnn", "awm-transformer", "awm-ssm"]
QUICK_CLASSES = ["simulator", "markov", "awm-rnn"]  # --quick: the simulator, one state- and one action-based model


def make_policy(system, horizon):
    """tanh(MLP(obs)) with the time index scaled to [0, 1] (as in benchmarks/models_speed.py): obs, key -> [A]."""
    scale = jnp.concatenate([jnp.ones(system.state_dim), jnp.array([1.0 / horizon])])
    net = hk.without_apply_rng(hk.transform(
        lambda obs: jnp.tanh(hk.nets.MLP([64, 64, system.action_dim], activation=jax.nn.swish)(obs * scale))))
    theta = net.init(jax.random.PRNGKey(1), jnp.zeros(system.obs_dim))
    return lambda obs, key: net.apply(theta, obs)


def timed(fn, *args, repeats: int) -> tuple[float, float]:
    """(compile seconds, median run seconds) of jax.jit(fn)(*args): one warm-up call, then at least `repeats` runs
    and at least 0.1 s of runs."""
    start = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_s = time.perf_counter() - start
    jax.block_until_ready(compiled(*args))
    runs = []
    while len(runs) < repeats or sum(runs) < 0.1:
        start = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        runs.append(time.perf_counter() - start)
    return compile_s, statistics.median(runs)


def measure(name: str, horizon: int, mode: str, args) -> dict:
    system = gl.envs.make(args.system, horizon=horizon)
    if name == "simulator":
        dynamics = system
    else:
        model = gm.make(name, system)
        dynamics = (model, model.init(jax.random.PRNGKey(0)))
    policy = make_policy(system, horizon)
    forward = lambda s1: gl.rollout(dynamics, policy, s1, horizon).states
    chain = lambda s1: jacobian_chain(dynamics, policy, s1, horizon, mode=mode).jac
    s1 = system.initial_state()
    c_fwd, t_fwd = timed(forward, s1, repeats=args.repeats)
    c_jac, t_jac = timed(chain, s1, repeats=args.repeats)
    rows = min(horizon * system.action_dim, horizon * system.state_dim)
    return {"fwd": t_fwd, "jac": t_jac, "ratio": t_jac / (rows * t_fwd), "rows": rows, "compile": c_fwd + c_jac}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--horizons", type=int, nargs="+", default=[8, 16, 32, 64])
    parser.add_argument("--modes", nargs="+", default=["auto"], choices=["auto", "fwd", "rev"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--system", default="cancer")
    parser.add_argument("--quick", action="store_true",
                        help="H = 4, 1 repeat, the simulator, markov and the AWM-RNN only")
    args = parser.parse_args()
    classes = QUICK_CLASSES if args.quick else CLASSES
    if args.quick:
        args.horizons, args.repeats = [4], 1
    system = gl.envs.make(args.system)
    print(f"# Jacobian-chain cost: system {args.system} (D = {system.state_dim}, A = {system.action_dim}), closed "
          f"loop, median of {args.repeats}, jax {jax.__version__} on {jax.devices()[0].platform} "
          f"({jax.devices()[0].device_kind})\n")
    print("| dynamics | mode | H | min(in, out) | forward ms | chain ms | chain / (min × forward) | compile s |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    worst = 0.0
    for name in classes:
        for mode in args.modes:
            for h in args.horizons:
                r = measure(name, h, mode, args)
                worst = max(worst, r["ratio"])
                print(f"| {name} | {mode} | {h} | {r['rows']} | {1e3 * r['fwd']:.3f} | {1e3 * r['jac']:.3f} "
                      f"| {r['ratio']:.2f} | {r['compile']:.1f} |", flush=True)
    print(f"\nworst ratio {worst:.2f} (target <= 4)")


if __name__ == "__main__":
    main()
