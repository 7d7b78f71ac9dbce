"""The app's page set-up, run by its entry scripts on every interaction: the page config, the pages (registered by
absolute path, so any entry script can run them), the shared sidebar, and the app's error boundary."""
import argparse
import functools
from pathlib import Path

import numpy as np
import streamlit as st
from PIL import Image

from gradlens.app import selection

PAGES_DIR = Path(__file__).with_name("app_pages")
PAGES = [("overview", "Overview", ":material/insights:"), ("paths", "Gradient paths", ":material/account_tree:"),
         ("jacobians", "Jacobians", ":material/grid_on:"), ("landscapes", "Landscapes", ":material/landscape:"),
         ("curves", "Learning curves", ":material/show_chart:"), ("audit", "Run an audit", ":material/play_circle:")]


def default_runs() -> str:
    """The run store named after `--` on the command line (default ./gradlens-runs)."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--runs", default="gradlens-runs")
    return parser.parse_known_args()[0].runs


@functools.lru_cache(maxsize=1)
def icon() -> Image.Image:
    """The tab's icon, drawn here (32 x 32: a blue lens ring) and served by the app itself; a Material icon as page
    icon would be fetched from fonts.gstatic.com, and the app must work offline."""
    y, x = np.mgrid[:32, :32] - 15.5
    ring = np.abs(np.hypot(x, y) - 11) < 2.5
    return Image.fromarray(np.where(ring[..., None], np.array([31, 119, 180], np.uint8), np.uint8(255)))


def run() -> None:
    """Draw the app once (Streamlit reruns the entry script, and so this, on every interaction)."""
    st.set_page_config(page_title="gradlens", page_icon=icon(), layout="wide")
    page = st.navigation([st.Page(PAGES_DIR / f"{name}.py", title=title, icon=icon, default=name == "overview")
                          for name, title, icon in PAGES])
    selection.sidebar(default_runs())
    try:
        page.run()
    except Exception as err:  # the app's boundary: a message in the user's words, never a traceback
        st.error(f"This page could not be drawn: {type(err).__name__}: {err}")
