"""Jacobians: heatmaps of ‖d ŝ_t / d a_k‖ for a chosen model (or all side by side) at a chosen horizon of the audit in
view, with each chain's growth rate, and the audit's growth laws (power law or exponential, by AIC)."""
import math

import pandas as pd
import streamlit as st

from gradlens import plots
from gradlens import report as report_module
from gradlens.app import figures, selection

st.title("Jacobian chains")
st.markdown("How strongly each action a_k moves each later prediction ŝ_t: ‖d ŝ_t / d a_k‖ (Frobenius norm, log "
            "colour scale). Entries with k ≥ t are zero by causality and left blank; a positive growth rate means the "
            "norms explode with the lag t − k.")
report = selection.require_report("jacobians")
if report is not None:
    left, right = st.columns(2)
    method = left.selectbox("Model", ["all, side by side", *report.methods], key="jac_method")
    horizon = right.selectbox("Horizon H", report.horizons, index=len(report.horizons) - 1, key="jac_horizon")
    shown = figures.subset(report, None if method.startswith("all") else [method], [horizon])
    if shown.jacobians:
        st.plotly_chart(plots.jacobian_heatmaps_figure(shown, horizon), theme=None)
        rows = [{"model": r.method, "H": r.horizon, "growth rate (ln per step)": r.growth_rate,
                 "per-step gain": math.exp(r.growth_rate) if math.isfinite(r.growth_rate) else float("nan"),
                 "largest ‖d ŝ_t / d a_k‖": max(
                     (x for row in r.norms for x in row if math.isfinite(x)), default=float("nan"))}
                for r in shown.jacobians]
        st.dataframe(pd.DataFrame(rows), hide_index=True)
    else:
        st.warning(f"This audit holds no Jacobians for {method} at H = {horizon}.")
    if report.growth:
        st.subheader("Growth laws")
        st.markdown(f"{report_module.GROWTH_NOTE}: gradient norm and variance against H over the audit's horizons, "
                    "Jacobian norm against the lag t − k at each H.")
        table = report_module.growth_table(report)
        st.dataframe(pd.DataFrame(table[1:], columns=table[0]), hide_index=True)
