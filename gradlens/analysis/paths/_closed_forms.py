"""Closed forms for the paths a_k -> ŝ_{k+d} (derivations in docs/paths.md).

Every closed form is a length generating function P(x) = Σ_m (number of paths of length m) x^m, expanded here with
integer polynomial arithmetic (lists of coefficients, index = exponent); P(1) is the count.
"""
import math

from gradlens.analysis.paths._builders import check_settings, structure
from gradlens.analysis.paths._counting import stats_from_histogram

# Time-step level, d = t - k >= 1: P(x) = x^b q(x)^(d-1). Key: (kind, time-level network, feedback), feedback =
# closed loop without stop-gradient; at this level an SSM is a recurrent network ("rnn") and the simulator a Markov
# step. Value: (b, exponents of the monomials of q); the count is (number of monomials)^(d-1).
TIME_STEP_FORMS = {
    ("markov", "mlp", False): (1, (1,)),  # one path, length d
    ("markov", "mlp", True): (1, (1, 2)),  # each hop ŝ_j -> ŝ_{j+1} direct or via a_j: 2^(d-1)
    ("hwm", "transformer", False): (1, (0, 1)),  # each intermediate ŝ_j skipped or visited: 2^(d-1)
    ("hwm", "transformer", True): (1, (0, 1, 2)),  # ... or visited then its action a_j: 3^(d-1)
    ("awm", "transformer", False): (1, (0,)),  # one path, length 1
    ("awm", "transformer", True): (1, (0, 2)),  # each ŝ_j skipped or ŝ_j -> a_j: 2^(d-1)
    ("hwm", "rnn", False): (2, (1, 2)),  # each hop h_j -> h_{j+1} direct or via ŝ_{j+1}: 2^(d-1)
    ("hwm", "rnn", True): (2, (1, 2, 3)),  # ... or via ŝ_{j+1} -> a_{j+1}: 3^(d-1)
    ("awm", "rnn", False): (2, (1,)),  # one path, length d + 1
    ("awm", "rnn", True): (2, (1, 3)),  # each hop direct or via ŝ_{j+1} -> a_{j+1}: 2^(d-1)
}

# Architecture level, AWM stacks (open loop or stop-gradient), positional gap g = d - 1 between token k and the
# output position t - 1. A layer either keeps the position (routes σ(x)) or moves it forward by g_l >= 1 (routes
# x^(a g_l + c) ν(x)); with j moving layers: P(x) = x^2 Σ_j C(L, j) C(g-1, j-1) x^(a g + c j) ν(x)^j σ(x)^(L-j).
# Key: the network. Value: (a, c, ν, σ).
LAYER_FORMS = {
    "rnn": (1, 1, [1], [0, 1]),  # stay: up one layer; move: up, then g_l steps along the layer
    "transformer": (0, 3, [1, 1], [0, 0, 1, 2, 1]),  # stay: (residual | attention)(skip | MLP) = (x + x^2)^2
    "ssm": (1, 3, [1], [0, 1, 1, 1]),  # stay: residual | D skip | state; move: u -> z ... z -> y -> x
}


def _mul(p, q):
    out = [0] * (len(p) + len(q) - 1)
    for i, a in enumerate(p):
        if a:
            for j, b in enumerate(q):
                out[i + j] += a * b
    return out


def _add(p, q):
    p, q = (p, q) if len(p) >= len(q) else (q, p)
    return [a + b for a, b in zip(p, q + [0] * (len(p) - len(q)))]


def _pow(p, n):
    out = [1]
    for _ in range(n):
        out = _mul(out, p)
    return out


def _monomial(m):
    return [0] * m + [1]


def _compositions(g, j):
    """Number of ways to write g as an ordered sum of j positive integers."""
    return int(g == j == 0) if j == 0 else (math.comb(g - 1, j - 1) if g >= j else 0)


def _polynomial(model_class, d, level, feedback, layers):
    shape = structure(model_class)
    if level == "time" or shape is None:
        kind, network = ("markov", "mlp") if shape is None else (shape.kind, shape.network)
        b, exponents = TIME_STEP_FORMS[(kind, "rnn" if network == "ssm" else network, feedback)]
        q = [0] * (max(exponents) + 1)
        for e in exponents:
            q[e] = 1
        return _mul(_monomial(b), _pow(q, d - 1))
    if shape.kind == "markov":  # hop ŝ_j -> ŝ_{j+1}: residual x, MLP x^(L+2), and with feedback a_j: x^(L+3)
        q = _monomial(layers + 2)
        q[1] = 1
        if feedback:
            q.append(1)
        return _mul(_monomial(layers + 2), _pow(q, d - 1))
    if feedback or shape.kind != "awm":
        raise ValueError(
            f"no closed form for {model_class!r} at architecture level"
            f"{' with a closed-loop policy without stop-gradient' if feedback else ''}: predictions re-enter the "
            "network, so the count is a renewal sum over the re-entry points (docs/paths.md); use "
            "path_stats(graph(...)) instead")
    a, c, nu, sigma = LAYER_FORMS[shape.network]
    g = d - 1
    total = [0]
    for j in range(min(layers, g) + 1):
        weight = math.comb(layers, j) * _compositions(g, j)
        if weight:
            term = _mul(_monomial(2 + a * g + c * j), _mul(_pow(nu, j), _pow(sigma, layers - j)))
            total = _add(total, [weight * x for x in term])
    return total


def closed_form(model_class, d, level="time", policy="closed", stop_gradient=True, layers=None):
    """Closed-form PathStats of the paths a_k -> ŝ_{k+d} (d >= 1; the same for every k, and for every horizon
    H >= k + d - 1), for the gradient graph `graph(model_class, H, level, policy, stop_gradient, layers)`.

    Time-step level, every class: P(x) = x^b q(x)^(d-1) (TIME_STEP_FORMS), so the count is r^(d-1) with r the number
    of routes per intermediate step: 1 (markov, awm-*), 2 (hwm-*; markov and awm-* in full closed loop), 3 (hwm-* in
    full closed loop). E.g. hwm-transformer with stop-gradient has C(d-1, m) paths of length m + 1.
    Architecture level (L = layers): markov 2^(d-1) (3^(d-1) in full closed loop), the residual skipping or
    entering the MLP at each step; AWM stacks with stop-gradient or open loop, a polynomial in d of degree L - 1
    (LAYER_FORMS), e.g. awm-rnn C(d+L-2, L-1) paths, all of length d + L + 1, and awm-transformer
    Σ_{j>=1} C(L, j) C(d-2, j-1) 2^j 4^(L-j) paths (4^L for d = 1), none longer than 4L + 2 whatever d. hwm-* at
    architecture level, and AWM stacks in full closed loop, have no closed form (a renewal sum, docs/paths.md):
    ValueError; count them with path_stats.
    """
    layers = check_settings(model_class, 1, level, policy, layers)
    if isinstance(d, bool) or not isinstance(d, int) or d < 1:
        raise ValueError(f"d = t - k must be an integer >= 1 (a_k reaches only later states), got {d!r}")
    feedback = policy == "closed" and not stop_gradient
    poly = _polynomial(model_class, d, level, feedback, layers)
    return stats_from_histogram(dict(enumerate(poly)))
