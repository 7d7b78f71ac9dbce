"""Wall time of the README's main job, `gradlens demo`, and of `gradlens demo --quick`, each in a fresh process.

    python benchmarks/demo_speed.py [--modes demo,quick] [--warm]
    python benchmarks/demo_speed.py --quick      # a smoke run for tests: a toy audit (linear, markov, H = 3)

Each command runs as a new `gradlens` process (imports, compilation and fits included: what a newcomer waits), with
its run folder in a temporary directory. Reported per command: the wall time, the audit's own seconds per section
(`report.json` timings: fits, gradients, Jacobians, landscapes, paths, growth), the time outside them (start-up,
imports, writing the report and its figures), whether every fit passes the fit bar, the machine's load average while
it ran (a loaded machine is slower; compare runs made side by side), and the target (demo <= 180 s, quick <= 60 s).
Each command starts with an empty JAX persistent compilation cache (a new machine's first run, "cold"); `--warm` runs
it a second time over the cache the first one filled (every later run of the same command, "warm").
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGETS = {"demo": 180.0, "quick": 60.0, "toy": None}
COMMANDS = {"demo": ["demo"], "quick": ["demo", "--quick"],
            "toy": ["audit", "--system", "linear", "--models", "markov", "--horizons", "3", "--samples", "2",
                    "--episodes", "16", "--epochs", "2"]}
SECTIONS = ("fits", "gradients", "jacobians", "landscapes", "paths", "growth")


def run(mode: str, cache: str, label: str) -> dict:
    """Run one command in a fresh process with the compilation cache `cache`; its wall time, the report's section
    timings and fit-bar verdicts."""
    env = {**os.environ, "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu"), "GRADLENS_COMPILATION_CACHE": cache}
    with tempfile.TemporaryDirectory() as out:
        load = os.getloadavg()[0]
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "gradlens.cli", *COMMANDS[mode], "--quiet", "--out", out],
                              capture_output=True, text=True, env=env)
        wall = time.perf_counter() - start
        if done.returncode:
            raise SystemExit(f"gradlens {' '.join(COMMANDS[mode])} failed:\n{done.stderr[-2000:]}")
        report = json.loads(next(Path(out).glob("*/report.json")).read_text())
    timings = report.get("timings", {})
    passes = [ok for fit in report.get("fits", {}).values() for ok in fit.get("passes_fit_bar", [])]
    return {"mode": mode, "cache": label, "wall": wall, "load": (load + os.getloadavg()[0]) / 2, "timings": timings,
            "rest": wall - sum(timings.get(s, 0.0) for s in SECTIONS), "fit_bar": f"{sum(passes)}/{len(passes)}"}


def table(rows: list[dict]) -> str:
    head = ["command", "cache", "wall s", *SECTIONS, "rest s", "fits pass bar", "load", "target s", "met"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        target = TARGETS[r["mode"]]
        lines.append("| " + " | ".join([
            f"gradlens {' '.join(COMMANDS[r['mode']][:2])}", r["cache"], f"{r['wall']:.1f}",
            *(f"{r['timings'].get(s, float('nan')):.1f}" for s in SECTIONS), f"{r['rest']:.1f}", r["fit_bar"],
            f"{r['load']:.1f}", "–" if target is None else f"{target:.0f}",
            "–" if target is None else ("yes" if r["wall"] <= target else "no")]) + " |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--modes", default="demo,quick", help="comma-separated: demo, quick (default both)")
    parser.add_argument("--warm", action="store_true", help="run each command again over the cache it filled")
    parser.add_argument("--quick", action="store_true", help="a smoke run: one toy audit")
    args = parser.parse_args(argv)
    modes = ["toy"] if args.quick else [m.strip() for m in args.modes.split(",")]
    bad = [m for m in modes if m not in ("demo", "quick")] if not args.quick else []
    if bad:
        parser.error(f"unknown mode(s) {', '.join(bad)}; choose from demo, quick")
    rows = []
    for mode in modes:
        with tempfile.TemporaryDirectory() as cache:
            rows.append(run(mode, cache, "cold"))
            if args.warm:
                rows.append(run(mode, cache, "warm"))
    print(f"## Demo wall time ({os.cpu_count()} CPU cores)\n")
    print(table(rows))


if __name__ == "__main__":
    main()
