"""World models: causality, structure (who reads states), cached vs full-recompute rollouts, determinism, gradients."""
import contextlib
import io

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import ad_checkpoint
from jax.test_util import check_grads

import gradlens as gl
import gradlens.models as gm
from gradlens.models import kv_reverse
from gradlens.models.base import RecomputeDynamics
from gradlens.rollout import as_dynamics

MODELS = ["markov", "hwm-rnn", "hwm-transformer", "awm-rnn", "awm-transformer", "awm-ssm"]
AWMS = {"awm-rnn", "awm-transformer", "awm-ssm"}
H = 6


def _system(horizon=H):
    return gl.envs.make("linear", state_dim=2, action_dim=2, horizon=horizon, seed=1)


def _actions(horizon, action_dim=2, seed=0):
    return jax.random.uniform(jax.random.PRNGKey(seed), (horizon, action_dim), minval=-1, maxval=1)


def _setup(name, **overrides):
    system = _system()
    model = gm.make(name, system, **overrides)
    return system, model, model.init(jax.random.PRNGKey(42))


def step_rollout(model, params, s1, actions):
    """Open-loop rollout through bind(): reset + one transition per action (the cached path, even for an AWM)."""
    dyn = model.bind(params)

    def body(carry, action):
        memory, obs = carry
        memory, nxt = dyn.transition(memory, obs, action, None)
        return (memory, nxt), nxt

    _, nxt = jax.lax.scan(body, (dyn.reset(s1, actions.shape[0]), s1), actions)
    return jnp.concatenate([s1[None], nxt])


def linear_policy(theta):
    """a = tanh(W obs + b): a state-feedback policy reading the full observation (time index included)."""
    return lambda obs, key: jnp.tanh(theta["W"] @ obs + theta["b"])


def _theta(obs_dim, action_dim, seed=3):
    k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
    return {"W": 0.5 * jax.random.normal(k1, (action_dim, obs_dim)), "b": 0.1 * jax.random.normal(k2, (action_dim,))}


def test_registry():
    assert gm.names() == sorted(MODELS) and list(gm.structures()) == MODELS
    assert gm.structure("awm-ssm") == gm.Structure("awm", "ssm", paper_layers=3)
    system = _system()
    with pytest.raises(ValueError, match="unknown model 'gpt'.*awm-transformer.*markov"):
        gm.make("gpt", system)
    with pytest.raises(ValueError, match="unknown override.*'depth'.*allowed:.*heads.*layers.*max_horizon"):
        gm.make("awm-transformer", system, depth=3)
    with pytest.raises(ValueError, match=r"width \(48\) must be a multiple of heads \(5\)"):
        gm.make("hwm-transformer", system, heads=5)
    with pytest.raises(ValueError, match="hidden must be a tuple of positive integers"):
        gm.make("markov", system, hidden=(64, 0))
    with pytest.raises(ValueError, match="unknown activation 'sigmoidal'"):
        gm.make("markov", system, activation="sigmoidal")
    with pytest.raises(ValueError, match="r_max"):
        gm.make("awm-ssm", system, r_max=1.0)
    with pytest.raises(ValueError, match="max_horizon must be a positive integer"):
        gm.make("awm-rnn", system, max_horizon=0)
    with pytest.raises(ValueError, match="system must be a gradlens System"):
        gm.make("markov", "linear")
    with pytest.raises(ValueError, match="already registered"):
        gm.register("markov", lambda system: None)
    with pytest.raises(ValueError, match="unknown model 'gpt'"):
        gm.structure("gpt")
    with pytest.raises(ValueError, match="must be a gradlens.models.Structure"):
        gm.register("gpt", lambda system: None, structure=("awm", "transformer", 2))
    model = gm.make("awm-transformer", system, layers=1, max_horizon=9, decoder_hidden=[32])
    assert (model.config.layers, model.max_horizon, model.config.decoder_hidden) == (1, 9, (32,))
    assert model.reads_states is False and gm.make("hwm-rnn", system).reads_states is True
    assert hash(model) == hash(gm.make("awm-transformer", system, layers=1, max_horizon=9, decoder_hidden=[32]))
    params = model.init(jax.random.PRNGKey(0))
    assert params["actions_core/~/time_embedding"]["table"].shape == (10, 48)  # max_horizon + 1 rows


@pytest.mark.parametrize("name", MODELS)
def test_causality_and_structure(name):
    """d states[t] / d actions[k] is exactly 0 for k >= t (and not for k < t), on both the one-pass and the stepwise
    path; an AWM's predictions ignore the states fed to it, the others' do not."""
    system, model, params = _setup(name)
    s1 = system.initial_state() + jnp.array([0.3, -0.2, 0.0])
    actions = _actions(H)

    @jax.jit
    def jacobians(actions):
        return (jax.jacrev(model.predict, 2)(params, s1, actions),  # [H+1, O, H, A]
                jax.jacrev(step_rollout, 3)(model, params, s1, actions))

    for jac in jacobians(actions):
        jac = np.asarray(jac)[:, :-1]  # physical dims; the time channel is exact
        for t in range(H + 1):
            for k in range(H):
                block = jac[t, :, k, :]
                if k >= t:
                    assert np.all(block == 0.0), (name, t, k)
                else:
                    assert np.linalg.norm(block) > 1e-8, (name, t, k)

    states = jax.random.normal(jax.random.PRNGKey(5), (H + 1, system.obs_dim)).at[:, -1].set(jnp.arange(H + 1.0))
    perturbed = states.at[1:, :-1].add(0.5)
    tf = jax.jit(model.teacher_forced)
    dyn = model.bind(params)
    carry = dyn.reset(s1, H)
    _, nxt = dyn.transition(carry, s1, actions[0], None)
    _, nxt_perturbed = dyn.transition(carry, s1.at[:-1].add(0.5), actions[0], None)
    if name in AWMS:
        np.testing.assert_array_equal(tf(params, states, actions), tf(params, perturbed, actions))
        np.testing.assert_array_equal(nxt, nxt_perturbed)
    else:
        diff = np.abs(np.asarray(tf(params, states, actions) - tf(params, perturbed, actions)))[2:, :-1]
        assert np.all(diff.max(axis=1) > 1e-6)  # every later prediction moves
        assert np.all(np.abs(np.asarray(nxt - nxt_perturbed))[:-1] > 1e-6)


SLOW_PARITY = {"markov", "hwm-rnn", "awm-rnn"}  # no cache of their own to get wrong: run with the slow suite


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_PARITY else n for n in MODELS])
def test_cached_rollout_equals_full_recompute(name, x64):
    """bind(params) (KV cache / carried state) against bind(params, recompute=True) (the whole causal pass re-run over
    the prefix at every step): values and gradients, open loop and closed loop, float64."""
    system, model, params = _setup(name)
    s1 = system.initial_state()
    actions = _actions(H)
    theta = _theta(system.obs_dim, system.action_dim)

    def closed(theta, dyn):
        traj = gl.rollout(dyn, linear_policy(theta), s1, H, policy_input_grad="full")
        return traj.ret, traj.states

    def open_loop(actions, dyn):  # a callable policy reading the (exact) time index: the stepwise path for AWMs too
        states = gl.rollout(dyn, lambda obs, key: actions[jnp.round(obs[-1]).astype(int)], s1, H).states
        return jnp.sum(jnp.sin(states)), states

    @jax.jit
    def run(theta, actions):
        return {label: (jax.value_and_grad(closed, has_aux=True)(theta, dyn),
                        jax.value_and_grad(open_loop, has_aux=True)(actions, dyn))
                for label, dyn in (("cached", model.bind(params)), ("naive", model.bind(params, recompute=True)))}

    assert type(as_dynamics(model.bind(params, recompute=True))) is RecomputeDynamics  # not taken for a pair
    out = run(theta, actions)
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12),
                           out["cached"], out["naive"])
    (_, open_states), _ = out["cached"][1]
    np.testing.assert_allclose(open_states, model.predict(params, s1, actions), rtol=1e-9, atol=1e-12)
    assert np.all(np.abs(np.asarray(out["cached"][0][1]["W"])) > 0)  # every policy weight gets gradient


@pytest.mark.parametrize("name, block", [("hwm-transformer", 2), ("awm-transformer", 1)])  # one block: test_rollout
def test_kv_reverse_gives_exact_gradients_without_per_step_caches(name, block, x64, monkeypatch):
    monkeypatch.setattr(kv_reverse, "BLOCK", block)  # H = 6: three blocks of 2 steps, or a flush after every step
    system, model, params = _setup(name)
    s1, theta = system.initial_state() + 0.1, _theta(system.obs_dim, system.action_dim)

    def ret(theta, params, s1, mode, reverse):  # reverse=None: the reference, autodiff through the full recompute
        dyn = model.bind(params, recompute=reverse is None)
        traj = gl.rollout(dyn, linear_policy(theta), s1, H, policy_input_grad=mode, reverse=reverse or "store")
        return traj.ret + 0.1 * jnp.sum(traj.states ** 2) + 0.1 * jnp.sum(traj.actions)  # every output's cotangent

    for mode in ("full", "stop", 0.5):
        grad = jax.jit(jax.value_and_grad(ret, argnums=(0, 1, 2)), static_argnums=(3, 4))
        reference, kv = grad(theta, params, s1, mode, None), grad(theta, params, s1, mode, "recompute")
        jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13), reference, kv)
        assert all(float(jnp.abs(g).max()) > 0 for g in jax.tree.leaves(kv[1][0]))  # the policy gets gradient
    # the policy alone (model params not differentiated), vmapped over starts
    starts = jnp.stack([s1, s1 * 1.5])
    batch = lambda th, reverse: jnp.mean(jax.vmap(lambda s: ret(th, params, s, "full", reverse))(starts))
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13),
                           jax.grad(batch)(theta, None), jax.grad(batch)(theta, "recompute"))

    def residual_shapes(f):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            ad_checkpoint.print_saved_residuals(f, theta)
        return out.getvalue().replace(" ", "")

    cache_per_step = f"[{H},3,{H + 1},16]"  # [H, heads, T, head width]: one KV cache stored per step
    plain = lambda th, reverse: gl.rollout((model, params), linear_policy(th), s1, H, policy_input_grad="full",
                                           reverse=reverse).ret
    assert cache_per_step in residual_shapes(lambda th: plain(th, "store"))
    assert cache_per_step not in residual_shapes(lambda th: plain(th, "recompute"))


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_gradients_match_finite_differences(name, x64):
    system, model, params = _setup(name)
    s1 = system.initial_state()
    f = jax.jit(lambda a: jnp.sum(jnp.sin(model.predict(params, s1, a))))
    check_grads(f, (_actions(4),), order=1, modes=("rev",), eps=1e-6, atol=1e-7, rtol=1e-6)


@pytest.mark.parametrize("name", MODELS)
def test_predict_rollout_and_teacher_forcing_agree(name):
    """predict == stepwise rollout; teacher forcing on the model's own predictions == predict; a closed-loop
    trajectory is predict(s1, its actions); the time channel is exact."""
    system, model, params = _setup(name)
    s1 = system.initial_state()
    actions = _actions(H)
    theta = _theta(system.obs_dim, system.action_dim)

    @jax.jit
    def run(actions):
        pred = model.predict(params, s1, actions)
        traj = gl.rollout((model, params), linear_policy(theta), s1, H)
        return (pred, step_rollout(model, params, s1, actions), model.teacher_forced(params, pred, actions),
                traj, model.predict(params, s1, traj.actions))

    pred, stepped, forced, traj, replay = run(actions)
    tol = dict(rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(stepped, pred, **tol)
    np.testing.assert_allclose(forced, pred, **tol)
    np.testing.assert_allclose(replay, traj.states, **tol)
    np.testing.assert_array_equal(pred[0], s1)
    np.testing.assert_array_equal(pred[:, -1], np.arange(H + 1))
    np.testing.assert_array_equal(traj.states[:, -1], np.arange(H + 1))
    np.testing.assert_allclose(traj.rewards, jax.vmap(system.reward)(traj.states[:-1], traj.actions), rtol=1e-6)


@pytest.mark.parametrize("name", MODELS)
def test_rollout_jit_vmap_over_initial_states(name):
    system, model, params = _setup(name)
    s1s = system.initial_state() + jnp.concatenate([jax.random.normal(jax.random.PRNGKey(1), (3, 2)),
                                                    jnp.zeros((3, 1))], 1)  # [B, O]
    actions = _actions(H)
    theta = _theta(system.obs_dim, system.action_dim)

    def single(s1):
        return (gl.rollout((model, params), actions, s1),
                gl.rollout((model, params), linear_policy(theta), s1, H))

    open_b, closed_b = jax.jit(jax.vmap(single))(s1s)
    assert open_b.states.shape == (3, H + 1, 3) and closed_b.actions.shape == (3, H, 2)
    single = jax.jit(single)
    for i in range(3):
        open_i, closed_i = single(s1s[i])
        np.testing.assert_allclose(open_b.states[i], open_i.states, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(closed_b.states[i], closed_i.states, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(closed_b.ret[i], closed_i.ret, rtol=1e-5)
    np.testing.assert_array_equal(open_b.states[:, 0], s1s)
    assert not np.allclose(closed_b.states[0], closed_b.states[1])


def test_determinism():
    """Same seed and config: bit-identical params and predictions; another seed: other params. Equal models hash
    equal, so a jit cache keyed on the model is reused."""
    system = _system()
    s1, actions = system.initial_state(), _actions(H)
    predict = jax.jit(lambda model, params: model.predict(params, s1, actions), static_argnums=0)
    for name in MODELS:
        a, b = gm.make(name, system), gm.make(name, system)
        assert a == b and hash(a) == hash(b)
        pa, pb = a.init(jax.random.PRNGKey(7)), b.init(jax.random.PRNGKey(7))
        assert jax.tree_util.tree_structure(pa) == jax.tree_util.tree_structure(pb)
        for x, y in zip(jax.tree_util.tree_leaves(pa), jax.tree_util.tree_leaves(pb)):
            np.testing.assert_array_equal(x, y)
        np.testing.assert_array_equal(predict(a, pa), predict(b, pb))
        pc = a.init(jax.random.PRNGKey(8))
        assert not all(np.array_equal(x, y) for x, y in zip(jax.tree_util.tree_leaves(pa),
                                                              jax.tree_util.tree_leaves(pc)))


@pytest.mark.parametrize("name", ["markov", "hwm-transformer", "awm-ssm"])
def test_bad_input_raises_clear_errors(name):
    system, model, params = _setup(name)
    s1, actions = system.initial_state(), _actions(H)
    with pytest.raises(ValueError, match=r"s1 .*obs_dim.* must have shape \(3,\), got \(2,\)"):
        model.predict(params, s1[:-1], actions)
    with pytest.raises(ValueError, match=r"actions must have shape \[H, 2\].*'linear'.*got \(6, 3\)"):
        model.predict(params, s1, _actions(H, 3))
    with pytest.raises(ValueError, match=r"horizon must be an integer in \[1, 6\].*max_horizon.*got 7"):
        model.predict(params, s1, _actions(H + 1))
    with pytest.raises(ValueError, match=r"horizon must be an integer in \[1, 6\]"):
        gl.rollout((model, params), linear_policy(_theta(3, 2)), s1, H + 1)
    with pytest.raises(ValueError, match="s1 must be finite"):
        model.predict(params, s1.at[0].set(jnp.nan), actions)
    with pytest.raises(ValueError, match="actions must be finite"):
        model.predict(params, s1, actions.at[2, 1].set(jnp.inf))
    states = model.predict(params, s1, actions)
    with pytest.raises(ValueError, match=r"states \[H\+1, obs_dim\].*must have shape \(7, 3\), got \(6, 3\)"):
        model.teacher_forced(params, states[:-1], actions)
    with pytest.raises(ValueError, match="states must be finite"):
        model.teacher_forced(params, states.at[3, 0].set(jnp.nan), actions)
    dyn = model.bind(params)
    carry = dyn.reset(s1, H)
    with pytest.raises(ValueError, match=r"action must have shape \(2,\), got \(1,\)"):
        dyn.transition(carry, s1, jnp.zeros(1), None)
    with pytest.raises(ValueError, match=r"horizon must be an integer in \[1, 6\].*got 0"):
        dyn.reset(s1, 0)
    with pytest.raises(ValueError, match=r"normaliser std must be > 0"):
        model.set_normalizer(params, jnp.zeros(2), jnp.array([1.0, 0.0]))
    with pytest.raises(ValueError, match=r"normaliser mean \(state_dim\) must have shape \(2,\)"):
        model.set_normalizer(params, jnp.zeros(3), jnp.ones(2))


@pytest.mark.parametrize("name", ["markov", "awm-transformer"])  # the stepwise and the one-pass paths
def test_normalisation_is_invisible(name):
    """With normalize=True the network sees (x - mean) / std and its outputs are mapped back: predictions in physical
    units equal mean + std * (the same network run on normalised inputs); the statistics get no gradient."""
    system = _system()
    plain = gm.make(name, system)
    normed = gm.make(name, system, normalize=True)
    net = plain.init(jax.random.PRNGKey(0))
    params = normed.init(jax.random.PRNGKey(0))
    assert set(params) == set(net) | {gm.NORMALIZER}
    assert plain.set_normalizer(net, jnp.zeros(2), jnp.ones(2)) is net  # no-op without normalize
    s1, actions = system.initial_state().at[:-1].set(jnp.array([300.0, -30.0])), _actions(H)
    predict_normed, predict_plain = jax.jit(normed.predict), jax.jit(plain.predict)
    np.testing.assert_array_equal(predict_normed(params, s1, actions), predict_plain(net, s1, actions))  # identity
    mean, std = jnp.array([250.0, -40.0]), jnp.array([100.0, 5.0])
    params = normed.set_normalizer(params, mean, std)
    z1 = jnp.concatenate([(s1[:-1] - mean) / std, s1[-1:]])
    expected = mean + std * predict_plain(net, z1, actions)[1:, :-1]
    np.testing.assert_allclose(predict_normed(params, s1, actions)[1:, :-1], expected, rtol=1e-5)
    grads = jax.grad(lambda p: jnp.sum(normed.teacher_forced(p, normed.predict(p, s1, actions), actions) ** 2))(params)
    for stat in ("mean", "std"):
        assert np.all(np.asarray(grads[gm.NORMALIZER][stat]) == 0)


def test_lru_scan_matches_numpy_recurrence():
    """The associative-scan LRU equals a plain NumPy loop of h_t = λ h_{t-1} + γ B u_t, y_t = Re(C h_t) + D u_t."""
    import haiku as hk
    from gradlens.models.ssm import LRU

    fn = hk.without_apply_rng(hk.transform(lambda u: LRU(8, 5, 0.5, 0.99, 3.14)(u)))
    u = jax.random.normal(jax.random.PRNGKey(0), (9, 8))
    p = fn.init(jax.random.PRNGKey(1), u)["lru"]
    p = {k: np.asarray(v, np.float64) for k, v in p.items()}
    lam = np.exp(-np.exp(p["nu_log"]) + 1j * np.exp(p["theta_log"]))
    assert np.all(np.abs(lam) < 1) and np.all((np.abs(lam) > 0.5 - 1e-6) & (np.abs(lam) < 0.99 + 1e-6))
    gb = np.exp(p["gamma_log"])[:, None] * (p["B_re"] + 1j * p["B_im"])
    c = p["C_re"] + 1j * p["C_im"]
    h, ys = np.zeros(5, complex), []
    for row in np.asarray(u, np.float64):
        h = lam * h + gb @ row
        ys.append((c @ h).real + p["D"] * row)
    np.testing.assert_allclose(fn.apply(fn.init(jax.random.PRNGKey(1), u), u), np.array(ys), rtol=2e-4, atol=2e-5)


def test_policy_input_grad_modes_through_a_model():
    """'stop' keeps only action -> future-state paths: dJ/dθ = Σ_t (∂J/∂a_t, open-loop return) ∂π(s_t)/∂θ;
    'full' adds the policy-input paths (through the HWM's fed-back predictions); λ = 0.5 lies between."""
    system, model, params = _setup("hwm-transformer")
    s1 = system.initial_state()
    theta = _theta(system.obs_dim, system.action_dim)

    @jax.jit
    def run(theta):
        ret = lambda th, m: gl.rollout((model, params), linear_policy(th), s1, H, policy_input_grad=m).ret
        grads = [jax.grad(ret)(theta, m) for m in ("stop", "full", 0.5)]
        traj = gl.rollout((model, params), linear_policy(theta), s1, H)
        g_actions = jax.grad(lambda a: gl.rollout((model, params), a, s1).ret)(traj.actions)  # [H, A]
        _, vjp = jax.vjp(lambda th: jax.vmap(lambda o: linear_policy(th)(o, None))(traj.states[:-1]), theta)
        return grads, vjp(g_actions)[0]

    (stop, full, half), expected = run(theta)
    jax.tree_util.tree_map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6), stop, expected)
    assert not np.allclose(full["W"], stop["W"], rtol=1e-3)
    assert not np.allclose(half["W"], stop["W"], rtol=1e-3) and not np.allclose(half["W"], full["W"], rtol=1e-3)


@pytest.mark.parametrize("name", ["awm-transformer", "awm-ssm"])
def test_stop_gradient_awm_rollout_replays_actions_in_one_pass(name, x64):
    """policy_input_grad="stop" through an AWM takes the one-pass replay; λ = 0 (the same gradient) takes the scan."""
    system = gl.envs.make("cancer", horizon=8)
    model = gl.models.make(name, system)
    params = model.init(jax.random.PRNGKey(0))
    s1 = system.initial_state()

    def ret(w, mode):
        policy = lambda obs, key: jnp.tanh(w[0] * obs[:1] + w[1] + 0.3 * jax.random.normal(key, (1,)))
        return gl.rollout((model, params), policy, s1, key=jax.random.PRNGKey(3), policy_input_grad=mode).ret

    w = jnp.array([0.7, -0.2])
    np.testing.assert_allclose(ret(w, "stop"), ret(w, 0.0), rtol=1e-10)
    np.testing.assert_allclose(jax.grad(ret)(w, "stop"), jax.grad(ret)(w, 0.0), rtol=1e-8)
    assert not np.allclose(jax.grad(ret)(w, "stop"), jax.grad(ret)(w, "full"))
