"""Training: BPO objective and update (`bpo`), the run configuration (`config`), the training methods behind one
protocol (`protocol`; `methods`: BPO through the simulator or a world model, the model-free baselines SAC and ODT),
the compiled loop every method runs in (`loop`) and the driver with checkpoints (`train`, a layer up: it writes run
folders, so it is imported on its own, `gradlens.training.train`). Data collection and world-model fitting live a
layer down, in `gradlens.fitting`. Public functions are re-exported at the top level (`gradlens.train`, ...); here
the submodules stay reachable by name."""
from gradlens.training import bpo, config, loop, methods, protocol

__all__ = ["bpo", "config", "loop", "methods", "protocol"]
