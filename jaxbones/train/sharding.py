"""Global-array sharding: one 'data' mesh axis over every device of every host.

Data parallel (default): parameters and optimiser state replicated, batches split on their
leading axis. FSDP (``config.sharding='fsdp'``): every array with at least ``min_size``
elements is split over 'data' along its largest axis divisible by the device count
(optimizer moments follow their parameters because they have the same shapes); XLA inserts
the all-gathers / reduce-scatters.

Functions:
  make_mesh(): Mesh of all devices with axis 'data'.
  state_shardings(abstract_state, mesh, mode, min_size): NamedSharding tree for the state.
  batch_sharding(mesh): leading-axis sharding of batches.
  global_batch(local_batch, mesh): per-process numpy dict -> global jax.Arrays.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

AXIS = "data"


def make_mesh(devices=None) -> Mesh:
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), (AXIS,))


def fsdp_spec(shape, n: int, min_size: int) -> P:
    """Shards the largest axis divisible by ``n`` (ties: the last one), if big enough."""
    if n == 1 or int(np.prod(shape, dtype=np.int64)) < min_size:
        return P()
    best = None
    for i, d in enumerate(shape):
        if d % n == 0 and (best is None or d >= shape[best]):
            best = i
    if best is None:
        return P()
    spec = [None] * len(shape)
    spec[best] = AXIS
    return P(*spec)


def state_shardings(abstract_state, mesh: Mesh, mode: str = "data", min_size: int = 2**14):
    """A NamedSharding per leaf of ``abstract_state`` (``jax.eval_shape`` output)."""
    if mode not in ("data", "fsdp"):
        raise ValueError(f"config.sharding must be 'data' or 'fsdp', got {mode!r}")
    n = mesh.shape[AXIS]

    def rule(x):
        if mode == "data" or not hasattr(x, "shape"):
            return NamedSharding(mesh, P())
        return NamedSharding(mesh, fsdp_spec(tuple(x.shape), n, min_size))

    return jax.tree_util.tree_map(rule, abstract_state)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P(AXIS))


def check_batch_size(global_batch_size: int, accum_steps: int = 1) -> None:
    """Fails with the fix when the batch cannot be split evenly over devices/hosts."""
    n_dev, n_proc = jax.device_count(), jax.process_count()
    micro = global_batch_size // max(accum_steps, 1)
    if global_batch_size % max(accum_steps, 1) or micro % n_dev:
        good = n_dev * max(accum_steps, 1)
        lo = max(good, global_batch_size // good * good)
        raise ValueError(
            f"global_batch_size={global_batch_size} with accum_steps={accum_steps} does not split "
            f"over {n_dev} devices: it must be a multiple of devices x accum_steps = {good}; "
            f"set --config.global_batch_size={lo} (or {lo + good})"
        )
    if global_batch_size % n_proc:  # pragma: no cover - implied by the device check
        raise ValueError(f"global_batch_size must be a multiple of process_count={n_proc}")


def global_batch(local_batch: dict, mesh: Mesh) -> dict:
    """Assembles this process's numpy batch dict into global arrays sharded on 'data'."""
    sharding = batch_sharding(mesh)
    n_proc = jax.process_count()

    def make(x):
        x = np.asarray(x)
        shape = (x.shape[0] * n_proc,) + x.shape[1:]
        return jax.make_array_from_process_local_data(sharding, x, shape)

    return {k: make(v) for k, v in local_batch.items()}
