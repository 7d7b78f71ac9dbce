"""The observation layout: physical state first, the time index as the last channel, owned by three helpers."""
import jax.numpy as jnp
import numpy as np

import gradlens as gl
from gradlens.envs import physical, time_index, with_time


def test_the_layout_helpers_split_and_join_observations():
    obs = jnp.arange(24.0).reshape(2, 3, 4)  # [..., O = D + 1], D = 3
    np.testing.assert_array_equal(physical(obs), obs[..., :3])
    np.testing.assert_array_equal(time_index(obs), obs[..., 3])
    np.testing.assert_array_equal(with_time(physical(obs), time_index(obs)), obs)
    system = gl.envs.make("linear", horizon=4)
    s1 = system.initial_state()
    s2 = system.step(s1, jnp.zeros((system.action_dim,)))
    assert physical(s1).shape == (system.state_dim,) and time_index(s1) == 0 and time_index(s2) == 1
    np.testing.assert_array_equal(physical(s1), np.asarray(system.x0, s1.dtype))
