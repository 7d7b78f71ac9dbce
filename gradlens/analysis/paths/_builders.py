"""Builders of the unrolled gradient graph of each model class, at time-step and at architecture level.

Glossary: H horizon (actions a_1..a_H, states s_1..s_{H+1}, rewards r_1..r_H); L layers; p position in a sequence
model (token 0 holds s_1, token p holds a_p, or [ŝ_p, a_p] for a history model); l layer (0 = token embedding).

Every builder fills a `Skeleton`: nodes in topological order with, for each node, the indices of its direct inputs.
`graph` turns it into a networkx.DiGraph; the counting code runs on either, with identical results.
"""
import dataclasses
import numbers

import networkx as nx

from gradlens import models

SIMULATOR = "simulator"  # the true system: a Markov step with no network
# The classes registered at import (the built-in ones); `graph` also takes a model registered later with a structure.
MODEL_CLASSES = (*models.structures(), SIMULATOR)
LEVELS = ("time", "architecture")
POLICIES = ("open", "closed")


@dataclasses.dataclass
class Skeleton:
    """A gradient graph as index lists: `names[i]` is node i, `preds[i]` the indices of its direct inputs, and every
    node comes after its inputs (so range(len(names)) is a topological order)."""

    names: list = dataclasses.field(default_factory=list)  # node names, e.g. ("s", 3), ("x", 1, 3)
    attrs: list = dataclasses.field(default_factory=list)  # dicts: kind, time, layer, label
    preds: list = dataclasses.field(default_factory=list)  # list[list[int]]
    index: dict = dataclasses.field(default_factory=dict)  # name -> index
    meta: dict = dataclasses.field(default_factory=dict)  # the arguments that built it (becomes G.graph)

    def add(self, name, kind, time, label, preds, layer=None):
        """Append node `name` computed directly from the nodes at indices `preds`; return its index."""
        self.index[name] = len(self.names)
        self.names.append(name)
        self.attrs.append({"kind": kind, "time": time, "layer": layer, "label": label})
        self.preds.append(preds)
        return self.index[name]

    def successors(self):
        """succ[i]: indices of the nodes computed directly from node i."""
        succ = [[] for _ in self.names]
        for v, inputs in enumerate(self.preds):
            for u in inputs:
                succ[u].append(v)
        return succ


def check_choice(value, name, choices):
    """Raise ValueError unless `value` is one of `choices`."""
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; choose one of: {', '.join(map(str, choices))}")


def structure(model_class):
    """The model registry's `models.Structure` of `model_class` (None for the simulator). ValueError, listing the
    classes, for a name that is not the simulator or a model registered with a structure."""
    found = models.structures()
    check_choice(model_class, "model class", (*found, SIMULATOR))
    return found.get(model_class)


def check_settings(model_class, horizon, level, policy, layers):
    """Validate the arguments of `graph`; return the depth to use (None where the graph has no layers)."""
    shape = structure(model_class)
    check_choice(level, "level", LEVELS)
    check_choice(policy, "policy", POLICIES)
    if isinstance(horizon, bool) or not isinstance(horizon, numbers.Integral) or horizon < 1:
        raise ValueError(f"horizon must be an integer >= 1, got {horizon!r}")
    if level == "time" or shape is None:
        return None
    if layers is None:
        return shape.paper_layers
    if isinstance(layers, bool) or not isinstance(layers, numbers.Integral) or layers < 1:
        raise ValueError(f"layers must be an integer >= 1 (or None for the paper's depth), got {layers!r}")
    return int(layers)


def skeleton(model_class, horizon, level="time", policy="closed", stop_gradient=True, layers=None):
    """The gradient graph of `graph` as a `Skeleton` (same nodes, edges and attributes, no networkx)."""
    layers = check_settings(model_class, horizon, level, policy, layers)
    horizon = int(horizon)
    feedback = policy == "closed" and not stop_gradient  # edge ŝ_t -> a_t carries gradient
    sk = Skeleton(meta={"model_class": model_class, "horizon": horizon, "level": level, "policy": policy,
                        "stop_gradient": bool(stop_gradient), "layers": layers})
    theta = sk.add(("theta",), "param", None, "θ", [])
    s_t = sk.add(("s", 1), "state", 1, "s_1", [])
    shape = structure(model_class)
    step = _time_step(sk, s_t, shape) if layers is None else _arch_step(sk, s_t, shape, layers)
    hat = "s" if model_class == SIMULATOR else "ŝ"
    rewards = []
    for t in range(1, horizon + 1):
        a_t = sk.add(("a", t), "action", t, f"a_{t}", [theta, s_t] if feedback else [theta])
        rewards.append(sk.add(("r", t), "reward", t, f"r_{t}", [s_t, a_t]))
        s_t = sk.add(("s", t + 1), "state", t + 1, f"{hat}_{t + 1}", step(t, s_t, a_t))
    sk.add(("J",), "return", None, "J", rewards)
    return sk


def graph(model_class, horizon, level="time", policy="closed", stop_gradient=True, layers=None):
    """The unrolled gradient graph of a model class over `horizon` steps, as a networkx.DiGraph.

    An edge u -> v means v is computed directly from u and gradient flows along it. Nodes at both levels:
    ("theta",) the policy parameters, ("s", t) t = 1..H+1 (("s", 1) is the true s_1, later ones predictions),
    ("a", t) and ("r", t) t = 1..H with r_t = r(ŝ_t, a_t), ("J",) = Σ_t r_t. Edges θ -> a_t; ŝ_t -> a_t only for a
    closed-loop policy without stop-gradient (with stop-gradient, as in the paper's code, the gradient graphs of
    open and closed loop coincide). The model's own nodes:

    level="time": markov / simulator ŝ_t, a_t -> ŝ_{t+1}. hwm-transformer ŝ_j, a_j -> ŝ_{t+1} for all j <= t.
    awm-transformer s_1, a_j -> ŝ_{t+1} for all j <= t. RNN and SSM classes carry their hidden state ("h", t),
    t = 0..H: s_1 -> h_0, h_{t-1} -> h_t, a_t -> h_t (hwm-rnn also ŝ_t -> h_t), h_t -> ŝ_{t+1}; at this level
    awm-ssm (the stack's state merged into h_t) equals awm-rnn.
    level="architecture" (`layers` L, None = the paper's depth, `models.structure(model_class).paper_layers`):
    ("x", l, p) is the residual stream /
    hidden state after layer l at position p, ("x", 0, p) the token embedding (kind "token"):
    - transformer (GPT-2 block): ("attn", l, p) <- x_{l-1,q} for all q <= p; ("mid", l, p) <- x_{l-1,p} (residual),
      attn_{l,p}; ("mlp", l, p) <- mid_{l,p}; x_{l,p} <- mid_{l,p} (residual), mlp_{l,p}. Residual and attention to
      self are distinct routes; decoder x_{L,t} -> ŝ_{t+1}.
    - rnn: x_{l,p} <- x_{l-1,p}, x_{l,p-1} (an LSTM's cell and hidden state merged into one node).
    - ssm (S4 layer): state ("z", l, p) <- x_{l-1,p}, z_{l,p-1}; output ("y", l, p) = C z + D u <- z_{l,p},
      x_{l-1,p}; x_{l,p} <- y_{l,p}, x_{l-1,p} (residual).
    - markov (residual MLP ŝ_{t+1} = ŝ_t + f(ŝ_t, a_t)): ("x", 0, t) <- ŝ_t, a_t; x_{l,t} <- x_{l-1,t};
      ŝ_{t+1} <- x_{L,t}, ŝ_t.
    - simulator: no network, the time-step graph.
    Tokens: s_1 -> x_{0,0}; a_p -> x_{0,p}, and for hwm-* also ŝ_p -> x_{0,p}.

    Node attributes: kind ("param", "state", "action", "reward", "return", "hidden", "token"), time (t, or the
    position p; None for θ and J), layer (None at time level), label (a short string for drawing). G.graph holds
    the arguments (layers None where the graph has no network layers). Raises ValueError on an unknown class, level
    or policy, horizon < 1, or layers < 1.
    """
    sk = skeleton(model_class, horizon, level, policy, stop_gradient, layers)
    G = nx.DiGraph(**sk.meta)
    names = sk.names
    G.add_nodes_from(zip(names, sk.attrs))
    G.add_edges_from((names[u], names[v]) for v, inputs in enumerate(sk.preds) for u in inputs)
    return G


# Each step factory adds the model's nodes for the transition t -> t+1 and returns the inputs of ŝ_{t+1}.

def _time_markov(sk, s_1):
    return lambda t, s_t, a_t: [s_t, a_t]


def _time_history(sk, s_1):
    states, actions = [], []

    def step(t, s_t, a_t):
        states.append(s_t)
        actions.append(a_t)
        return states + actions

    return step


def _time_actions(sk, s_1):
    inputs = [s_1]

    def step(t, s_t, a_t):
        inputs.append(a_t)
        return list(inputs)

    return step


def _time_recurrent(sk, s_1, history):
    h = [sk.add(("h", 0), "hidden", 0, "h_0", [s_1])]

    def step(t, s_t, a_t):
        h.append(sk.add(("h", t), "hidden", t, f"h_{t}", [h[-1], s_t, a_t] if history else [h[-1], a_t]))
        return [h[-1]]

    return step


def _arch_sequence(sk, s_1, depth, layer, history):
    """A stack of `depth` blocks over positions 0..H; `layer` adds one block at one position."""
    xs = [[] for _ in range(depth + 1)]  # xs[l][p]: index of ("x", l, p)

    def position(p, token_inputs):
        xs[0].append(sk.add(("x", 0, p), "token", p, f"x0[{p}]", token_inputs, layer=0))
        for l in range(1, depth + 1):
            xs[l].append(layer(sk, l, p, xs))
        return [xs[depth][p]]

    position(0, [s_1])
    return lambda t, s_t, a_t: position(t, [s_t, a_t] if history else [a_t])


def _node(sk, part, l, p, inputs):
    return sk.add((part, l, p), "hidden", p, f"{part}{l}[{p}]", inputs, layer=l)


def _transformer_block(sk, l, p, xs):
    below = xs[l - 1]
    attn = _node(sk, "attn", l, p, below[:p + 1])
    mid = _node(sk, "mid", l, p, [below[p], attn])
    mlp = _node(sk, "mlp", l, p, [mid])
    return _node(sk, "x", l, p, [mid, mlp])


def _rnn_cell(sk, l, p, xs):
    return _node(sk, "x", l, p, [xs[l - 1][p]] + ([xs[l][p - 1]] if p else []))


def _ssm_layer(sk, l, p, xs):
    u = xs[l - 1][p]
    z = _node(sk, "z", l, p, [u] + ([sk.index[("z", l, p - 1)]] if p else []))
    y = _node(sk, "y", l, p, [z, u])
    return _node(sk, "x", l, p, [y, u])


def _arch_markov(sk, s_1, depth):
    def step(t, s_t, a_t):
        x = sk.add(("x", 0, t), "token", t, f"x0[{t}]", [s_t, a_t], layer=0)
        for l in range(1, depth + 1):
            x = _node(sk, "x", l, t, [x])
        return [x, s_t]

    return step


def _time_step(sk, s_1, shape):
    """The step factory of a class's time-step graph, from its structure (None: the simulator, a Markov step); an
    SSM's state is an RNN's hidden state at this level."""
    if shape is None or shape.kind == "markov":
        return _time_markov(sk, s_1)
    if shape.network == "transformer":
        return (_time_history if shape.kind == "hwm" else _time_actions)(sk, s_1)
    return _time_recurrent(sk, s_1, history=shape.kind == "hwm")


def _arch_step(sk, s_1, shape, depth):
    """The step factory of a class's architecture-level graph: a residual MLP, or a stack of `depth` layers."""
    if shape.kind == "markov":
        return _arch_markov(sk, s_1, depth)
    return _arch_sequence(sk, s_1, depth, _LAYERS[shape.network], history=shape.kind == "hwm")


_LAYERS = {"transformer": _transformer_block, "rnn": _rnn_cell, "ssm": _ssm_layer}
