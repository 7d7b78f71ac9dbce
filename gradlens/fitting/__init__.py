"""Fitting world models, below both training and analysis: offline data (`data`: a validated batch of episodes,
collection from a true system under an exploration scheme), fitting by MSE on predicted states (`fit`) and the held-out
record of a fit against trivial predictors (`record`). Public functions are re-exported at the top level
(`gradlens.collect`, `gradlens.fit`, ...); here the submodules stay reachable by name."""
from gradlens.fitting import data, fit, record

__all__ = ["data", "fit", "record"]
