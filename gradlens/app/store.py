"""Cached reads of the run store. Every cached result is keyed by the modification times of the files it comes from,
so an unchanged store is read once per server process and a new or updated run shows on the next interaction.

Errors are the run store's: ValueError in the user's words (a corrupt report, a runs root that is a file).
"""
from pathlib import Path

import pandas as pd
import streamlit as st

from gradlens import runs
from gradlens.analysis.audit import REPORT, AuditReport


def stamp(root) -> tuple:
    """(folder name, newest modification time of its files) for every run folder under `root`: the cache key."""
    root = Path(root)
    if not root.is_dir():
        return ()
    out = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))):
        try:
            newest = max((f.stat().st_mtime_ns for f in folder.iterdir() if f.is_file()), default=0)
        except OSError:  # a file vanished while we looked: the next interaction reads it again
            newest = -1
        out.append((folder.name, newest))
    return tuple(out)


@st.cache_data(show_spinner=False, max_entries=32)
def _scan(root: str, key: tuple) -> pd.DataFrame:
    return runs.scan(root)


def scan(root) -> pd.DataFrame:
    """`gradlens.runs.scan(root)`: one row per run folder, damaged ones with state "corrupt" and an error."""
    return _scan(str(root), stamp(root))


@st.cache_data(show_spinner=False, max_entries=32)
def _audit_runs(root: str, key: tuple) -> list[dict]:
    table = runs.scan(root)
    table = table[(table["kind"] == "audit") & (table["state"] == "done")]
    out = []
    for path, created in zip(table["path"], table["created"]):
        config = runs.load_config(path)
        out.append({"path": path, "name": Path(path).name, "created": created, "config": config,
                    "system": config.get("system"), "models": list(config.get("models", [])),
                    "horizons": list(config.get("horizons", []))})
    return sorted(out, key=lambda r: str(r["created"]), reverse=True)


def audit_runs(root) -> list[dict]:
    """The finished audit runs under `root`, newest first: {path, name, created, config, system, models, horizons}."""
    return _audit_runs(str(root), stamp(root))


@st.cache_data(show_spinner=False, max_entries=16)
def _report(path: str, mtime: int) -> AuditReport:
    return AuditReport.load(path)


def report(path) -> AuditReport:
    """The audit report of the run folder `path` (ValueError when report.json is missing or corrupt)."""
    file = Path(path) / REPORT
    try:
        mtime = file.stat().st_mtime_ns
    except OSError:
        mtime = -1  # AuditReport.load says what is wrong
    return _report(str(path), mtime)


@st.cache_data(show_spinner=False, max_entries=32)
def _metrics(root: str, key: tuple, systems: tuple, methods: tuple) -> tuple[pd.DataFrame, list]:
    found = runs.scan_metrics(root, kind="train", **({"system": list(systems)} if systems else {}),
                              **({"method": list(methods)} if methods else {}))
    return found, found.attrs.get("problems", [])


def train_metrics(root, systems=(), methods=()) -> tuple[pd.DataFrame, list[dict]]:
    """Training metrics of the healthy "train" runs under `root` (optionally of some systems / methods), and the runs
    that could not be read ({name, path, error})."""
    return _metrics(str(root), stamp(root), tuple(systems), tuple(methods))
