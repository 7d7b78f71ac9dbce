"""Path statistics by dynamic programming over a DAG in topological order (paths are never enumerated).

Cost: counts, total/longest/shortest length are O(E) big-integer additions (H = 1000 HWM: about 10^6 of them,
tens of milliseconds). The length histogram keeps one list of counts per node, O(E × longest path) work: fine for
drawing a graph, not for H = 1000 history models (ask for histogram=False there).
"""
import dataclasses
import math

import networkx as nx

from gradlens.analysis.paths._builders import skeleton
from gradlens.tables import Table


@dataclasses.dataclass(frozen=True)
class PathStats:
    """Statistics of the directed paths from a set of sources to a set of targets (length = number of edges)."""

    count: int  # number of paths, exact
    log10_count: float  # log10(count); -inf when there is no path
    length_histogram: dict | None  # {length: number of paths}; None when not computed
    shortest: int | None  # None when there is no path
    longest: int | None
    mean_length: float  # nan when there is no path


@dataclasses.dataclass
class _Propagation:
    """Per node: number of paths from the seeds, their total length, longest and shortest (-1 / n when none)."""

    count: list
    total: list
    longest: list
    shortest: list
    histogram: list | None  # per node: list, histogram[v][i] = paths of length i; None where unreachable


def propagate(into, order, seeds, histogram):
    """Count paths from the seed nodes to every node: `into[v]` lists the nodes one edge upstream of v (in the
    direction of propagation), `order` visits every node after all of its `into` nodes."""
    n = len(into)
    count, total, longest, shortest = [0] * n, [0] * n, [-1] * n, [n] * n
    hist = [None] * n if histogram else None
    for v in order:
        ups = into[v]
        c = sum(map(count.__getitem__, ups))
        seed = v in seeds
        if not (c or seed):
            continue
        count[v] = c + seed
        total[v] = sum(map(total.__getitem__, ups)) + c  # each path to an input gets one more edge
        longest[v] = max(map(longest.__getitem__, ups)) + 1 if c else 0
        shortest[v] = 0 if seed else min(map(shortest.__getitem__, ups)) + 1
        if histogram:
            h = [0] * (longest[v] + 1)
            h[0] = int(seed)
            for u in ups:
                for length, paths in enumerate(hist[u] or ()):
                    h[length + 1] += paths
            hist[v] = h
    return _Propagation(count, total, longest, shortest, hist)


def stats_from_histogram(histogram):
    """PathStats of the paths described by {length: number of paths}."""
    histogram = {length: paths for length, paths in sorted(histogram.items()) if paths}
    count = sum(histogram.values())
    total = sum(length * paths for length, paths in histogram.items())
    return _stats(count, total, max(histogram, default=None), min(histogram, default=None), histogram)


def _stats(count, total, longest, shortest, histogram):
    return PathStats(count=count, log10_count=math.log10(count) if count else -math.inf,
                     length_histogram=histogram, shortest=shortest if count else None,
                     longest=longest if count else None, mean_length=total / count if count else math.nan)


def _describe_nodes(G):
    """A short description of G's nodes for error messages, e.g. "('s', 1..9), ('theta',)"."""
    groups = {}
    for node in G:
        if isinstance(node, tuple) and node and isinstance(node[0], str):
            groups.setdefault((node[0], len(node)), []).append(node[1:])
    if not groups:
        return ", ".join(map(repr, list(G)[:8])) + (", ..." if len(G) > 8 else "")
    parts = []
    for (head, size), rests in groups.items():
        ranges = [f"{min(col)}..{max(col)}" if all(isinstance(i, int) for i in col) else "..."
                  for col in zip(*rests)]
        parts.append(f"({head!r}, {', '.join(ranges)})" if ranges else f"({head!r},)")
    return ", ".join(parts)


def _as_nodes(G, nodes, role):
    """`nodes` is one node (a tuple with a str head such as ("s", 3), or any node of G) or an iterable of nodes."""
    single = isinstance(nodes, str) or (isinstance(nodes, tuple) and nodes and isinstance(nodes[0], str))
    items = [nodes] if single or nodes in G else list(nodes)
    if not items:
        raise ValueError(f"{role} is empty; give a node or a list of nodes")
    for node in items:
        if node not in G:
            raise ValueError(f"{role} node {node!r} is not in the graph; its {len(G)} nodes are "
                             f"{_describe_nodes(G)}")
    return items


def path_stats(G, sources, targets, histogram=True):
    """Statistics of all directed paths from a node in `sources` to a node in `targets` of the DAG G.

    sources, targets: a node (e.g. ("a", 2), ("theta",)) or a list/set of nodes. A path from a source through another
    source counts once per starting source; a node in both sets counts one path of length 0. Exact for any size (Python
    integers). histogram=False skips the length histogram (see the module docstring for its cost). Raises ValueError
    when a node is not in G, or when G has a cycle.
    """
    sources, targets = _as_nodes(G, sources, "sources"), _as_nodes(G, targets, "targets")
    try:
        order = list(nx.topological_sort(G))
    except nx.NetworkXUnfeasible as err:
        raise ValueError("path statistics need a directed acyclic graph; this graph has a cycle") from err
    index = {node: i for i, node in enumerate(order)}
    preds = [[index[u] for u in G.pred[node]] for node in order]
    result = propagate(preds, range(len(order)), {index[s] for s in sources}, histogram)
    return _collect(result, [index[t] for t in set(targets)], histogram)


def action_to_state(G, k, t, histogram=True):
    """path_stats(G, ("a", k), ("s", t)): the gradient paths by which action a_k reaches the prediction ŝ_t."""
    return path_stats(G, ("a", k), ("s", t), histogram)


def _collect(result, targets, histogram):
    reached = [v for v in targets if result.count[v]]
    hist = None
    if histogram:
        hist = {}
        for v in reached:
            for length, paths in enumerate(result.histogram[v]):
                if paths:
                    hist[length] = hist.get(length, 0) + paths
        hist = dict(sorted(hist.items()))
    return _stats(sum(result.count[v] for v in reached), sum(result.total[v] for v in reached),
                  max((result.longest[v] for v in reached), default=None),
                  min((result.shortest[v] for v in reached), default=None), hist)


def horizon_table(model_class, horizons, level="time", policy="closed", stop_gradient=True, layers=None):
    """For each horizon H, the gradient paths from the actions to the return: the table behind "exponential vs
    polynomial".

    One backward pass from J gives, for every a_k, the number, longest and mean length of its paths a_k -> J. Row
    (a dict): the settings, horizon, nodes, edges; paths = Σ_k #(a_k -> J), which equals #(θ -> J) since every
    θ -> J path starts with one edge θ -> a_k; log10_paths; longest = max_k of the longest a_k -> J path;
    mean_length = mean length over all those Σ_k #(a_k -> J) paths pooled (so dominated by the early actions in an
    exponential class); per action k = 1..H: paths_per_action, longest_per_action, mean_length_per_action.
    Same arguments and errors as `graph`; the DP runs on the graph's index lists, without building networkx objects.
    Returns a `gradlens.tables.Table` (a list of the rows that prints as a compact summary).
    """
    rows = Table()
    for horizon in horizons:
        sk = skeleton(model_class, horizon, level, policy, stop_gradient, layers)
        n = len(sk.names)
        back = propagate(sk.successors(), range(n - 1, -1, -1), {sk.index[("J",)]}, histogram=False)
        actions = [sk.index[("a", k)] for k in range(1, int(horizon) + 1)]
        per_count = [back.count[a] for a in actions]
        paths = sum(per_count)
        rows.append({
            **sk.meta,
            "nodes": n,
            "edges": sum(map(len, sk.preds)),
            "paths": paths,
            "log10_paths": math.log10(paths),
            "longest": max(back.longest[a] for a in actions),
            "mean_length": sum(back.total[a] for a in actions) / paths,
            "paths_per_action": per_count,
            "longest_per_action": [back.longest[a] for a in actions],
            "mean_length_per_action": [back.total[a] / back.count[a] for a in actions],
        })
    return rows
