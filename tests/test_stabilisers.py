"""The BPO stabilisers of issue 21, each on a case with a known answer: truncation cuts exactly the gradient paths
the truncated graph loses, the discount weights the rewards by γ^t, clipping caps the norm Adam sees, and the
natural-gradient step differs from Adam's yet climbs a concave toy objective (to its optimum, in one Newton-like
step)."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree
import pytest

from gradlens import envs, models
from gradlens.analysis.paths import action_to_state, graph, truncated
from gradlens.objective import imagined_objective
from gradlens.policies import make_policy
from gradlens.rollout import rollout
from gradlens.training.config import TrainConfig, run_name
from gradlens.training.train import train
from gradlens.training.bpo import natural_step, policy_optimizer, policy_update

H, K = 6, 2


@pytest.fixture(scope="module")
def system():
    return envs.make("linear", horizon=H)  # every action moves every later state: no structural zero


# one class per kind of carry the truncation cuts: none (the simulator), the state (markov), a hidden state fed the
# predictions (hwm-rnn) or not (awm-rnn), a KV cache with the one-pass path switched off (awm-transformer); the other
# two classes carry the same kinds (hwm-transformer: cache and state; awm-ssm: a recurrent state) and cost CI a minute
CARRIES = ("simulator", "markov", "hwm-rnn", "awm-rnn", "awm-transformer")


@pytest.mark.parametrize("model_class", CARRIES)
def test_truncation_zeroes_exactly_the_paths_the_truncated_graph_loses(system, model_class):
    """d s_t / d a_j of a rollout truncated every K steps is nonzero iff the truncated time-level graph has a path
    a_j -> s_t; that graph keeps every path inside a block (as many as untruncated) and none longer than K steps."""
    if model_class == "simulator":
        dynamics = system
    else:
        model = models.make(model_class, system)
        dynamics = (model, model.init(jax.random.PRNGKey(0)))
    s1 = system.initial_state()
    actions = 0.3 * jnp.cos(jnp.arange(H * system.action_dim, dtype=s1.dtype)).reshape(H, -1)
    states = lambda a, k: rollout(dynamics, a, s1, H, truncate=k).states[:, :-1]
    np.testing.assert_allclose(states(actions, K), states(actions, None), rtol=1e-5, atol=1e-6)  # a scan vs one pass
    jac = np.abs(np.asarray(jax.jacrev(lambda a: states(a, K))(actions))).sum(axis=(1, 3))  # [H+1 states, H actions]

    full = graph(model_class, H, level="time", policy="open")
    cut = truncated(full, K)
    for t in range(2, H + 2):  # graph nodes are 1-indexed: s_t is states[t - 1], a_j is actions[j - 1]
        for j in range(1, t):
            paths = action_to_state(cut, j, t, histogram=False).count
            same_block = (j - 1) // K == max(t - 2, 0) // K
            assert paths == (action_to_state(full, j, t, histogram=False).count if same_block else 0)
            if t - j > K:
                assert paths == 0
            assert (jac[t - 1, j - 1] > 0) == (paths > 0), (model_class, j, t, jac[t - 1, j - 1], paths)


def test_truncation_is_validated():
    G = graph("markov", 4, level="architecture")
    with pytest.raises(ValueError, match="time-level"):
        truncated(G, 2)
    with pytest.raises(ValueError, match="every must be an integer"):
        truncated(graph("markov", 4), 0)
    with pytest.raises(ValueError, match="truncate must be a positive integer"):
        TrainConfig(truncate=0)


def test_discount_weights_each_reward_by_gamma_to_the_t():
    system = envs.make("cancer", horizon=H)
    policy = make_policy("mlp", system)
    params = policy.init(jax.random.PRNGKey(1))
    s1 = system.initial_state()[None]
    key = jax.random.PRNGKey(2)
    _, (ret, _) = imagined_objective(params, policy, system, s1, key, H, 0.0, discount=0.9)
    traj = rollout(system, policy.bind(params), s1[0], H, jax.random.split(key, 1)[0])
    assert float(ret) == pytest.approx(float(jnp.sum(0.9 ** jnp.arange(H) * traj.rewards)), rel=1e-6)
    _, (undiscounted, _) = imagined_objective(params, policy, system, s1, key, H, 0.0)
    assert float(undiscounted) == float(traj.ret)
    with pytest.raises(ValueError, match="discount must be a number in"):
        TrainConfig(discount=1.5)


def test_clipping_caps_the_norm_of_the_gradient_adam_sees():
    """With grad_clip c the trainer's optimiser feeds Adam a gradient of norm c: its first moment after one step is
    (1 - β1) c in norm, whatever the raw norm (here 5·10^4)."""
    params = {"w": jnp.zeros(3)}
    grad = {"w": jnp.array([3e4, 0.0, -4e4])}
    tx = policy_optimizer(1e-3, 10.0)
    _, state = policy_update(params, tx.init(params), grad, tx)
    adam = state[1][0]
    assert float(optax.tree.norm(adam.mu)) == pytest.approx((1 - 0.9) * 10.0, rel=1e-5)


@dataclasses.dataclass(frozen=True)
class LinearGaussian:
    """A linear Gaussian policy, μ = obs W, σ fixed: its Fisher is (XᵀX / N) ⊗ I / σ², so the natural gradient of a
    quadratic objective in μ is its Newton direction."""

    sigma: float = 0.5

    def distribution(self, params, obs):
        loc = obs @ params["w"]
        return loc, jnp.full_like(loc, self.sigma)


def test_natural_step_differs_from_adam_and_climbs_a_concave_toy():
    obs = jax.random.normal(jax.random.PRNGKey(0), (256, 2)) * jnp.array([1.0, 10.0])  # ill-conditioned features
    target = {"w": jnp.array([[3.0], [-0.2]])}
    objective = lambda p: -jnp.mean((obs @ p["w"] - obs @ target["w"]) ** 2)  # concave in W, maximum at target
    policy, params = LinearGaussian(), {"w": jnp.zeros((2, 1))}
    grad = jax.grad(objective)(params)

    step, g_x = natural_step(policy, params, grad, obs, max_kl=0.01)
    assert float(g_x) > 0
    to_optimum = (target["w"] - params["w"]).ravel()
    cos = lambda u, v: float(jnp.dot(u, v) / jnp.linalg.norm(u) / jnp.linalg.norm(v))
    assert cos(step["w"].ravel(), to_optimum) > 0.999  # the Newton direction
    adam = optax.adam(0.1)
    adam_step, _ = adam.update(jax.tree.map(jnp.negative, grad), adam.init(params), params)
    assert cos(adam_step["w"].ravel(), to_optimum) < 0.99  # Adam's first step is sign-like: another direction

    values = [float(objective(params))]
    for _ in range(30):  # each step moves μ by about σ·sqrt(2δ) = 0.16 (rms); the optimum is 3.6 away
        step, _ = natural_step(policy, params, jax.grad(objective)(params), obs, max_kl=0.05)
        params = jax.tree.map(jnp.add, params, step)
        values.append(float(objective(params)))
    assert all(b > a for a, b in zip(values[:20], values[1:20]))  # climbing while further than a step away
    assert values[-1] > 0.01 * values[0]  # then within 1 % of the optimum's gap


def test_natural_step_is_the_same_for_a_gradient_scaled_up_to_1e19_and_zero_for_zero():
    # a model's exploding gradient reached max|g| = 1.2e19 in Markov BPO on one-bounce: gᵀx overflowed float32 and
    # the parameters became NaN. The step does not depend on ‖g‖, so a scaled gradient gives the same, finite step
    obs = jax.random.normal(jax.random.PRNGKey(0), (64, 2))
    policy, params = LinearGaussian(), {"w": jnp.array([[0.3], [-0.1]])}
    grad = {"w": jnp.array([[1.0], [-2.0]])}
    step, _ = natural_step(policy, params, grad, obs, max_kl=0.01)
    for factor in (1e-20, 1e10, 1.2e19):
        big, _ = natural_step(policy, params, jax.tree.map(lambda g: factor * g, grad), obs, max_kl=0.01)
        np.testing.assert_allclose(big["w"], step["w"], rtol=1e-5)
    zero, g_x = natural_step(policy, params, {"w": jnp.zeros((2, 1))}, obs, max_kl=0.01)
    assert float(g_x) == 0.0 and np.all(np.asarray(zero["w"]) == 0.0)


def test_a_run_with_every_stabiliser_trains_and_names_them(tmp_path):
    cfg = TrainConfig(system="cancer", method="simulator", horizon=20, total_steps=160, warmup_steps=40,
                      eval_every=32, policy_every=8, policy_batch=4, simulator_grad_clip=10.0, discount=0.99,
                      truncate=5, update_rule="natural")
    assert run_name(cfg) == "cancer-simulator-H20-clip10-g0.99-tbptt5-natural0.01-seed0"
    assert run_name(TrainConfig()) == "cancer-awm-transformer-H100-seed0"  # the paper's settings: names unchanged
    metrics = train(cfg, tmp_path / "run", progress=False)
    assert np.isfinite(metrics["return"]).all() and np.isfinite(metrics["policy_grad_norm"].dropna()).all()
    with pytest.raises(ValueError, match="needs the 'mlp' policy"):
        TrainConfig(update_rule="natural", policy="open_loop")


def test_gradient_statistics_take_the_stabilisers(system):
    """The analysed gradient is the trained one under stabilisers too: a period longer than the horizon cuts nothing
    (bit for bit), period 1 leaves only each action's own reward step, and γ rescales step t's share by γ^t."""
    from gradlens.analysis.gradients import per_sample_gradients

    policy = make_policy("mlp", system)
    params = policy.init(jax.random.PRNGKey(3))
    grads = lambda **kw: ravel_pytree(per_sample_gradients(system, policy, params, system.initial_state(), H,
                                                           jax.random.PRNGKey(4), 4, **kw))[0]
    full = grads()
    np.testing.assert_array_equal(grads(truncate=H), full)
    assert not np.allclose(grads(truncate=1), full, rtol=1e-3)
    assert not np.allclose(grads(discount=0.5), full, rtol=1e-3)
    with pytest.raises(ValueError, match="discount must be a number"):
        grads(discount=0.0)
    from gradlens.analysis.audit import AuditConfig

    with pytest.raises(ValueError, match="AuditConfig.truncate must be a positive integer"):
        AuditConfig(truncate=0)
    with pytest.raises(ValueError, match="AuditConfig.discount must be a number in"):
        AuditConfig(discount=2.0)
