"""Gradient paths: DP counts against closed forms, brute-force enumeration and a renewal recurrence."""
import itertools
import math

import networkx as nx
import plotly.graph_objects as go
import pytest

from gradlens.analysis.paths import (MODEL_CLASSES, PathStats, action_to_state, closed_form, graph, horizon_table,
                                     path_stats)
from gradlens.plots import path_counts_figure

# (policy, stop_gradient); ("open", False) must behave like ("open", True)
SETTINGS = [("open", True), ("open", False), ("closed", True), ("closed", False)]
AWM_STACKS = ["awm-rnn", "awm-transformer", "awm-ssm"]


def _feedback(policy, stop_gradient):
    return policy == "closed" and not stop_gradient


def _brute_force(G, source, target):
    """Length histogram of all paths source -> target, enumerated by networkx."""
    hist = {}
    for path in nx.all_simple_paths(G, source, target):
        hist[len(path) - 1] = hist.get(len(path) - 1, 0) + 1
    return dict(sorted(hist.items()))


def _convolve(p, q):
    out = {}
    for (i, a), (j, b) in itertools.product(p.items(), q.items()):
        out[i + j] = out.get(i + j, 0) + a * b
    return out


def _add(p, q):
    return {m: p.get(m, 0) + q.get(m, 0) for m in sorted(set(p) | set(q))}


# ---- time-step level: DP == closed form == brute force -------------------------------------------------------------

@pytest.mark.parametrize("model_class", MODEL_CLASSES)
@pytest.mark.parametrize("policy,stop_gradient", SETTINGS)
def test_time_level_dp_equals_closed_form_for_every_pair(model_class, policy, stop_gradient):
    G = graph(model_class, 12, policy=policy, stop_gradient=stop_gradient)
    for k in range(1, 13):
        for t in range(1, 14):
            stats = action_to_state(G, k, t)
            if t <= k:
                assert stats.count == 0 and stats.length_histogram == {}  # causality: no path to the past
            else:
                assert stats == closed_form(model_class, t - k, policy=policy, stop_gradient=stop_gradient)


@pytest.mark.parametrize("model_class", MODEL_CLASSES)
@pytest.mark.parametrize("policy,stop_gradient", SETTINGS)
def test_time_level_every_horizon_matches_closed_form_and_brute_force(model_class, policy, stop_gradient):
    for horizon in range(1, 13):
        G = graph(model_class, horizon, policy=policy, stop_gradient=stop_gradient)
        stats = action_to_state(G, 1, horizon + 1)
        assert stats == closed_form(model_class, horizon, policy=policy, stop_gradient=stop_gradient)
        if horizon <= 8:
            assert stats.length_histogram == _brute_force(G, ("a", 1), ("s", horizon + 1))
        if horizon <= 5:
            theta_to_return = path_stats(G, ("theta",), ("J",))
            assert theta_to_return.length_histogram == _brute_force(G, ("theta",), ("J",))


@pytest.mark.parametrize("model_class", MODEL_CLASSES)
@pytest.mark.parametrize("policy,stop_gradient", SETTINGS)
def test_paths_to_the_return_follow_from_the_closed_form(model_class, policy, stop_gradient):
    """#(a_k -> J) = 1 + ρ Σ_{d=1}^{H-k} N(d): a_k -> r_k, or a_k -> ŝ_t then ρ routes to r_t (ŝ_t -> r_t, and
    ŝ_t -> a_t -> r_t in full closed loop)."""
    rho = 2 if _feedback(policy, stop_gradient) else 1
    counts = [closed_form(model_class, d, policy=policy, stop_gradient=stop_gradient).count for d in range(1, 13)]
    for row in horizon_table(model_class, range(1, 13), policy=policy, stop_gradient=stop_gradient):
        H = row["horizon"]
        expected = [1 + rho * sum(counts[:H - k]) for k in range(1, H + 1)]
        assert row["paths_per_action"] == expected
        assert row["paths"] == sum(expected)


# ---- the paper's claims at time level ------------------------------------------------------------------------------

@pytest.mark.parametrize("policy", ["open", "closed"])
def test_awm_has_one_path_of_length_one_and_markov_one_of_length_d(policy):
    awm, markov = graph("awm-transformer", 12, policy=policy), graph("markov", 12, policy=policy)
    for k, t in itertools.combinations(range(1, 14), 2):
        assert action_to_state(awm, k, t).length_histogram == {1: 1}
        assert action_to_state(markov, k, t).length_histogram == {t - k: 1}


@pytest.mark.parametrize("model_class", ["hwm-transformer", "hwm-rnn"])
@pytest.mark.parametrize("stop_gradient,base", [(True, 2), (False, 3)])
def test_history_models_grow_exponentially(model_class, stop_gradient, base):
    G = graph(model_class, 12, stop_gradient=stop_gradient)
    counts = [action_to_state(G, 1, t, histogram=False).count for t in range(2, 14)]
    assert counts == [base ** (d - 1) for d in range(1, 13)]
    table = horizon_table(model_class, range(20, 61), stop_gradient=stop_gradient)
    errors = [abs(b["paths"] / a["paths"] - base) for a, b in zip(table, table[1:])]
    assert errors[-1] < 1e-9 and errors[-1] < errors[0]  # the ratio of successive totals tends to the base


def test_hwm_length_histogram_is_binomial():
    for d in range(1, 13):
        assert closed_form("hwm-transformer", d).length_histogram == {m + 1: math.comb(d - 1, m) for m in range(d)}


def test_counts_are_exact_beyond_float64():
    (row,) = horizon_table("hwm-rnn", [700], stop_gradient=False)
    assert row["paths"] > 10 ** 308 and isinstance(row["paths"], int)
    G = graph("hwm-rnn", 700, stop_gradient=False)
    stats = action_to_state(G, 1, 701, histogram=False)
    assert stats.count == 3 ** 699
    assert stats.log10_count == pytest.approx(699 * math.log10(3))


# ---- architecture level --------------------------------------------------------------------------------------------

ARCH_CLOSED = ([(c, "closed", True) for c in AWM_STACKS] + [(c, "open", False) for c in AWM_STACKS]
               + [("markov", "closed", True), ("markov", "closed", False), ("simulator", "closed", False)])


@pytest.mark.parametrize("model_class,policy,stop_gradient", ARCH_CLOSED)
@pytest.mark.parametrize("layers", [1, 2, 3])
def test_architecture_level_dp_equals_closed_form(model_class, policy, stop_gradient, layers):
    G = graph(model_class, 12, "architecture", policy, stop_gradient, layers)
    for k, t in itertools.combinations(range(1, 14), 2):
        expected = closed_form(model_class, t - k, "architecture", policy, stop_gradient, layers)
        assert action_to_state(G, k, t) == expected
    small = graph(model_class, 5, "architecture", policy, stop_gradient, layers)
    assert action_to_state(small, 1, 6).length_histogram == _brute_force(small, ("a", 1), ("s", 6))


@pytest.mark.parametrize("layers", [1, 2, 3, 4])
def test_awm_transformer_count_is_polynomial_and_length_bounded(layers):
    counts = [closed_form("awm-transformer", d, "architecture", layers=layers).count for d in range(2, 30)]
    differences = counts
    for _ in range(layers - 1):
        differences = [b - a for a, b in zip(differences, differences[1:])]
    assert len(set(differences)) == 1 and differences[0] > 0  # degree exactly L - 1 in d
    G = graph("awm-transformer", 30, "architecture", layers=layers)
    assert all(action_to_state(G, 1, t, histogram=False).longest <= 4 * layers + 2 for t in range(2, 32))
    assert closed_form("awm-transformer", 5, "architecture", layers=2).count == 4 * 4 + 12  # 4g + 12, g = d - 1


def test_awm_rnn_count_is_a_binomial_and_its_length_grows_with_d():
    for layers, d in itertools.product([1, 2, 3], range(1, 10)):
        assert closed_form("awm-rnn", d, "architecture", layers=layers).length_histogram == {
            d + layers + 1: math.comb(d + layers - 2, layers - 1)}


NO_CLOSED_FORM = ([(c, "closed", True) for c in ("hwm-rnn", "hwm-transformer")]
                  + [(c, "closed", False) for c in ("hwm-rnn", "hwm-transformer", *AWM_STACKS)])


@pytest.mark.parametrize("model_class,policy,stop_gradient", NO_CLOSED_FORM)
@pytest.mark.parametrize("layers", [1, 2])
def test_architecture_level_without_closed_form(model_class, policy, stop_gradient, layers):
    """Brute force, and the renewal recurrence N(d) = D(d) + Σ_{i<d} N(i) E(d-i) over the first re-entered
    prediction ŝ_{k+i}, with D the AWM stack's network paths and E = D (hwm, ŝ_j enters token j), (1 + x) D (hwm in
    full closed loop, directly or via a_j) or x D (awm in full closed loop, via a_j)."""
    with pytest.raises(ValueError, match="no closed form"):
        closed_form(model_class, 3, "architecture", policy, stop_gradient, layers)
    stack = model_class.replace("hwm", "awm")
    D = {d: closed_form(stack, d, "architecture", layers=layers).length_histogram for d in range(1, 8)}
    reentry = {(True, False): {0: 1}, (True, True): {0: 1, 1: 1}, (False, True): {1: 1}}[
        (model_class.startswith("hwm"), _feedback(policy, stop_gradient))]
    N = {}
    for d in range(1, 8):
        N[d] = D[d]
        for i in range(1, d):
            N[d] = _add(N[d], _convolve(N[i], _convolve(reentry, D[d - i])))
    G = graph(model_class, 7, "architecture", policy, stop_gradient, layers)
    for d in range(1, 8):
        assert action_to_state(G, 1, 1 + d).length_histogram == N[d]
    small = graph(model_class, 3, "architecture", policy, stop_gradient, layers)
    for k, t in itertools.combinations(range(1, 5), 2):
        assert action_to_state(small, k, t).length_histogram == _brute_force(small, ("a", k), ("s", t))


# ---- graph structure -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("model_class", MODEL_CLASSES)
@pytest.mark.parametrize("level", ["time", "architecture"])
def test_nodes_carry_drawing_attributes(model_class, level):
    G = graph(model_class, 4, level)
    assert nx.is_directed_acyclic_graph(G)
    assert G.graph["model_class"] == model_class and G.graph["horizon"] == 4 and G.graph["level"] == level
    for node, data in G.nodes(data=True):
        assert set(data) == {"kind", "time", "layer", "label"} and data["label"]
        assert (data["layer"] is None) == (level == "time" or data["kind"] not in ("hidden", "token"))
    kinds = {data["kind"] for _, data in G.nodes(data=True)}
    assert {"param", "state", "action", "reward", "return"} <= kinds
    assert {("s", t) for t in range(1, 6)} | {("a", t) for t in range(1, 5)} | {("theta",), ("J",)} <= set(G)
    assert G.in_degree(("s", 1)) == 0 and G.nodes[("s", 1)]["label"] == "s_1"


@pytest.mark.parametrize("model_class", MODEL_CLASSES)
def test_stop_gradient_removes_exactly_the_policy_input_edges(model_class):
    full = graph(model_class, 6, policy="closed", stop_gradient=False)
    stopped = graph(model_class, 6, policy="closed", stop_gradient=True)
    open_loop = graph(model_class, 6, policy="open", stop_gradient=False)
    assert set(full.edges) - set(stopped.edges) == {(("s", t), ("a", t)) for t in range(1, 7)}
    assert set(stopped.edges) == set(open_loop.edges) and set(stopped) == set(full)


def test_awm_never_feeds_its_predictions_back():
    for level in ("time", "architecture"):
        G = graph("awm-transformer", 6, level)
        for t in range(2, 8):
            assert all(G.nodes[v]["kind"] in ("reward", "state") for v in G.successors(("s", t)))


def test_table_matches_networkx_path_stats():
    for model_class, level in [("hwm-transformer", "time"), ("awm-ssm", "architecture"), ("markov", "time")]:
        (row,) = horizon_table(model_class, [7], level=level, stop_gradient=False)
        G = graph(model_class, 7, level, stop_gradient=False)
        stats = path_stats(G, ("theta",), ("J",), histogram=False)
        assert (row["paths"], row["longest"]) == (stats.count, stats.longest - 1)  # θ -> a_k adds one edge
        assert row["mean_length"] == pytest.approx(stats.mean_length - 1)
        per_action = [path_stats(G, ("a", k), ("J",)) for k in range(1, 8)]
        assert row["paths_per_action"] == [s.count for s in per_action]
        assert row["longest_per_action"] == [s.longest for s in per_action]
        assert row["mean_length_per_action"] == pytest.approx([s.mean_length for s in per_action])
        assert (row["nodes"], row["edges"]) == (G.number_of_nodes(), G.number_of_edges())


def test_path_stats_on_node_sets_and_arbitrary_dags():
    G = graph("hwm-transformer", 5)
    actions = [("a", k) for k in range(1, 6)]
    together = path_stats(G, actions, {("s", 6), ("s", 5)})
    separately = [action_to_state(G, k, t) for k in range(1, 6) for t in (5, 6)]
    assert together.count == sum(s.count for s in separately)
    assert path_stats(G, ("s", 3), ("s", 3)).length_histogram == {0: 1}
    diamond = nx.DiGraph([("u", "v"), ("u", "w"), ("v", "x"), ("w", "x"), ("u", "x")])
    assert path_stats(diamond, "u", "x") == PathStats(3, math.log10(3), {1: 1, 2: 2}, 1, 2, 5 / 3)
    assert path_stats(diamond, "x", "u").count == 0 and math.isnan(path_stats(diamond, "x", "u").mean_length)


# ---- bad input -----------------------------------------------------------------------------------------------------

def test_bad_input_raises_with_the_valid_choices():
    with pytest.raises(ValueError, match="unknown model class 'gpt'.*markov, hwm-rnn, .*simulator"):
        graph("gpt", 4)
    for horizon in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="horizon must be an integer >= 1"):
            graph("markov", horizon)
    with pytest.raises(ValueError, match="unknown level 'layer'; choose one of: time, architecture"):
        graph("markov", 4, level="layer")
    with pytest.raises(ValueError, match="unknown policy 'greedy'; choose one of: open, closed"):
        graph("markov", 4, policy="greedy")
    with pytest.raises(ValueError, match="layers must be an integer >= 1"):
        graph("awm-transformer", 4, "architecture", layers=0)
    with pytest.raises(ValueError, match="horizon must be"):
        horizon_table("markov", [4, 0])
    G = graph("markov", 8)
    valid = r"\('theta',\), \('s', 1\.\.9\), \('a', 1\.\.8\), \('r', 1\.\.8\), \('J',\)"
    with pytest.raises(ValueError, match=r"\('s', 99\) is not in the graph; its 27 nodes are " + valid):
        action_to_state(G, 1, 99)
    with pytest.raises(ValueError, match="targets node 'J'"):
        path_stats(G, ("theta",), "J")
    with pytest.raises(ValueError, match="sources is empty"):
        path_stats(G, [], ("J",))
    with pytest.raises(ValueError, match="d = t - k must be an integer >= 1"):
        closed_form("markov", 0)
    with pytest.raises(ValueError, match="has a cycle"):
        path_stats(nx.DiGraph([(1, 2), (2, 1)]), 1, 2)


# ---- figure --------------------------------------------------------------------------------------------------------

def test_path_counts_figure_has_log_axes():
    table = horizon_table("hwm-transformer", [2, 8, 32, 700], stop_gradient=False) + horizon_table(
        "awm-transformer", [2, 8, 32, 700])
    fig = path_counts_figure(table)
    assert isinstance(fig, go.Figure)
    assert fig.layout.xaxis.type == "log" and fig.layout.xaxis2.type == "log" and fig.layout.yaxis2.type == "log"
    assert fig.layout.yaxis.tickprefix == "1e"  # count axis in decades: 3^699 does not fit in a float
    counts = [trace for trace in fig.data if trace.xaxis == "x"]
    assert [trace.name for trace in counts] == ["hwm-transformer, full closed loop", "awm-transformer"]
    assert list(counts[0].y) == [row["log10_paths"] for row in table[:4]]
