"""gradlens: what policy gradient does a differentiable world model actually give you, and why?

A reimplementation and extension of Ma, Ni, Gehring, D'Oro & Bacon, "Do Transformer World Models Give Better Policy
Gradients?" (ICML 2024), in JAX and Haiku.
"""
from gradlens import envs
from gradlens.rollout import Trajectory, rollout

__version__ = "0.1.0"
__all__ = ["Trajectory", "envs", "rollout"]
