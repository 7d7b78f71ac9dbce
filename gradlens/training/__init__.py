"""Training: offline data (`data`), world-model fitting (`fit`), BPO objective and update (`bpo`), the compiled
Algorithm-1 loop (`loop`) and its driver with checkpoints (`train`). Public functions are re-exported at the top
level (`gradlens.collect`, `gradlens.fit`, `gradlens.train`, ...); here the submodules stay reachable by name."""
from gradlens.training import bpo, data, fit, loop, train

__all__ = ["bpo", "data", "fit", "loop", "train"]
