"""Overview: the policy gradient each model of the audit in view gives beside the simulator's, versus the horizon,
with a reading of what the numbers show. On an empty run store: the one-click demo and the exact path counts."""
from pathlib import Path

import pandas as pd
import streamlit as st

from gradlens import plots
from gradlens.analysis import paths
from gradlens.app import live, reading, selection
from gradlens.report import (fit_caveat, fits_table, predictability_sentence, standalone_html, summary_table,
                             warning_lines)

st.title("Gradient audit overview")
selection.flash()
root = selection.runs_root()


@st.cache_data(show_spinner=False)
def path_table(horizons: tuple) -> list[dict]:
    return [row for c in paths.MODEL_CLASSES for row in paths.horizon_table(c, horizons)]


def welcome() -> None:
    st.markdown(
        "Do transformer world models give better policy gradients? An **audit** fits world models on data from a "
        "system, then measures the gradient of the return each gives — norm, variance, cosine to the true "
        "simulator's gradient — as the horizon H grows, beside Jacobian chains, return landscapes and exact "
        "gradient-path counts.")
    st.info(f"No finished audit in the run store **{root}** yet. Run the demo (the same as `gradlens demo`) or "
            "launch your own on **Run an audit**.")
    live.demo_button(root)
    st.subheader("Why the class of model matters: gradient paths")
    st.markdown(
        "Without any run, the counts are exact: in a history world model (HWM) every prediction is fed back, so the "
        "number of paths from the actions to the return grows exponentially with H; in an actions world model (AWM) "
        "it grows polynomially. Explore the graphs themselves on **Gradient paths**.")
    st.plotly_chart(plots.path_counts_figure(path_table((1, 2, 4, 8, 16, 32, 64, 128))), theme=None)


def overview(report, path: str) -> None:
    system = report.system
    st.caption(f"System **{system['name']}** · models {', '.join(report.models) or 'none (simulator only)'} · "
               f"horizons {', '.join(map(str, report.horizons))} · policy {system.get('policy')} · created "
               f"{report.meta.get('created')} · run folder `{Path(path).name}`")
    caveat = fit_caveat(report)
    if caveat:
        st.warning(caveat)
    fig = plots.gradient_stats_figure(report)
    fig.update_xaxes(tickvals=report.horizons)
    st.plotly_chart(fig, theme=None)
    st.subheader("Reading")
    st.markdown(reading.markdown(report))
    st.caption("One dash and marker per model: first-order (backpropagated) gradients, shaded by their 95 % "
               "bootstrap intervals (about one standard error for reports before schema 4); dotted with open markers: "
               "the zeroth-order reference through the simulator at the same budget. Axes are logarithmic except the "
               "cosine's.")
    table = summary_table(report)
    st.subheader("Summary")
    st.dataframe(pd.DataFrame(table[1:], columns=table[0]), hide_index=True)
    st.subheader("World-model fits")
    records = fits_table(report)
    if records:
        st.markdown(predictability_sentence(report))
        st.dataframe(pd.DataFrame(records[1:], columns=records[0]), hide_index=True)
        st.plotly_chart(plots.fit_error_figure(report), theme=None)
        for line in warning_lines(report):
            st.warning(line)
    elif report.fits:  # a report from before fit records (schema 1)
        st.dataframe(pd.DataFrame([{"model": name, "source": f["source"], "open-loop MSE": f["open_loop_mse"],
                                    "hold-s₁ MSE": f["baseline_mse"], "epochs": f["epochs"],
                                    "seconds": f["seconds"]} for name, f in report.fits.items()]), hide_index=True)
    else:
        st.write("No world model in this audit.")
    html = Path(path) / "report.html"
    if html.is_file():
        st.download_button("Download report.html (opens offline)", lambda: standalone_html(path),  # on click only
                           file_name=f"{Path(path).name}.html", mime="text/html")


path = selection.audit_in_view()
if path is None:
    welcome()
else:
    report = selection.load_report(path)
    if report is not None:
        overview(report, path)
