"""`gradlens` command line. Sub-commands print one-line errors (no traceback) and exit non-zero on bad input."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from gradlens import compilation_cache

# The training options' vocabularies, spelled here so that building the parser (`gradlens --help`) imports no JAX;
# tests/test_cli.py checks that they are the package's (gradlens.policies, gradlens.training.methods.bpo,
# gradlens.training.bpo).
TIME_INPUTS = ("raw", "unit")
NONFINITE_POLICY_GRAD = ("stop", "zero")
UPDATE_RULES = ("adam", "natural")


def systems_table(horizon: int | None = None, probe_physics: bool = False) -> list[dict]:
    """One row per system: dimensions, horizon, dt, and the return of one rollout under a fixed action sequence; a
    system whose optional extra is not installed gets None for these and the install command as its description.
    The Brax systems (`envs.PHYSICS`) are rolled out only with `probe_physics`: each compiles for minutes."""
    import jax
    import jax.numpy as jnp

    from gradlens import envs
    from gradlens.envs.physics import MissingExtra
    from gradlens.rollout import rollout

    rows = []
    for name in envs.names():
        try:
            system = envs.make(name) if horizon is None else envs.make(name, horizon=horizon)
        except MissingExtra as err:
            rows.append({"system": name, "obs_dim": None, "action_dim": None, "horizon": None, "dt": None,
                         "return": None, "seconds": None, "description": str(err)})
            continue
        h, ret, start = system.horizon, None, time.perf_counter()
        if probe_physics or name not in envs.PHYSICS:
            # a deterministic, non-constant probe sequence in [-1, 1]: every component follows the same sinusoid
            actions = 0.5 * jnp.sin(jnp.linspace(0.0, 3.0, h))[:, None] * jnp.ones((1, system.action_dim))
            ret = float(jax.jit(lambda a, s=system: rollout(s, a, s.initial_state()))(actions).ret)
        rows.append({
            "system": name, "obs_dim": system.obs_dim, "action_dim": system.action_dim, "horizon": h,
            "dt": system.dt, "return": ret, "seconds": time.perf_counter() - start,
            "description": system.description,
        })
    return rows


def _cmd_systems(args) -> int:
    rows = systems_table(args.horizon, args.probe_physics)
    width = max(len(r["system"]) for r in rows) + 2
    header = f"{'system':<{width}}{'obs':>4}{'act':>4}{'H':>6}{'dt':>10}{'probe return':>15}  description"
    print(header)
    print("-" * len(header))
    for r in rows:
        probe = f"{r['return']:>15.6g}" if r["return"] is not None else f"{'-':>15}"
        figures = (f"{r['obs_dim']:>4}{r['action_dim']:>4}{r['horizon']:>6}{r['dt']:>10.4g}{probe}"
                   if r["obs_dim"] is not None else f"{'-':>4}{'-':>4}{'-':>6}{'-':>10}{'-':>15}")
        print(f"{r['system']:<{width}}{figures}  {r['description']}")
    print(f"\n{len(rows)} systems; each rolled out once with a(t) = 0.5 sin(3t/H) (probe return = sum of rewards)"
          + ("." if args.probe_physics else "; the Brax ones (-) only with --probe-physics: each compiles for "
                                             "minutes."))
    return 0


def _writable_dir(path: str) -> Path:
    """Create `path` if needed and check it is a writable folder (ValueError otherwise)."""
    folder = Path(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"cannot create output folder {folder}: {err.strerror or err}") from None
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        raise ValueError(f"output folder {folder} is not a writable folder")
    return folder


# (flag attribute, TrainConfig field) of the `train` options that make up a run's configuration
_TRAIN_OPTIONS = (("system", "system"), ("method", "method"), ("horizon", "horizon"), ("seeds", "seeds"),
                  ("steps", "total_steps"), ("warmup", "warmup_steps"), ("seed", "seed"))


def _train_config(args):
    """The TrainConfig of `--config` and the flags (flags win)."""
    from gradlens.training.loop import TrainConfig

    values = {}
    if args.config:
        try:
            values = json.loads(Path(args.config).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"cannot read config file {args.config}: {err}") from None
        if not isinstance(values, dict):
            raise ValueError(f"config file {args.config} must hold a JSON object")
    for flag, key in (*_TRAIN_OPTIONS, *_POLICY_OPTIONS):
        if getattr(args, flag) is not None:
            values[key] = getattr(args, flag)
    return TrainConfig.from_dict(values)


def _resume_config(args):
    """(config, run-store root) of the run `--resume` continues; ValueError, with nothing written, when there is no
    such run, it is damaged or already done. The run is `--resume RUN`, else `--out` if it is a run folder, else the
    folder the flags name in `--out`."""
    from gradlens import runs
    from gradlens.training.loop import TrainConfig
    from gradlens.training.train import run_name

    run = Path(args.resume) if args.resume else None
    if run is None and (Path(args.out) / runs.CONFIG).is_file():
        run = Path(args.out)
    try:
        if run is None:
            config = _train_config(args)
            run = Path(args.out) / (args.name or run_name(config))
            runs.load_config(run)
        else:
            names = [*(flag for flag, _ in (*_TRAIN_OPTIONS, *_POLICY_OPTIONS)), "config"]
            flags = [f"--{name.replace('_', '-')}" for name in names if getattr(args, name) is not None]
            if flags:
                raise ValueError(f"--resume {run} continues the run's stored configuration; drop {', '.join(flags)}")
            config = TrainConfig.from_dict(runs.load_config(run))
        status = runs.status(run)
    except ValueError as err:
        raise ValueError(f"cannot resume: {err}") from None
    if run.name != (args.name or run_name(config)):
        raise ValueError(f"cannot resume {run}: its config names the run {run_name(config)!r}, not {run.name!r} "
                         f"(for a run trained with --name, add --name {run.name})")
    if status["state"] == "done":
        raise ValueError(f"cannot resume {run}: the run is already finished (state done)")
    if status["state"] == "running" and "pid" in status and runs.interrupted(status) is None:
        raise ValueError(f"cannot resume {run}: it is still running (process {status['pid']} on {status['host']})")
    return config, run.parent


def _cmd_train(args) -> int:
    from gradlens import memory, outcomes
    from gradlens.training.train import check_run_name, run_name, train, zeroed_line

    if args.name is not None or args.overwrite:
        check_run_name(args.name or "run", args.resume is not None, args.overwrite)  # before anything is written
    if args.resume is None:
        config = _train_config(args)
        memory.check_train(config)  # a configuration too big to fit is refused before --out is created
        out = _writable_dir(args.out)
    else:
        config, out = _resume_config(args)
    name = args.name or run_name(config)
    print(_config_line(config, out / name, resume=args.resume is not None), flush=True)
    metrics = train(config, out, resume=args.resume is not None, progress=not args.quiet,
                    log=None if args.quiet else (lambda line: print(line, flush=True)), name=name,
                    overwrite=args.overwrite)
    setting = metrics.assign(system=config.system, method=config.method, horizon=config.horizon)
    print(_speed_line(metrics.attrs["env_steps_trained"], config.seeds, metrics.attrs["seconds"]))
    print(f"done: {outcomes.outcome_line(outcomes.seed_outcomes(setting, fallback=False))}")
    if zeroed_line(metrics) is not None:
        print(zeroed_line(metrics))
    print(f"run folder {out / name}")
    return 0


def _seeds(first: int, count: int) -> str:
    return f"seed {first}" if count == 1 else f"seeds {first}-{first + count - 1}"


def _config_line(config, run: Path, resume: bool) -> str:
    """The resolved configuration of a training run, printed before it starts."""
    return (f"{'resuming' if resume else 'training'} {config.system} with {config.method}: H={config.horizon}, "
            f"{config.total_steps} env steps ({config.warmup_steps} warm-up), {_seeds(config.seed, config.seeds)}, "
            f"policy time input {config.policy_time_input}, policy lr {config.policy_lr:g} -> {run}")


def _speed_line(env_steps: int, seeds: int, seconds: float, note: str = "compilation included") -> str:
    """'trained 96 env steps x 2 seed(s) in 14.1 s: 6.81 env steps/s per seed (compilation included)'."""
    rate = env_steps / seconds if seconds > 0 else float("nan")
    return (f"trained {env_steps} env steps x {seeds} seed(s) in {seconds:.1f} s: {rate:.3g} env steps/s per seed "
            f"({note})")


def _cmd_plot(args) -> int:
    import pandas as pd

    from gradlens import outcomes, plots, runs

    frames = []
    for path in args.runs:
        folder = Path(path)
        if (folder / runs.CONFIG).exists():
            try:
                runs.status(folder)
                frames.append(runs.load(folder))
            except ValueError as err:  # a damaged run is named and skipped; the healthy ones are plotted
                print(f"warning: skipped a damaged run: {err}", file=sys.stderr)
        elif folder.is_dir():
            found = runs.scan_metrics(folder)
            for problem in found.attrs.get("problems", []):
                print(f"warning: skipped {problem['path']}: {problem['error']}", file=sys.stderr)
            frames.append(found)
        else:
            raise ValueError(f"{folder} is neither a run folder nor a run-store folder")
    metrics = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if metrics.empty:
        raise ValueError(f"no metrics found in {', '.join(args.runs)}")
    figure = plots.training_curves_figure(metrics, width=args.width, height=args.height)
    print("wrote " + ", ".join(_write_figure(figure, args.out)))
    found = outcomes.seed_outcomes(metrics)
    by = [c for c in found.columns if c not in outcomes.OUTCOME_COLUMNS]
    for key, part in found.groupby(by, sort=True, dropna=False):
        print(", ".join(map(str, key if isinstance(key, tuple) else (key,))) + ": " + outcomes.outcome_line(part))
    return 0


def _write_figure(figure, out: str) -> list[str]:
    """`plots.write_figure`, its OSErrors as one-line ValueErrors naming the output."""
    from gradlens import plots

    try:
        return plots.write_figure(figure, out)
    except OSError as err:
        where = f" ({err.filename})" if err.filename and str(err.filename) != out else ""
        raise ValueError(f"cannot write figure {out}: {err.strerror or err}{where}") from None


def _cmd_plot_audit(args) -> int:
    from gradlens.analysis.audit import AuditReport
    from gradlens.report import audit_figures

    figures = audit_figures(AuditReport.load(args.run))
    if args.only is not None and args.only not in figures:
        raise ValueError(f"no figure {args.only!r} in {args.run}; it has {', '.join(figures)}")
    out = Path(args.out)
    written = []
    for name, figure in figures.items():
        if args.only in (None, name):
            figure.update_layout(**{k: v for k, v in (("width", args.width), ("height", args.height)) if v})
            path = out if args.only else out.with_name(f"{out.stem}-{name}{out.suffix}")
            written += _write_figure(figure, str(path))
    print("wrote " + ", ".join(written))
    return 0


def _csv(text: str, what: str, cast=str) -> list:
    items = [t.strip() for t in str(text).split(",") if t.strip()]
    if not items:
        raise ValueError(f"--{what} must be a comma-separated list, got {text!r}")
    try:
        return [cast(t) for t in items]
    except ValueError:
        raise ValueError(f"--{what} must be a comma-separated list of integers, got {text!r}") from None


def _audit_config(args, quick: bool):
    import dataclasses

    from gradlens.analysis.audit import AuditConfig
    from gradlens.report import QUICK_CONFIG

    values = {key: getattr(args, flag) for flag, key in (("seed", "seed"), ("samples", "n_samples"),
                                                          ("episodes", "n_episodes"), ("epochs", "fit_epochs"),
                                                          ("policy", "policy"), ("discount", "discount"),
                                                          ("truncate", "truncate"))
              if getattr(args, flag, None) is not None}
    return dataclasses.replace(QUICK_CONFIG if quick else AuditConfig(), **values)


def _run_and_print(system, models, horizons, args, quick: bool):
    from gradlens.report import format_summary, run_audit
    from gradlens.analysis.audit import AuditReport, prepare

    config = _audit_config(args, quick)
    prepare(system, models, horizons, None, config)  # bad input fails before anything is written
    out = _writable_dir(args.out)
    print(f"audit {system}: models {', '.join(models)} beside the simulator, H={', '.join(map(str, horizons))}, "
          f"{config.n_episodes} episodes (data {config.data}), up to {config.fit_epochs} fitting epochs, "
          f"{config.n_samples} gradient samples per model and H, policy {config.policy}, seed {config.seed} -> {out}",
          flush=True)
    log = None if args.quiet else (lambda line: print(line, flush=True))
    start = time.perf_counter()
    run = run_audit(system, models, horizons, out, config=config, progress=not args.quiet, log=log)
    report = AuditReport.load(run)
    print(format_summary(report))
    for p in report.problems:
        print(f"problem: {p.diagnostic} {p.method} H={p.horizon}: {p.message}")
    seconds, samples = time.perf_counter() - start, (len(models) + 1) * len(horizons) * config.n_samples
    print(f"\naudit finished in {seconds:.0f} s ({samples} gradient samples, {samples / seconds:.3g}/s, fits "
          f"included); run folder {run}")
    print(f"report: {run / 'report.html'} (open it in a browser; it works offline)")
    return run


def _cmd_audit(args) -> int:
    from gradlens import envs
    from gradlens import models as model_registry

    models = _csv(args.models, "models")
    for m in models:
        model_registry.factory(m)  # unknown names fail here, listing the valid ones
    envs.builder(args.system)
    _run_and_print(args.system, models, _csv(args.horizons, "horizons", int), args, quick=False)
    return 0


def _cmd_demo(args) -> int:
    from gradlens.report import DEMO, QUICK_HORIZONS

    horizons = QUICK_HORIZONS if args.quick else DEMO["horizons"]
    print(f"gradlens demo: {DEMO['system']}, models {', '.join(DEMO['models'])} beside the simulator, horizons "
          f"{', '.join(map(str, horizons))}" + (" (quick mode)" if args.quick else ""))
    _run_and_print(DEMO["system"], DEMO["models"], horizons, args, quick=args.quick)
    print(f"explore it: gradlens app --runs {args.out}")
    return 0


def _age(updated) -> str:
    """'12s', '5m', '3h' or '2d' since the ISO-8601 time `updated`; '?' when there is none."""
    import datetime

    try:
        seconds = max(time.time() - datetime.datetime.fromisoformat(str(updated)).timestamp(), 0.0)
    except ValueError:
        return "?"
    unit, size = next(((u, n) for u, n in (("d", 86400), ("h", 3600), ("m", 60)) if seconds >= n), ("s", 1))
    return f"{seconds // size:.0f}{unit}"


def _cell(value) -> str:
    """A table cell: '-' for a missing value, integers without '.0'."""
    if value is None or value != value:  # None or NaN
        return "-"
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _runs_rows(table, runs) -> list[tuple[str, ...]]:
    """(run, state, system, method, H, steps, seeds, progress, age) per scan row."""
    rows = []
    for r in table.itertuples():
        config = {} if r.state == "corrupt" else runs.load_config(r.path)
        steps, done = config.get("total_steps"), 0 if r.env_steps != r.env_steps else r.env_steps
        progress = f"{100 * min(done / steps, 1.0):.0f}%" if isinstance(steps, int) and steps > 0 else None
        cells = (r.name, r.state, r.system, r.method, r.horizon, steps, config.get("seeds", r.n_seeds), progress)
        rows.append((*map(_cell, cells), _age(r.updated) if r.updated else "-"))
    return rows


def _cmd_runs(args) -> int:
    from gradlens import runs

    root = Path(args.root)
    if not root.exists():
        raise ValueError(f"no run store at {root}: no such folder")
    table = runs.scan(root)
    if table.empty:
        print(f"no runs in {root}")
        return 0
    header = ("run", "state", "system", "method", "H", "steps", "seeds", "progress", "age")
    rows = [header, *_runs_rows(table, runs)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    for r in table.itertuples():
        if r.state in ("interrupted", "failed"):
            print(f"{r.state}: {r.name}: {r.reason}")
        elif r.state == "corrupt":
            print(f"unreadable: {r.name}: {r.error}")
    return 0


def _cmd_runs_export(args) -> int:
    from gradlens import tensorboard

    written = tensorboard.export(args.runs, args.tensorboard)
    runs_written = sorted({logdir.parent.name for logdir in written})
    print(f"wrote {len(written)} TensorBoard log directories ({len(runs_written)} run"
          f"{'' if len(runs_written) == 1 else 's'}, one directory per seed) under {args.tensorboard}; view them "
          f"with: tensorboard --logdir {args.tensorboard}")
    return 0


def _cmd_app(args) -> int:
    from gradlens.app.server import serve

    serve(args.runs, args.port, args.address)
    return 0


def _cmd_sweep(args) -> int:
    from gradlens.sweep import SweepSpec, check_options, run_sweep

    overrides = {key: getattr(args, flag) for flag, key in (("steps", "total_steps"), ("warmup", "warmup_steps"),
                                                            *_POLICY_OPTIONS)
                 if getattr(args, flag) is not None}
    spec = SweepSpec(systems=tuple(_csv(args.systems, "systems")), methods=tuple(_csv(args.methods, "methods")),
                     horizons=tuple(_csv(args.horizons, "horizons", int)), seeds=args.seeds, overrides=overrides)
    check_options(args.backend, args.jobs)
    out = _writable_dir(args.out)
    configs = spec.configs()
    warmups = sorted({c.warmup_steps for c in configs})
    print(f"sweep: {len(configs)} run(s): systems {', '.join(spec.systems)} x methods {', '.join(spec.methods)} x "
          f"H={', '.join(map(str, spec.horizons))}, {configs[0].total_steps} env steps "
          f"({', '.join(map(str, warmups))} warm-up), {_seeds(configs[0].seed, spec.seeds)} -> {out} "
          f"({args.backend} backend)", flush=True)
    start = time.perf_counter()
    table = run_sweep(spec, out, backend=args.backend, jobs=args.jobs, ray_address=args.ray_address,
                      progress=not args.quiet, log=None if args.quiet else print)
    failed = table[table["state"] == "failed"]
    print(table.drop(columns=["error"]).to_string(index=False))
    for _, row in failed.iterrows():
        print(f"failed: {row['name']}: {row['error']}", file=sys.stderr)
    print(f"{len(table) - len(failed)} of {len(table)} run(s) done; run store {out}")
    trained = table["state"] == "done"
    print(_speed_line(sum(c.total_steps for c, ok in zip(configs, trained) if ok), spec.seeds,
                      time.perf_counter() - start, "all runs trained, compilation included"))
    return 1 if len(failed) else 0


# (flag attribute, TrainConfig field) of the options `train` and `sweep` share
_POLICY_OPTIONS = (("policy_time", "policy_time_input"), ("policy_lr", "policy_lr"),
                   ("nonfinite_policy_grad", "nonfinite_policy_grad"), ("grad_clip", "grad_clip"),
                   ("simulator_grad_clip", "simulator_grad_clip"), ("discount", "discount"), ("truncate", "truncate"),
                   ("update_rule", "update_rule"), ("natural_kl", "natural_kl"))


def _add_policy_options(p: argparse.ArgumentParser) -> None:

    p.add_argument("--policy-time", choices=TIME_INPUTS, help="the policy's time input: raw step index (default, the "
                                                               "paper's) or unit (t / H; docs/fidelity.md)")
    p.add_argument("--policy-lr", type=float, help="the policy's Adam learning rate (default 1e-4, the paper's; "
                                                   "3e-4 with --policy-time unit converges on every seed)")
    p.add_argument("--nonfinite-policy-grad", choices=NONFINITE_POLICY_GRAD,
                   help="a NaN/Inf policy gradient: stop the run (default) or zero its non-finite entries and go on, "
                        "counted per seed (the reference implementation's handling)")
    g = p.add_argument_group("stabilisers (docs/stability.md; the defaults are the paper's settings)")
    g.add_argument("--grad-clip", type=float, help="global-norm clip of the policy gradient through a world model "
                                                   "(default 100, the paper's)")
    g.add_argument("--simulator-grad-clip", type=float, help="the same through the true simulator (default: none)")
    g.add_argument("--discount", type=float, help="γ in (0, 1] on the imagined return (default 1)")
    g.add_argument("--truncate", type=int, metavar="K",
                   help="truncated backpropagation through time: stop the gradient every K steps (default: never)")
    g.add_argument("--update-rule", choices=UPDATE_RULES,
                   help="adam (default, the paper's) or natural: natural-gradient steps of KL radius --natural-kl")
    g.add_argument("--natural-kl", type=float, help="the KL radius of each natural-gradient step (default 0.01)")


def _pixels(text: str) -> int:
    """A figure size in pixels: an integer from 100 to 10000."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 100 <= value <= 10000:
        raise argparse.ArgumentTypeError(f"a size must be an integer number of pixels from 100 to 10000, got {text!r}")
    return value


def _add_figure_options(p: argparse.ArgumentParser, out_help: str) -> None:
    p.add_argument("--out", required=True, help=f"output {out_help}; the suffix picks the format")
    p.add_argument("--width", type=_pixels, help="figure width in pixels (default: from the number of panels)")
    p.add_argument("--height", type=_pixels, help="figure height in pixels (default: from the number of panels)")


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line, like the sub-commands' own."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="gradlens", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_systems, _add_train, _add_audit_and_demo, _add_sweep, _add_plot, _add_runs, _add_app):
        add(sub)
    return parser


def _add_systems(sub) -> None:
    """`gradlens systems`."""
    p = sub.add_parser("systems", help="list every system with its dimensions, horizon and dt; roll each out once")
    p.add_argument("--horizon", type=int, default=None, help="override every system's horizon")
    p.add_argument("--probe-physics", action="store_true",
                   help="roll the Brax systems out too (each compiles for minutes on a laptop CPU)")
    p.set_defaults(func=_cmd_systems)


def _add_train(sub) -> None:
    """`gradlens train`."""
    p = sub.add_parser("train", help="BPO (the paper's Algorithm 1) through a world model or the true simulator")
    p.add_argument("--system", help="system name (see `gradlens systems`); default cancer")
    p.add_argument("--method", help="simulator, a world-model class, sac or odt; default awm-transformer")
    p.add_argument("--horizon", type=int, help="episode length H; default 100")
    p.add_argument("--seeds", type=int, help="number of seeds trained together (vmapped); default 1")
    p.add_argument("--seed", type=int, help="first seed; default 0")
    p.add_argument("--steps", type=int, help="total environment steps; default 5000")
    p.add_argument("--warmup", type=int, help="environment steps before any update; default 1500 (BPO), 1000 (sac, "
                                              "odt)")
    _add_policy_options(p)
    p.add_argument("--config", help="JSON file of TrainConfig fields (flags override it)")
    p.add_argument("--out", default="gradlens-runs", help="run-store folder (default ./gradlens-runs)")
    p.add_argument("--resume", nargs="?", const="", metavar="RUN",
                   help="continue a run from its last checkpoint: the run folder RUN (its stored configuration), or "
                        "the run the other flags name in --out; an absent, damaged or finished run is an error")
    p.add_argument("--name", help="the run folder's name in --out (default <system>-<method>-H<horizon>-seed<N>)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing run folder of that name (not one still running) instead of refusing")
    p.add_argument("--quiet", action="store_true", help="no progress bar or per-evaluation lines")
    p.set_defaults(func=_cmd_train)


def _add_audit_and_demo(sub) -> None:
    """`gradlens audit` and `gradlens demo`."""
    for command, helptext in (("audit", "fit world models and measure the policy gradient each gives, beside the "
                                        "simulator"),
                              ("demo", "the main job: audit a Markov model, an HWM- and an AWM-transformer on the "
                                       "double pendulum (about 90 s on 2 CPU cores, 50 s with --quick, both cold: "
                                       "the models are fitted to convergence)")):
        p = sub.add_parser(command, help=helptext)
        if command == "audit":
            p.add_argument("--system", required=True, help="system name (see `gradlens systems`)")
            p.add_argument("--models", required=True, help="comma-separated model names, e.g. markov,awm-transformer")
            p.add_argument("--horizons", required=True, help="comma-separated horizons, e.g. 5,10,20")
            p.add_argument("--samples", type=int, help="gradient samples per method and horizon (default 32)")
            p.add_argument("--episodes", type=int, help="episodes collected to fit the models (default 256)")
            p.add_argument("--epochs", type=int, help="fitting epochs at most, a safety cap: fits stop on a validation "
                                                      "plateau (default 1000; 300 with --quick)")
            p.add_argument("--policy", help="auto (default), mlp or open_loop")
            p.add_argument("--discount", type=float, help="γ in (0, 1] on the imagined return whose gradient is "
                                                          "analysed (default 1, the paper's; docs/stability.md)")
            p.add_argument("--truncate", type=int, metavar="K",
                           help="analyse the gradient truncated every K steps (default: never)")
            p.set_defaults(func=_cmd_audit)
        else:
            p.add_argument("--quick", action="store_true",
                           help="toy sizes (about 50 s on 2 CPU cores, 28 s once compiled)")
            p.set_defaults(func=_cmd_demo)
        p.add_argument("--seed", type=int, help="seed of every random draw (default 0)")
        p.add_argument("--out", default="gradlens-runs", help="run-store folder (default ./gradlens-runs)")
        p.add_argument("--quiet", action="store_true", help="no progress bars or stage lines")


def _add_sweep(sub) -> None:
    """`gradlens sweep`."""
    p = sub.add_parser("sweep", help="a grid of training runs (systems x methods x horizons), resumable")
    p.add_argument("--systems", required=True, help="comma-separated system names")
    p.add_argument("--methods", required=True, help="comma-separated methods (simulator, model classes, sac, odt)")
    p.add_argument("--horizons", required=True, help="comma-separated horizons, e.g. 25,50,100")
    p.add_argument("--seeds", type=int, default=1, help="seeds per run, vmapped in one process (default 1)")
    p.add_argument("--steps", type=int, help="total environment steps per run (default 5000, the paper's)")
    p.add_argument("--warmup", type=int, help="environment steps before any update (default: the method's)")
    _add_policy_options(p)
    p.add_argument("--out", default="gradlens-runs", help="run-store folder (default ./gradlens-runs)")
    p.add_argument("--backend", choices=("local", "ray"), default="local", help="local processes or Ray tasks")
    p.add_argument("--jobs", type=int, help="local processes (default: one per core)")
    p.add_argument("--ray-address", help="address of an existing Ray cluster (default: start a local one)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or per-run lines")
    p.set_defaults(func=_cmd_sweep)


def _add_plot(sub) -> None:
    """`gradlens plot curves | audit`."""
    p = sub.add_parser("plot", help="figures from the run store")
    plot_sub = p.add_subparsers(dest="figure", required=True)
    q = plot_sub.add_parser("curves", help="every logged metric (return, model loss, gradient norm, cosine with the "
                                           "simulator, wall time, …) vs env steps: one line per seed, the mean and "
                                           "its 95%% CI")
    q.add_argument("runs", nargs="+", help="run folders or run-store folders")
    _add_figure_options(q, "FILE.html, .png or .svg (.html: a .png is written beside it when possible)")
    q.set_defaults(func=_cmd_plot)
    q = plot_sub.add_parser("audit", help="the audit figures of an audit run folder (gradients, Jacobians, fit "
                                          "error, landscapes, paths)")
    q.add_argument("run", help="audit run folder (holding report.json)")
    _add_figure_options(q, "FILE.html, .png or .svg; each figure is written as FILE-<figure> with that suffix, "
                           "or as FILE itself with --figure")
    q.add_argument("--figure", dest="only", help="only this figure, e.g. gradients or jacobians")
    q.set_defaults(func=_cmd_plot_audit)


def _add_runs(sub) -> None:
    """`gradlens runs list | export`."""
    p = sub.add_parser("runs", help="the run store as a table (`gradlens runs [ROOT]`), or its training runs "
                                    "exported (`gradlens runs export --tensorboard DIR`)")
    runs_sub = p.add_subparsers(dest="action", required=True, metavar="{list,export}")
    q = runs_sub.add_parser("list", help="(the default) state (a run whose process died is \"interrupted\", with the "
                                         "command that resumes it), system, method, horizon, steps, seeds, progress "
                                         "and age")
    q.add_argument("root", nargs="?", default="gradlens-runs", help="run-store folder (default ./gradlens-runs)")
    q.set_defaults(func=_cmd_runs)
    q = runs_sub.add_parser("export", help="training runs as TensorBoard event files, one log directory per run and "
                                           "seed (needs tensorboardX)")
    q.add_argument("runs", nargs="*", default=["gradlens-runs"],
                   help="run folders or run-store folders (default ./gradlens-runs)")
    q.add_argument("--tensorboard", required=True, metavar="DIR",
                   help="write the event files under DIR (then: tensorboard --logdir DIR)")
    q.set_defaults(func=_cmd_runs_export)


def _add_app(sub) -> None:
    """`gradlens app`."""
    p = sub.add_parser("app", help="the Streamlit app: HWM vs AWM gradients beside learning curves, live audits")
    p.add_argument("--runs", default="gradlens-runs", help="run-store folder (default ./gradlens-runs)")
    p.add_argument("--port", type=int, default=8501, help="port to serve on (default 8501)")
    p.add_argument("--address", default="127.0.0.1",
                   help="address to serve on (default 127.0.0.1, this machine only; 0.0.0.0 for every interface)")
    p.set_defaults(func=_cmd_app)


CACHED_COMMANDS = ("systems", "train", "audit", "demo", "sweep")  # compiling ones: JAX's persistent cache on


def _runs_default(argv: list[str]) -> list[str]:
    """`gradlens runs [ROOT]` is `gradlens runs list [ROOT]`."""
    if argv[:1] == ["runs"] and (len(argv) == 1 or argv[1] not in ("list", "export", "-h", "--help")):
        return ["runs", "list", *argv[1:]]
    return argv


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(_runs_default(sys.argv[1:] if argv is None else list(argv)))
    try:
        if args.command in CACHED_COMMANDS:
            compilation_cache.enable()
        return args.func(args)
    except ValueError as err:
        print(f"gradlens {args.command}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a read or write the command's own checks did not foresee (disk full, permissions)
        where = f"{err.filename}: " if err.filename else ""
        print(f"gradlens {args.command}: error: {where}{err.strerror or err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"gradlens {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
