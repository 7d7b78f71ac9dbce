"""A stack of diagonal linear recurrent units (LRU, Orvieto et al. 2023): the SSM backbone of `awm-ssm`.

Glossary of shapes: T token positions, E width, N state size (complex), L layers.

Each unit is a diagonal complex linear recurrence with a stable parametrisation |λ| = exp(-exp(ν)) < 1:

    h_t = λ ⊙ h_{t-1} + γ ⊙ (B u_t),   y_t = Re(C h_t) + D ⊙ u_t,   h_{-1} = 0,

computed for a whole sequence with `jax.lax.associative_scan` (depth O(log T)) and one token at a time in `step` (the
same recurrence). A layer is x + GLU(gelu(LRU(LN(x)))); a final LayerNorm closes the stack.
"""
from __future__ import annotations

import math

import haiku as hk
import jax
import jax.numpy as jnp

Array = jax.Array


def _complex(dtype):
    return jnp.result_type(dtype, jnp.complex64)


def _combine(left, right):
    """Associative operator of h_t = a_t h_{t-1} + b_t: (a1, b1) ∘ (a2, b2) = (a1 a2, a2 b1 + b2)."""
    a1, b1 = left
    a2, b2 = right
    return a1 * a2, a2 * b1 + b2


class LRU(hk.Module):
    """Linear recurrent unit u [.., E] -> y [.., E] with N complex states; |λ| initialised uniform on the ring
    [r_min, r_max] and phases in [0, max_phase]."""

    def __init__(self, width: int, state: int, r_min: float, r_max: float, max_phase: float, name=None):
        super().__init__(name=name)
        self.width, self.state = width, state
        self.r_min, self.r_max, self.max_phase = r_min, r_max, max_phase

    def _params(self, dtype):
        n, e = self.state, self.width

        def nu_init(shape, dtype):  # |λ|² uniform on [r_min², r_max²]
            u = jax.random.uniform(hk.next_rng_key(), shape, dtype)
            return jnp.log(-0.5 * jnp.log(u * (self.r_max**2 - self.r_min**2) + self.r_min**2))

        def theta_init(shape, dtype):
            return jnp.log(self.max_phase * jax.random.uniform(hk.next_rng_key(), shape, dtype, 1e-3, 1.0))

        nu_log = hk.get_parameter("nu_log", [n], dtype, init=nu_init)
        theta_log = hk.get_parameter("theta_log", [n], dtype, init=theta_init)
        lam = jnp.exp(jax.lax.complex(-jnp.exp(nu_log), jnp.exp(theta_log)))  # [N], |λ| < 1
        gamma_log = hk.get_parameter("gamma_log", [n], dtype,
                                     init=lambda s, d: 0.5 * jnp.log1p(-jnp.abs(jax.lax.stop_gradient(lam)) ** 2))
        b_init = hk.initializers.RandomNormal(1.0 / math.sqrt(2 * e))
        c_init = hk.initializers.RandomNormal(1.0 / math.sqrt(n))
        b = jax.lax.complex(hk.get_parameter("B_re", [n, e], dtype, init=b_init),
                            hk.get_parameter("B_im", [n, e], dtype, init=b_init))  # [N, E]
        c = jax.lax.complex(hk.get_parameter("C_re", [e, n], dtype, init=c_init),
                            hk.get_parameter("C_im", [e, n], dtype, init=c_init))  # [E, N]
        d = hk.get_parameter("D", [e], dtype, init=hk.initializers.RandomNormal(1.0))
        return lam, jnp.exp(gamma_log)[:, None] * b, c, d

    def __call__(self, u: Array) -> Array:
        """Whole sequence u [T, E] -> y [T, E] by a parallel associative scan."""
        lam, gb, c, d = self._params(u.dtype)
        bu = u.astype(_complex(u.dtype)) @ gb.T  # [T, N]
        _, h = jax.lax.associative_scan(_combine, (jnp.broadcast_to(lam, bu.shape), bu))  # [T, N]
        return (h @ c.T).real + u * d

    def initial(self, dtype) -> Array:
        return jnp.zeros(self.state, _complex(dtype))  # [N]

    def step(self, u: Array, h: Array) -> tuple[Array, Array]:
        """One token u [E] with state h [N] -> (y [E], h)."""
        lam, gb, c, d = self._params(u.dtype)
        h = lam * h + gb @ u.astype(h.dtype)
        return (c @ h).real + u * d, h


class SSMBackbone(hk.Module):
    """L residual LRU layers (pre-LayerNorm, gelu, GLU) and a final LayerNorm; carry = tuple of L states [N]."""

    def __init__(self, width: int, layers: int, state: int, r_min: float, r_max: float, max_phase: float,
                 name: str | None = None):
        super().__init__(name=name)
        self.lns = [hk.LayerNorm(-1, True, True, name=f"ln_{i}") for i in range(layers)]
        self.lrus = [LRU(width, state, r_min, r_max, max_phase, name=f"lru_{i}") for i in range(layers)]
        self.glus = [hk.Linear(2 * width, name=f"glu_{i}") for i in range(layers)]
        self.ln_f = hk.LayerNorm(-1, True, True, name="ln_f")

    def _glu(self, i: int, y: Array) -> Array:
        value, gate = jnp.split(self.glus[i](jax.nn.gelu(y)), 2, axis=-1)
        return value * jax.nn.sigmoid(gate)

    def __call__(self, tokens: Array) -> Array:
        x = tokens  # [T, E]
        for i, lru in enumerate(self.lrus):
            x = x + self._glu(i, lru(self.lns[i](x)))
        return self.ln_f(x)

    def initial(self, length: int, dtype) -> tuple[Array, ...]:
        return tuple(lru.initial(dtype) for lru in self.lrus)

    def step(self, token: Array, carry: tuple[Array, ...], pos: Array) -> tuple[Array, tuple[Array, ...]]:
        x, states = token, []
        for i, lru in enumerate(self.lrus):
            y, h = lru.step(self.lns[i](x), carry[i])
            x = x + self._glu(i, y)
            states.append(h)
        return self.ln_f(x), tuple(states)
