"""Training: offline data (`data`), world-model fitting (`fit`) and its
held-out record against trivial predictors (`fit_record`), BPO objective and update (`bpo`), the compiled
Algorithm-1 loop (`loop`), the model-free baselines SAC and ODT (`baselines`) and the driver with checkpoints
(`train`). Public functions are re-exported at the top level (`gradlens.collect`, `gradlens.fit`, `gradlens.train`,
...); here the submodules stay reachable by name."""
from gradlens.training import baselines, bpo, data, fit, fit_record, loop, train

__all__ = ["baselines", "bpo", "data", "fit", "fit_record", "loop", "train"]
