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
  seeds       seeds 10 … 19 of the simulator on cancer and mould (paper's settings, converging option): how often
              does a seed stall?
  trace       cancer and mould, both settings, retrained while the saturated share of the deterministic policy's
              actions is recorded at every evaluation
  final       (no training) the final policies of the paper-setting simulator runs, from their checkpoints: where
              the stalled seeds' actions sit

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
import jax.numpy as jnp
import numpy as np
import pandas as pd

from gradlens import envs, outcomes, runs
from gradlens.policies import make_policy
from gradlens.rollout import rollout
from gradlens.training.loop import TrainConfig, make_trainer
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
    "seeds": [(s, "simulator", k, {"seed": 10}) for s in ("cancer", "mould_fungicide") for k in ("paper", "converging")],
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
        root = out / "runs" / "fidelity" / (setting + (f"-{config.total_steps}" if "total_steps" in extra else ""))
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


def final_policies(out: Path, scale: Scale) -> pd.DataFrame:
    """Per system and seed of the paper-setting simulator runs (seeds 0 … 19 where run): the final deterministic
    policy's return, its action a ∈ [-1, 1] at t = 0, 10, 50, 99 (-1: the lowest control, no treatment), |μ| at t = 99 and the share of saturated steps."""
    rows = []
    for system_name in ("cancer", "mould_fungicide"):
        for first in (0, 10):
            config = TrainConfig(system=system_name, method="simulator", horizon=HORIZON, seeds=scale.seeds,
                                 seed=first)
            folder = out / "runs" / "fidelity" / "paper" / run_name(config)
            if not (folder / "config.json").exists():
                continue
            trainer = make_trainer(config)
            like = jax.vmap(trainer.init)(jnp.stack([jax.random.PRNGKey(first + i) for i in range(config.seeds)]))
            state, _, _ = runs.load_checkpoint(folder, like)
            system, policy = trainer.system, make_policy("mlp", trainer.system)
            for i in range(config.seeds):
                params = jax.tree.map(lambda x: jnp.asarray(x[i]), state.policy_params)
                traj = rollout(system, policy.bind(params, deterministic=True), system.initial_state(), HORIZON)
                a = np.asarray(traj.actions)[:, 0]
                mu = jax.vmap(lambda o: policy.distribution(params, o)[0])(traj.states[:-1])
                rows.append({"system": system_name, "seed": first + i, "final_return": float(traj.ret),
                             **{f"a_{t}": float(a[t]) for t in (0, 10, 50, 99)},
                             "abs_mu_last": float(np.abs(mu[-1]).max()),
                             "saturated_share": float(np.mean(np.abs(a) > 0.998))})
    return pd.DataFrame(rows)


def saturation_trace(system_name: str, scale: Scale) -> pd.DataFrame:
    """Per setting (paper, converging), evaluation and seed: the deterministic policy's return, its share of
    saturated steps (|a| > 0.998) and |μ| at t = 99, tracked through training (the trainer's chunks, as `train`)."""
    rows = []
    for setting in ("paper", "converging"):
        config = _config(system_name, "simulator", setting, {}, scale)
        trainer = make_trainer(config)
        policy = make_policy("mlp", trainer.system, time_input=config.policy_time_input)
        state = jax.vmap(trainer.init)(jnp.stack([jax.random.PRNGKey(i) for i in range(config.seeds)]))
        chunk = jax.jit(jax.vmap(trainer.chunk, in_axes=(0, None)))
        s1 = trainer.system.initial_state()

        @jax.jit
        @jax.vmap
        def probe(params):
            traj = rollout(trainer.system, policy.bind(params, deterministic=True), s1, HORIZON)
            mu = policy.distribution(params, traj.states[-2])[0]
            return traj.ret, jnp.mean(jnp.abs(traj.actions) > 0.998), jnp.max(jnp.abs(mu))

        for c in range(trainer.n_chunks):
            state, _ = chunk(state, jnp.asarray(c * config.eval_every, jnp.int32))
            ret, sat, mu = (np.asarray(x) for x in probe(state.policy_params))
            step = min((c + 1) * config.eval_every, config.total_steps)
            rows += [{"system": system_name, "setting": setting, "env_steps": step, "seed": i, "return": ret[i],
                      "saturated_share": sat[i], "abs_mu_last": mu[i]} for i in range(config.seeds)]
    return pd.DataFrame(rows)


def _finals(row) -> str:
    return " ".join(f"{v:.1f}" for v in row)


def outcome_table(metrics: pd.DataFrame, best: dict | None = None) -> pd.DataFrame:
    """Per (system, method, setting, steps): the outcome distribution (`gradlens.outcomes.summarize`) and the
    per-seed finals, seed order. `best`: {system: best-known return}; missing: `outcomes.BEST_KNOWN`."""
    per_seed = outcomes.seed_outcomes(metrics, best=best, fallback=False)
    table = outcomes.summarize(per_seed)
    by = ["system", "method", "setting", "total_steps"]
    finals = per_seed.sort_values("seed").groupby(by, sort=False)["final"].apply(list).rename("finals")
    return table.merge(finals.reset_index(), on=by)


def markdown(table: pd.DataFrame, columns: dict) -> str:
    """A Markdown table of `columns` {column: header}; floats to 4 significant digits, NaN as –."""
    def cell(v):
        if isinstance(v, list):
            return _finals(v)
        if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)):
            return "–"
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(columns.values()) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row[c]) for c in columns) + " |" for _, row in table.iterrows()]
    return "\n".join(lines)


OUTCOME_COLUMNS = {"system": "system", "method": "method", "setting": "setting", "median": "median", "iqm": "IQM",
                   "min": "worst", "n_converged": "converged", "median_converged_step": "median step converged",
                   "finals": "final return per seed, in seed order"}


def best_over_settings(metrics: pd.DataFrame) -> dict:
    """{system: the best final return of any seed in any setting}: the best-known return where none is published."""
    last = metrics[metrics["env_steps"] == metrics.groupby(["system", "setting"])["env_steps"].transform("max")]
    return {s: float(v) for s, v in last.groupby("system")["return"].max().items()}


def report(out: Path) -> str:
    """`<out>/fidelity.md` from the stage CSVs present in `<out>/fidelity/`."""
    folder = out / "fidelity"
    parts = ["# BPO fidelity: outcome distributions against the reference code",
             "",
             f"Written by `python benchmarks/fidelity.py` on {datetime.date.today()}; `docs/fidelity.md` discusses "
             "it. H = 100, 10 seeds (0 … 9, vmapped), the paper's schedule (5000 env steps, warm-up 1500) unless "
             "a row says otherwise. Final return: the deterministic policy's return in the true system at the last "
             f"evaluation. Converged: final ≥ best-known − {outcomes.DEFAULT_RTOL:.0%} of |best-known| "
             f"(best-known: the reference code's {outcomes.BEST_KNOWN} for cancer and mould; elsewhere the best "
             "final of any seed in either setting, stated per table). Median step converged: the first evaluation "
             "after which a converged seed's return stays inside that band.",
             "", "Settings:", ""]
    parts += [f"- `{name}`: {what}" for name, (_, what) in SETTINGS.items()]
    if (folder / "saturation.csv").exists():
        sat = pd.read_csv(folder / "saturation.csv")
        wide = sat.pivot_table(index=["system", "seed"], columns="time_input",
                               values=["abs_mu_last", "saturated_share", "initial_return"]).reset_index()
        wide.columns = ["_".join(c).strip("_") for c in wide.columns]
        parts += ["", "## The untrained policy (no training)", "",
                  "For each seed: |μ| at the last step (t = 99), the share of the 100 steps whose deterministic action is saturated "
                  "(|a| > 0.998), and the initial return, with the raw step index as input (the paper's) and with "
                  "t / H:", "",
                  markdown(wide, {"system": "system", "seed": "seed", "abs_mu_last_raw": "abs μ_99 raw",
                                  "saturated_share_raw": "saturated raw", "initial_return_raw": "J₀ raw",
                                  "abs_mu_last_unit": "abs μ_99 t/H", "saturated_share_unit": "saturated t/H",
                                  "initial_return_unit": "J₀ t/H"})]
    titles = {"reference": "The true simulator, one change at a time",
              "long": "The paper's settings for 20 000 env steps",
              "myriad": "Every Myriad task: the paper's settings and the converging option",
              "awm": "AWM-RNN: the paper's settings and the converging option",
              "seeds": "Ten more seeds (10 … 19)"}
    for stage, title in titles.items():
        if not (folder / f"{stage}.csv").exists():
            parts += ["", f"## {title}", "", "Not run yet."]
            continue
        metrics = pd.read_csv(folder / f"{stage}.csv")
        if "horizon" not in metrics.columns:  # stage files written before the column was exported
            metrics["horizon"] = HORIZON
        best = best_over_settings(metrics) if stage == "myriad" else None
        table = outcome_table(metrics, best).sort_values(["system", "setting"], kind="stable")
        parts += ["", f"## {title}", "", markdown(table, {**OUTCOME_COLUMNS, "best": "best-known"})]
        if stage in ("myriad", "awm", "seeds"):
            parts += ["", improvement_table(metrics, best)]
        if stage == "long" and (folder / "saturation.csv").exists():
            parts += ["", escape_vs_saturation(metrics, pd.read_csv(folder / "saturation.csv"))]
    if (folder / "final.csv").exists():
        final = pd.read_csv(folder / "final.csv")
        parts += ["", "## Where the paper-setting policies end (simulator, from the final checkpoints)", "",
                  "The deterministic action a ∈ [-1, 1] at four steps (-1 is the lowest control: no drug, no "
                  "fungicide), |μ| at t = 99 and the share of saturated steps (|a| > 0.998):", "",
                  markdown(final, {"system": "system", "seed": "seed", "final_return": "final return",
                                   "a_0": "a_0", "a_10": "a_10", "a_50": "a_50", "a_99": "a_99",
                                   "abs_mu_last": "abs μ_99", "saturated_share": "saturated"})]
    text = "\n".join(parts) + "\n"
    (out / "fidelity.md").write_text(text)
    return text


def improvement_table(metrics: pd.DataFrame, best: dict | None) -> str:
    """Per system and method: P(converging option's final > paper setting's final) over seeds, with its stratified
    bootstrap 95 % CI and the verdict on "the converging option does better" (`outcomes.verdict`)."""
    per_seed = outcomes.seed_outcomes(metrics, best=best, fallback=False)
    rows = []
    for (system, method), part in per_seed.groupby(["system", "method"]):
        scores = {k: part[part.setting == k].sort_values("seed")["final"].to_numpy()[:, None]
                  for k in ("converging", "paper")}
        if any(len(v) == 0 for v in scores.values()):
            continue
        p = outcomes.probability_of_improvement(scores, [("converging", "paper")]).iloc[0]
        rows.append({"system": system, "method": method, "p": p["value"],
                     "ci": f"[{p['low']:.2f}, {p['high']:.2f}]", "verdict": outcomes.verdict(p["low"], p["high"])})
    return ("P(converging > paper): the probability that a seed of the converging option ends above a seed of the "
            "paper's settings (ties count half), with a stratified-bootstrap 95 % CI; the verdict is on "
            "\"the converging option does better\" (reproduced: CI above 0.5; not reproduced: below; else "
            "inconclusive).\n\n" + markdown(pd.DataFrame(rows), {"system": "system", "method": "method",
                                                                    "p": "P(converging > paper)", "ci": "95 % CI",
                                                                    "verdict": "converging better?"}))


def escape_vs_saturation(long: pd.DataFrame, sat: pd.DataFrame) -> str:
    """Spearman rank correlation between the untrained policy's |μ_99| (raw input) and the env step at which each
    seed converged in the long runs (seeds that never converged rank last)."""
    from scipy.stats import spearmanr

    per_seed = outcomes.seed_outcomes(long, fallback=False)
    lines = []
    for system, part in per_seed.groupby("system"):
        mu = sat[(sat.system == system) & (sat.time_input == "raw")].set_index("seed")["abs_mu_last"]
        step = part.set_index("seed")["converged_step"].fillna(np.inf)
        rho, p = spearmanr(mu.loc[step.index], step)
        lines.append(f"{system}: Spearman ρ(|μ_99| at initialisation, step converged) = {rho:.2f} (p = {p:.2g}, "
                     f"{len(step)} seeds; a seed that never converged ranks last)")
    return "\n\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--only", help="comma-separated stages: saturation, final, trace," + ",".join(STAGES))
    parser.add_argument("--quick", action="store_true", help="2 seeds, shortened schedules, cancer only")
    parser.add_argument("--systems", help="comma-separated systems: run only their cells of each stage")
    parser.add_argument("--report", action="store_true", help="only rebuild <out>/fidelity.md from the stage CSVs")
    args = parser.parse_args(argv)
    scale = QUICK if args.quick else Scale()
    if args.systems:
        scale = dataclasses.replace(scale, systems=tuple(args.systems.split(",")))
    out = Path(args.out)
    stages = args.only.split(",") if args.only else ["saturation", *STAGES, "final", "trace"]
    unknown = [s for s in stages if s not in ("saturation", "final", "trace") and s not in STAGES]
    if unknown:
        raise SystemExit(f"unknown stage(s) {', '.join(unknown)}; valid: saturation, final, {', '.join(STAGES)}")
    folder = out / "fidelity"
    folder.mkdir(parents=True, exist_ok=True)
    for stage in [] if args.report else stages:
        start = time.perf_counter()
        print(f"{stage} ...", flush=True)
        if stage == "saturation":
            saturation(scale).to_csv(folder / "saturation.csv", index=False, float_format="%.6g")
        elif stage == "final":
            final_policies(out, scale).to_csv(folder / "final.csv", index=False, float_format="%.6g")
        elif stage == "trace":
            trace = pd.concat([saturation_trace(s, scale) for s in ("cancer", "mould_fungicide")
                               if scale.systems is None or s in scale.systems])
            trace.to_csv(folder / "trace.csv", index=False, float_format="%.4g")
        else:
            keep = ["system", "method", "setting", "horizon", "total_steps", "seed", "env_steps", "return"]
            metrics = run_stage(stage, out, scale)[keep]
            file = folder / f"{stage}.csv"
            if scale.systems is not None and file.exists():  # --systems: keep the other systems' exported rows
                kept = pd.read_csv(file)
                metrics = pd.concat([kept[~kept["system"].isin(scale.systems)], metrics], ignore_index=True)
            metrics.to_csv(file, index=False, float_format="%.6g")
        print(f"{stage}: {time.perf_counter() - start:.0f} s ({datetime.datetime.now():%H:%M})", flush=True)
    report(out)
    print(f"wrote {out / 'fidelity.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
