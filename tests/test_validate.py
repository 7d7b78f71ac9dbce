"""gradlens.validate: each rule rejects a bad value with a ValueError naming the quantity, what is allowed and the
value, and passes a good one through."""
import ast
import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gradlens import validate


@pytest.mark.parametrize("check, bad, message", [
    (lambda v: validate.horizon(v), 0, "horizon must be a positive integer, got 0"),
    (lambda v: validate.horizon(v), 2.0, "horizon must be a positive integer, got 2.0"),
    (lambda v: validate.horizon(v), True, "horizon must be a positive integer, got True"),
    (lambda v: validate.horizon(v, high=50, why="the system's horizon"), 51,
     "horizon must be an integer in [1, 50] (the system's horizon), got 51"),
    (lambda v: validate.horizon(v, "one_bounce: horizon", low=2, why="launch step + terminal step"), 1,
     "one_bounce: horizon must be an integer >= 2 (launch step + terminal step), got 1"),
    (lambda v: validate.seed(v), -1, "seed must be an integer >= 0, got -1"),
    (lambda v: validate.seed_count(v), 0, "seeds must be a positive integer, got 0"),
    (lambda v: validate.positive_int(v, "model_batch"), "8", "model_batch must be a positive integer, got '8'"),
    (lambda v: validate.positive(v, "policy_lr"), 0.0, "policy_lr must be a positive finite number, got 0.0"),
    (lambda v: validate.positive(v, "policy_lr"), float("inf"), "policy_lr must be a positive finite number, got inf"),
    (lambda v: validate.positive(v, "simulator_grad_clip", or_none=True), 0,
     "simulator_grad_clip must be a positive finite number or None, got 0"),
    (lambda v: validate.finite(v, "noise_std", low=0), -0.5, "noise_std must be a finite number >= 0, got -0.5"),
    (lambda v: validate.finite(v, "entropy_coef"), float("nan"), "entropy_coef must be a finite number, got nan"),
    (lambda v: validate.probability(v, "sac discount"), 1.5, "sac discount must be a probability in [0, 1], got 1.5"),
    (lambda v: validate.flag(v, "remat"), "yes", "remat must be true or false, got 'yes'"),
    (lambda v: validate.positive_ints(v, "sac hidden"), (64, 0), "sac hidden must be a non-empty list of positive "
                                                                 "integers, got (64, 0)"),
    (lambda v: validate.positive_ints(v, "sac hidden"), (), "sac hidden must be a non-empty list of positive "
                                                            "integers, got ()"),
    (lambda v: validate.name(v, ["cancer", "linear"], "system"), "pendulum",
     "unknown system 'pendulum'; valid systems: cancer, linear"),
    (lambda v: validate.name(v, ["cancer", "linear"], "system"), 3, "unknown system 3; valid systems: cancer, linear"),
    (lambda v: validate.one_of(v, ("stop", "zero"), "nonfinite_policy_grad"), "skip",
     "nonfinite_policy_grad must be one of stop, zero, got 'skip'"),
    (lambda v: validate.finite_array(v, "action"), jnp.array([0.0, jnp.nan]), "action must be finite"),
    (lambda v: validate.action_bounds(v, "action"), np.array([0.5, -2.0]), "action must lie in [-1, 1] (each system "
                                                                           "maps [-1, 1] onto its control range), "
                                                                           "got -2.0"),
    (lambda v: validate.shape(v, (3,), "state"), np.zeros(2), "state must have shape (3,), got (2,)"),
])
def test_each_rule_names_the_bad_value_and_what_is_allowed(check, bad, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        check(bad)


def test_good_values_pass_through():
    assert validate.horizon(np.int64(5), high=5) == 5 and validate.seed(0) == 0 and validate.seed_count(3) == 3
    assert validate.positive(None, "x", or_none=True) is None
    assert validate.positive(np.float32(0.5), "x") == 0.5 and validate.probability(1, "p") == 1
    assert validate.positive_ints([64, 64], "hidden") == (64, 64) and validate.one_of("zero", ("stop", "zero"), "x")
    assert validate.name("linear", ["linear"], "system") == "linear" and validate.finite(-1.0, "x") == -1.0
    jax.jit(lambda a: validate.finite_array(a, "traced") or a)(jnp.array([jnp.nan]))  # tracers pass unchecked


def test_validate_imports_nothing_from_gradlens():
    """Any module, the systems included, can import it without a cycle."""
    tree = ast.parse((Path(validate.__file__)).read_text())
    imported = [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    imported += [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    assert imported and not [name for name in imported if name.split(".")[0] == "gradlens"]
