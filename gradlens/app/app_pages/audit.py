"""Run an audit: the bounded form of a live audit, stored as a run in the run store and then shown on the Overview."""
import streamlit as st

from gradlens.app import live, selection

st.title("Run an audit")
st.markdown(
    f"Fit up to {live.MAX_MODELS} world models on data from a system and measure the policy gradient each gives "
    f"beside the simulator's, at up to {live.MAX_HORIZONS} horizons H ≤ {live.MAX_HORIZON}. The defaults are the quick "
    "demo's sizes (about 50 s on 2 CPU cores); larger audits belong to `gradlens audit`. Stay on this page "
    "while it runs: the result is stored as a run and opens on the Overview.")
live.audit_form(selection.runs_root())
