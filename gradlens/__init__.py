"""gradlens: what policy gradient does a differentiable world model actually give you, and why?

A reimplementation and extension of Ma, Ni, Gehring, D'Oro & Bacon, "Do Transformer World Models Give Better Policy
Gradients?" (ICML 2024), in JAX and Haiku.
"""
from gradlens import analysis, envs, models, policies, runs
from gradlens.analysis.audit import AuditConfig, AuditReport, audit
from gradlens.conclusions import conclusions
from gradlens.rollout import Trajectory, rollout
from gradlens.training.data import Trajectories, collect, trajectories
from gradlens.training.fit import FitConfig, FitHistory, fit
from gradlens.training.loop import TrainConfig
from gradlens.training.train import train

__version__ = "0.1.0"
__all__ = ["AuditConfig", "AuditReport", "FitConfig", "FitHistory", "TrainConfig", "Trajectories", "Trajectory",
           "analysis", "audit", "collect", "conclusions", "envs", "fit", "models", "policies", "rollout", "runs",
           "train", "trajectories"]
