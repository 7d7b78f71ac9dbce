"""Landscapes: 1-D and 2-D slices of the return J for the models and horizons chosen from the audit in view, with
their roughness numbers in a table."""
import pandas as pd
import streamlit as st

from gradlens import plots
from gradlens.app import figures, selection

KINDS = {"action": "J(a₁): the first action varied, the others zero",
         "direction": "J(θ + α d): one random filter-normalised direction in policy-parameter space",
         "plane": "J(θ + α d₁ + β d₂): a random plane in policy-parameter space"}

st.title("Return landscapes")
st.markdown("A smooth landscape is one gradient descent can follow. The normalised total variation (TV) is 1 for a "
            "monotone 1-D slice, 2 for a single bump and large for a rough one; the Lipschitz estimate shows jumps.")
report = selection.require_report("landscapes")
if report is not None:
    left, right = st.columns(2)
    methods = left.multiselect("Models", report.methods, default=report.methods, key="land_methods")
    horizons = right.multiselect("Horizons", report.horizons, default=report.horizons, key="land_horizons")
    shown = figures.subset(report, methods, horizons)
    kinds = [k for k in KINDS if any(r.kind == k for r in shown.landscapes)]
    if not kinds:
        st.warning("No landscape for this choice: pick at least one model and one horizon.")
    for kind in (k for k in kinds if k != "plane"):
        st.subheader(KINDS[kind])
        st.plotly_chart(plots.landscapes_figure(shown, kind), theme=None)
    if "plane" in kinds:
        st.subheader(KINDS["plane"])
        planes = sorted({r.horizon for r in shown.landscapes if r.kind == "plane"})
        h = st.radio("Horizon of the 2-D slice", planes, index=len(planes) - 1, horizontal=True, key="land_plane_h")
        st.plotly_chart(plots.plane_figure(shown, h), theme=None)
    if kinds:
        st.subheader("Roughness")
        table = [{"model": r.method, "H": r.horizon, "slice": r.kind, **{
            label: r.roughness[key] for key, label in (
                ("normalized_tv", "normalised TV"), ("total_variation", "total variation"),
                ("lipschitz", "Lipschitz"), ("mean_slope", "mean slope"), ("n_nonfinite", "non-finite"))}}
            for r in shown.landscapes]
        st.dataframe(pd.DataFrame(table), hide_index=True)
