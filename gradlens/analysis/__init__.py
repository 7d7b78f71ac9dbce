"""Analysis layer: gradient-path graphs and counts (`paths`), Jacobian chains d ŝ_t / d a_k (`jacobians`), gradient
statistics (`gradients`), loss landscapes (`landscape`)."""
from gradlens.analysis import gradients, jacobians, landscape, paths

__all__ = ["gradients", "jacobians", "landscape", "paths"]
