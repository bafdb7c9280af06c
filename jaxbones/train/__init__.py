"""The training system: sharded jit/optax loops, orbax checkpoints, logging, tasks.

Modules: ``config`` (default_config, --config overrides), ``sharding`` (the named
data/fsdp/tensor mesh, state shardings from the families' partition rules, global batches),
``optim`` (optimisers, schedules, masks, layer decay), ``step`` (TrainState, train/eval
steps), ``tasks`` (classification, mae, linprobe, segmentation, clip), ``evaluators``
(``config.evals``), ``checkpoint`` (orbax), ``logger`` (metrics, TensorBoard, plots, peak
FLOPs), ``inputs`` (in-memory iterators), ``loop`` (``run`` -> ``RunResult``).
"""

from jaxbones.train import config, optim, sharding, tasks
from jaxbones.train.config import apply_overrides, default_config
from jaxbones.train.loop import run
from jaxbones.train.step import TrainState

__all__ = [
    "TrainState",
    "apply_overrides",
    "config",
    "default_config",
    "optim",
    "run",
    "sharding",
    "tasks",
]
