"""Input checks for every config and entry point: each rule is written once here, and each failure is a ValueError
naming the quantity, what is allowed and the value given.

Imports nothing from gradlens, so any module (the systems included) can use it. Array checks leave traced values
(under jit / grad / vmap) unchecked: only concrete arrays can be inspected.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import jax
import numpy as np


def _fail(what: str, allowed: str, value) -> None:
    raise ValueError(f"{what} must be {allowed}, got {value!r}")


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def integer(value, what: str, low: int = 1, high: int | None = None, why: str = ""):
    """`value` if it is an integer in [low, high] (`high` None: no upper bound); `why` explains the bounds."""
    if not (_is_int(value) and value >= low and (high is None or value <= high)):
        allowed = (f"an integer in [{low}, {high}]" if high is not None else
                   "a positive integer" if low == 1 else f"an integer >= {low}")
        _fail(what, allowed + (f" ({why})" if why else ""), value)
    return value


def horizon(value, what: str = "horizon", high: int | None = None, low: int = 1, why: str = ""):
    """A horizon H (steps per episode): an integer in [low, high]; `why` names where the bounds come from."""
    return integer(value, what, low, high, why)


def seed(value, what: str = "seed"):
    """A PRNG seed: an integer >= 0."""
    return integer(value, what, 0)


def positive_int(value, what: str):
    """`value` if it is a positive integer (a count, a size, a period)."""
    return integer(value, what, 1)


def seed_count(value, what: str = "seeds"):
    """A number of seeds trained together: a positive integer."""
    return positive_int(value, what)


def positive(value, what: str, integer: bool = False, or_none: bool = False):
    """`value` if it is a positive finite number (a positive integer with `integer`), or None with `or_none`."""
    if or_none and value is None:
        return value
    if integer:
        return positive_int(value, what)
    if not (_is_number(value) and value > 0):
        _fail(what, "a positive finite number" + (" or None" if or_none else ""), value)
    return value


def finite(value, what: str, low: float | None = None):
    """`value` if it is a finite number (>= `low` unless `low` is None)."""
    if not (_is_number(value) and (low is None or value >= low)):
        _fail(what, "a finite number" + ("" if low is None else f" >= {low:g}"), value)
    return value


def probability(value, what: str):
    """`value` if it is a number in [0, 1]."""
    if not (_is_number(value) and 0 <= value <= 1):
        _fail(what, "a probability in [0, 1]", value)
    return value


def discount(value, what: str = "discount"):
    """A discount γ on a return: a number in (0, 1]; 1 is the paper's undiscounted return."""
    if not (_is_number(value) and 0 < value <= 1):
        _fail(what, "a number in (0, 1] (1: the paper's undiscounted return)", value)
    return value


def truncation(value, what: str = "truncate"):
    """A truncation period K of backpropagation through time: None (never) or an integer >= 1."""
    if value is not None:
        integer(value, what, why="stop the gradient every K steps; None: never")
    return value


def flag(value, what: str):
    """`value` if it is a bool."""
    if not isinstance(value, bool):
        _fail(what, "true or false", value)
    return value


def positive_ints(value, what: str) -> tuple[int, ...]:
    """A non-empty list of positive integers (e.g. hidden layer widths), as a tuple."""
    if isinstance(value, str) or not isinstance(value, Sequence) or not value or not all(map(_is_int, value)) \
            or min(value) < 1:
        _fail(what, "a non-empty list of positive integers", value)
    return tuple(value)


def name(value, allowed: Sequence[str], what: str) -> str:
    """`value` if it is one of the registered names `allowed` (e.g. systems, methods)."""
    if not (isinstance(value, str) and value in allowed):
        raise ValueError(f"unknown {what} {value!r}; valid {what}s: {', '.join(allowed)}")
    return value


def one_of(value, allowed: Sequence, what: str):
    """`value` if it is one of the option values `allowed`."""
    if not any(value == option and type(value) is type(option) for option in allowed):
        _fail(what, f"one of {', '.join(map(str, allowed))}", value)
    return value


def is_concrete(x) -> bool:
    """True for values that can be inspected now (not traced under jit / grad / vmap)."""
    return not isinstance(x, jax.core.Tracer)


def finite_array(x, what: str) -> None:
    """ValueError if a concrete array holds NaN or Inf."""
    if is_concrete(x) and not bool(np.all(np.isfinite(np.asarray(x)))):
        raise ValueError(f"{what} must be finite, got {np.asarray(x)!r}")


def action_bounds(actions, what: str) -> None:
    """ValueError if a concrete action array leaves [-1, 1] (where every system's control range is mapped)."""
    if not is_concrete(actions):
        return
    values = np.asarray(actions)
    if values.size and np.abs(values).max() > 1.0:
        worst = values.flat[int(np.abs(values).argmax())]
        raise ValueError(f"{what} must lie in [-1, 1] (each system maps [-1, 1] onto its control range), "
                         f"got {float(worst)!r}")


def shape(x, expected: tuple[int, ...], what: str) -> None:
    """ValueError unless `x` has exactly the shape `expected`."""
    if tuple(np.shape(x)) != tuple(expected):
        raise ValueError(f"{what} must have shape {tuple(expected)}, got {tuple(np.shape(x))}")
