"""Analysis layer: gradient-path graphs and counts (`paths`), gradient statistics (`gradients`), loss landscapes
(`landscape`)."""
from gradlens.analysis import gradients, landscape, paths

__all__ = ["gradients", "landscape", "paths"]
