"""Speed of world-model rollouts and policy gradients versus the horizon H, and the KV cache versus full recompute.

    python benchmarks/models_speed.py [--quick] [--batch 1] [--repeats 7] [--system cancer]

For every model class and H in {16, 32, 64, 128, 256}: the time of one closed-loop forward rollout (or of the mean
return of `--batch` vmapped rollouts) through `gradlens.rollout` (state-feedback MLP policy (64, 64) swish), of one
policy gradient (jax.grad of that return w.r.t. the policy parameters, policy_input_grad="stop") in both reverse
modes `rollout` offers: activations stored (reverse="store") and recomputed (reverse="recompute", the trainer's
default; for the HWM-transformer the blocked KV reverse pass of `gradlens.models.kv_reverse`), the ratio gradient /
forward of each, and the exponent p of a least-squares fit time ∝ H^p. `awm-transformer (open loop)` optimises the
action sequence directly: one causal pass. Forward and gradients are timed interleaved, medians of `--repeats` rounds
of the compiled functions (block_until_ready), so that a busy spell of the machine hits all of them alike; compile time
(lower + compile) is reported apart. The last table compares the KV-cached transformer rollout with a full recompute
of the causal pass at every step (`bind(params, recompute=True)`, batch 1).

Targets: gradient / forward <= 4 for every class (in its faster mode); hwm-transformer rollout exponent <= 2; cached
>= 10x faster than recompute at H = 256.
"""
from __future__ import annotations

import argparse
import itertools
import statistics
import time

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np

import gradlens as gl
import gradlens.models as gm

CLASSES = ["markov", "hwm-rnn", "hwm-transformer", "awm-rnn", "awm-transformer", "awm-ssm"]
VARIANTS = {"awm-transformer (open loop)": "awm-transformer"}  # extra row: the action sequence as the policy
QUICK_CLASSES = ["markov"]  # --quick: one state-based class, and the action-based one as its open-loop variant


def make_policy(system, horizon):
    """tanh(MLP(obs)) with the time index scaled to [0, 1]; returns (init params, policy(params) -> callable)."""
    scale = jnp.concatenate([jnp.ones(system.state_dim), jnp.array([1.0 / horizon])])
    net = hk.without_apply_rng(hk.transform(
        lambda obs: jnp.tanh(hk.nets.MLP([64, 64, system.action_dim], activation=jax.nn.swish)(obs * scale))))
    theta = net.init(jax.random.PRNGKey(1), jnp.zeros(system.obs_dim))
    return theta, lambda th: (lambda obs, key: net.apply(th, obs))


def timed(fn, *args, repeats: int) -> tuple[float, float]:
    """(compile seconds, median run seconds) of jax.jit(fn)(*args): two warm-up calls, then at least `repeats` runs
    and at least 0.2 s of runs."""
    return timed_together({"f": fn}, *args, repeats=repeats)["f"]


def timed_together(fns: dict, *args, repeats: int) -> dict:
    """{name: (compile s, median run s)} of jax.jit(fn)(*args) for each fn, run in interleaved rounds (two warm-up
    rounds, then at least `repeats` rounds and at least 0.2 s of them)."""
    compiled, compile_s = {}, {}
    for name, fn in fns.items():
        start = time.perf_counter()
        compiled[name] = jax.jit(fn).lower(*args).compile()
        compile_s[name] = time.perf_counter() - start
    runs = {name: [] for name in fns}
    for round_ in itertools.count():
        if round_ >= repeats + 2 and sum(map(sum, runs.values())) >= 0.2:
            break
        for name, f in compiled.items():
            start = time.perf_counter()
            jax.block_until_ready(f(*args))
            if round_ >= 2:
                runs[name].append(time.perf_counter() - start)
    return {name: (compile_s[name], statistics.median(runs[name])) for name in fns}


def measure(name, horizon, args):
    model_name = VARIANTS.get(name, name)
    system = gl.envs.make(args.system, horizon=horizon)
    model = gm.make(model_name, system)
    params = model.init(jax.random.PRNGKey(0))
    s1 = system.initial_state()  # [O], or [B, O] vmapped
    if args.batch > 1:
        s1 = jnp.broadcast_to(s1, (args.batch, system.obs_dim))
    if name in VARIANTS:
        theta = jnp.zeros((horizon, system.action_dim))
        ret = lambda th, s, reverse: gl.rollout((model, params), jnp.tanh(th), s, reverse=reverse).ret
    else:
        theta, policy = make_policy(system, horizon)
        ret = lambda th, s, reverse: gl.rollout((model, params), policy(th), s, horizon, reverse=reverse).ret
    if args.batch > 1:
        ret = lambda th, s1, reverse, one=ret: jnp.mean(jax.vmap(lambda s: one(th, s, reverse))(s1))
    fns = {"fwd": lambda th, s: ret(th, s, "store"),  # w.r.t. the policy only; the model's params are fixed
           "stored": jax.grad(lambda th, s: ret(th, s, "store")),
           "recompute": jax.grad(lambda th, s: ret(th, s, "recompute"))}
    times = timed_together(fns, theta, s1, repeats=args.repeats)
    return {key: t for key, (_, t) in times.items()} | {"compile": sum(c for c, _ in times.values())}


def cache_versus_recompute(name, horizon, args):
    """Forward and gradient of one closed-loop rollout, KV-cached vs full recompute; and their largest state gap."""
    system = gl.envs.make(args.system, horizon=horizon)
    model = gm.make(name, system)
    params = model.init(jax.random.PRNGKey(0))
    theta, policy = make_policy(system, horizon)
    s1 = system.initial_state()
    out = {}
    for label, recompute in (("cached", False), ("recompute", True)):
        dyn = model.bind(params, recompute=recompute)
        states = lambda th, s, dyn=dyn: gl.rollout(dyn, policy(th), s, horizon).states
        ret = lambda th, s, dyn=dyn: gl.rollout(dyn, policy(th), s, horizon).ret
        out[label] = (timed(ret, theta, s1, repeats=3), timed(jax.grad(ret), theta, s1, repeats=3))
        out[label + "_states"] = jax.jit(states)(theta, s1)
    out["max_abs_diff"] = float(jnp.max(jnp.abs(out["cached_states"] - out["recompute_states"])))
    return out


def exponent(horizons, times) -> float:
    return float(np.polyfit(np.log(horizons), np.log(times), 1)[0])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="H in {8, 16}, 1 repeat, markov and the open-loop AWM-transformer only, no recompute "
                             "table (a smoke run)")
    parser.add_argument("--batch", type=int, default=1,
                        help="imagined episodes per call: 1 = one rollout, B > 1 = vmapped mean (the paper uses 16)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--system", default="cancer")
    args = parser.parse_args()
    horizons = [8, 16] if args.quick else [16, 32, 64, 128, 256]
    if args.quick:
        args.repeats = 1
    print(f"# world-model speed: system {args.system}, batch {args.batch}, median of {args.repeats}, "
          f"jax {jax.__version__} on {jax.devices()[0].platform} ({jax.devices()[0].device_kind})\n")
    print("| model | H | forward ms | gradient ms, stored | gradient ms, recompute | grad / fwd, stored "
          "| grad / fwd, recompute | compile s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    fits = {}
    names = [*QUICK_CLASSES, *VARIANTS] if args.quick else [*CLASSES, *VARIANTS]
    for name in names:
        rows = [measure(name, h, args) for h in horizons]
        for h, r in zip(horizons, rows):
            print(f"| {name} | {h} | {1e3 * r['fwd']:.2f} | {1e3 * r['stored']:.2f} | {1e3 * r['recompute']:.2f} "
                  f"| {r['stored'] / r['fwd']:.2f} | {r['recompute'] / r['fwd']:.2f} | {r['compile']:.1f} |",
                  flush=True)
        best = [min(r["stored"], r["recompute"]) for r in rows]
        fits[name] = (exponent(horizons, [r["fwd"] for r in rows]), exponent(horizons, best),
                      max(r["stored"] / r["fwd"] for r in rows), max(r["recompute"] / r["fwd"] for r in rows),
                      max(b / r["fwd"] for b, r in zip(best, rows)))
    print("\n| model | forward exponent p (time ∝ H^p) | gradient exponent (faster mode) | max grad / fwd, stored "
          "| max grad / fwd, recompute | max grad / fwd, faster mode |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, (p_fwd, p_grad, stored, recompute, best) in fits.items():
        print(f"| {name} | {p_fwd:.2f} | {p_grad:.2f} | {stored:.2f} | {recompute:.2f} | {best:.2f} |")
    if args.quick:
        return
    h = horizons[-1]
    print(f"\n| model (batch 1, H = {h}) | cached fwd ms | recompute fwd ms | speed-up | cached grad ms "
          f"| recompute grad ms | speed-up | compile s (cached / recompute) | max abs state diff |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in ("hwm-transformer", "awm-transformer"):
        r = cache_versus_recompute(name, h, args)
        ((cf_c, tf_c), (cg_c, tg_c)), ((cf_r, tf_r), (cg_r, tg_r)) = r["cached"], r["recompute"]
        print(f"| {name} | {1e3 * tf_c:.2f} | {1e3 * tf_r:.1f} | {tf_r / tf_c:.0f}x | {1e3 * tg_c:.2f} "
              f"| {1e3 * tg_r:.1f} | {tg_r / tg_c:.0f}x | {cf_c + cg_c:.1f} / {cf_r + cg_r:.1f} "
              f"| {r['max_abs_diff']:.1e} |", flush=True)


if __name__ == "__main__":
    main()
