"""Gradient paths: the unrolled dependency graph of each world-model class, and its paths counted exactly.

The paper's central argument is combinatorial: in a history world model (HWM) an action a_k reaches a later
prediction ŝ_t through chains of re-fed predictions (2^(t-k-1) paths), while in an actions world model (AWM) the
paths are set by the network's architecture, not by the horizon. This package builds those graphs (`graph`), counts
paths by dynamic programming (`path_stats`, exact Python integers), states the closed forms (`closed_form`,
derived in docs/paths.md) and tabulates them over horizons (`horizon_table`).

    G = graph("hwm-transformer", horizon=8, level="time", policy="closed", stop_gradient=False)
    action_to_state(G, 1, 9).count        # 3**7 = 2187
    closed_form("hwm-transformer", 8, policy="closed", stop_gradient=False).count   # the same, from the formula
    horizon_table("awm-transformer", [10, 100, 1000])   # rows: paths a_k -> J summed over k, longest, mean length
    truncated(G, 4)    # the edges left by truncated backpropagation every 4 steps (`rollout(..., truncate=4)`)
"""
from gradlens.analysis.paths._builders import LEVELS, MODEL_CLASSES, POLICIES, graph
from gradlens.analysis.paths._closed_forms import closed_form
from gradlens.analysis.paths._counting import PathStats, action_to_state, horizon_table, path_stats
from gradlens.analysis.paths._truncation import truncated

__all__ = [
    "LEVELS",
    "MODEL_CLASSES",
    "POLICIES",
    "PathStats",
    "action_to_state",
    "closed_form",
    "graph",
    "horizon_table",
    "path_stats",
    "truncated",
]
