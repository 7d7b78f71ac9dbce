"""Brax / MuJoCo-MJX environments as gradlens systems (gradlens/envs/physics.py): the adapter's rollout is Brax's own
`env.step` loop, its gradients are central differences', a missing extra is a one-line error, and an audit says when
the simulator's gradient is identically zero. Tiny horizons and the cheapest environments: compiling Brax's physics
dominates (docs/physics.md)."""
import dataclasses
import html
import inspect
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradlens as gl
from gradlens import cli, envs
from gradlens.analysis.audit import AuditConfig, audit
from gradlens.envs import physics
from gradlens.report import report_html
from gradlens.sweep import SweepSpec
from gradlens.rollout import rollout

H = 4


def _brax_loop(env, backend, actions):
    """Brax's own `env.step` loop from the adapter's start (init_q at rest): states [H, D] after each step, in the
    adapter's documented layout (q, qd; or each link's pos, rot, vel, ang)."""
    from brax.envs import State

    def step(state, a):
        state = env.step(state, a)
        return state.replace(reward=jnp.asarray(state.reward, jnp.float32), done=jnp.asarray(state.done, jnp.float32))

    def layout(p):
        if backend in physics.MAXIMAL:
            return jnp.concatenate([p.x.pos.ravel(), p.x.rot.ravel(), p.xd.vel.ravel(), p.xd.ang.ravel()])
        return jnp.concatenate([p.q, p.qd])

    start = env.pipeline_init(env.sys.init_q, jnp.zeros(env.sys.qd_size()))
    blank = State(start, jnp.zeros(0), jnp.zeros(()), jnp.zeros(()), {}, {})
    shapes = jax.eval_shape(step, blank, actions[0])  # the carry's structure once the env has filled it in
    first = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes).replace(pipeline_state=start)

    def body(state, a):
        state = step(state, a)
        return state, layout(state.pipeline_state)

    return jax.lax.scan(body, first, actions)[1]


# every backend on the cheapest environment (the curated systems default to generalized; the others are overrides)
@pytest.mark.parametrize("backend", physics.BACKENDS)
@pytest.mark.filterwarnings("ignore:Brax System, piplines")  # Brax's notice about its own pipelines' maintenance
def test_the_adapters_rollout_is_braxs_own_step_loop(backend):
    from brax.envs import get_environment

    system = envs.make("brax_inverted_pendulum", horizon=H, backend=backend)
    env = get_environment("inverted_pendulum", backend=backend)
    actions = 0.8 * jnp.sin(jnp.arange(H, dtype=jnp.float32) + 1.0)[:, None]

    def both(a):  # `System.step` in a loop (its constant reward, 1, is not worth a second compilation)
        states = jax.lax.scan(lambda s, a_t: (system.step(s, a_t),) * 2, system.initial_state(), a)[1]
        return states[:, :-1], _brax_loop(env, backend, a)

    x, x_brax = map(np.asarray, jax.jit(both)(actions))
    assert x.shape == x_brax.shape == (H, system.state_dim) and np.abs(x - x[:1]).max() > 1e-2  # it moved
    np.testing.assert_allclose(x, x_brax, atol=1e-5)


@pytest.mark.filterwarnings("error::FutureWarning")  # JAX's warning when float64 values are rounded into float32
def test_gradients_match_central_differences_in_float64(x64):
    """Through Brax's transition, in float64, on the smooth cart-pole (no contact; the pole stays within its joint
    limits): the derivative of a smooth cost of the states along one direction of the actions against central
    differences. Forward mode (jvp): under half reverse mode's compilation, through the same Brax functions."""
    system = dataclasses.replace(envs.make("brax_inverted_pendulum", horizon=3),
                                 reward_fn=lambda x, a, t: -jnp.sum(jnp.sin(x) ** 2))
    s1 = system.initial_state()
    assert s1.dtype == jnp.float64
    actions = 0.3 * jnp.cos(jnp.arange(3.0))[:, None]
    direction = jnp.asarray([[0.6], [-0.3], [0.74]])
    value_and_slope = jax.jit(lambda a: jax.jvp(lambda b: rollout(system, b, s1).ret, (a,), (direction,)))
    slope = value_and_slope(actions)[1]
    eps = 1e-6
    up, down = value_and_slope(actions + eps * direction)[0], value_and_slope(actions - eps * direction)[0]
    central = (up - down) / (2 * eps)
    assert slope.dtype == jnp.float64 and float(jnp.abs(central)) > 1e-3
    np.testing.assert_allclose(float(slope), float(central), rtol=1e-7)


def test_backend_override_and_bad_values():
    assert "backend" in envs.overrides("brax_reacher")
    with pytest.raises(ValueError, match="backend must be one of generalized, positional, spring, mjx, got 'warp'"):
        envs.make("brax_reacher", backend="warp")
    with pytest.raises(ValueError, match="unknown Brax environment 'reachr'; Brax has .*reacher"):
        physics.brax_system("reachr", 5)


def test_without_the_extra_building_says_how_to_install_and_systems_still_lists_it(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "brax.envs", None)  # `import brax.envs` now fails as if Brax were absent
    with pytest.raises(physics.MissingExtra, match=r"'brax_hopper' needs Brax .*pip install -e \"\.\[physics\]\"") \
            as caught:
        envs.make("brax_hopper")
    assert "\n" not in str(caught.value)
    monkeypatch.setattr(envs, "_BUILDERS", {n: envs._BUILDERS[n] for n in ("linear", "brax_reacher")})
    assert cli.main(["systems", "--horizon", "3"]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line.split()}
    assert 'pip install -e ".[physics]"' in rows["brax_reacher"] and "linear" in rows


def _alive(horizon: int = 3, noise_std: float = 0.0) -> gl.envs.System:
    """x_{t+1} = x_t + a_t, r_t = 1: an alive bonus, constant in the actions (Brax's inverted pendulum's reward)."""
    return gl.envs.System(name="toy_alive", state_dim=1, action_dim=1, horizon=horizon, dt=1.0, x0=(0.0,),
                          transition=lambda x, a, t: x + a, reward_fn=lambda x, a, t: jnp.ones((), x.dtype),
                          noise_std=noise_std)


def test_an_identically_zero_simulator_gradient_is_a_warning():
    config = AuditConfig(n_samples=2, landscape_points=2, landscape_2d_points=0, policy="open_loop")
    report = audit(_alive, (), [3], config=config, progress=False)
    zero = [w for w in report.warnings if w.kind == "zero_gradient"]
    assert [(w.method, w.horizon) for w in zero] == [("simulator", 3)]
    assert "exactly zero in all 2 samples" in zero[0].message and "toy_alive" in zero[0].message
    assert zero[0].message + "." in gl.conclusions(report).caveats  # report.html's and the app's "not to conclude"
    assert html.escape(zero[0].message) in report_html(report, figures={})


def test_systems_lists_the_physics_systems_without_compiling_them(monkeypatch, capsys):
    monkeypatch.setattr(envs, "_BUILDERS", {n: envs._BUILDERS[n] for n in ("linear", "brax_inverted_pendulum")})
    assert cli.main(["systems", "--horizon", "3"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.split()}
    assert rows["brax_inverted_pendulum"][1:6] == ["5", "1", "3", "0.04", "-"]  # obs = 4 + time, act, H, dt, probe
    assert float(rows["linear"][5]) != 0 and "only with --probe-physics" in out


def test_any_brax_environment_and_backend_by_name():
    spring = envs.make("brax_inverted_pendulum_spring", horizon=3)
    assert spring.name == "brax_inverted_pendulum_spring" and "spring" in spring.description
    assert spring.state_dim == 13 * 2 and spring.horizon == 3  # maximal coordinates: 13 per link (cart and pole)
    assert envs.make("brax_inverted_pendulum").state_dim == 4  # generalized: q, qd
    assert inspect.signature(envs.builder("brax_ant_mjx")).parameters["horizon"].default == 25  # the curated H
    assert envs.make("brax_walker2d", horizon=2).action_dim == 6  # not curated: any Brax environment
    assert gl.TrainConfig(system="brax_reacher_mjx", method="simulator").system == "brax_reacher_mjx"
    assert SweepSpec(("brax_hopper_positional", "cancer"), ("simulator",), (5,)).systems[0] == "brax_hopper_positional"
    with pytest.raises(ValueError, match="unknown Brax environment 'reachr'"):
        envs.make("brax_reachr")
    with pytest.raises(ValueError, match=r"unknown system 'Brax_reacher'; valid systems: .*or any Brax environment "
                                         r"as brax_<env> or brax_<env>_<backend>"):
        gl.TrainConfig(system="Brax_reacher", method="simulator")
