"""Reverse mode of a KV-cached transformer rollout that stores no cache per step: `rollout(..., reverse="recompute")`.

Glossary of shapes: H horizon, T = H + 1 token positions, L layers, h heads, dh head width, B steps per block,
O observation dim, A action dim.

JAX's own reverse mode of the cached rollout saves the whole cache [L, 2, h, T, dh] at every step: O(H·T·E) memory
traffic, which made the gradient cost 10-20 forward rollouts at H = 256. Here the forward pass is the plain cached
rollout; it keeps the trajectory and the final cache K, V. The backward pass walks the steps in reverse and recomputes
step t against the final cache: keys and values at positions j < t + 1 are constants there and equal to what step t
read; its own are live. Zero probes added to each layer's attention logits and output make the step's VJP return
their cotangents G_t [L, h, T] and dO_t [L, h, dh], from which the earlier positions' cotangents follow:

    dK_j = Σ_{t ≥ j} G_t[j] q_t / √dh,      dV_j = Σ_{t ≥ j} w_t[j] dO_t        (w_t: step t's attention weights)

These sums run in blocks of B steps (B the largest divisor of H up to `BLOCK`): for the block's own positions in a
small [L, h, B, dh] accumulator, for all earlier positions as one contraction over the block's stacked G, q, w, dO,
so the [L, h, T, dh] accumulators are read and written once per block, not once per step. The reward's VJP runs over
all steps at once before the reverse scan, and, when the policy's input is detached (policy_input_grad="stop"), the
policy's VJP over all steps at once after it: the scan itself holds only the world model's step.
A custom VJP: reverse mode only (forward-mode derivatives raise; use reverse="store" for jvp / jacfwd).
"""
from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.custom_derivatives import SymbolicZero

from gradlens.dynamics import Trajectory, rollout_step
from gradlens.envs.base import physical, time_index, with_time

Array = jax.Array
BLOCK = 32  # most steps per block of the backward pass


def kv_reverse_rollout(dyn, step_policy, s1: Array, horizon: int, step_keys: Array,
                       policy_reads_state: bool) -> Trajectory:
    """The rollout of `dyn` (a `ModelDynamics` whose core has `step_probed`) under step_policy(obs, t, key) -> [A]
    from s1 [O] with step_keys [H, ...]: the values of `gradlens.rollout`, the reverse pass above.

    policy_reads_state: whether gradient flows from the action into the state the policy read (policy_input_grad
    != "stop"); if not, the policy's VJP runs once over all steps after the reverse pass instead of inside it.
    """
    model = dyn.model
    policy_fn, consts = jax.closure_convert(step_policy, s1, jnp.zeros((), jnp.arange(horizon).dtype), step_keys[0])
    block = max(b for b in range(1, min(BLOCK, horizon) + 1) if horizon % b == 0)  # the largest divisor <= BLOCK
    params_perturbed = []  # set by fwd at trace time, read by bwd

    def forward(params, consts, s1, keys):
        dyn_p = type(dyn)(model, params)
        step = lambda carry, inputs: rollout_step(dyn_p, lambda o, t, k: policy_fn(o, t, k, *consts), carry, inputs)
        (memory, _), (nxt, actions, rewards) = jax.lax.scan(step, (dyn_p.reset(s1, horizon), s1),
                                                           (jnp.arange(horizon), keys))
        return Trajectory(jnp.concatenate([s1[None], nxt]), actions, rewards), memory[0]

    @jax.custom_vjp
    def run(params, consts, s1, keys):
        return forward(params, consts, s1, keys)[0]

    def fwd(params, consts, s1, keys):
        params_perturbed.append(any(p.perturbed for p in jax.tree.leaves(params, is_leaf=_is_primal)))
        values = [jax.tree.map(lambda p: p.value, x, is_leaf=_is_primal) for x in (params, consts, s1, keys)]
        traj, frozen = forward(*values)
        return traj, (*values, traj, frozen)

    def bwd(res, ct):
        *inputs, traj, frozen = res
        ct = jax.tree.map(_instantiate, ct, is_leaf=lambda x: isinstance(x, SymbolicZero))
        reverse = _Reverse(model, policy_fn, policy_reads_state, horizon, block, params_perturbed[-1])
        return (*reverse(*inputs, traj, frozen, ct), None)

    run.defvjp(fwd, bwd, symbolic_zeros=True)
    return run(dyn.params, consts, s1, step_keys)


class _Context(NamedTuple):
    """What every step of one backward pass reads (shapes in the module docstring)."""

    params: Any
    consts: tuple  # the policy's closed-over constants
    diff: list  # indices of the inexact ones, the only ones with a cotangent
    float_consts: list
    states: Array  # [H+1, O]
    actions: Array  # [H, A]
    policy_keys: Array  # [H, ...]
    frozen: tuple  # the final cache, per layer (K, V) [h, T, dh]
    probes: tuple  # per layer zero (logits [h, T], output [h, dh])
    ct_obs: Array  # [H+1, O] the states' cotangents, the reward's share added
    ct_act: Array  # [H, A] the actions' cotangents, the reward's share added
    scale: float  # 1 / √dh


class _Reverse:
    """The backward pass: __call__(params, consts, s1, keys, traj, frozen, ct) -> (d params or None, d consts, d s1)."""

    def __init__(self, model, policy_fn, policy_reads_state, horizon, block, with_params):
        self.model, self.policy_fn, self.reads_state = model, policy_fn, policy_reads_state
        self.horizon, self.block, self.with_params = horizon, block, with_params

    def __call__(self, params, consts, s1, keys, traj, frozen, ct):
        c = self._context(params, consts, s1, keys, traj, frozen, ct)
        layers, (heads, positions, dh) = len(frozen), frozen[0][0].shape
        acc0 = (jnp.zeros((layers, heads, positions, dh), s1.dtype),) * 2
        zeros = lambda tree: jax.tree.map(jnp.zeros_like, tree)
        outer0 = (jnp.zeros_like(s1), acc0, zeros(params) if self.with_params else None, zeros(c.float_consts))
        (d_obs, acc, d_par, d_con), d_acts = jax.lax.scan(lambda outer, b: self._block(c, outer, b), outer0,
                                                          jnp.arange(self.horizon // self.block), reverse=True)
        if not self.reads_state:  # the policy's VJP over all steps at once
            ts = jnp.arange(self.horizon)
            all_steps = lambda fc: jax.vmap(lambda o, t, k: self._policy(c, fc, o, t, k))(c.states[:-1], ts,
                                                                                         c.policy_keys)
            d_con, = jax.vjp(all_steps, c.float_consts)[1](d_acts.reshape(c.actions.shape))
        d_par, d_s = self._prime_vjp(c, s1, acc, d_par)
        d_consts = [None] * len(consts)
        for i, d in zip(c.diff, d_con):
            d_consts[i] = d
        return d_par, d_consts, c.ct_obs[0] + d_obs + d_s

    def _context(self, params, consts, s1, keys, traj, frozen, ct) -> _Context:
        """The backward pass's inputs, with the reward's VJP over all steps at once added to the cotangents."""
        layers, (heads, positions, dh) = len(frozen), frozen[0][0].shape
        dtype = s1.dtype
        probes = tuple((jnp.zeros((heads, positions), dtype), jnp.zeros((heads, dh), dtype)) for _ in range(layers))
        diff = [i for i, c in enumerate(consts) if jnp.issubdtype(jnp.result_type(c), jnp.inexact)]
        states, actions = traj.states, traj.actions
        d_obs_r, d_act_r = jax.vjp(jax.vmap(self.model.system.reward), states[:-1], actions)[1](ct.rewards)
        return _Context(params, consts, diff, [consts[i] for i in diff], states, actions,
                        jax.vmap(lambda k: jax.random.split(k)[0])(keys), frozen, probes,
                        ct.states.at[:-1].add(d_obs_r), ct.actions + d_act_r, 1.0 / math.sqrt(dh))

    def _policy(self, c: _Context, float_consts, obs, t, key):
        """The policy's action with its inexact constants replaced by `float_consts` (the VJP's inputs)."""
        all_consts = list(c.consts)
        for i, const in zip(c.diff, float_consts):
            all_consts[i] = const
        return self.policy_fn(obs, t, key, *all_consts)

    def _model_step(self, c: _Context, params, obs, action, t, probes):
        """One cached step against the final cache: ((next obs, its cache entries), (q, w) per layer)."""
        model = self.model
        z = model._encode(params, physical(obs))
        y, entries, aux = model._step_probed(params, c.frozen, z, action, t, probes)
        return (with_time(model._decode(params, y), time_index(obs) + 1), entries), aux

    def _block(self, c: _Context, outer, b):
        """Steps b·B … b·B + B - 1 in reverse; then the earlier positions' (dK, dV) in one contraction."""
        d_obs, acc, d_par, d_con = outer  # acc: per layer (dK, dV) [L, h, T, dh] from the later blocks
        layers, heads, dh = len(c.frozen), c.frozen[0][0].shape[0], c.frozen[0][0].shape[2]
        in_block0 = (jnp.zeros((layers, heads, self.block, dh), c.ct_obs.dtype),) * 2
        (d_obs, _, d_par, d_con), (d_acts, q, w, g, d_out) = jax.lax.scan(
            lambda inner, i: self._step(c, acc, b, inner, i), (d_obs, in_block0, d_par, d_con),
            jnp.arange(self.block), reverse=True)
        acc = (acc[0] + c.scale * jnp.einsum("blht,blhd->lhtd", g, q), acc[1] + jnp.einsum("blht,blhd->lhtd", w, d_out))
        return (d_obs, acc, d_par, d_con), d_acts

    def _step(self, c: _Context, acc, b, inner, i):
        """Step t = b·B + i: its VJP with the cotangents of its cache entries, the policy's VJP where it reads the
        state, and this block's (dK, dV) accumulated at the block's positions."""
        d_obs, in_block, d_par, d_con = inner  # in_block: (dK, dV) [L, h, B, dh] from this block's later steps
        t = b * self.block + i
        p, first = t + 1, b * self.block + 1  # the step's position; the block's positions: first … first + B - 1
        entry_ct = tuple(
            (jax.lax.dynamic_index_in_dim(acc[0][layer], p, axis=1, keepdims=False) + in_block[0][layer, :, i],
             jax.lax.dynamic_index_in_dim(acc[1][layer], p, axis=1, keepdims=False) + in_block[1][layer, :, i])
            for layer in range(len(c.frozen)))
        ct_step = (c.ct_obs[t + 1] + d_obs, entry_ct)
        if self.with_params:
            _, vjp, aux = jax.vjp(lambda pr, o, a, z: self._model_step(c, pr, o, a, t, z),
                                  c.params, c.states[t], c.actions[t], c.probes, has_aux=True)
            d_p, d_o, d_a, d_probe = vjp(ct_step)
            d_par = jax.tree.map(jnp.add, d_par, d_p)
        else:
            _, vjp, aux = jax.vjp(lambda o, a, z: self._model_step(c, c.params, o, a, t, z),
                                  c.states[t], c.actions[t], c.probes, has_aux=True)
            d_o, d_a, d_probe = vjp(ct_step)
        d_a = d_a + c.ct_act[t]
        if self.reads_state:
            d_c, d_po = jax.vjp(lambda fc, o: self._policy(c, fc, o, t, c.policy_keys[t]), c.float_consts,
                                c.states[t])[1](d_a)
            d_o, d_con = d_o + d_po, jax.tree.map(jnp.add, d_con, d_c)
        stack = lambda pairs, k: jnp.stack([pair[k] for pair in pairs])  # per layer -> [L, ...]
        q, w, g, d_out = stack(aux, 0), stack(aux, 1), stack(d_probe, 0), stack(d_probe, 1)
        window = lambda x: jax.lax.dynamic_slice_in_dim(x, first, self.block, axis=-1)  # [L, h, B]
        in_block = (in_block[0] + c.scale * jnp.einsum("lhb,lhd->lhbd", window(g), q),
                    in_block[1] + jnp.einsum("lhb,lhd->lhbd", window(w), d_out))
        return (d_o, in_block, d_par, d_con), (d_a, q, w, g, d_out)

    def _prime_vjp(self, c: _Context, s1, acc, d_par):
        """(d params, d s1) of position 0, s_1's token, whose keys and values come from `prime`."""
        model, horizon = self.model, self.horizon
        prime = lambda pr, s: model._prime(pr, model._encode(pr, physical(s)), horizon)
        memory_ct = tuple((acc[0][layer], acc[1][layer]) for layer in range(len(c.frozen)))
        if self.with_params:
            d_p, d_s = jax.vjp(prime, c.params, s1)[1](memory_ct)
            return jax.tree.map(jnp.add, d_par, d_p), d_s
        d_s, = jax.vjp(lambda s: prime(c.params, s), s1)[1](memory_ct)
        return d_par, d_s


def _is_primal(x) -> bool:
    return hasattr(x, "perturbed") and hasattr(x, "value")


def _instantiate(x):
    return jnp.zeros(x.aval.shape, x.aval.dtype) if isinstance(x, SymbolicZero) else x
