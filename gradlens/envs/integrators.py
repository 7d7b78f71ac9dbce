"""Fixed-step integrators shared by the continuous-time systems (work on NumPy and JAX arrays alike)."""
from __future__ import annotations


def rk4_step(f, y, h):
    """One classical Runge-Kutta step of size h for y' = f(y)."""
    k1 = f(y)
    k2 = f(y + 0.5 * h * k1)
    k3 = f(y + 0.5 * h * k2)
    k4 = f(y + h * k3)
    return y + (h / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
