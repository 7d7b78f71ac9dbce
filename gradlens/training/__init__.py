"""Training: offline data (`data`), world-model fitting (`fit`), BPO objective and update (`bpo`), the compiled
Algorithm-1 loop (`loop`), the model-free baselines SAC and ODT (`baselines`) and the driver with checkpoints
(`train`). Public functions are re-exported at the top level (`gradlens.collect`, `gradlens.fit`, `gradlens.train`,
...); here the submodules stay reachable by name."""
from gradlens.training import baselines, bpo, data, fit, loop, train

__all__ = ["baselines", "bpo", "data", "fit", "loop", "train"]
