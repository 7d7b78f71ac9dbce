"""The system and training-method registries (a toy of each registered from a test), and the `System` boundary
checks."""
import dataclasses
import functools
from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradlens as gl
from gradlens.training import methods
from gradlens.training.protocol import LossSums, Method, add, loss_means

ALL = [name for name in gl.envs.names() if name not in gl.envs.PHYSICS]  # the Brax ones: tests/test_physics.py


def test_names_are_the_designed_set():
    assert set(ALL) == {
        "double_pendulum", "one_bounce", "cancer", "bear_populations", "bioreactor", "hiv", "mould_fungicide",
        "bacteria", "predator_prey", "glucose", "harvest", "timber_harvest", "linear", "lorenz96"}
    assert set(gl.envs.MYRIAD) <= set(ALL)
    assert set(gl.envs.names()) == set(ALL) | set(gl.envs.PHYSICS)


@pytest.mark.parametrize("name", ALL)
def test_every_system_builds_and_steps(name):
    system = gl.envs.make(name)
    s1 = system.initial_state()
    assert s1.shape == (system.obs_dim,) and system.obs_dim == system.state_dim + 1
    assert float(s1[-1]) == 0.0
    a = jnp.zeros(system.action_dim)
    s2 = system.step(s1, a)
    assert s2.shape == s1.shape and float(s2[-1]) == 1.0
    assert np.isfinite(float(system.reward(s1, a)))
    assert system.dt > 0 and system.horizon >= 1


@pytest.mark.parametrize("name", ALL)
def test_horizon_override_and_float64(name):
    with jax.enable_x64(True):
        system = gl.envs.make(name, horizon=7)
        assert system.horizon == 7
        assert system.step(system.initial_state(), jnp.zeros(system.action_dim)).dtype == jnp.float64
    assert gl.envs.make(name).initial_state().dtype == jnp.float32


def test_make_gives_one_system_per_arguments_so_compiled_functions_are_reused():
    a = gl.envs.make("cancer", horizon=6)
    assert gl.envs.make("cancer", horizon=6) is a and gl.envs.make("cancer", horizon=7) is not a
    with jax.enable_x64(True):
        assert gl.envs.make("cancer", horizon=6) is not a  # float64 constants: a system of its own
    # overrides that cannot be hashed build afresh (and still build)
    assert gl.envs.make("lorenz96", actuated=[0, 2]) is not gl.envs.make("lorenz96", actuated=[0, 2])
    traces = []

    @functools.partial(jax.jit, static_argnums=0)
    def first_step(system, action):
        traces.append(system.horizon)
        return system.step(system.initial_state(), action)

    for _ in range(2):
        first_step(gl.envs.make("cancer", horizon=6), jnp.zeros(1))
    assert traces == [6]  # traced once: the second make found the first one's compiled function


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="unknown system 'pendulum'.*double_pendulum.*timber_harvest"):
        gl.envs.make("pendulum")


def test_unknown_override_lists_allowed():
    with pytest.raises(ValueError, match=r"unknown override\(s\) 'horizn'.*allowed: .*horizon"):
        gl.envs.make("cancer", horizn=10)


@pytest.mark.parametrize("horizon", [0, -3, 2.5, True])
def test_bad_horizon(horizon):
    with pytest.raises(ValueError, match="horizon must be a positive integer"):
        gl.envs.make("cancer", horizon=horizon)


@pytest.mark.parametrize("dt", [0.0, -1.0, float("nan")])
def test_bad_dt(dt):
    with pytest.raises(ValueError, match="dt must be a positive finite number"):
        gl.envs.make("linear", dt=dt)


def test_bad_noise():
    with pytest.raises(ValueError, match="noise_std must be a finite number >= 0, got -0.1"):
        gl.envs.make("cancer", noise_std=-0.1)


def test_step_rejects_wrong_action_shape_and_nonfinite_action():
    system = gl.envs.make("bear_populations")
    s1 = system.initial_state()
    with pytest.raises(ValueError, match=r"action must have shape \(2,\), got \(1,\)"):
        system.step(s1, jnp.zeros(1))
    with pytest.raises(ValueError, match="action must be finite"):
        system.step(s1, jnp.array([0.0, jnp.nan]))
    with pytest.raises(ValueError, match=r"state \(obs_dim = state_dim \+ 1 time index\) must have shape \(4,\)"):
        system.step(s1[:-1], jnp.zeros(2))


def test_noise_needs_key_and_is_reproducible():
    system = gl.envs.make("linear", noise_std=0.1)
    s1, a = system.initial_state(), jnp.zeros(1)
    with pytest.raises(ValueError, match="noise_std=0.1: pass a jax.random key"):
        system.step(s1, a)
    k1, k2 = jax.random.PRNGKey(1), jax.random.PRNGKey(2)
    np.testing.assert_array_equal(system.step(s1, a, k1), system.step(s1, a, k1))
    assert not np.allclose(system.step(s1, a, k1), system.step(s1, a, k2))
    clean = gl.envs.make("linear").step(s1, a)
    spread = np.std([np.asarray(system.step(s1, a, jax.random.PRNGKey(i))[:-1] - clean[:-1]) for i in range(400)])
    assert abs(spread - 0.1) < 0.01


def test_myriad_action_maps_affinely_to_control_bounds():
    system = gl.envs.make("cancer", horizon=10)
    s1 = system.initial_state()
    x = s1[0]
    # cost = a x^2 + u^2 with u = 0 at a = -1 and u = 2 at a = +1; reward = -cost * dt
    np.testing.assert_allclose(system.reward(s1, jnp.array([-1.0])), -(3 * x**2) * 2.0, rtol=1e-6)
    np.testing.assert_allclose(system.reward(s1, jnp.array([1.0])), -(3 * x**2 + 4.0) * 2.0, rtol=1e-6)


def _integrator(horizon: int = 6, noise_std: float = 0.0, gain: float = 0.5) -> gl.envs.System:
    """x_{t+1} = x_t + gain a_t from x_1 = 1, reward -x_t²: d J / d a_k = -Σ_{t>k} 2 x_t gain, in closed form."""
    return gl.envs.System(name="toy_integrator", state_dim=1, action_dim=1, horizon=horizon, dt=1.0, x0=(1.0,),
                          transition=lambda x, a, t: x + gain * a, reward_fn=lambda x, a, t: -jnp.sum(x ** 2),
                          noise_std=noise_std, description="a scalar integrator (a user's own system)")


def test_a_system_of_your_own_plugs_into_make_rollout_train_and_audit(monkeypatch, tmp_path):
    """The contributor's path of docs/architecture.md: one builder, `register`, and every layer accepts the name."""
    monkeypatch.setattr(gl.envs, "_BUILDERS", dict(gl.envs._BUILDERS))  # registered for this test only
    gl.envs.register("toy_integrator", _integrator)
    assert "toy_integrator" in gl.envs.names() and gl.envs.overrides("toy_integrator")["gain"] == 0.5
    system = gl.envs.make("toy_integrator", horizon=4, gain=2.0)
    actions = jnp.zeros((4, 1))
    grad = jax.grad(lambda a: gl.rollout(system, a, system.initial_state()).ret)(actions)
    np.testing.assert_allclose(grad[:, 0], [-2 * 2.0 * (4 - 1 - k) for k in range(4)], rtol=1e-6)  # x_t = 1

    from gradlens.training.config import run_name
    config = gl.TrainConfig(system="toy_integrator", method="simulator", horizon=4, total_steps=64, warmup_steps=16,
                            eval_every=16, policy="open_loop")
    metrics = gl.train(config, tmp_path, progress=False)
    assert (tmp_path / run_name(config) / "metrics.parquet").exists() and metrics["return"].notna().all()
    report = gl.audit("toy_integrator", [], [2, 3], config=gl.AuditConfig(n_samples=2, landscape_points=3,
                                                                          landscape_2d_points=0), progress=False)
    assert report.system["name"] == "toy_integrator" and not report.problems

    with pytest.raises(ValueError, match="already registered"):
        gl.envs.register("toy_integrator", _integrator)
    with pytest.raises(ValueError, match="must take the keywords horizon and noise_std"):
        gl.envs.register("toy_two", lambda horizon=3: _integrator(horizon))
    with pytest.raises(ValueError, match="lowercase identifier"):
        gl.envs.register("Toy Integrator", _integrator)


@dataclasses.dataclass(frozen=True)
class HillClimbConfig:
    """A toy method's settings: the std of its proposals."""

    step_std: float = 0.3
    default_warmup: ClassVar[int] = 0

    def check(self, config) -> None:
        if config.seeds < 1:
            raise ValueError("hill_climb needs a seed")


class HillClimbState(NamedTuple):
    key: jax.Array
    actions: jax.Array  # [H, A] open-loop, in [-1, 1]
    best: jax.Array  # their return
    sums: jax.Array  # [4] LossSums
    first_nonfinite: jax.Array
    nonfinite_what: jax.Array


def _make_hill_climb(config) -> Method:
    """Propose actions + N(0, step_std²), clipped, at every step; keep them if their return is higher (a return that
    never decreases: what the test checks)."""
    system = gl.envs.make(config.system, horizon=config.horizon, noise_std=config.noise_std)
    s1, shape = system.initial_state(), (config.horizon, system.action_dim)
    ret = lambda actions: gl.rollout(system, actions, s1).ret

    def init(key):
        actions = jnp.zeros(shape, s1.dtype)
        return HillClimbState(key, actions, ret(actions), jnp.zeros(4, s1.dtype), jnp.array(-1, jnp.int32),
                              jnp.array(-1, jnp.int32))

    def policy_step(state, i, key, n=1):
        proposal = jnp.clip(state.actions + config.baseline.step_std * jax.random.normal(key, shape), -1.0, 1.0)
        value = ret(proposal)
        better = value > state.best
        sums = add(state.sums, LossSums, loss=-jnp.maximum(value, state.best), loss_updates=1.0,
                   grad_norm=jnp.where(better, jnp.linalg.norm(proposal - state.actions), 0.0), grad_updates=1.0)
        return state._replace(actions=jnp.where(better, proposal, state.actions),
                              best=jnp.maximum(value, state.best), sums=sums)

    def iteration(state, i):
        key, k_step = jax.random.split(state.key)
        return policy_step(state._replace(key=key), i, k_step)

    return Method(system, init, iteration, lambda state, key: ret(state.actions), loss_means, None, policy_step)


def test_a_training_method_of_your_own_registers_trains_and_writes_its_metrics(monkeypatch, tmp_path):
    """The contributor's path of docs/architecture.md for a method: one module (here, above), `register`, and the
    run config, the trainer and the run store accept it by name."""
    monkeypatch.setattr(methods, "BASELINES", dict(methods.BASELINES))  # registered for this test only
    monkeypatch.setattr(methods, "_BUILDERS", dict(methods._BUILDERS))
    methods.register("hill_climb", HillClimbConfig, _make_hill_climb)
    assert methods.names()[-1] == "hill_climb" and methods.default_warmup("hill_climb") == 0

    from gradlens.training.config import run_name
    config = gl.TrainConfig(system="linear", method="hill_climb", horizon=4, total_steps=48, eval_every=8,
                            baseline={"step_std": 0.5})
    assert config.baseline == HillClimbConfig(0.5) and gl.TrainConfig.from_dict(config.to_dict()) == config
    metrics = gl.train(config, tmp_path, progress=False)
    assert (tmp_path / run_name(config) / "metrics.parquet").exists() and len(metrics) == 6
    returns = metrics["return"].to_numpy()
    assert np.all(np.diff(returns) >= 0) and returns[-1] > returns[0]  # kept only improvements, found some
    assert metrics["model_loss"].notna().all() and metrics["cosine_to_simulator"].isna().all()

    with pytest.raises(ValueError, match="already registered"):
        methods.register("hill_climb", HillClimbConfig, _make_hill_climb)
    with pytest.raises(ValueError, match="is a BPO method"):
        methods.register("markov", HillClimbConfig, _make_hill_climb)
    with pytest.raises(ValueError, match="lowercase identifier"):
        methods.register("Hill Climb", HillClimbConfig, _make_hill_climb)
    with pytest.raises(ValueError, match="frozen dataclass with a check"):
        methods.register("hill_two", dict, _make_hill_climb)
    with pytest.raises(ValueError, match="default_warmup must be an integer >= 0"):
        methods.register("hill_two", dataclasses.make_dataclass("NoWarmup", [], frozen=True,
                                                                namespace={"check": lambda self, c: None}),
                         _make_hill_climb)
