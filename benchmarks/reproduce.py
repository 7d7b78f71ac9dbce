"""The paper's experiments, reproduced with gradlens: Markdown tables and Plotly figures in a results folder.

    python benchmarks/reproduce.py [--quick] [--out benchmarks/results] [--only pendulum,bounce,...]

Experiments (each writes `<out>/<name>.md` and `<out>/figures/<name>_*.html|png`; `<out>/README.md` gathers them
with the exact command, the date and the wall time of each):

  pendulum        chaotic double pendulum: J(a_1) landscapes of the simulator and of each fitted model for
                  increasing H, with roughness numbers; offline BPO of the actions from the simulator versus from
                  each model (PAPER.md §4 items 2, §6 toy protocol), success rate over seeds
  bounce          one-bounce: dJ/da_1 of the simulator across the bounce versus the models' (sign agreement with
                  the true landscape's trend), J(a_1) roughness; offline BPO success rate per method
  gradients       gradient norm, variance, SNR and cosine to the simulator versus H per model class (`gradlens audit`)

The Myriad tasks' returns per method are the full-size grid's (`benchmarks/grid.py`: the paper's schedule, 10 seeds,
per-seed distributions and rliable statistics, `<out>/grid.md`); the open questions (state dimension, SSM AWMs, process
noise) are `benchmarks/open_questions.py`'s study (10 seeds per cell, `<out>/open_questions.md`). Earlier shortened
versions of both here (a Myriad experiment of 2000 env steps; open questions on one seed with fits that did not beat
the trivial predictors) were withdrawn.

Audits go to `<out>/audits`; a rerun skips finished experiments (`--redo` runs them again) and cached audits, so an
interrupted reproduction resumes where it stopped. A failed experiment
is reported and the others go on (exit status 1). `--quick` runs every experiment at toy size (a few minutes, for
tests); the default is sized to finish in under 2 hours on 2 CPU cores (it departs from the paper's budgets where
noted in each table's caption).
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import plotly.graph_objects as go

import gradlens as gl
from gradlens import envs, plots
from gradlens.analysis.audit import AuditConfig, AuditReport, audit, summary_rows

BPO_MODELS = ("markov", "hwm-rnn", "hwm-transformer", "awm-rnn", "awm-transformer", "awm-ssm")


@dataclasses.dataclass(frozen=True)
class Scale:
    """Sizes of every experiment (the default is sized for < 2 h on 2 CPU cores; `QUICK` for tests)."""

    toy_models: tuple[str, ...] = BPO_MODELS
    pendulum_horizons: tuple[int, ...] = (5, 10, 20, 40)
    bounce_horizons: tuple[int, ...] = (25, 50, 100)
    toy_audit: AuditConfig = AuditConfig(n_samples=32, landscape_points=201, landscape_2d_points=0)
    toy_seeds: int = 10  # offline BPO starts per method
    toy_bpo_steps: int = 300
    toy_bpo_lr: float = 3e-2
    gradient_task: str = "cancer"
    gradient_models: tuple[str, ...] = BPO_MODELS
    gradient_horizons: tuple[int, ...] = (25, 50, 100)
    gradient_audit: AuditConfig = AuditConfig(n_samples=32, landscape_points=51, landscape_2d_points=0)


_TINY = AuditConfig(n_episodes=16, fit_epochs=2, fit_patience=2, n_samples=2, landscape_points=11,
                    landscape_2d_points=0)
QUICK = Scale(
    toy_models=("awm-rnn",), pendulum_horizons=(8,), bounce_horizons=(20,), toy_audit=_TINY,
    toy_seeds=3, toy_bpo_steps=5, gradient_models=("awm-rnn",),
    gradient_horizons=(8,), gradient_audit=_TINY)


# ------------------------------------------------------------------------------------------------------ helpers
def md_table(header: list[str], rows: list[list]) -> str:
    """A Markdown table; floats with 4 significant digits, None as '–'."""
    def cell(v):
        if v is None:
            return "–"
        if isinstance(v, float):
            return "NaN" if math.isnan(v) else f"{v:.4g}"
        return str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows])


def mean_std(values) -> str:
    values = np.asarray(values, float)
    return f"{values.mean():.4g} ± {values.std(ddof=1) if values.size > 1 else 0.0:.2g}"


class Context:
    """Where an experiment writes, and its scale."""

    def __init__(self, out: Path, scale: Scale, log):
        self.out, self.scale, self.log = out, scale, log

    def figure(self, fig, name: str) -> str:
        """Write `fig` as HTML (and PNG when kaleido can); the path to link, relative to the results folder: the
        PNG if there is one (the HTML beside it is interactive)."""
        paths = plots.write_figure(fig, self.out / "figures" / f"{name}.html", plotlyjs="directory")
        return Path(paths[-1]).relative_to(self.out).as_posix()

    def audit(self, name: str, system, models, horizons, config: AuditConfig, params=None) -> AuditReport:
        """`gradlens.audit`, cached as `<out>/audits/<name>.json` (a rerun loads it)."""
        path = self.out / "audits" / f"{name}.json"
        if path.exists():
            return AuditReport.load(path)
        report = audit(system, models, horizons, params=params, config=config, progress=False)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(report.to_json())
        tmp.replace(path)
        self.log(f"audit {name}: {sum(report.timings.values()):.0f} s, {len(report.problems)} problem(s)")
        return report


def problems_section(report: AuditReport) -> str:
    if not report.problems:
        return "No diagnostic produced NaN/Inf or failed."
    return "Problems reported by the audit:\n" + "\n".join(
        f"- {p['diagnostic']} / {p['method']} / H={p['horizon']}: {p['message']}" for p in report.problems)


# --------------------------------------------------------------------------------------------------- toy tasks
def fit_toy(ctx: Context, system_name: str, h_max: int) -> dict:
    """Fit every toy model once on the paper's toy data at H_max (the audit's data and fit settings)."""
    cfg = ctx.scale.toy_audit
    system = envs.make(system_name, horizon=h_max)
    key_data, key_fit = jax.random.split(jax.random.PRNGKey(cfg.seed))
    data = gl.collect(system, "toy", cfg.n_episodes, key_data)
    fit_cfg = gl.FitConfig(epochs=cfg.fit_epochs, patience=cfg.fit_patience, batch_size=cfg.fit_batch)
    fitted = {}
    for i, name in enumerate(ctx.scale.toy_models):
        model = gl.models.make(name, system)
        fitted[name] = (model, gl.fit(model, data, jax.random.fold_in(key_fit, i), fit_cfg, progress=False)[0])
    return fitted


def toy_audit(ctx: Context, system_name: str) -> tuple[dict, AuditReport]:
    """The fitted toy models and their audit (cached as audits/<experiment>.json) at the experiment's horizons."""
    hs = ctx.scale.pendulum_horizons if system_name == "double_pendulum" else ctx.scale.bounce_horizons
    fitted = fit_toy(ctx, system_name, max(hs))
    report = ctx.audit("pendulum" if system_name == "double_pendulum" else "bounce", system_name, list(fitted), hs,
                       ctx.scale.toy_audit, params={k: p for k, (_, p) in fitted.items()})
    return fitted, report


def toy_dynamics(system_name: str, fitted: dict, horizon: int) -> dict:
    """method -> dynamics at `horizon` (the models fitted at H_max, rebuilt on the H-step system)."""
    system = envs.make(system_name, horizon=horizon)
    out = {"simulator": system}
    for name, (model, params) in fitted.items():
        out[name] = (dataclasses.replace(model, system=system), params)
    return out


def offline_bpo(dynamics, system, horizon: int, a1: np.ndarray, steps: int, lr: float) -> np.ndarray:
    """Adam on the open-loop actions θ [S, H, A] (a = tanh θ) to maximise J through `dynamics`, from a_1 = a1 [S]
    (other actions 0); returns the true-system return of each final action sequence [S]."""
    s1 = system.initial_state()
    theta = jnp.zeros((a1.shape[0], horizon, system.action_dim)).at[:, 0, 0].set(jnp.arctanh(jnp.asarray(a1)))
    opt = optax.adam(lr)

    def loss(th):
        return -gl.rollout(dynamics, jnp.tanh(th), s1, horizon).ret

    def step(carry, _):
        th, state = carry
        grad = jax.vmap(jax.grad(loss))(th)
        updates, state = opt.update(grad, state)
        return (optax.apply_updates(th, updates), state), None

    @jax.jit
    def run(theta):
        theta = jax.lax.scan(step, (theta, opt.init(theta)), None, length=steps)[0][0]
        return jax.vmap(lambda th: gl.rollout(system, jnp.tanh(th), s1, horizon).ret)(theta)

    true_return = run(theta)
    return np.asarray(true_return, float)


def toy_bpo_rows(ctx: Context, system_name: str, fitted: dict, report: AuditReport) -> list[list]:
    """[method, H, final true return mean ± std, success rate] at every H of the audit, where success = within 5 %
    of the simulator's J(a_1) range of its best grid value."""
    scale = ctx.scale
    a1 = np.asarray(jax.random.uniform(jax.random.PRNGKey(1), (scale.toy_seeds,), minval=-0.9, maxval=0.9))
    rows = []
    for horizon in report.horizons:
        values = simulator_landscape(report, horizon)
        best, spread = float(np.max(values)), float(np.ptp(values))
        system = envs.make(system_name, horizon=horizon)
        for method, dyn in toy_dynamics(system_name, fitted, horizon).items():
            returns = offline_bpo(dyn, system, horizon, a1, scale.toy_bpo_steps, scale.toy_bpo_lr)
            success = float(np.mean(returns >= best - 0.05 * spread))
            rows.append([method, horizon, mean_std(returns), f"{success:.0%}"])
    return rows


def landscape_rows(report: AuditReport, kind: str = "action") -> list[list]:
    return [[r["method"], r["horizon"], r["roughness"]["normalized_tv"], r["roughness"]["lipschitz"],
             r["roughness"]["lipschitz_at"], float(np.nanmax(r["values"]))]
            for r in report.landscapes if r["kind"] == kind]


def simulator_landscape(report: AuditReport, horizon: int) -> np.ndarray:
    return np.asarray(next(r["values"] for r in report.landscapes
                           if r["kind"] == "action" and r["method"] == "simulator" and r["horizon"] == horizon), float)


def pendulum(ctx: Context) -> str:
    scale = ctx.scale
    hs = scale.pendulum_horizons
    fitted, report = toy_audit(ctx, "double_pendulum")
    fig = ctx.figure(plots.landscapes_figure(report, "action"), "pendulum_landscapes")
    bpo = toy_bpo_rows(ctx, "double_pendulum", fitted, report)
    return "\n\n".join([
        "## Double pendulum (PAPER.md §4 item 2)",
        f"Models fitted once on {scale.toy_audit.n_episodes} episodes of the paper's toy data at H = {max(hs)}, then "
        f"rebuilt at each H (dt unchanged). J(a_1) on {scale.toy_audit.landscape_points} points of a_1 ∈ [-1, 1], "
        f"other actions 0. Figure: [{fig}]({fig}).",
        "### Roughness of J(a_1)\nnormalized TV = 1 for a monotone slice, 2 for one bump, large when it oscillates.",
        md_table(["method", "H", "normalized TV", "Lipschitz", "steepest at a_1", "max J"], landscape_rows(report)),
        f"### Offline BPO of the actions\nAdam (lr {scale.toy_bpo_lr}, {scale.toy_bpo_steps} steps) on open-loop "
        f"θ (a = tanh θ) through each method, from {scale.toy_seeds} starts a_1 ~ U(-0.9, 0.9); the final actions are "
        "scored in the true system. Success: true return within 5 % of the landscape's range of the best grid value.",
        md_table(["method", "H", "true return (mean ± std)", "success"], bpo),
        problems_section(report)])


def bounce_gradients(system_name: str, fitted: dict, horizon: int, grid: np.ndarray) -> dict:
    """method -> (J [G], dJ/da_1 [G]) over the grid of a_1 (other actions 0)."""
    out = {}
    s1 = envs.make(system_name, horizon=horizon).initial_state()
    for method, dyn in toy_dynamics(system_name, fitted, horizon).items():
        j = lambda a: gl.rollout(dyn, jnp.zeros((horizon, 1)).at[0, 0].set(a), s1, horizon).ret
        values, grads = jax.jit(jax.vmap(jax.value_and_grad(j)))(jnp.asarray(grid))
        out[method] = (np.asarray(values, float), np.asarray(grads, float))
    return out


def bounce(ctx: Context) -> str:
    scale = ctx.scale
    hs = scale.bounce_horizons
    fitted, report = toy_audit(ctx, "one_bounce")
    grid = np.linspace(-1.0, 1.0, scale.toy_audit.landscape_points)
    window = max(1, len(grid) // 20)  # the trend: secant of the true J over ±window grid points (≈ ±0.1)
    rows, fig = [], go.Figure()
    for h in hs:
        curves = bounce_gradients("one_bounce", fitted, h, grid)
        true = curves["simulator"][0]
        idx = np.arange(window, len(grid) - window)
        trend = np.sign(true[idx + window] - true[idx - window])
        for method, (values, grads) in curves.items():
            agree = float(np.mean(np.sign(grads[idx]) == trend))
            rows.append([method, h, agree, float(np.median(np.abs(grads))), float(np.max(np.abs(grads)))])
            if h == hs[len(hs) // 2]:  # signed log scale: exploding model gradients would flatten the others
                fig.add_trace(go.Scatter(x=grid, y=np.sign(grads) * np.log10(1.0 + np.abs(grads)), name=method,
                                         mode="lines"))
    fig.update_layout(title=f"dJ/da_1 on the one-bounce task, H = {hs[len(hs) // 2]}", xaxis_title="a_1",
                      yaxis_title="sign · log10(1 + |dJ/da_1|)", template="simple_white")
    grad_fig = ctx.figure(fig, "bounce_gradients")
    land_fig = ctx.figure(plots.landscapes_figure(report, "action"), "bounce_landscapes")
    bpo = toy_bpo_rows(ctx, "one_bounce", fitted, report)
    return "\n\n".join([
        "## One-bounce (PAPER.md §4 item 3)",
        f"Models fitted once at H = {max(hs)} on the toy data. Figures: [{grad_fig}]({grad_fig}), "
        f"[{land_fig}]({land_fig}).",
        "### The gradient across the bounce\nsign agreement: share of grid points where sign(dJ/da_1) equals the "
        f"sign of the true J's secant over ±{window} grid points (the direction that actually improves J).",
        md_table(["method", "H", "sign agreement", "median abs(dJ/da_1)", "max abs(dJ/da_1)"], rows),
        "### Roughness of J(a_1)",
        md_table(["method", "H", "normalized TV", "Lipschitz", "steepest at a_1", "max J"], landscape_rows(report)),
        "### Offline BPO success rate",
        md_table(["method", "H", "true return (mean ± std)", "success"], bpo),
        problems_section(report)])


# --------------------------------------------------------------------------------------------------- gradients
def summary_table(report: AuditReport, keys=("grad_norm", "variance", "snr", "cosine", "rel_error")) -> str:
    return md_table(["method", "H", *keys],
                    [[r["method"], r["horizon"], *[r[k] for k in keys]] for r in summary_rows(report)])


def gradients(ctx: Context) -> str:
    scale = ctx.scale
    report = ctx.audit("gradients", scale.gradient_task, list(scale.gradient_models), scale.gradient_horizons, scale.gradient_audit)
    fig = ctx.figure(plots.gradient_stats_figure(report), "gradients_vs_horizon")
    sections = ["## Gradient statistics versus H (PAPER.md §4 item 5)",
                f"{scale.gradient_task}, first H steps of one {max(scale.gradient_horizons)}-step episode; the policy is "
                f"the paper's MLP at initialisation; {scale.gradient_audit.n_samples} per-sample gradients per method "
                f"and H; cosine and relative error against the simulator's mean gradient. Figure: [{fig}]({fig}).",
                summary_table(report), problems_section(report)]
    toy = ctx.out / "audits" / "pendulum.json"
    if toy.exists():
        sections += ["### Double pendulum (the pendulum experiment's audit)", summary_table(AuditReport.load(toy))]
    return "\n\n".join(sections)


EXPERIMENTS = {"pendulum": pendulum, "bounce": bounce, "gradients": gradients}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="every experiment at toy size (minutes)")
    parser.add_argument("--out", default="benchmarks/results", help="results folder (default benchmarks/results)")
    parser.add_argument("--only", default=",".join(EXPERIMENTS),
                        help=f"comma-separated experiments (default all): {', '.join(EXPERIMENTS)}")
    parser.add_argument("--redo", action="store_true",
                        help="run experiments again even when their <name>.md exists; finished runs and audits stay "
                             "cached, and the wall time recorded is still that of the run that computed them "
                             "(delete <out>/timings.json to record anew)")
    args = parser.parse_args(argv)
    chosen = [e.strip() for e in args.only.split(",") if e.strip()]
    unknown = [e for e in chosen if e not in EXPERIMENTS]
    if not chosen or unknown:
        parser.error(f"unknown experiment(s) {', '.join(map(repr, unknown)) or '(none given)'}; "
                     f"valid: {', '.join(EXPERIMENTS)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = lambda line: print(f"[{time.strftime('%H:%M:%S')}] {line}", flush=True)
    ctx = Context(out, QUICK if args.quick else Scale(), log)
    command = "python benchmarks/reproduce.py " + " ".join(argv if argv is not None else sys.argv[1:])
    timings_file = out / "timings.json"
    timings = json.loads(timings_file.read_text()) if timings_file.exists() else {}
    failed = []
    for name in chosen:
        if (out / f"{name}.md").exists() and not args.redo:
            log(f"{name}: already done ({out / f'{name}.md'}; --redo to run it again)")
            continue
        start = time.perf_counter()
        log(f"{name}: start")
        try:
            text = EXPERIMENTS[name](ctx)
        except Exception as err:  # report it, go on with the other experiments
            log(f"{name}: FAILED: {type(err).__name__}: {err}")
            failed.append(name)
            continue
        now = datetime.datetime.now().isoformat(timespec="seconds")
        if name in timings:  # --redo rewrites the tables from the cached runs and audits: keep the computing run's time
            timings[name]["rewritten"] = now
        else:
            timings[name] = {"seconds": time.perf_counter() - start, "command": command.strip(), "finished": now}
        (out / f"{name}.md").write_text(f"{text}\n\nWall time: {timings[name]['seconds']:.0f} s.\n")
        timings_file.write_text(json.dumps(timings, indent=1))
        log(f"{name}: done in {time.perf_counter() - start:.0f} s")
    device = jax.devices()[0]
    done = [name for name in EXPERIMENTS if (out / f"{name}.md").exists() and name in timings]
    head = [f"# gradlens reproduction of Ma et al. (2024), {datetime.date.today().isoformat()}",
            f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, jax {jax.__version__} on {device.platform}. "
            "What the tables say against the paper's claims: `benchmarks/README.md`. The Myriad tasks: the full-size "
            "grid, [`grid.md`](grid.md) (`benchmarks/grid.py`). The open questions: their own study, "
            "[`open_questions.md`](open_questions.md) (`benchmarks/open_questions.py`).",
            "", "| experiment | command | wall time | finished |", "|---|---|---:|---|"]
    head += [f"| {name} | `{timings[name]['command']}` | {timings[name]['seconds']:.0f} s | {timings[name]['finished']} |"
             for name in done]
    head.append(f"| total | | {sum(timings[n]['seconds'] for n in done):.0f} s | |")
    body = [(out / f"{name}.md").read_text() for name in done]
    (out / "README.md").write_text("\n".join(head) + "\n\n" + "\n\n".join(body))
    log(f"wrote {out / 'README.md'}" + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
