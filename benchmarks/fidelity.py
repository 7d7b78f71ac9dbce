"""BPO against the paper's reference code: per-seed outcome distributions, the plateau's cause, a converging option.

    python benchmarks/fidelity.py [--out benchmarks/results] [--only saturation,reference,...] [--quick]

Stages (each a set of 10-seed training runs, H = 100, the paper's schedule: 5000 env steps, warm-up 1500):

  saturation  the untrained policy of every seed: |μ| at the last step and the share of steps whose deterministic
              action is saturated (|a| > 0.998), with the raw and the unit time input (no training; instant)
  reference   the true simulator on cancer and mould under the paper's settings and one change at a time (the
              policy-gradient clip the reference leaves off, the entropy bonus, the policy's time input, its lr)
  long        the paper's settings for 20 000 env steps: does every seed leave the plateau, and when?
  myriad      the simulator on all 10 Myriad tasks, the paper's settings beside the converging option
  awm         the AWM-RNN on cancer and mould, the paper's settings beside the converging option

Runs go to `<out>/runs/fidelity/<setting>/` (resumable: a finished run is read back, an interrupted one continues);
each stage's per-seed returns go to `<out>/fidelity/<stage>.csv` (small, committed) and the tables to
`<out>/fidelity.md`. `docs/fidelity.md` discusses them.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pandas as pd

from gradlens import envs, runs
from gradlens.policies import make_policy
from gradlens.rollout import rollout
from gradlens.training.loop import TrainConfig
from gradlens.training.train import run_name, train

MYRIAD = ("cancer", "bear_populations", "bioreactor", "hiv", "mould_fungicide", "bacteria", "predator_prey",
          "glucose", "harvest", "timber_harvest")
PAPER: dict = {}  # the paper's settings are TrainConfig's defaults
CONVERGING = {"policy_time_input": "unit", "policy_lr": 3e-4}  # the option docs/fidelity.md recommends
SETTINGS = {  # name -> (TrainConfig overrides, what it changes against the paper's settings)
    "paper": (PAPER, "the paper's settings (the reference code's): raw step index, policy lr 1e-4, simulator "
                     "gradient unclipped"),
    "clip100": ({"simulator_grad_clip": 100.0}, "simulator gradient clipped at global norm 100 (gradlens before)"),
    "entropy0": ({"entropy_coef": 0.0}, "no entropy bonus"),
    "lr3e-4": ({"policy_lr": 3e-4}, "policy lr 3e-4"),
    "unit": ({"policy_time_input": "unit"}, "time input t / H"),
    "converging": (CONVERGING, "time input t / H and policy lr 3e-4"),
}
STAGES = {  # stage -> [(system, method, setting, extra overrides)]
    "reference": [(s, "simulator", k, {}) for s in ("cancer", "mould_fungicide") for k in SETTINGS],
    "long": [(s, "simulator", "paper", {"total_steps": 20000}) for s in ("cancer", "mould_fungicide")],
    "myriad": [(s, "simulator", k, {}) for s in MYRIAD for k in ("paper", "converging")],
    "awm": [(s, "awm-rnn", k, {}) for s in ("cancer", "mould_fungicide") for k in ("paper", "converging")],
}
SEEDS, HORIZON = 10, 100


@dataclasses.dataclass(frozen=True)
class Scale:
    seeds: int = SEEDS
    steps_scale: float = 1.0  # --quick shortens every schedule
    systems: tuple[str, ...] | None = None  # --quick: a subset


QUICK = Scale(seeds=2, steps_scale=0.4, systems=("cancer",))


def _config(system, method, setting, extra, scale: Scale) -> TrainConfig:
    overrides = {**SETTINGS[setting][0], **extra}
    steps = int(overrides.get("total_steps", 5000) * scale.steps_scale)
    overrides.update(total_steps=steps, warmup_steps=min(1500, steps // 3))
    return TrainConfig(system=system, method=method, horizon=HORIZON, seeds=scale.seeds, **overrides)


def run_stage(stage: str, out: Path, scale: Scale, log=print) -> pd.DataFrame:
    """Train (or read back) every run of `stage`; return its metrics with `setting` and `steps` columns."""
    frames = []
    for system, method, setting, extra in STAGES[stage]:
        if scale.systems is not None and system not in scale.systems:
            continue
        config = _config(system, method, setting, extra, scale)
        root = out / "runs" / "fidelity" / (setting + ("" if not extra else f"-{config.total_steps}"))
        folder = root / run_name(config)
        if (folder / "config.json").exists() and runs.status(folder).get("state") == "done":
            metrics = runs.load(folder)
        else:
            start = time.perf_counter()
            metrics = train(config, root, resume=(folder / "config.json").exists(), progress=False)
            log(f"  {stage}: {run_name(config)} [{setting}] {time.perf_counter() - start:.0f} s")
        frames.append(metrics.assign(system=system, method=method, setting=setting, horizon=HORIZON,
                                     total_steps=config.total_steps))
    return pd.concat(frames, ignore_index=True)


def saturation(scale: Scale) -> pd.DataFrame:
    """Per system, time input and seed: the untrained deterministic policy's |μ| at the last step, the share of
    saturated steps, and its return (the trainer's key derivation: PRNGKey(seed) -> split 3 -> the policy's)."""
    rows = []
    for system_name in ("cancer", "mould_fungicide"):
        system = envs.make(system_name, horizon=HORIZON)
        for time_input in ("raw", "unit"):
            policy = make_policy("mlp", system, time_input=time_input)
            for seed in range(scale.seeds):
                params = policy.init(jax.random.split(jax.random.PRNGKey(seed), 3)[1])
                traj = rollout(system, policy.bind(params, deterministic=True), system.initial_state(), HORIZON)
                loc = jax.vmap(lambda o: policy.distribution(params, o)[0])(traj.states[:-1])  # [H, A]
                rows.append({"system": system_name, "time_input": time_input, "seed": seed,
                             "abs_mu_last": float(np.abs(loc[-1]).max()),
                             "saturated_share": float(np.mean(np.abs(np.asarray(traj.actions)) > 0.998)),
                             "initial_return": float(traj.ret)})
    return pd.DataFrame(rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--only", help="comma-separated stages: saturation," + ",".join(STAGES))
    parser.add_argument("--quick", action="store_true", help="2 seeds, shortened schedules, cancer only")
    args = parser.parse_args(argv)
    scale = QUICK if args.quick else Scale()
    out = Path(args.out)
    stages = args.only.split(",") if args.only else ["saturation", *STAGES]
    unknown = [s for s in stages if s != "saturation" and s not in STAGES]
    if unknown:
        raise SystemExit(f"unknown stage(s) {', '.join(unknown)}; valid: saturation, {', '.join(STAGES)}")
    folder = out / "fidelity"
    folder.mkdir(parents=True, exist_ok=True)
    for stage in stages:
        start = time.perf_counter()
        print(f"{stage} ...", flush=True)
        if stage == "saturation":
            saturation(scale).to_csv(folder / "saturation.csv", index=False, float_format="%.6g")
        else:
            metrics = run_stage(stage, out, scale)
            keep = ["system", "method", "setting", "total_steps", "seed", "env_steps", "return"]
            metrics[keep].to_csv(folder / f"{stage}.csv", index=False, float_format="%.6g")
        print(f"{stage}: {time.perf_counter() - start:.0f} s ({datetime.datetime.now():%H:%M})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
