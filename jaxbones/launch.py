"""Entry point: command-line config overrides, ``jax.distributed`` start-up, ``train.run``.

``python -m experiments.<recipe> [--coordinator=HOST:PORT --num_processes=N --process_id=I]
[--config.key=value ...]``; ``python -m jaxbones.launch`` runs ``default_config()``.

Multi-host start-up (``initialize_distributed``), first match wins:
  1. explicit flags ``--coordinator/--num_processes/--process_id``, or the environment
     variables ``JAXBONES_COORDINATOR``, ``JAXBONES_NUM_PROCESSES``, ``JAXBONES_PROCESS_ID``;
  2. a TPU pod slice or a SLURM job with more than one task: ``jax.distributed.initialize()``
     with no arguments (jax's own cluster auto-detection);
  3. otherwise a single process.
On CPU, multi-process collectives use gloo. The topology and the derived per-host and
per-device batch sizes are logged by ``train.run``; only process 0 writes logs and plots
(orbax coordinates its own checkpoint writes).
"""

from __future__ import annotations

import json
import logging
import os
import sys

_LAUNCH_FLAGS = ("--coordinator", "--num_processes", "--process_id")


def _split_args(argv):
    launch, rest = {}, []
    i = 0
    while i < len(argv):
        a = argv[i]
        name = a.split("=", 1)[0]
        if name in _LAUNCH_FLAGS:
            if "=" in a:
                launch[name[2:]] = a.split("=", 1)[1]
            else:
                launch[name[2:]] = argv[i + 1]
                i += 1
        else:
            rest.append(a)
        i += 1
    return launch, rest


def _auto_cluster() -> bool:
    """True inside a multi-task SLURM job or on a multi-host TPU slice."""
    if int(os.environ.get("SLURM_NTASKS", "1")) > 1:
        return True
    hosts = os.environ.get("TPU_WORKER_HOSTNAMES", "")
    return "," in hosts or bool(os.environ.get("MEGASCALE_COORDINATOR_ADDRESS"))


def initialize_distributed(coordinator=None, num_processes=None, process_id=None) -> None:
    """Starts ``jax.distributed`` when the flags, the environment or the cluster ask for it."""
    import jax

    coordinator = coordinator or os.environ.get("JAXBONES_COORDINATOR")
    num_processes = num_processes or os.environ.get("JAXBONES_NUM_PROCESSES")
    process_id = process_id if process_id is not None else os.environ.get("JAXBONES_PROCESS_ID")
    if coordinator:
        if num_processes is None or process_id is None:
            raise ValueError(
                "--coordinator needs --num_processes and --process_id (or JAXBONES_NUM_PROCESSES"
                " and JAXBONES_PROCESS_ID)"
            )
        if int(num_processes) > 1 and jax.config.jax_platforms in (None, "", "cpu"):
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(
            coordinator_address=coordinator,
            num_processes=int(num_processes),
            process_id=int(process_id),
        )
    elif _auto_cluster():
        jax.distributed.initialize()


def topology() -> dict:
    import jax

    return {
        "process_index": jax.process_index(),
        "process_count": jax.process_count(),
        "local_devices": jax.local_device_count(),
        "devices": jax.device_count(),
        "platform": jax.devices()[0].platform,
        "device_kind": jax.devices()[0].device_kind,
    }


def _model_family(config) -> str:
    """The family of the model a run config trains (its pretrained tag's when ``model`` is
    empty)."""
    from jaxbones.registry import get_entry
    from jaxbones.train.pretrained import data_settings

    # the registry entry, not model_info: counting parameters would start the backend
    return get_entry(data_settings(config)["model"]).family


def main(get_config, argv=None, finalize=None):
    """Parses ``argv`` (default ``sys.argv[1:]``), starts jax.distributed, runs training;
    returns ``train.run``'s ``RunResult``.

    ``finalize(config) -> config`` derives keys from others after the overrides (a recipe's
    fine-tuning mode sets the trainable parameters, for example)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    from jaxbones.hardware import retain_host_memory, tune_xla_cpu

    retained = retain_host_memory()  # before jax starts its backend (it refuses after)
    launch, overrides = _split_args(argv)
    from jaxbones.train.config import apply_overrides

    config = get_config()
    config.lock()
    apply_overrides(config, overrides)  # typos fail here, before any device work
    tuned = tune_xla_cpu([_model_family(config)])  # also before the backend starts
    initialize_distributed(
        launch.get("coordinator"), launch.get("num_processes"), launch.get("process_id")
    )
    if finalize is not None:  # after jax.distributed: it may use jax
        config = finalize(config)
    import jax

    from jaxbones.train import run

    logging.basicConfig(
        level=logging.INFO if jax.process_index() == 0 else logging.WARNING,
        format="%(asctime)s %(message)s",
    )
    if jax.process_index() == 0:
        print(f"topology: {json.dumps(topology())}", flush=True)
        print(f"host memory retained: {retained}", flush=True)
        print(f"XLA CPU flags added: {' '.join(tuned) or 'none'}", flush=True)
    result = run(config)
    if jax.process_index() == 0:
        print("final: " + json.dumps(result.summary()), flush=True)
    return result


if __name__ == "__main__":
    from jaxbones.train.config import default_config

    main(default_config)
