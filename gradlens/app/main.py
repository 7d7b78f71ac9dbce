"""The app's entry script, which Streamlit runs on every interaction: page set-up, the shared sidebar, the pages.

    streamlit run gradlens/app/main.py -- --runs DIR      # what `gradlens app --runs DIR` does
"""
import argparse

import streamlit as st

from gradlens.app import selection

PAGES = [("overview", "Overview", ":material/insights:"), ("paths", "Gradient paths", ":material/account_tree:"),
         ("jacobians", "Jacobians", ":material/grid_on:"), ("landscapes", "Landscapes", ":material/landscape:"),
         ("curves", "Learning curves", ":material/show_chart:"), ("audit", "Run an audit", ":material/play_circle:")]


def default_runs() -> str:
    """The run store named after `--` on the command line (default ./gradlens-runs)."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--runs", default="gradlens-runs")
    return parser.parse_known_args()[0].runs


st.set_page_config(page_title="gradlens", page_icon=":material/insights:", layout="wide")
page = st.navigation([st.Page(f"app_pages/{name}.py", title=title, icon=icon, default=name == "overview")
                      for name, title, icon in PAGES])
selection.sidebar(default_runs())
try:
    page.run()
except Exception as err:  # the app's boundary: a message in the user's words, never a traceback
    st.error(f"This page could not be drawn: {type(err).__name__}: {err}")
