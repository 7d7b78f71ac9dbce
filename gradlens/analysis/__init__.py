"""Analysis layer: gradient-path graphs and counts (`paths`), Jacobian chains d ŝ_t / d a_k (`jacobians`), gradient
statistics (`gradients`), loss landscapes (`landscape`), and all of them in one call (`audit`)."""
from gradlens.analysis import audit, gradients, jacobians, landscape, paths

__all__ = ["audit", "gradients", "jacobians", "landscape", "paths"]
