"""The dynamics contract (`gradlens.dynamics`); the gradient the audit analyses is the one the trainer optimises."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradlens as gl
from gradlens.analysis.gradients import per_sample_gradients
from gradlens.dynamics import STEP_ONLY, Capabilities, Dynamics
from gradlens.rollout import as_dynamics
from gradlens.objective import DEFAULT_REVERSE, policy_gradient, reverse_mode
from gradlens.training.loop import TrainConfig

H, N = 8, 2
CAPABILITIES = {  # (open_loop, custom_reverse) each class declares
    "simulator": (False, False), "markov": (False, False), "hwm-rnn": (False, False),
    "hwm-transformer": (False, True), "awm-rnn": (True, False), "awm-transformer": (True, True),
    "awm-ssm": (True, False),
}


def _setup(name):
    """(system, static dynamics, dynamics params): a model's params are a traced argument, as in the trainer."""
    system = gl.envs.make("cancer", horizon=H)
    if name == "simulator":
        return system, system, None
    model = gl.models.make(name, system)
    return system, model, model.init(jax.random.PRNGKey(1))


def _pair(static, params):
    return static if params is None else (static, params)


@pytest.mark.parametrize("name", ["simulator", *gl.models.names()])
def test_every_dynamics_declares_its_capabilities(name):
    _, static, params = _setup(name)
    dyn = as_dynamics(_pair(static, params))
    assert isinstance(dyn, Dynamics)
    assert dyn.capabilities == Capabilities(*CAPABILITIES[name])
    if params is not None:
        assert as_dynamics(static.bind(params, recompute=True)).capabilities == STEP_ONLY


@pytest.mark.parametrize("name, policy_input_grad", [  # the defaults; and the transformers' custom reverse pass with
    *((name, "stop") for name in ["simulator", *gl.models.names()]),  # the policy reading the predicted state
    ("hwm-transformer", "full"), ("awm-transformer", "full")])
def test_audit_gradient_is_the_trainers_bit_for_bit(name, policy_input_grad):
    """The audit's per-sample gradients (`per_sample_gradients`) against the trainer's `policy_gradient` in its
    default reverse mode, from the same policy and model params, start states and rollout keys, both vmapped over
    the samples (vmapping itself changes float rounding)."""
    system, static, params = _setup(name)
    policy = gl.policies.make_policy("mlp", system, (16, 16))
    theta = policy.init(jax.random.PRNGKey(0))
    s1, key, entropy_coef = system.initial_state(), jax.random.PRNGKey(2), TrainConfig().entropy_coef
    assert reverse_mode(TrainConfig().remat) == DEFAULT_REVERSE  # the trainer's default is the analysis' mode

    audit = per_sample_gradients(_pair(static, params), policy, theta, s1, H, key, N, entropy_coef=entropy_coef,
                                 policy_input_grad=policy_input_grad)

    def trainer(theta, params, s, k):
        return policy_gradient(theta, policy, _pair(static, params), s[None], k, H, entropy_coef, policy_input_grad,
                               reverse_mode(TrainConfig().remat))[0]

    rollout_keys = jax.vmap(lambda k: jax.random.split(k, 3)[1])(jax.random.split(key, N))  # as the audit splits
    starts = jnp.broadcast_to(s1, (N, s1.shape[0]))
    grads = jax.jit(jax.vmap(trainer, in_axes=(None, None, 0, 0)))(theta, params, starts, rollout_keys)
    for a, b in zip(jax.tree.leaves(audit), jax.tree.leaves(grads)):
        np.testing.assert_array_equal(a, b)
    assert any(float(np.abs(g).max()) > 0 for g in jax.tree.leaves(grads))


def test_the_audits_first_order_gradient_is_compiled_as_the_trainers():
    """The audit compiles its first-order gradient with XLA's defaults, as the trainer's (a plain `jax.jit`), and only
    its zeroth-order estimate as a one-shot program (`jit_once`). The bit-for-bit test above checks this through the
    numbers when the options differ, which they do not in this suite (conftest.py: one optimisation level for all)."""
    from gradlens.analysis import gradients

    system = gl.envs.make("cancer", horizon=H)
    policy = gl.policies.make_policy("mlp", system, (16, 16))
    args = (policy, system, False, H, 0.0, "stop", 0.0, 0.1, True, 1.0, None)
    plain = type(jax.jit(lambda x: x))
    assert isinstance(gradients._estimator("first-order", *args), plain)
    assert not isinstance(gradients._estimator("zeroth-order", *args), plain)
