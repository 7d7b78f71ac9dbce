"""Truncated backpropagation through time on a time-level gradient graph: the edges a truncated rollout cuts.

`gradlens.rollout(..., truncate=k)` stops the gradient of its carried state before every rollout step s with
s % k == 0, s > 0 (steps counted from 0). In the 1-indexed graph of `graph(..., level="time")`, step s computes a_{s+1},
r_{s+1}, h_{s+1} and ŝ_{s+2}; s_1 and h_0 precede step 0. Every gradient path that crosses a boundary passes the
carry, so the truncated graph keeps exactly the edges between nodes of the same block of k steps (θ and J, outside
the scan, keep theirs).
"""
from __future__ import annotations

import numbers

_STEP_OFFSET = {"s": 2, "a": 1, "r": 1, "h": 1}  # node ("s", t) is computed at step t - 2, the others at t - 1


def truncated(G, every: int):
    """A copy of the time-level gradient graph G without the edges that truncation every `every` steps cuts."""
    if isinstance(every, bool) or not isinstance(every, numbers.Integral) or every < 1:
        raise ValueError(f"every must be an integer k >= 1 (the truncation period in steps), got {every!r}")
    if G.graph.get("level") != "time":
        raise ValueError(f"truncation is defined on time-level graphs, got level {G.graph.get('level')!r}")

    def block(node):
        if node[0] not in _STEP_OFFSET:  # θ and J
            return None
        return max(node[1] - _STEP_OFFSET[node[0]], 0) // every

    H = G.copy()
    H.remove_edges_from([(u, v) for u, v in G.edges if None not in (block(u), block(v)) and block(u) != block(v)])
    H.graph["truncate"] = int(every)
    return H
