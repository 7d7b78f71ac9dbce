"""Analysis layer: gradient-path graphs and counts (`paths`)."""
from gradlens.analysis import paths

__all__ = ["paths"]
