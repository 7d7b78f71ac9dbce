"""Brax and MuJoCo-MJX environments as gradlens systems (the optional extra: `pip install -e ".[physics]"`).

Glossary of shapes: Q generalized positions (Brax's q_size), V generalized velocities (qd_size), L links, D physical
state, A actions (the Brax environment's action_size), O = D + 1.

Any Brax environment (`brax.envs.get_environment(env_name, backend=...)`) on any of its physics backends
(`BACKENDS`) becomes a `System` through `brax_system`. The physical state is what the backend integrates:

    generalized, mjx:     x = [q, qd] [D = Q + V], the generalized coordinates;
    positional, spring:   x = [pos [L, 3], rot [L, 4], vel [L, 3], ang [L, 3]] flattened [D = 13 L], each link's world
                          pose (position, unit quaternion) and velocity: these backends integrate maximal coordinates
                          and derive q, qd from them by inverse kinematics (a pipeline rebuilt from q, qd alone would
                          snap every link back onto its joints at each step: another simulator);
    x_{t+1} = the state after Brax's own `env.step` from the pipeline state rebuilt from x_t, under a_t;
    r_t     = the reward of that same `env.step`: a differentiable function of (x_t, a_t) (Brax's rewards read the
              state after the step, so the reward takes the step again);
    x0      = the state of `init_q` at rest: the model's reference pose without Brax's random reset noise (for the
              reacher: the target at (0.1, -0.1)).

Actions in [-1, 1]^A are passed as they are: every Brax environment takes [-1, 1]^A (the inverted pendulums scale
them to their control range themselves). Brax's termination (`done`) is ignored: an episode always runs its H steps.
Only what Brax derives from x is rebuilt: on `generalized` the inverse mass matrix is then exact instead of refined
by Newton iterations from the previous step's, on `mjx` the constraint solver starts cold. On `mjx` the solver takes
one Newton iteration (`opt.iterations = 1`) instead of MuJoCo's loop of up to 100, which reverse mode cannot
differentiate. tests/test_physics.py checks every backend against Brax's own `env.step` loop. A float64 state runs
Brax's system in float64 (its arrays cast to the state's dtype).

Brax is imported when a physics system is built, never on `import gradlens`.
"""
from __future__ import annotations

import contextlib
import copy
import importlib
import inspect
import io
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from gradlens import validate
from gradlens.envs.base import System

BACKENDS = ("generalized", "positional", "spring", "mjx")
MAXIMAL = ("positional", "spring")  # backends integrating maximal coordinates
INSTALL = 'pip install -e ".[physics]"'


class MissingExtra(ValueError):
    """A physics system was asked for without Brax / MuJoCo-MJX installed."""


def _brax_envs(name: str):
    """`brax.envs`, or MissingExtra naming the system and the install command."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # MJX prints a line when its optional GPU backend is absent
            return importlib.import_module("brax.envs")
    except ImportError as err:
        raise MissingExtra(f"system {name!r} needs Brax and MuJoCo-MJX ({err}): {INSTALL}") from None


def brax_system(env_name: str, horizon: int = 50, noise_std: float = 0.0, backend: str = "generalized", *,
                name: str | None = None, description: str = "") -> System:
    """The Brax environment `env_name` on physics `backend` as a `System` of `horizon` steps (module docstring).

    `name` defaults to "brax_<env_name>". ValueError for an unknown environment or backend (listing the valid ones),
    MissingExtra (a ValueError) without the physics extra.
    """
    name = name or f"brax_{env_name}"
    validate.horizon(horizon, f"{name}: horizon")
    if backend not in BACKENDS:
        raise ValueError(f"{name}: backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    brax_envs = _brax_envs(name)
    known = sorted(brax_envs._envs)
    if env_name not in known:
        raise ValueError(f"{name}: unknown Brax environment {env_name!r}; Brax has {', '.join(known)}")
    with warnings.catch_warnings():  # Brax's notice that its own pipelines are no longer actively developed
        warnings.filterwarnings("ignore", message="Brax System, piplines", category=UserWarning)
        env = brax_envs.get_environment(env_name, backend=backend)
    if backend == "mjx":  # MJX's solver loops in a lax.while_loop, which reverse mode cannot differentiate, unless it
        env.sys = env.sys.tree_replace({"opt.iterations": 1})  # takes one Newton step (docs/physics.md)
    encode, decode, names, start = (_maximal if backend in MAXIMAL else _generalized)(env)
    state_type = brax_envs.State

    @jax.jit  # one trace shared by the transition and the reward, which both take this step
    def brax_step(x, a):
        """Brax's `env.step` from the pipeline state of x [D] under a [A]: its next state."""
        zero = jnp.zeros((), x.dtype)
        here = _in_dtype(env, x.dtype)
        return here.step(state_type(decode(here, x), jnp.zeros(0, x.dtype), zero, zero, {}, {}), a)

    def transition(x, a, t):
        return encode(brax_step(x, a).pipeline_state).astype(x.dtype)

    def reward_fn(x, a, t):
        return jnp.asarray(brax_step(x, a).reward, x.dtype)

    x0 = tuple(float(v) for v in start)
    return System(
        name=name, state_dim=len(x0), action_dim=env.action_size, horizon=horizon,
        dt=float(f"{float(env.dt):.6g}"), x0=x0,  # Brax's float32 dt, as written (0.02, not 0.0199999996)
        transition=transition, reward_fn=reward_fn, noise_std=noise_std, state_names=names,
        description=description or f"Brax {env_name} ({backend} backend)",
    )


def named_builder(name: str):
    """The builder of "brax_<env>" (generalized backend) or "brax_<env>_<backend>": any Brax environment by name.
    Its default horizon is the curated system's for a curated environment, else 50."""
    env_name, backend = name[len("brax_"):], "generalized"
    for candidate in BACKENDS:
        if env_name.endswith("_" + candidate):
            env_name, backend = env_name[:-len(candidate) - 1], candidate
    curated = globals().get(f"make_brax_{env_name}")
    default = inspect.signature(curated).parameters["horizon"].default if curated else 50

    def build(horizon: int = default, noise_std: float = 0.0) -> System:
        return brax_system(env_name, horizon, noise_std, backend, name=name)

    return build


def _in_dtype(env, dtype):
    """`env` with its Brax system's floating-point arrays in `dtype` (a copy; `env` itself for float32): Brax keeps
    float32 buffers otherwise, and would round float64 values into them."""
    if dtype == jnp.float32:
        return env
    wide = copy.copy(env)
    wide.sys = jax.tree.map(lambda v: jnp.asarray(v, dtype) if jnp.issubdtype(jnp.result_type(v), jnp.floating)
                            else v, env.sys)
    return wide


def _generalized(env):
    """(encode pipeline state -> [q, qd] [Q + V], decode (env, [Q + V]) -> that env's pipeline state, component
    names [Q + V], the state of init_q at rest [Q + V] as NumPy)."""
    n_q = env.sys.q_size()

    def encode(state):
        return jnp.concatenate([state.q, state.qd])

    def decode(here, x):
        return here.pipeline_init(x[:n_q], x[n_q:])

    start = np.concatenate([np.asarray(env.sys.init_q), np.zeros(env.sys.qd_size())])
    return encode, decode, _joint_names(env.sys), start


def _maximal(env):
    """(encode, decode, names, start) as `_generalized`'s, for x = [pos [L, 3], rot [L, 4], vel [L, 3], ang [L, 3]]
    flattened [13 L], the state of the maximal-coordinate backends: each link's world pose and velocity, from which
    decode derives q, qd, the joint frames and the centre-of-mass frames exactly as Brax's step ends."""
    base, com, kinematics = (importlib.import_module(f"brax.{m}") for m in ("base", "com", "kinematics"))
    n_links = env.sys.num_links()
    sizes = (3, 4, 3, 3)

    def flat(pose, motion):
        return jnp.concatenate([pose.pos.ravel(), pose.rot.ravel(), motion.vel.ravel(), motion.ang.ravel()])

    def encode(state):
        return flat(state.x, state.xd)

    def decode(here, x):
        pos, rot, vel, ang = (part.reshape(n_links, size) for part, size in
                              zip(jnp.split(x, np.cumsum([n_links * s for s in sizes[:-1]])), sizes))
        pose, motion = base.Transform(pos=pos, rot=rot), base.Motion(vel=vel, ang=ang)
        j, jd, a_p, a_c = kinematics.world_to_joint(here.sys, pose, motion)
        q, qd = kinematics.inverse(here.sys, j, jd)
        x_i, xd_i = com.from_world(here.sys, pose, motion)
        return here.pipeline_init(q, qd).replace(x=pose, xd=motion, x_i=x_i, xd_i=xd_i, j=j, jd=jd, a_p=a_p,
                                                 a_c=a_c)

    links = env.sys.link_names
    names = tuple(f"{link}_{part}{c}" for part, comps in (("pos_", "xyz"), ("rot_", ("w", "x", "y", "z")),
                                                        ("vel_", "xyz"), ("ang_", "xyz"))
                  for link in links for c in comps)
    start = jax.jit(lambda q: flat(*kinematics.forward(env.sys, q, jnp.zeros(env.sys.qd_size()))))(env.sys.init_q)
    return encode, decode, names, np.asarray(start)


def _joint_names(sys) -> tuple[str, ...]:
    """q and qd component names [Q + V] from the MuJoCo model's joints ("hinge", "rootx", ... then "d_<name>")."""
    mujoco = importlib.import_module("mujoco")
    model = sys.mj_model
    q_names, v_names = [], []
    for j in range(model.njnt):
        joint = mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, j) or f"joint{j}"
        kind = int(model.jnt_type[j])
        if kind == mujoco.mjtJoint.mjJNT_FREE:
            q_names += [f"{joint}_{c}" for c in ("x", "y", "z", "qw", "qx", "qy", "qz")]
            v_names += [f"d_{joint}_{c}" for c in ("x", "y", "z", "wx", "wy", "wz")]
        elif kind == mujoco.mjtJoint.mjJNT_BALL:
            q_names += [f"{joint}_{c}" for c in ("qw", "qx", "qy", "qz")]
            v_names += [f"d_{joint}_{c}" for c in ("wx", "wy", "wz")]
        else:
            q_names.append(joint)
            v_names.append(f"d_{joint}")
    return tuple(q_names + v_names)


# The curated set (docs/physics.md): each default horizon covers the task's motion (a reach, a fall, a hop, a
# stride) in one to two seconds of simulated time at most; every default backend is generalized, Brax's default for
# these environments and the cheapest to compile here.
def make_brax_reacher(horizon: int = 50, noise_std: float = 0.0, backend: str = "generalized") -> System:
    """Brax reacher: a 2-link arm's fingertip to a fixed target (D = 8, A = 2, dt = 0.02 s; H = 50 is Gym's episode,
    1 s). Smooth, no contacts; reward -‖tip - target‖ - ‖a‖²."""
    return brax_system("reacher", horizon, noise_std, backend, name="brax_reacher",
                       description=f"Brax reacher ({backend}): 2-link arm to a fixed target, smooth")


def make_brax_inverted_pendulum(horizon: int = 50, noise_std: float = 0.0, backend: str = "generalized") -> System:
    """Brax inverted pendulum: cart-pole (D = 4, A = 1, dt = 0.04 s; H = 50 is 2 s, time for the pole to fall). Its
    reward is a constant alive bonus of 1 per step, so its policy gradient is identically zero: the audit says so (a
    `zero_gradient` warning)."""
    return brax_system("inverted_pendulum", horizon, noise_std, backend, name="brax_inverted_pendulum",
                       description=f"Brax inverted pendulum ({backend}): cart-pole, constant alive reward")


def make_brax_inverted_double_pendulum(horizon: int = 50, noise_std: float = 0.0,
                                       backend: str = "generalized") -> System:
    """Brax inverted double pendulum: a cart with two poles (D = 6, A = 1, dt = 0.02 s; H = 50 is 1 s), chaotic once
    the poles fall; reward: alive bonus 10 minus the tip's distance from upright and a velocity penalty."""
    return brax_system("inverted_double_pendulum", horizon, noise_std, backend,
                       name="brax_inverted_double_pendulum",
                       description=f"Brax inverted double pendulum ({backend}): cart with two poles, chaotic")


def make_brax_hopper(horizon: int = 50, noise_std: float = 0.0, backend: str = "generalized") -> System:
    """Brax hopper: a planar one-legged robot with ground contacts (D = 12, A = 3, dt = 0.008 s; H = 50 is 0.4 s, a
    fall onto the foot and a push); reward: forward velocity + 1 - 1e-3 ‖a‖² (no termination: a fallen hopper keeps
    its H steps)."""
    return brax_system("hopper", horizon, noise_std, backend, name="brax_hopper",
                       description=f"Brax hopper ({backend}): planar hopping robot, ground contacts")


def make_brax_ant(horizon: int = 25, noise_std: float = 0.0, backend: str = "generalized") -> System:
    """Brax ant: a quadruped with a free root and ground contacts (D = 29, A = 8, dt = 0.05 s; H = 25 is 1.25 s, a
    stride, kept short because the ant is the costliest system to run); reward: forward velocity + 1 - 0.5 ‖a‖² (no
    termination)."""
    return brax_system("ant", horizon, noise_std, backend, name="brax_ant",
                       description=f"Brax ant ({backend}): quadruped, free root, ground contacts")
