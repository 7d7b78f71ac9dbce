"""gradlens: what policy gradient does a differentiable world model actually give you, and why?

A reimplementation and extension of Ma, Ni, Gehring, D'Oro & Bacon, "Do Transformer World Models Give Better Policy
Gradients?" (ICML 2024), in JAX and Haiku.

The public names below are imported on first use (PEP 562), so `import gradlens` and `gradlens --help` do not load
JAX, SciPy or pandas until something needs them.
"""
import importlib
import sys
import types

__version__ = "0.1.0"
_SUBMODULES = ("analysis", "envs", "models", "policies", "runs")
_NAMES = {"AuditConfig": "gradlens.analysis.audit", "AuditReport": "gradlens.analysis.audit",
          "audit": "gradlens.analysis.audit", "conclusions": "gradlens.conclusions", "Trajectory": "gradlens.rollout",
          "rollout": "gradlens.rollout", "Trajectories": "gradlens.fitting.data", "collect": "gradlens.fitting.data",
          "trajectories": "gradlens.fitting.data", "FitConfig": "gradlens.fitting.fit",
          "FitHistory": "gradlens.fitting.fit", "fit": "gradlens.fitting.fit",
          "TrainConfig": "gradlens.training.config", "train": "gradlens.training.train"}
__all__ = sorted([*_NAMES, *_SUBMODULES])


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"gradlens.{name}")
    if name in _NAMES:
        value = getattr(importlib.import_module(_NAMES[name]), name)
        globals()[name] = value  # once: later lookups do not come here
        return value
    raise AttributeError(f"module 'gradlens' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_NAMES, *_SUBMODULES])


class _Package(types.ModuleType):
    """`gradlens.rollout` and `gradlens.conclusions` name both a function and its module. Importing the module sets
    the package's attribute to the module; the public name is the function (as `gl.rollout(system, ...)`), so that
    assignment is dropped: the module stays in sys.modules, the attribute resolves to the function on first use."""

    def __setattr__(self, name, value):
        if not (name in _NAMES and isinstance(value, types.ModuleType)):
            super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
