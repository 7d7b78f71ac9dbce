"""World-model fitting: every class learns `linear` and the double pendulum, epoch mechanics, determinism, bad input."""
import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradlens as gl
from gradlens import models
from gradlens.fitting import data as gd, fit as gf, record as fr
from gradlens.models import NORMALIZER

MODELS = ["markov", "hwm-rnn", "hwm-transformer", "awm-rnn", "awm-transformer", "awm-ssm"]
CONFIG = gf.FitConfig(learning_rate=3e-3, batch_size=32, epochs=60, patience=None)

# Held-out open-loop MSE (model fed its own predictions, t = 2 … H+1, physical dims) each class must reach. Measured
# with these seeds (jax 0.10.2 CPU), linear / pendulum: markov 1.5e-4 / 2.6e-2, hwm-rnn 7.0e-4 / 3.5e-4,
# hwm-transformer 1.0e-3 / 1.3e-3, awm-rnn 4.7e-4 / 4.8e-4, awm-transformer 4.8e-3 / 5.4e-4, awm-ssm 2.0e-3 / 2.6e-3:
# thresholds leave a 4-8x margin. The trivial predictor ŝ_t = s_1 scores 2.2 (linear) and 2.6 (pendulum); every
# class must also beat it 20-fold.
LINEAR_MSE = {"markov": 1e-3, "hwm-rnn": 5e-3, "hwm-transformer": 5e-3, "awm-rnn": 3e-3, "awm-transformer": 2e-2,
              "awm-ssm": 1e-2}
PENDULUM_MSE = {"markov": 0.1, "hwm-rnn": 3e-3, "hwm-transformer": 5e-3, "awm-rnn": 3e-3, "awm-transformer": 3e-3,
                "awm-ssm": 1.5e-2}


@pytest.fixture(scope="module")
def linear():
    """`linear` (D = 2, H = 8) with 256 training and 128 held-out episodes of uniform random actions."""
    system = gl.envs.make("linear", state_dim=2, horizon=8)
    return (system, gd.collect(system, "uniform", 256, jax.random.PRNGKey(0)),
            gd.collect(system, "uniform", 128, jax.random.PRNGKey(1)))


@pytest.fixture(scope="module")
def pendulum():
    """Double pendulum with the milder angle scale π, H = 6, the paper's toy data (a_1 ~ U, smearing {0, 0.5})."""
    system = gl.envs.make("double_pendulum", horizon=6, angle_scale=float(np.pi))
    return (system, gd.collect(system, "toy", 256, jax.random.PRNGKey(0)),
            gd.collect(system, "toy", 128, jax.random.PRNGKey(1)))


def _check_fits(name, system, train, test, config, threshold):
    model = models.make(name, system)
    params, history = gf.fit(model, train, jax.random.PRNGKey(2), config, progress=False)
    held_out, baseline = float(gf.mse(model, params, test)), float(gf.baseline_mse(test))
    assert held_out < threshold, (name, held_out, baseline)
    assert held_out < 0.05 * baseline, (name, held_out, baseline)
    assert len(history.train_loss) == len(history.val_loss) == config.epochs
    assert history.best_loss == min(history.val_loss) == history.val_loss[history.best_epoch]
    assert history.train_loss[-1] < 0.1 * history.train_loss[0]


@pytest.mark.parametrize("name", MODELS)
def test_every_class_fits_linear(name, linear):
    _check_fits(name, *linear, CONFIG, LINEAR_MSE[name])


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_every_class_fits_the_double_pendulum(name, pendulum):
    _check_fits(name, *pendulum, dataclasses.replace(CONFIG, epochs=150), PENDULUM_MSE[name])


@pytest.mark.parametrize("name", ["markov", "hwm-transformer", "awm-rnn"])
def test_same_key_same_bits(name, linear):
    system, train, test = linear
    model = models.make(name, system)
    config = dataclasses.replace(CONFIG, epochs=3)
    run = lambda seed: gf.fit(model, train, jax.random.PRNGKey(seed), config, progress=False)
    (p1, h1), (p2, h2), (p3, _) = run(5), run(5), run(6)
    for a, b in zip(jax.tree_util.tree_leaves(p1), jax.tree_util.tree_leaves(p2)):
        np.testing.assert_array_equal(a, b)
    assert h1 == h2
    predict = jax.vmap(model.predict, (None, 0, 0))
    s1 = test.states[:, 0]
    np.testing.assert_array_equal(predict(p1, s1, test.actions), predict(p2, s1, test.actions))
    assert not all(np.array_equal(a, b) for a, b in zip(jax.tree_util.tree_leaves(p1), jax.tree_util.tree_leaves(p3)))


def test_loss_and_chunked_evaluation_match_a_direct_computation(linear):
    system, train, _ = linear
    model = models.make("hwm-rnn", system)
    params = jax.jit(model.init)(jax.random.PRNGKey(0))
    states, actions = train.states[:37], train.actions[:37]
    one = jax.jit(model.teacher_forced)
    pred = np.stack([np.asarray(one(params, s, a)) for s, a in zip(states, actions)])  # episode by episode
    expected = 0.5 * np.mean((pred[:, 1:, :2] - np.asarray(states[:, 1:, :2])) ** 2)  # time channel excluded
    loss = jax.jit(gf.model_loss, static_argnums=0)
    np.testing.assert_allclose(loss(model, params, states, actions), expected, rtol=1e-5)
    for chunk in (37, 8):  # 37 = 4 · 8 + 5: the padded episodes of the last chunk must not count
        np.testing.assert_allclose(gf.evaluate(model, chunk, params, states, actions), expected, rtol=1e-5)


def test_one_epoch_is_adam_over_minibatches_with_the_remainder_dropped(linear):
    system, train, _ = linear
    model = models.make("markov", system)
    params = model.init(jax.random.PRNGKey(0))
    tx = optax.adam(1e-2)
    states, actions = train.states[:10], train.actions[:10]
    new, opt_state, mean_loss = gf.epoch(model, 1e-2, 4, params, tx.init(params), states, actions,
                                         jax.random.PRNGKey(3))
    assert int(opt_state[0].count) == 2  # 10 // 4 minibatches, 2 episodes left out
    # batch = all episodes: the shuffle cannot matter, so one epoch is exactly one Adam step on the full loss
    new, _, mean_loss = gf.epoch(model, 1e-2, 10, params, tx.init(params), states, actions, jax.random.PRNGKey(3))
    value, grads = jax.value_and_grad(lambda p: gf.model_loss(model, p, states, actions))(params)
    updates, _ = tx.update(grads, tx.init(params), params)
    np.testing.assert_allclose(mean_loss, value, rtol=1e-5)
    for a, b in zip(jax.tree_util.tree_leaves(new), jax.tree_util.tree_leaves(optax.apply_updates(params, updates))):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_early_stopping_keeps_the_best_epoch(linear):
    system, train, _ = linear
    model = models.make("markov", system)
    key = jax.random.PRNGKey(4)
    # no decrease counts as an improvement: epoch 0 stays best, patience 2 stops after epoch 2
    config = dataclasses.replace(CONFIG, epochs=50, patience=2, min_delta=1e9)
    params, history = gf.fit(model, train, key, config, progress=False)
    assert history.stopped_early and len(history.train_loss) == 3 and history.best_epoch == 0
    first, capped = gf.fit(model, train, key, dataclasses.replace(config, epochs=1), progress=False)
    assert not capped.stopped_early  # stopped by the cap, not on a plateau: not converged
    for a, b in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(first)):
        np.testing.assert_array_equal(a, b)


def test_normalizer_is_set_from_the_training_states(linear):
    system, train, _ = linear
    big = gd.trajectories(train.states.at[..., :-1].multiply(1000.0), train.actions)
    model = models.make("markov", system, normalize=True)
    config = dataclasses.replace(CONFIG, epochs=2, validation_fraction=0.0)
    params, history = gf.fit(model, big, jax.random.PRNGKey(0), config, progress=False)
    mean, std = gd.state_stats(big)
    np.testing.assert_allclose(params[NORMALIZER]["mean"], mean)
    np.testing.assert_allclose(params[NORMALIZER]["std"], std)
    assert history.val_loss == () and history.best_loss == min(history.train_loss)


def test_accepts_a_batched_rollout(linear):
    system, train, _ = linear
    traj = jax.vmap(lambda a: gl.rollout(system, a, system.initial_state()))(train.actions[:20])
    model = models.make("markov", system)
    params, history = gf.fit(model, traj, jax.random.PRNGKey(0), dataclasses.replace(CONFIG, epochs=2), progress=False)
    assert len(history.val_loss) == 2


def test_bad_input(linear):
    system, train, _ = linear
    model = models.make("markov", system)
    key, cfg = jax.random.PRNGKey(0), dataclasses.replace(CONFIG, epochs=2)
    fit = lambda data, **kw: gf.fit(model, data, key, kw.pop("config", cfg), progress=False, **kw)
    with pytest.raises(ValueError, match="states is empty"):
        fit(([], []))
    with pytest.raises(ValueError, match="ragged"):
        fit(([np.zeros((9, 3)), np.zeros((8, 3))], [np.zeros((8, 1)), np.zeros((8, 1))]))
    with pytest.raises(ValueError, match=r"states contains 1 NaN/Inf value\(s\), in episode\(s\) \[3\]"):
        fit((train.states.at[3, 2, 0].set(jnp.nan), train.actions))
    with pytest.raises(ValueError, match="must be gradlens Trajectories"):
        fit(np.zeros((3, 9, 3)))
    other = gl.envs.make("linear", state_dim=3, horizon=8)
    with pytest.raises(ValueError, match=r"data has obs_dim 4 .* obs_dim 3"):
        fit(gd.collect(other, "uniform", 4, key))
    short = models.make("markov", system, max_horizon=4)
    with pytest.raises(ValueError, match="data horizon 8 exceeds model 'markov'.s max_horizon 4"):
        gf.fit(short, train, key, cfg, progress=False)
    with pytest.raises(ValueError, match="at least one training and one validation"):
        fit(gd.trajectories(train.states[:1], train.actions[:1]))
    with pytest.raises(gf.FitDiverged, match=r"training loss is (nan|inf) at epoch \d") as err:
        fit(train, config=dataclasses.replace(cfg, learning_rate=1e12))
    assert isinstance(err.value, ValueError)
    assert not err.value.history.stopped_early  # a diverged fit did not converge
    assert all(np.all(np.isfinite(x)) for x in jax.tree_util.tree_leaves(err.value.params))
    for bad in (dict(learning_rate=0.0), dict(batch_size=0), dict(epochs=1.5), dict(validation_fraction=1.0),
                dict(patience=0), dict(min_delta=-1.0), dict(rel_min_delta=1.0)):
        with pytest.raises(ValueError, match=f"FitConfig.{next(iter(bad))}"):
            gf.FitConfig(**bad)


# --------------------------------------------------------------------------------------------- fit records
def test_fit_split_is_the_split_fit_holds_out(linear):
    system, train, _ = linear
    model = models.make("markov", system)
    config, key = dataclasses.replace(CONFIG, epochs=2), jax.random.PRNGKey(7)
    part, held_out = gf.fit_split(train, key, config)
    assert part.n_episodes + held_out.n_episodes == train.n_episodes and held_out.n_episodes == 26
    p1, h1 = gf.fit(model, train, key, config, progress=False)
    p2, h2 = gf.fit(model, part, key, config, progress=False, validation=held_out)
    assert h1 == h2  # same training episodes, same held-out ones
    for a, b in zip(jax.tree_util.tree_leaves(p1), jax.tree_util.tree_leaves(p2)):
        np.testing.assert_array_equal(a, b)
    assert gf.fit_split(train, key, dataclasses.replace(config, validation_fraction=0.0)) == (train, None)


def test_repeat_baseline_matches_a_hand_computation():
    # two episodes, H = 2, one physical dim (+ time): s = (1, 2, 4) and (0, -1, 1)
    states = np.array([[[1.0, 0], [2, 1], [4, 2]], [[0, 0], [-1, 1], [1, 2]]])
    data = gd.trajectories(states, np.zeros((2, 2, 1)))
    # step 1: ((2-1)² + (-1-0)²) / 2 = 1; step 2: ((4-1)² + (1-0)²) / 2 = 5
    np.testing.assert_allclose(fr.repeat_error(data), [1.0, 5.0])


def test_least_squares_baseline_recovers_a_known_linear_system():
    A, B = [[0.9, -0.3], [0.2, 0.8]], [[1.0], [-0.5]]
    system = gl.envs.make("linear", A=A, B=B, horizon=6)
    train, test = gd.split(gd.collect(system, "uniform", 24, jax.random.PRNGKey(0)), 0.25, jax.random.PRNGKey(1))
    baseline = fr.fit_linear(train)
    np.testing.assert_allclose(baseline.A, A, atol=1e-5)
    np.testing.assert_allclose(baseline.B, B, atol=1e-5)
    np.testing.assert_allclose(baseline.c, 0.0, atol=1e-5)
    assert np.all(fr.linear_error(baseline, test) < 1e-9) and np.all(fr.repeat_error(test) > 1e-2)


def test_divergence_of_an_expanding_linear_system_is_known():
    # s_{t+1} = 2 s_t, B = 0: a start δ away is 2^t δ away on each dim after t steps, so the MSE is 4^t δ²
    system = gl.envs.make("linear", A=[[2.0, 0.0], [0.0, 2.0]], B=[[0.0], [0.0]], horizon=5)
    data = gd.collect(system, "uniform", 3, jax.random.PRNGKey(0))
    np.testing.assert_allclose(fr.divergence(system, data, 1e-3), 4.0 ** np.arange(1, 6) * 1e-6, rtol=1e-9)


def test_fit_record_bar_and_round_trip(linear):
    system, train, test = linear
    model = models.make("markov", system)
    config = dataclasses.replace(CONFIG, epochs=200, patience=5, min_delta=1e-5)  # a plateau: gains under 1e-5
    params, history = gf.fit(model, train, jax.random.PRNGKey(0), config, progress=False, validation=test)
    good = fr.fit_record(model, params, history, train, test, config.epochs)
    assert good.converged and good.epochs == len(history.train_loss) < 200 and good.max_epochs == 200
    assert all(good.passes(h) for h in range(1, 9)) and good.ratio_to_repeat(8) < 0.01
    np.testing.assert_allclose(good.val_error_by_horizon, fr.open_loop_error(model, params, test))
    assert float(np.mean(good.val_error_by_horizon)) == pytest.approx(float(gf.mse(model, params, test)), rel=1e-5)
    assert fr.FitRecord.from_dict(json.loads(json.dumps(good.to_dict()))) == good
    untrained = fr.fit_record(model, model.init(jax.random.PRNGKey(0)), None, train, test, None)
    assert untrained.converged is None and untrained.epochs == 0 and not untrained.passes(8)
    # the bar is inclusive at exactly half the repeat baseline's error, over steps 1 … H
    half = dataclasses.replace(good, val_error_by_horizon=tuple(0.5 * np.asarray(good.baseline_repeat_by_horizon)))
    assert half.passes(3) and not dataclasses.replace(half, val_error_by_horizon=(1e9,) + half.val_error_by_horizon[
        1:]).passes(3)
    for bad in (0, 9, 2.0):
        with pytest.raises(ValueError, match="horizon must be an integer in \\[1, 8\\]"):
            good.ratio_to_repeat(bad)
    with pytest.raises(ValueError, match="missing keys \\['converged'"):
        fr.FitRecord.from_dict({k: v for k, v in good.to_dict().items() if k != "converged"})
