"""The custom-model example of docs/models.md runs, registers, and behaves as the model it claims to be."""
import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradlens as gl
import gradlens.models as gm
from gradlens.analysis import paths
from gradlens.envs.linear import matrices

DOC = pathlib.Path(__file__).resolve().parents[1] / "docs" / "models.md"


def _example() -> str:
    text = DOC.read_text()
    match = re.search(r"<!-- example: custom-model -->\s*```python\n(.*?)```", text, re.S)
    assert match, "docs/models.md lost its custom-model example"
    return match.group(1)


def test_documented_custom_model(monkeypatch):
    monkeypatch.setattr(gm, "_FACTORIES", dict(gm._FACTORIES))  # undo the registration afterwards
    monkeypatch.setattr(gm, "_STRUCTURES", dict(gm._STRUCTURES))
    namespace = {}
    exec(compile(_example(), str(DOC), "exec"), namespace)
    model, params, system, traj = (namespace[k] for k in ("model", "params", "system", "traj"))
    assert "linear-awm" in gm.names() and model.reads_states is False and model.config.input_scale == 0.5
    assert traj.states.shape == (11, system.obs_dim) and np.all(np.isfinite(namespace["grad"]))

    # with the system's own matrices the model IS the system: its rollout equals the true one
    A, B = matrices(system)
    true_params = {"linear_awm/~/M": {"w": A.T}, "linear_awm/~/N": {"w": B.T}}
    assert jax.tree_util.tree_structure(true_params) == jax.tree_util.tree_structure(params)
    actions = jax.random.uniform(jax.random.PRNGKey(1), (10, 1), minval=-1, maxval=1)
    s1 = system.initial_state()
    expected = gl.rollout(system, actions, s1).states
    np.testing.assert_allclose(gl.rollout((model, true_params), actions, s1).states, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.teacher_forced(true_params, expected, actions), expected, rtol=1e-5, atol=1e-6)
    # an AWM: the states handed to transition are never read
    dyn = model.bind(params)
    carry = dyn.reset(s1, 10)
    np.testing.assert_array_equal(dyn.transition(carry, s1, actions[0])[1],
                                  dyn.transition(carry, s1 + 1.0, actions[0])[1])
    # the wrapper's validation applies to user models too
    try:
        model.predict(params, s1, jnp.zeros((11, 1)))
    except ValueError as err:
        assert "linear-awm: horizon must be an integer in [1, 10]" in str(err)
    else:
        raise AssertionError("a horizon beyond max_horizon was accepted")


def test_a_registered_structure_gives_the_gradient_graph(monkeypatch):
    """The path builders read a model's structure from the model registry: a user model registered as a one-layer
    recurrent AWM has awm-rnn's graph at both levels; one registered without a structure has none."""
    monkeypatch.setattr(gm, "_FACTORIES", dict(gm._FACTORIES))
    monkeypatch.setattr(gm, "_STRUCTURES", dict(gm._STRUCTURES))
    gm.register("toy-awm", lambda system: None, structure=gm.Structure("awm", "rnn", paper_layers=1))
    assert gm.structure("toy-awm") == gm.structure("awm-rnn") and "toy-awm" in gm.structures()
    for level in ("time", "architecture"):
        toy, reference = (paths.graph(name, 6, level=level) for name in ("toy-awm", "awm-rnn"))
        assert set(toy.edges) == set(reference.edges) and toy.graph["layers"] == reference.graph["layers"]
    assert paths.closed_form("toy-awm", 4, level="architecture", layers=3) == paths.closed_form(
        "awm-rnn", 4, level="architecture", layers=3)
    gm.register("toy-awm", lambda system: None, overwrite=True)  # no structure now: no graph
    assert gm.structure("toy-awm") is None
    with pytest.raises(ValueError, match="unknown model class 'toy-awm'"):
        paths.graph("toy-awm", 3)
    with pytest.raises(ValueError, match="network of a markov model must be one of mlp"):
        gm.Structure("markov", "rnn", 1)
    with pytest.raises(ValueError, match="structure kind must be one of markov, hwm, awm"):
        gm.Structure("gru", "rnn", 1)
