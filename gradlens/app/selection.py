"""The sidebar every page shares (the run store and the audit run in view), and the messages about runs that cannot be
shown. Pages read the choices back with `runs_root`, `audit_in_view` and `load_report`.

Session-state keys: `ROOT` and `AUDIT` belong to the sidebar widgets; a page that wants another run in view on the
next interaction (a live audit just stored) sets `PENDING`, and a one-time message for the Overview `FLASH`.
"""
from pathlib import Path

import streamlit as st

from gradlens.app import store

ROOT, AUDIT, PENDING, FLASH = "runs_root", "audit_run", "audit_run_pending", "flash"


def _label(run: dict) -> str:
    horizons = run["horizons"]
    span = f"H {horizons[0]}–{horizons[-1]}" if len(horizons) > 1 else f"H {horizons[0]}" if horizons else "no H"
    return f"{run['system']} · {', '.join(run['models']) or 'simulator only'} · {span} · {run['name']}"


def sidebar(default_root: str) -> None:
    """Draw the run-store folder, the audit-run picker and a warning per run folder that could not be read, per
    failed audit and per interrupted run (with the command that continues it)."""
    state = st.session_state
    if not str(state.get(ROOT) or "").strip():  # first run, or the box emptied: back to the command line's
        state[ROOT] = default_root
    st.sidebar.text_input("Run store", key=ROOT, help="The folder holding one folder per run (gradlens app --runs).")
    try:
        table, audits = store.scan(runs_root()), store.audit_runs(runs_root())
    except ValueError as err:
        st.sidebar.error(f"Cannot read the run store: {err}")
        state.pop(AUDIT, None)
        return
    options = {run["path"]: _label(run) for run in audits}
    if PENDING in state:
        state[AUDIT] = state.pop(PENDING)
    if options:
        if state.get(AUDIT) not in options:
            state[AUDIT] = next(iter(options))
        st.sidebar.selectbox("Audit run", list(options), key=AUDIT, format_func=options.get,
                             help="The audit shown on the Overview, Jacobians and Landscapes pages.")
    else:
        state.pop(AUDIT, None)
        st.sidebar.caption("No finished audit in this run store yet.")
    for row in table[table["state"] == "corrupt"].itertuples():
        error = row.error.removeprefix("ValueError: ").replace(f"{row.path}/", "")
        st.sidebar.warning(f"Skipped run folder **{row.name}**: {error}")
    for row in table[(table["state"] == "failed") & (table["kind"] == "audit")].itertuples():
        st.sidebar.warning(f"Audit **{row.name}** failed: {row.reason}")
    for row in table[table["state"] == "interrupted"].itertuples():  # its process is gone (`runs.interrupted`)
        st.sidebar.warning(f"Run **{row.name}** was interrupted: {row.reason}")


def runs_root() -> Path:
    """The run-store folder chosen in the sidebar."""
    return Path(st.session_state[ROOT])


def audit_in_view() -> str | None:
    """The path of the audit run chosen in the sidebar; None when the store holds no finished audit."""
    return st.session_state.get(AUDIT)


def load_report(path, section: str | None = None):
    """The audit report at `path`, with a warning listing its problems (those of `section`, e.g. "jacobians", when
    given); None, after an error message, when it cannot be read."""
    try:
        report = store.report(path)
    except ValueError as err:
        st.error(f"Cannot show the audit run {Path(path).name}: {err}")
        return None
    problems = [p for p in report.problems if section is None or p.diagnostic == section]
    if problems:
        lines = "\n".join(f"- {p.diagnostic} · {p.method or 'all'} · H = {p.horizon or 'all'}: {p.message}"
                          for p in problems)
        st.warning(f"This audit met {len(problems)} problem(s) (NaN/Inf or a diagnostic that failed); the figures "
                   f"show what could be computed:\n{lines}")
    return report


def require_report(section: str | None = None):
    """The report in view for a page that needs one; otherwise a message pointing to where to make one, and None."""
    path = audit_in_view()
    if path is None:
        st.info("No finished audit in this run store yet: run the demo on the **Overview** page or launch one on "
                "**Run an audit**.")
        return None
    return load_report(path, section)


def flash() -> None:
    """Show, once, the message a page left for the next page shown."""
    message = st.session_state.pop(FLASH, None)
    if message:
        st.success(message)
