"""Live audits from the app: a form bounded to small sizes, the one-click demo (`gradlens demo`), and `launch`, which
runs `gradlens.report.run_audit` into the run store with its progress on screen (a bar and each stage's line, drawn
from the audit's `Progress` events). An audit already in the store with the same settings is shown instead of being
computed again."""
import dataclasses
import time
from pathlib import Path

import streamlit as st

from gradlens import envs, models as model_registry
from gradlens.analysis.audit import AuditConfig, Progress
from gradlens.app import selection, store
from gradlens.policies import POLICIES
from gradlens.report import DEMO, QUICK_CONFIG, QUICK_HORIZONS, run_audit

MAX_MODELS, MAX_HORIZON, MAX_HORIZONS = 3, 50, 4
# AuditConfig field -> (label, smallest, largest): the form's bounds, at most the library's defaults
SIZES = {"n_episodes": ("Episodes to fit on", 8, 256),
         "fit_epochs": ("Most fitting epochs (a cap: fits stop on a validation plateau)", 1, 1000),
         "n_samples": ("Gradient samples per method and H", 2, 32),
         "landscape_points": ("Points per 1-D landscape", 3, 101),
         "landscape_2d_points": ("Points per axis of the 2-D landscape (0: none)", 0, 15)}


def parse_horizons(text: str) -> list[int]:
    """"5, 10, 20" -> [5, 10, 20], within the app's bounds; ValueError saying what is allowed."""
    items = [t.strip() for t in str(text).replace(";", ",").split(",") if t.strip()]
    try:
        horizons = sorted({int(t) for t in items})
    except ValueError:
        raise ValueError(f"horizons must be whole numbers separated by commas, e.g. 4, 8; got {text!r}") from None
    if not horizons:
        raise ValueError("give at least one horizon, e.g. 4, 8")
    if len(horizons) > MAX_HORIZONS or horizons[0] < 1 or horizons[-1] > MAX_HORIZON:
        raise ValueError(f"the app runs at most {MAX_HORIZONS} horizons between 1 and {MAX_HORIZON} (got {text!r}); "
                         "use `gradlens audit` for larger ones")
    return horizons


def progress_text(event: Progress) -> str:
    """The caption of the live progress bar at an audit's `Progress` event: "3 of 8 steps · landscapes: H = 2,
    simulator" (the unit just done), "… · landscapes: done" at a stage's end, "… · landscapes: starting"."""
    what = {"step": event.label, "end": "done", "start": "starting"}[event.kind]
    return f"{event.done} of {event.total} steps · {event.section}: {what}"


def find_same(root, system: str, models: list, horizons: list, config: AuditConfig) -> str | None:
    """The path of a finished audit under `root` with exactly these settings, if there is one."""
    want = dataclasses.asdict(config)
    for run in store.audit_runs(root):
        c = run["config"]
        if (c.get("system"), run["models"], run["horizons"]) == (system, list(models), list(horizons)) \
                and all(c.get(k) == v for k, v in want.items()):
            return run["path"]
    return None


def _show(path, message: str) -> None:
    """Put the audit at `path` in view and go to the Overview, which shows `message` once (ends this script run)."""
    st.session_state[selection.PENDING] = str(path)
    st.session_state[selection.FLASH] = message
    st.switch_page("app_pages/overview.py")


def launch(root, system: str, models: list, horizons: list, config: AuditConfig) -> None:
    """Run the audit into the run store `root` with its progress on screen, then show it on the Overview (or the
    identical audit already stored). Bad settings and failures end in an error message."""
    same = find_same(root, system, models, horizons, config)
    if same:
        return _show(same, f"This audit is already in the run store ({Path(same).name}): showing it, nothing "
                           "recomputed.")
    start = time.perf_counter()
    with st.status(f"Auditing {system} ({', '.join(models) or 'simulator only'}; H = "
                   f"{', '.join(map(str, horizons))}) …", expanded=True) as status:
        bar = st.progress(0.0, text="collecting data and fitting the world models")

        def show(event: Progress) -> None:
            bar.progress(event.fraction, text=progress_text(event))
            if event.line is not None:
                st.write(event.line)

        try:
            run = run_audit(system, models, horizons, root, config=config, progress=False, on_progress=show)
        except ValueError as err:
            status.update(label="The audit could not run", state="error")
            st.error(str(err))
            return
        except Exception as err:  # a failure inside the audit: its run folder is marked failed with the reason
            status.update(label="The audit failed", state="error")
            st.error(f"The audit failed ({type(err).__name__}: {err}); its run folder is marked failed.")
            return
        status.update(label=f"Audit done in {time.perf_counter() - start:.0f} s", state="complete")
    return _show(run, f"Audit done in {time.perf_counter() - start:.0f} s and stored as {run.name}.")


def demo_button(root) -> None:
    """The one-click demo: what `gradlens demo` runs (quick sizes on request)."""
    quick = st.checkbox("Quick mode (toy sizes, about 50 s)", value=True, key="demo_quick")
    horizons = list(QUICK_HORIZONS if quick else DEMO["horizons"])
    if st.button(f"Run the demo: {DEMO['system']}, {', '.join(DEMO['models'])}, H = "
                 f"{', '.join(map(str, horizons))}", type="primary", key="demo_run"):
        launch(root, DEMO["system"], list(DEMO["models"]), horizons, QUICK_CONFIG if quick else AuditConfig())


def audit_form(root) -> None:
    """The bounded form of a live audit; submitting it runs `launch`."""
    quick = QUICK_CONFIG
    with st.form("audit_form"):
        left, right = st.columns(2)
        systems = envs.names()
        system = left.selectbox("System", systems, index=systems.index(DEMO["system"]), key="form_system")
        chosen = left.multiselect(f"World models (at most {MAX_MODELS}; none: the simulator alone)",
                                  model_registry.names(), default=list(DEMO["models"]),
                                  max_selections=MAX_MODELS, key="form_models")
        text = left.text_input(f"Horizons (at most {MAX_HORIZONS}, each ≤ {MAX_HORIZON})",
                               ", ".join(map(str, QUICK_HORIZONS)), key="form_horizons")
        policy = left.selectbox("Policy", ["auto", *POLICIES], key="form_policy",
                                help="auto: open loop on the toy tasks, the MLP elsewhere (as `gradlens audit`).")
        seed = left.number_input("Seed", 0, 2**31 - 1, quick.seed, key="form_seed")
        sizes = {name: right.number_input(label, low, high, getattr(quick, name), key=f"form_{name}")
                 for name, (label, low, high) in SIZES.items()}
        submitted = st.form_submit_button("Run the audit", type="primary")
    if not submitted:
        return
    try:
        if len(chosen) > MAX_MODELS:
            raise ValueError(f"the app audits at most {MAX_MODELS} models at once, got {len(chosen)}")
        horizons = parse_horizons(text)
        config = dataclasses.replace(quick, policy=policy, seed=int(seed), **{k: int(v) for k, v in sizes.items()})
    except ValueError as err:
        st.error(str(err))
        return
    launch(root, system, list(chosen), horizons, config)
