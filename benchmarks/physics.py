"""The physics study (issue 20, item 3): on Brax rigid-body systems, how close is each world model's policy gradient
to the simulator's, and what does one gradient cost as the state dimension D grows?

    python benchmarks/physics.py [--out benchmarks/results] [--stages cost,physics-brax_reacher,...]
    python benchmarks/physics.py --report    # rebuild <out>/physics.md from the exported stages

Stages, in running order:
  cost                  one simulator gradient per system at the study's H: jax.jit(jax.vmap(jax.grad(J))) over 32
                        open-loop action sequences (the audit's default sample count; J the H-step return through
                        `gradlens.rollout`): compile seconds (`lower().compile()`), run seconds (median of 3 calls),
                        and XLA's memory for it (arguments + outputs + temporaries, `compiled.memory_analysis()`), in
                        `<out>/physics/cost.csv`. Written first: it warms the compilation cache of each system.
  simulator             the simulator's own policy gradient versus H (10, 25, 50) on every system, 10 seeds: an
                        open-loop tanh-Gaussian policy at θ = 0 (a free action per step, noise 0.3 before the tanh,
                        so that a zeroth-order estimate has few parameters to search: P = H·A), 128 first-order
                        samples (mean norm, variance, SNR) and two zeroth-order estimates of 256 antithetic samples
                        each, all with independent noise: their cosine to the first-order mean, and to each other
                        (the estimator's own noise ceiling). With an unbiased first-order gradient cos(ZO, FO) ≈
                        sqrt(cos(ZO, ZO')); where contacts or chaos make it unreliable, it falls below. Each
                        (system, seed) kept at once in `<out>/physics/simulator/seeds/`, exported to
                        `<out>/physics/simulator/simulator.parquet`.
  physics-<system>      the open-questions study's audits (`open_questions.run_stage`, same statistics and resume
                        rules): every model fitted and audited on 10 seeds at H, read where it fits (open-loop error
                        at most 0.5x repeating the last state) on 8 of them, AWMs against Markov/HWM by P(cosine >).
  match-markov,         fit or architecture on the hopper, where the AWMs beat the Markov model but fit 9-12x better:
  match-awms-<cap>      the Markov model refitted with a 1500-epoch cap, and the AWMs' fits stopped after 5-40 epochs
                        (a ladder of fits), each AWM set per seed against the Markov model with its best rung that
                        fits no better (`MATCH_STUDIES`, `match_section`).
  bpo-<method>          BPO on every system at H (the paper's schedule, TrainConfig defaults; 10 vmapped seeds;
                        non-finite policy gradients zeroed and counted, as in the grid), trained like the grid's
                        stages (`grid.train_stage`: each finished run kept at once in `<out>/physics/bpo/<stage>/`),
                        exported to `<out>/physics/bpo/<stage>.parquet`: final return IQM [95 % CI] per system and
                        method, failure (no gain over the initial policy), and P(AWM's return > the other's).
The report is `<out>/physics.md` (figure `<out>/figures/physics_cosine.*`) with the cost and BPO tables.

Systems (docs/physics.md): the inverted double pendulum (D = 6, chaotic), the reacher (D = 8, smooth) and the hopper
(D = 12, ground contacts), all on Brax's `generalized` backend at H = 25: 0.5 s of the pendulum and the reacher, 0.2 s
of the hopper, short enough for models to fit. Compilation dominates on a CPU (minutes per program cold, docs/physics.md
"Compile and run time"): the first seed of a system compiles every program, the later ones read the persistent
compilation cache.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import functools
import resource
import shutil
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from gradlens import compilation_cache, envs, outcomes
from gradlens.analysis import gradients
from gradlens.analysis.audit import AuditConfig
from gradlens.policies import make_policy
from gradlens.rollout import rollout
from gradlens.sweep import SweepSpec

from grid import chosen_stages, read_exports, run_stages, train_stage, write_atomically
from open_questions import Cell, Study, exported, run_stage

HORIZON = 25
SYSTEMS = {"brax_inverted_double_pendulum": 6, "brax_reacher": 8, "brax_hopper": 12}  # name -> D (generalized)
MODELS = ("markov", "hwm-transformer", "awm-rnn", "awm-transformer")
AWMS = ("awm-rnn", "awm-transformer")
# the open-questions study's audit sizes (fits to a 1 % plateau over 100 epochs, capped at 300; 32 gradient samples;
# landscapes not read), with 512 episodes: a Brax episode costs far more than a lorenz96 one
CONFIG = AuditConfig(n_episodes=512, fit_epochs=300, fit_patience=100, fit_rel_min_delta=0.01, n_samples=32,
                     landscape_points=2, landscape_2d_points=0)
FULL = Study("physics", tuple(Cell("physics", name, None, d, (HORIZON,)) for name, d in SYSTEMS.items()), MODELS,
             seeds=10, config=CONFIG, fit_bars={"physics": 0.5},
             title="Rigid-body physics: world-model policy gradients on Brax systems", script="benchmarks/physics.py")
# Fit or architecture on the hopper: there both AWMs beat the Markov model (P = 0.85-0.86) but fit 9-12x better, and
# every fit stopped at the 300-epoch cap. Two more audits of the same cell, seeds and data separate the two:
#   match-markov     the Markov model alone, capped at MATCH_CAP epochs (first in MODELS, so the same fit key: its
#                    first 300 epochs are the physics stage's fit): does the cap explain its worse fit and gradient?
#   match-awms-<c>   the two AWMs alone, capped at c epochs (MATCH_RUNGS): each rung is the first c epochs of one fit
#                    per AWM (its key from its place in AWMS, so another fit than the physics stage's), a ladder of
#                    ever better fits. Per seed and AWM, the matched AWM is the best-fitting rung (its 300-epoch fit
#                    included) that fits no better than the Markov model; P(matched AWM's cosine > the Markov
#                    model's) says whether the AWMs' lead survives equal fits.
MATCH_CELL = next(c for c in FULL.cells if c.system == "brax_hopper")
MATCH_CAP = 1500
MATCH_RUNGS = (5, 10, 20, 40)
MATCH_MIN_SEEDS = 8  # matched seeds an AWM needs before the section draws a verdict (the study's read rule)
MATCH_STUDIES = {
    "match-markov": dataclasses.replace(FULL, name="physics/match-markov", cells=(MATCH_CELL,), models=("markov",),
                                        config=dataclasses.replace(CONFIG, fit_epochs=MATCH_CAP)),
    **{f"match-awms-{cap}": dataclasses.replace(FULL, name=f"physics/match-awms-{cap}", cells=(MATCH_CELL,),
                                                models=AWMS, config=dataclasses.replace(CONFIG, fit_epochs=cap))
       for cap in MATCH_RUNGS}}
COST_STAGE = "cost"
SAMPLES = 32
BPO_METHODS = ("simulator", "awm-rnn", "hwm-transformer", "awm-transformer", "markov")  # the AWM-vs-HWM answer first
BPO_COLUMNS = ("system", "method", "stabiliser", "horizon", "seed", "env_steps", "return", "model_loss",
               "policy_grad_norm", "wall_time", "zeroed_policy_grads")
# the grid's NaN handling (one seed's NaN does not stop the other nine), and no simulator gradient beside each model
# gradient: the study keeps no cosine (BPO_COLUMNS; the audits measure gradient quality), and on the reacher that extra
# Brax gradient made an AWM-RNN update 3.4x slower (2.12 s against 0.62 s per 32 env steps, compile 352 s against
# 229 s; one seed, load 6-7, 2026-12-07)
PAPER = {"nonfinite_policy_grad": "zero", "compare_to_simulator": False}
SIM_STAGE = "simulator"
SIM_HORIZONS = (10, 25, 50)
SIM_SAMPLES = 128  # first-order samples per seed and H
SIM_ZO_SAMPLES = 256  # per zeroth-order estimate (forward rollouts only: cheap beside a reverse pass)
SIM_NOISE = 0.3  # the audit's policy noise (AuditConfig.policy_noise)
SIM_COLUMNS = ("system", "state_dim", "horizon", "seed", "fo_norm", "fo_variance", "fo_snr", "zo_norm", "zo_cosine",
               "zo_self_cosine", "nonfinite", "seconds")
COST_COLUMNS = ("system", "state_dim", "action_dim", "horizon", "samples", "compile_s", "run_s", "memory_mb",
                "peak_rss_mb")


def gradient_cost(system_name: str, horizon: int = HORIZON, samples: int = SAMPLES) -> dict:
    """Compile and run time and XLA's memory of one batch of `samples` open-loop policy gradients of `system_name`."""
    system = envs.make(system_name, horizon=horizon)
    s1 = system.initial_state()

    def ret(actions):  # [H, A] -> J
        return rollout(system, actions, s1, horizon).ret

    grads = jax.jit(jax.vmap(jax.grad(ret)))
    actions = 0.3 * jax.random.normal(jax.random.PRNGKey(0), (samples, horizon, system.action_dim))
    start = time.perf_counter()
    compiled = grads.lower(actions).compile()
    compile_s = time.perf_counter() - start
    runs = []
    for _ in range(3):
        start = time.perf_counter()
        out = jax.block_until_ready(compiled(actions))
        runs.append(time.perf_counter() - start)
    if not bool(jnp.all(jnp.isfinite(out))):
        raise ValueError(f"{system_name}: non-finite simulator gradient at H = {horizon}")
    memory = compiled.memory_analysis()
    used = (memory.argument_size_in_bytes + memory.output_size_in_bytes + memory.temp_size_in_bytes
            if memory is not None else float("nan"))
    return {"system": system_name, "state_dim": system.state_dim, "action_dim": system.action_dim,
            "horizon": horizon, "samples": samples, "compile_s": compile_s, "run_s": statistics.median(runs),
            "memory_mb": used / 2**20, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def simulator_rows(system_name: str, seed: int, horizons=SIM_HORIZONS, samples: int = SIM_SAMPLES,
                   zo_samples: int = SIM_ZO_SAMPLES, noise: float = SIM_NOISE) -> list[dict]:
    """SIM_COLUMNS rows, one per H, of `system_name` rebuilt with H steps: statistics of `samples` first-order policy
    gradients of an open-loop tanh-Gaussian policy at θ = 0, and two zeroth-order estimates of `zo_samples` each, all
    three with independent noise: the zeroth-order means' cosine to the first-order mean (averaged over the two) and
    to each other."""
    rows = []
    for h in horizons:
        system = envs.make(system_name, horizon=h)
        policy = make_policy("open_loop", system, horizon=h, noise_std=noise)
        k_policy, k_fo, k_a, k_b = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(seed), h), 4)
        params, s1 = policy.init(k_policy), system.initial_state()
        start = time.perf_counter()
        fo = gradients.per_sample_gradients(system, policy, params, s1, h, k_fo, samples)
        zo_a, zo_b = (gradients.zeroth_order_gradients(system, policy, params, s1, h, k, zo_samples)
                      for k in (k_a, k_b))
        fo_stats, reference = gradients.gradient_stats(fo), gradients.mean_gradient(fo)
        a_stats, b_stats = (gradients.gradient_stats(z, reference) for z in (zo_a, zo_b))
        self_stats = gradients.gradient_stats(zo_b, gradients.mean_gradient(zo_a))
        rows.append({"system": system_name, "state_dim": system.state_dim, "horizon": h, "seed": seed,
                     "fo_norm": fo_stats.mean_norm, "fo_variance": fo_stats.variance, "fo_snr": fo_stats.snr,
                     "zo_norm": a_stats.mean_norm, "zo_cosine": (a_stats.cosine + b_stats.cosine) / 2,
                     "zo_self_cosine": self_stats.cosine,
                     "nonfinite": fo_stats.n_nonfinite + a_stats.n_nonfinite + b_stats.n_nonfinite,
                     "seconds": time.perf_counter() - start})
    return rows


def simulator_export(study: Study, out: Path) -> Path:
    """The simulator stage's table: beside the audit stages' exports, not among them (they are read as one)."""
    return study.folders(out)[1] / SIM_STAGE / f"{SIM_STAGE}.parquet"


def keep_each(stage: str, target: Path, kept: Path, units: dict, write, log) -> bool:
    """A stage of independent units: `units[name]()` -> DataFrame for each name not yet kept in `kept` (each kept at
    once, so that a rerun skips it), then `write(all rows, target)` and `kept` removed. Skipped if `target` exists;
    True if this call wrote it."""
    if target.exists():
        log(f"stage {stage}: already exported to {target} (delete it to rerun)")
        return False
    kept.mkdir(parents=True, exist_ok=True)
    frames = []
    for name, measure in units.items():
        path = kept / f"{name}.parquet"
        if not path.exists():
            frame = measure()
            write_atomically(path, lambda tmp: frame.to_parquet(tmp, index=False))
        frames.append(pd.read_parquet(path))
    write(pd.concat(frames, ignore_index=True), target)
    shutil.rmtree(kept)
    log(f"stage {stage}: exported to {target}")
    return True


def run_simulator(study: Study, out: Path, log=print) -> bool:
    """The simulator stage: every (system, seed) kept as it finishes, exported when all are."""
    def measure(system, seed):
        frame = pd.DataFrame(simulator_rows(system, seed), columns=list(SIM_COLUMNS))
        log(f"  {SIM_STAGE} {system} seed {seed}: {frame['seconds'].sum():.0f} s ({datetime.datetime.now():%H:%M})")
        return frame

    units = {f"{c.system}-seed{seed}": functools.partial(measure, c.system, seed)
             for c in study.cells for seed in range(study.seeds)}
    return keep_each(SIM_STAGE, simulator_export(study, out), study.folders(out)[1] / SIM_STAGE / "seeds", units,
                     lambda rows, target: rows.to_parquet(target, index=False), log)


def simulator_table(rows: pd.DataFrame, reps: int) -> list[str]:
    """Markdown lines: per system and H, IQMs over seeds [95 % CI] of the first-order statistics and the cosines."""
    from grid_report import ci, iqm_intervals, md_table

    found = rows.assign(method="simulator")
    stats = {v: iqm_intervals(found, v, reps).set_index(["system", "horizon"])
             for v in ("fo_norm", "fo_snr", "zo_cosine", "zo_self_cosine")}
    dims = rows.groupby("system")["state_dim"].first()
    table = []
    for (system, h), _ in rows.groupby(["system", "horizon"]):
        got = {v: stats[v].loc[(system, h)] for v in stats}
        ceiling = got["zo_self_cosine"]
        table.append([system, int(dims[system]), int(h), *(ci(*got[v][["value", "low", "high"]]) for v in stats),
                      f"{got['zo_cosine']['value'] / np.sqrt(ceiling['value']):.2f}" if ceiling["low"] > 0 else
                      "– (no signal)"])
    table.sort(key=lambda r: (r[1], r[2]))
    return ["## The simulator's own policy gradient versus horizon", "",
            f"An open-loop tanh-Gaussian policy (noise {SIM_NOISE} before the tanh, θ = 0), {SIM_SAMPLES} first-order "
            f"samples and two zeroth-order estimates of {SIM_ZO_SAMPLES} antithetic samples each (σ = 0.05), all with "
            "independent noise, per seed; IQM over seeds [95 % CI]. SNR is one sample's ‖ḡ‖ / sqrt(tr Σ). "
            "cos(ZO, FO): a zeroth-order mean against the first-order mean (the two estimates averaged); "
            "cos(ZO, ZO'): the two zeroth-order means against each other, the estimator's own noise ceiling. Were "
            "the first-order mean exact and the gradient of the smoothed return, cos(ZO, FO) ≈ sqrt(cos(ZO, ZO')): "
            "agreement = cos(ZO, FO) / sqrt(cos(ZO, ZO')), of the IQMs, near 1 says that the first-order gradient "
            "is what the zeroth-order estimator sees; well below 1, that contacts or chaos make it point "
            "elsewhere (or that its own sampling noise is not small); – (no signal): the ceiling's CI reaches 0, "
            "the zeroth-order estimates agree on no direction.", "",
            md_table(["system", "D", "H", "‖mean FO gradient‖", "SNR", "cos(ZO, FO)", "cos(ZO, ZO')", "agreement"],
                     table)]


def run_cost(study: Study, out: Path, log=print) -> bool:
    """The cost stage: one row per system, each kept as it is measured."""
    def measure(cell):
        row = pd.DataFrame([gradient_cost(cell.system, cell.horizons[-1])], columns=list(COST_COLUMNS))
        log(f"  cost {cell.system}: compile {row['compile_s'][0]:.0f} s, run {row['run_s'][0]:.3g} s, "
            f"{row['memory_mb'][0]:.1f} MB")
        return row

    export = study.folders(out)[1]
    return keep_each(COST_STAGE, export / f"{COST_STAGE}.csv", export / COST_STAGE,
                     {c.system: functools.partial(measure, c) for c in study.cells},
                     lambda rows, target: rows.to_csv(target, index=False, float_format="%.4g"), log)


def bpo_stage(study: Study, stage: str, out: Path, log=print, overrides: dict | None = None) -> bool:
    """Train `stage` ("bpo-<method>") on every system of `study` at its horizon (`grid.train_stage`); True if this
    call exported it. `overrides`: TrainConfig fields (default the paper's schedule with PAPER)."""
    method = stage.removeprefix("bpo-")
    spec = SweepSpec(systems=tuple(c.system for c in study.cells), methods=(method,),
                     horizons=(study.cells[0].horizons[-1],), seeds=study.seeds, overrides=overrides or PAPER)
    store, export = study.folders(out)
    return train_stage([spec], store, export / "bpo", stage, BPO_COLUMNS, log, stabiliser="none")


def bpo_tables(metrics: pd.DataFrame, reps: int) -> list[str]:
    """Markdown lines: per system and method, the IQM final return [95 % CI], the median initial return and whether
    BPO fails (the IQM gain's CI does not lie above 0); then P(AWM's final return > the other's) per system."""
    import stability_report
    from open_questions_report import duel_outcome

    from grid_report import ci, md_table

    seeds = stability_report.seed_rows(metrics)
    table = stability_report.cells(seeds, reps)
    lines = ["## BPO final return", "",
             "IQM over seeds [95 % CI] of the last evaluation's return; initial: median return of the untrained "
             "policy; ✗: BPO fails (the IQM gain's CI does not lie above 0).", "",
             md_table(["system", "H", "method", "final return", "initial", "seeds", "zeroed gradients"],
                      [[r.system, r.horizon, r.method, ci(r.final_value, r.final_low, r.final_high)
                        + (" ✗" if r.fails else ""), f"{r.initial:.4g}", r.n, r.zeroed]
                       for r in table.itertuples()]), ""]
    duels = []
    for system, part in seeds.groupby("system", sort=True):
        scores = {m: g.sort_values("seed")["final"].to_numpy(float)[:, None] for m, g in part.groupby("method")}
        pairs = [(a, b) for a in AWMS for b in scores if a in scores and b not in AWMS
                 and scores[b].shape == scores[a].shape]
        if pairs:
            for r in outcomes.probability_of_improvement(scores, pairs, reps=reps).itertuples():
                duels.append([system, r.x, r.y, ci(r.value, r.low, r.high), duel_outcome(r.low, r.high)])
    if duels:
        lines += ["P(AWM's final return > the other's) over seeds [95 % CI].", "",
                  md_table(["system", "AWM", "against", "P(AWM > it)", "outcome"], duels), ""]
    return lines


def match_pairs(markov: pd.DataFrame, rungs: pd.DataFrame) -> pd.DataFrame:
    """Per seed and AWM: of that AWM's rungs (`rungs`: audit rows with a column `cap`), the one with the lowest fit
    ratio not below the Markov model's on that seed (`markov`: its audit rows); seeds where every rung fits better,
    or without a Markov row, are left out. Columns: awm, seed, cap, awm_fit, markov_fit, awm_cosine, markov_cosine."""
    reference = markov[markov["method"] == "markov"].set_index("seed")
    pairs = []
    for (awm, seed), own in rungs[rungs["method"].isin(AWMS)].groupby(["method", "seed"]):
        worse = own[own["fit_ratio"] >= reference.loc[seed, "fit_ratio"]] if seed in reference.index else own[:0]
        if len(worse):
            rung, ref = worse.loc[worse["fit_ratio"].idxmin()], reference.loc[seed]
            pairs.append([awm, seed, int(rung["cap"]), rung["fit_ratio"], ref["fit_ratio"], rung["cosine"],
                          ref["cosine"]])
    return pd.DataFrame(pairs, columns=["awm", "seed", "cap", "awm_fit", "markov_fit", "awm_cosine", "markov_cosine"])


def _duel(awm_cosines, markov_cosines, reps: int) -> tuple[str, str]:
    """('P [low, high]', outcome) of P(AWM's cosine > the Markov model's) over paired seeds."""
    from open_questions_report import duel_outcome

    from grid_report import ci

    scores = {"awm": np.asarray(awm_cosines, float)[:, None], "markov": np.asarray(markov_cosines, float)[:, None]}
    p = outcomes.probability_of_improvement(scores, [("awm", "markov")], reps=reps).iloc[0]
    return ci(p["value"], p["low"], p["high"]), duel_outcome(p["low"], p["high"])


def match_section(out: Path, reps: int) -> list[str]:
    """Markdown lines: the hopper's fits matched (MATCH_STUDIES): the Markov model refitted with MATCH_CAP epochs
    against the AWMs, then the AWMs' ladder and each AWM's matched rung against the Markov model."""
    from fit_confound import audited, iqm_ci

    from grid_report import md_table

    physics = exported(FULL, out)
    base = physics[physics["system"] == MATCH_CELL.system]
    found = {stage: audited(study, out, MATCH_CELL) for stage, study in MATCH_STUDIES.items()}
    command = f"python benchmarks/physics.py --stages {','.join(MATCH_STUDIES)}"
    lines = [f"## Fit or architecture on the {MATCH_CELL.system}: fits matched", "",
             f"Both AWMs beat the Markov model here but fit 9-12x better, and every fit stopped at the 300-epoch cap. "
             f"The same cell, seeds and data audited again (`{command}`; design: `MATCH_STUDIES` in "
             "`benchmarks/physics.py`): the Markov model alone with a "
             f"{MATCH_CAP}-epoch cap (its first 300 epochs are the fit above), and the two AWMs alone stopped after "
             f"{', '.join(map(str, MATCH_RUNGS))} epochs (each rung the first epochs of one fit per AWM).", ""]
    if not len(base) or not any(len(f) for f in found.values()):
        return lines + ["Not run yet."]
    cosines = lambda frame: iqm_ci(frame.sort_values("seed")["cosine"].to_numpy(float)[:, None], reps)
    longer = found["match-markov"]
    if len(longer):
        seeds = sorted(set(longer["seed"]))
        before = base[(base["method"] == "markov") & base["seed"].isin(seeds)]
        rows = [[cap, len(f), f"{f['fit_ratio'].median():.3g}", f"{int(f['fit_converged'].sum())}/{len(f)}",
                 f"{f['fit_epochs'].median():.0f}", cosines(f)] for cap, f in ((300, before), (MATCH_CAP, longer))]
        duels = []
        for awm in AWMS:
            mine = base[(base["method"] == awm) & base["seed"].isin(seeds)].sort_values("seed")
            p, outcome = _duel(mine["cosine"], longer.sort_values("seed")["cosine"], reps)
            duels.append([awm, f"{mine['fit_ratio'].median():.3g}", f"{longer['fit_ratio'].median():.3g}", p,
                          outcome])
        lines += [f"The Markov model with a {MATCH_CAP}-epoch cap ({len(seeds)} seeds): fit ratio (median open-loop "
                  "error over the horizon relative to repeating the last state), fits stopped by the validation "
                  "plateau, median epochs, IQM cosine to the simulator's gradient [95 % CI].", "",
                  md_table(["Markov cap", "seeds", "fit ratio", "converged", "epochs", "IQM cosine"], rows), "",
                  f"The AWMs (300-epoch cap) against it: P(AWM's cosine > the Markov model's, cap {MATCH_CAP}).", "",
                  md_table(["AWM", "AWM fit ratio", "Markov fit ratio", "P(AWM > Markov)", "outcome"], duels), ""]
    ladder = pd.concat([base[base["method"].isin(AWMS)].assign(cap=300)]
                       + [f.assign(cap=int(s.rsplit("-", 1)[1])) for s, f in found.items()
                          if s != "match-markov" and len(f)], ignore_index=True)
    if ladder["cap"].nunique() > 1:
        steps = [[awm, cap, part["seed"].nunique(), f"{part['fit_ratio'].median():.3g}", cosines(part)]
                 for (awm, cap), part in ladder.groupby(["method", "cap"])]
        pairs = match_pairs(base, ladder[ladder["seed"].isin(set(ladder.loc[ladder["cap"] < 300, "seed"]))])
        rows = []
        for awm, part in pairs.groupby("awm"):
            caps = part["cap"].value_counts().sort_index()
            rows.append([awm, len(part), f"{part['awm_fit'].median():.3g}", f"{part['markov_fit'].median():.3g}",
                         ", ".join(f"{c} ×{k}" for c, k in caps.items()),
                         *(iqm_ci(part.sort_values("seed")[c].to_numpy(float)[:, None], reps)
                           for c in ("awm_cosine", "markov_cosine")),
                         *_duel(part["awm_cosine"], part["markov_cosine"], reps)])
        better = sum(r[-1] == "AWM better" for r in rows)
        matched = pairs.groupby("awm").size()
        few = [f"{awm} on {matched.get(awm, 0)}" for awm in AWMS if matched.get(awm, 0) < MATCH_MIN_SEEDS]
        verdict = (f"no verdict yet: too few seeds are matched ({', '.join(few)}; at least {MATCH_MIN_SEEDS} "
                   "needed), as every rung run so far still fits better than the Markov model on the others."
                   if few else
                   f"{better} of the {len(rows)} AWMs still beat{'s' if better == 1 else ''} a Markov model that "
                   "fits no worse: there the lead is not fit alone." if better else
                   f"none of the {len(rows)} AWMs still beats the Markov model: fit explains the lead, and any "
                   "difference due to the architecture is below what these seeds resolve.")
        lines += ["The AWMs' ladder (cap 300: the physics stage's fits).", "",
                  md_table(["AWM", "cap", "seeds", "fit ratio", "IQM cosine"], steps), "",
                  f"With fits matched, {verdict} Per seed, each AWM's best-fitting rung that fits no better than the "
                  "Markov model (300-epoch cap) against it (seeds where every rung fits better are left out).", "",
                  md_table(["AWM", "seeds", "matched AWM fit ratio", "Markov fit ratio", "caps used (× seeds)",
                            "matched AWM IQM cosine", "Markov IQM cosine", "P(AWM > Markov)", "outcome"], rows), ""]
    return lines


def write_report(study: Study, out: Path, log=print) -> Path:
    """The open-questions report of the audited stages, then the cost table."""
    import open_questions_report

    path = open_questions_report.write_report(study, out, exported(study, out), log=lambda _: None)
    cost = study.folders(out)[1] / f"{COST_STAGE}.csv"
    lines = ["## Cost of one simulator gradient versus state dimension", ""]
    if cost.exists():
        table = pd.read_csv(cost).sort_values("state_dim")
        lines += [f"jax.jit(jax.vmap(jax.grad(J))) over {SAMPLES} open-loop action sequences at H = {HORIZON}; "
                  "compile and run measured on the machine named in benchmarks/README.md, memory from XLA's "
                  "buffer assignment.", "",
                  "| system | D | A | compile s | run s | ms per gradient | XLA memory MB |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        lines += [f"| {r.system} | {r.state_dim} | {r.action_dim} | {r.compile_s:.1f} | {r.run_s:.3g} | "
                  f"{1e3 * r.run_s / r.samples:.3g} | {r.memory_mb:.1f} |" for r in table.itertuples()]
    else:
        lines += [f"Not measured yet (`python benchmarks/physics.py --stages {COST_STAGE}`)."]
    sim = simulator_export(study, out)
    lines += [""] + match_section(out, study.reps)
    lines += [""] + (simulator_table(pd.read_parquet(sim), study.reps) if sim.exists() else
                     [f"The simulator stage has not been exported yet (`python benchmarks/physics.py --stages "
                      f"{SIM_STAGE}`)."])
    metrics = read_exports(study.folders(out)[1] / "bpo", BPO_COLUMNS)
    done = sorted(metrics["method"].unique()) if len(metrics) else []
    lines += ["", f"BPO stages exported: {', '.join(f'bpo-{m}' for m in done) or 'none'}; remaining: "
              f"{', '.join(f'bpo-{m}' for m in BPO_METHODS if m not in done) or 'none'}.", ""]
    if len(metrics):
        lines += bpo_tables(metrics, study.reps)
    path.write_text(path.read_text() + "\n" + "\n".join(lines) + "\n")
    log(f"report: {path}")
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--stages", help="comma-separated stages to run, in order (default: all)")
    parser.add_argument("--report", action="store_true", help="only rebuild the report from exported stages")
    args = parser.parse_args(argv)
    out = Path(args.out)
    stages = chosen_stages(parser, args.stages, [COST_STAGE, SIM_STAGE, *(c.stage for c in FULL.cells),
                                                 *MATCH_STUDIES, *(f"bpo-{m}" for m in BPO_METHODS)])
    log = lambda line: print(line, flush=True)
    compilation_cache.enable()  # minutes per Brax program cold: every later seed and rerun reads them
    rebuild = lambda: write_report(FULL, out, log)
    if not args.report:
        def one(stage):
            if stage in (COST_STAGE, SIM_STAGE):
                return (run_cost if stage == COST_STAGE else run_simulator)(FULL, out, log)
            if stage in MATCH_STUDIES:
                return run_stage(MATCH_STUDIES[stage], MATCH_CELL.stage, out, log)
            return bpo_stage(FULL, stage, out, log) if stage.startswith("bpo-") else run_stage(FULL, stage, out, log)

        run_stages(stages, one, rebuild, log)
    rebuild()
    return 0


if __name__ == "__main__":
    sys.exit(main())
