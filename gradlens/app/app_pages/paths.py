"""Gradient paths: the unrolled dependency graph of a model class for a small H, the paths from a chosen a_k to ŝ_t
drawn, counted and binned by length, and the path counts of every class versus H. Needs no run."""
import pandas as pd
import streamlit as st

from gradlens import plots
from gradlens.analysis import paths
from gradlens.app import figures
from gradlens.app.figures import subscript

CLASSES = list(paths.MODEL_CLASSES)
TABLE_HORIZONS = (1, 2, 4, 8, 16, 32, 64, 128, 256)

st.title("Gradient paths")
st.markdown(
    "Every edge u → v of the unrolled graph means v is computed directly from u, so gradient flows along it. A "
    "history world model (HWM) feeds its predictions back, so an action reaches a later state along exponentially "
    "many paths; an actions world model (AWM) reads only s₁ and the actions, and the number of paths is set by its "
    "architecture.")


@st.cache_data(show_spinner=False)
def stats(model_class: str, horizon: int, policy: str, stop_gradient: bool, k: int, t: int):
    return paths.action_to_state(paths.graph(model_class, horizon, policy=policy, stop_gradient=stop_gradient), k, t)


@st.cache_data(show_spinner=False)
def table(policy: str, stop_gradient: bool) -> list[dict]:
    return [row for c in CLASSES
            for row in paths.horizon_table(c, TABLE_HORIZONS, policy=policy, stop_gradient=stop_gradient)]


controls = st.columns(4)
model_class = controls[0].selectbox("Model class", CLASSES, index=CLASSES.index("hwm-transformer"), key="pg_class")
horizon = controls[1].slider("Horizon H (drawn)", 2, 10, 5, key="pg_horizon")
loop = controls[2].radio("Policy", ["open", "closed"], horizontal=True, key="pg_policy",
                         format_func=lambda p: f"{p} loop", help="closed loop: a_t = π_θ(ŝ_t)")
stop = controls[3].toggle("Stop-gradient", value=True, key="pg_stop", disabled=loop == "open",
                          help="Closed loop: stop the gradient through the policy's state input, as the paper's "
                               "code does. Open loop has no state → action edge either way.")
stop = stop or loop == "open"
ends = st.columns(2)
k = ends[0].slider(subscript("from action a_k: k"), 1, horizon, 1)
if k < horizon:
    t = ends[1].slider(subscript("to predicted state ŝ_t: t"), k + 1, horizon + 1, horizon + 1)
else:
    t = horizon + 1
    ends[1].write(subscript(f"to the last prediction ŝ_{t}"))
route = subscript(f"a_{k} → ŝ_{t}")

G = paths.graph(model_class, horizon, policy=loop, stop_gradient=stop)
st.plotly_chart(figures.dependency_graph_figure(G, ("a", k), ("s", t)), theme=None)
found = stats(model_class, horizon, loop, stop, k, t)
left, right = st.columns([1, 2])
left.metric(f"paths {route}", f"{found.count:,}")
if found.count:
    left.write(f"Lengths {found.shortest}–{found.longest} edges, mean {found.mean_length:.2f}.")
    right.plotly_chart(figures.path_lengths_figure(found.length_histogram, title=f"Lengths of the paths {route}",
                                                   width=None), theme=None)
else:
    left.write(f"{subscript(f'a_{k}')} does not reach {subscript(f'ŝ_{t}')}.")
left.dataframe(pd.DataFrame([{"model class": c, f"paths {route}": f"{stats(c, horizon, loop, stop, k, t).count:,}"}
                             for c in CLASSES]), hide_index=True)

st.subheader("Paths from the actions to the return versus H, every class")
st.plotly_chart(plots.path_counts_figure(table(loop, stop)), theme=None)
