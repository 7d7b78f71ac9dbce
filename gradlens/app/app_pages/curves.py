"""Learning curves: training runs from the run store (a metric against env steps, each seed and the median),
filtered by system and method, beside the gradient diagnostics of the same models from the newest audit of the same
system. While a shown run is training, its panel redraws itself (a researcher watches a run train)."""
import streamlit as st

from gradlens import plots
from gradlens.analysis.audit import SIMULATOR
from gradlens.app import figures, selection, store

METRICS = {"return": "return in the true system", "cosine_to_simulator": "cosine of the policy gradient to the "
           "simulator's", "policy_grad_norm": "policy-gradient norm", "model_loss": "world-model loss"}
REFRESH_S = 5  # seconds between redraws of the training panel while a shown run is training

st.title("Learning curves")
root = selection.runs_root()
runs_table = store.scan(root)
trained = runs_table[(runs_table["kind"] == "train") & (runs_table["state"] != "corrupt")]
if trained.empty:
    st.info(f"No training run in **{root}** yet. Train one with, e.g., `gradlens train --system cancer --method "
            f"awm-transformer --seeds 3 --out {root}` (and `--method simulator` for the reference).")
    st.stop()

left, middle, right = st.columns(3)
systems = sorted(trained["system"].dropna().unique())
system = left.selectbox("System", systems, key="lc_system")
available = sorted(trained.loc[trained["system"] == system, "method"].dropna().unique())
methods = middle.multiselect("Methods", available, default=available, key="lc_methods")
metrics, problems = store.train_metrics(root, [system], methods)
for p in problems:
    if p["name"] not in set(runs_table.loc[runs_table["state"] == "corrupt", "name"]):  # those are in the sidebar
        st.warning(f"Skipped training run **{p['name']}**: {p['error']}")
columns = [m for m in METRICS if m in metrics.columns and metrics[m].notna().any()]
if not methods or metrics.empty or not columns:
    st.warning("No metrics for this choice: pick at least one method with evaluations.")
    st.stop()
y = right.selectbox("Metric", columns, format_func=METRICS.get, key="lc_metric")

live = trained[(trained["system"] == system) & trained["method"].isin(methods) & (trained["state"] == "running")]


@st.fragment(run_every=REFRESH_S if not live.empty else None)
def training_curves() -> None:
    """The training panel; while a shown run is training it redraws itself every REFRESH_S seconds (the reads are
    cached on the files' modification times, so an unchanged run costs nothing)."""
    shown, _ = store.train_metrics(root, [system], methods) if not live.empty else (metrics, None)
    st.subheader("Training")
    st.plotly_chart(plots.learning_curves_figure(shown, title=f"{METRICS[y].capitalize()} during training "
                                                 f"({system})", y=y, width=None, height=460), theme=None)
    seeds = shown.groupby("method")["seed"].nunique()
    st.caption("One thin line per seed and a thick line for the median over seeds (return: with the fraction of "
               "seeds converged and the median final return); seeds per method: "
               + ", ".join(f"{m} {n}" for m, n in seeds.items()) + ".")
    if not live.empty:
        steps = shown.groupby("run")["env_steps"].max()
        st.caption(f":material/autorenew: Live: {', '.join(sorted(live['name']))} training, redrawn every "
                   f"{REFRESH_S} s (latest env step: " + ", ".join(f"{run} {int(n)}" for run, n in steps.items()
                                                                  if run in set(live["name"])) + ").")


curves, diagnostics = st.columns([5, 6])
with curves:
    training_curves()
with diagnostics:
    st.subheader("Gradient diagnostics")
    audits = [a for a in store.audit_runs(root) if a["system"] == system]
    if not audits:
        st.info(f"No audit of {system} in this run store: launch one on **Run an audit** to see the gradients these "
                "models give beside the simulator's.")
    else:
        report = selection.load_report(audits[0]["path"], "gradients")
        if report is not None:
            shared = [m for m in report.methods if m in methods]
            shown = figures.subset(report, [SIMULATOR, *shared]) if shared else report
            fig = plots.gradient_stats_figure(shown, title="Their policy gradients versus horizon", width=None,
                                              height=460)
            fig.update_annotations(font_size=11)  # the panel titles, in a half-width column
            fig.update_xaxes(tickvals=shown.horizons)
            fig.update_layout(margin={"l": 50, "r": 10})
            st.plotly_chart(fig, theme=None)
            st.caption(f"From the newest audit of {system}, {audits[0]['name']}, beside the simulator"
                       + ("" if shared else " (none of the trained methods is in it: all its models shown)") + ".")
