"""Global-array sharding over a named mesh ('data', 'fsdp', 'tensor'), ICI x DCN.

``config.mesh`` sizes the axes: ``data``, ``fsdp``, ``tensor`` within a slice (ICI) and
``dcn_data``, ``dcn_fsdp`` across slices (the data-centre network); one ICI size (and one DCN
size) may be -1: whatever the devices leave. The mesh's 'data' axis has data x dcn_data
devices, 'fsdp' fsdp x dcn_fsdp, 'tensor' tensor; the DCN part is the outer (major) one, so
collectives over an axis cross slices only in its DCN part.

- Batches split their leading axis over ('data', 'fsdp'): every device of a tensor group sees
  the same examples.
- Parameters and optimiser state are replicated over 'data'. Over 'fsdp' every array with at
  least ``min_size`` elements splits along its largest dimension divisible by the axis size
  (ties: the last) that 'tensor' does not take; XLA inserts the all-gathers / reduce-scatters.
- Over 'tensor' a parameter splits where its family's partition rules
  (``jaxbones/layers/partitioning.py``, ``ModelEntry.partition_rules``) name a dimension
  'heads' or 'mlp'; the optimiser moments and EMA of a parameter follow it.

Functions:
  mesh_shape(mesh_cfg, num_devices, num_slices): resolved (ICI sizes, DCN sizes).
  make_mesh(mesh_cfg=None, devices=None): the Mesh.
  state_shardings(abstract_state, mesh, rules=(), min_size): NamedSharding tree for the state.
  batch_sharding(mesh): leading-axis sharding of batches.
  global_batch(local_batch, mesh): per-process numpy dict -> global jax.Arrays.
  check_batch_size(global_batch_size, accum_steps, mesh): the batch splits evenly.
"""

from __future__ import annotations

import collections
import math

import jax
import numpy as np
from jax.experimental import mesh_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxbones.layers.partitioning import PartitionRules, logical_axes

AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")  # the leading (example) axis of batches splits over these
DCN_KEYS = ("dcn_data", "dcn_fsdp")
# logical parameter dimensions (jaxbones/layers/partitioning.py) -> mesh axis
LOGICAL_TO_MESH = {"heads": "tensor", "mlp": "tensor"}


def _resolve(sizes: dict[str, int], total: int, what: str) -> dict[str, int]:
    """Fills the one -1 of ``sizes`` so that their product is ``total``; errors name the fix."""
    free = [k for k, v in sizes.items() if v == -1]
    bad = [k for k, v in sizes.items() if v == 0 or v < -1]
    if bad or len(free) > 1:
        raise ValueError(
            f"config.mesh {what} sizes {sizes}: each must be a positive size, at most one may "
            f"be -1 (whatever the devices leave); e.g. --config.mesh.{free[-1] if free else 'data'}=1"
        )
    known = math.prod(v for v in sizes.values() if v != -1)
    if free:
        if total % known:
            raise ValueError(
                f"config.mesh {what} sizes {sizes}: {total} {what} devices do not split into "
                f"{known} x {free[0]}; make the fixed sizes multiply to a divisor of {total}"
            )
        sizes = {**sizes, free[0]: total // known}
    elif known != total:
        raise ValueError(
            f"config.mesh {what} sizes {sizes} multiply to {known} but there are {total} {what} "
            f"devices; set one of them to -1 (e.g. --config.mesh.{next(iter(sizes))}=-1) or "
            f"make them multiply to {total}"
        )
    return sizes


def mesh_shape(mesh_cfg, num_devices: int, num_slices: int = 1) -> tuple[tuple, tuple]:
    """((data, fsdp, tensor) per slice, (dcn_data, dcn_fsdp, 1)) for ``mesh_cfg``."""
    cfg = dict(mesh_cfg or {})
    unknown = set(cfg) - set(AXES) - set(DCN_KEYS)
    if unknown:
        raise ValueError(
            f"config.mesh has unknown keys {sorted(unknown)}; valid: {list(AXES + DCN_KEYS)}"
        )
    dcn = {k: int(cfg.get(k, 1)) for k in DCN_KEYS}
    if -1 not in dcn.values() and math.prod(dcn.values()) != num_slices and num_slices > 1:
        raise ValueError(
            f"config.mesh dcn sizes {dcn} multiply to {math.prod(dcn.values())} but the devices "
            f"are in {num_slices} slices; set --config.mesh.dcn_data={num_slices} (or -1)"
        )
    slices = num_slices if num_slices > 1 else math.prod(abs(v) for v in dcn.values())
    dcn = _resolve(dcn, slices, "DCN (slices)")
    n_slices = math.prod(dcn.values())
    if num_devices % n_slices:
        raise ValueError(
            f"{num_devices} devices do not split into {n_slices} slices (config.mesh dcn sizes "
            f"{dcn}); set --config.mesh.dcn_data and dcn_fsdp to multiply to a divisor"
        )
    ici = {k: int(cfg.get(k, -1 if k == "data" else 1)) for k in AXES}
    ici = _resolve(ici, num_devices // n_slices, "ICI (per slice)")
    return tuple(ici[k] for k in AXES), (dcn["dcn_data"], dcn["dcn_fsdp"], 1)


def _granules(devices, n: int) -> list[list]:
    """The devices grouped into ``n`` slices: by ``slice_index`` where devices have one (TPU),
    by process where there are ``n`` processes, and otherwise (one CPU process with fake
    devices, for tests) in ``n`` runs of consecutive devices."""
    for attr in ("slice_index", "process_index"):
        groups = collections.defaultdict(list)
        for d in devices:
            groups[getattr(d, attr, None)].append(d)
        if None not in groups and len(groups) == n:
            return [groups[k] for k in sorted(groups)]
    if devices[0].platform != "cpu":
        found = len({getattr(d, "slice_index", 0) for d in devices})
        raise ValueError(
            f"config.mesh asks for {n} slices (dcn_data x dcn_fsdp) but the devices are in "
            f"{found}; set --config.mesh.dcn_data={found} --config.mesh.dcn_fsdp=1"
        )
    per = len(devices) // n
    return [list(devices[i * per : (i + 1) * per]) for i in range(n)]


def make_mesh(mesh_cfg=None, devices=None) -> Mesh:
    """The ('data', 'fsdp', 'tensor') mesh of ``devices`` (default: all) for ``config.mesh``
    (default: all devices on 'data').

    Within a slice the device order comes from ``mesh_utils.create_device_mesh`` (physical
    torus order on TPU); with dcn sizes > 1 the slices are tiled as
    ``mesh_utils.create_hybrid_device_mesh`` does, the DCN part being the major part of each
    axis. CPU devices have no ``slice_index``: there one process's devices are cut into
    consecutive runs that play the slices, so tests exercise the DCN axes."""
    devices = list(jax.devices() if devices is None else devices)
    n_slices = len({getattr(d, "slice_index", 0) for d in devices})
    ici, dcn = mesh_shape(mesh_cfg, len(devices), n_slices)
    granules = _granules(devices, math.prod(dcn)) if math.prod(dcn) > 1 else [devices]
    # allow_split_physical_axes: a tensor or fsdp size smaller than a torus dimension
    per_slice = [
        mesh_utils.create_device_mesh(ici, g, allow_split_physical_axes=True) for g in granules
    ]
    tiles = np.empty(dcn, dtype=object)
    for i, idx in enumerate(np.ndindex(*dcn)):
        tiles[idx] = per_slice[i]
    return Mesh(np.block(tiles.tolist()), AXES)


def batch_size_of(mesh: Mesh) -> int:
    """How many ways a batch splits: data x fsdp devices."""
    return math.prod(mesh.shape[a] for a in BATCH_AXES)


def fsdp_dim(shape, n: int, min_size: int, taken=()) -> int | None:
    """The dimension FSDP splits over ``n`` devices: the largest divisible by ``n`` (ties:
    the last one) not in ``taken``; None if the array is smaller than ``min_size``."""
    if n == 1 or int(np.prod(shape, dtype=np.int64)) < min_size:
        return None
    best = None
    for i, d in enumerate(shape):
        if i not in taken and d % n == 0 and (best is None or d >= shape[best]):
            best = i
    return best


def _path(keys) -> str:
    parts = []
    for k in keys:
        for attr in ("key", "name", "idx"):
            if hasattr(k, attr):
                parts.append(str(getattr(k, attr)))
                break
    return "/".join(parts)


def param_spec(path: str, shape, mesh: Mesh, rules: PartitionRules, min_size: int) -> P:
    """The PartitionSpec of the parameter at ``path``: 'tensor' where the rules name a
    dimension, then 'fsdp' on the largest remaining divisible dimension."""
    spec: list = [None] * len(shape)
    t = mesh.shape["tensor"]
    for i, name in enumerate(logical_axes(rules, path, len(shape))):
        axis = LOGICAL_TO_MESH.get(name) if name else None
        if axis is None or mesh.shape[axis] == 1:
            continue
        if shape[i] % t:
            raise ValueError(
                f"parameter {path} {tuple(shape)}: dimension {i} ({name}, {shape[i]}) does not "
                f"split over tensor={t}; choose --config.mesh.tensor dividing it"
            )
        spec[i] = axis
    dim = fsdp_dim(shape, mesh.shape["fsdp"], min_size, [i for i, s in enumerate(spec) if s])
    if dim is not None:
        spec[dim] = "fsdp"
    return P(*spec)


def state_shardings(abstract_state, mesh: Mesh, rules: PartitionRules = (), min_size: int = 2**14):
    """A NamedSharding per leaf of ``abstract_state`` (``jax.eval_shape`` of a TrainState or
    any pytree with a ``params`` subtree): parameters as ``param_spec`` says; a leaf whose
    path ends with a parameter's path and has its shape (optimiser moments, EMA) like that
    parameter; any other array FSDP only; scalars replicated."""
    leaves, treedef = jax.tree_util.tree_flatten_with_path(abstract_state)
    params = getattr(abstract_state, "params", None)
    if params is None and isinstance(abstract_state, dict):
        params = abstract_state.get("params")
    table = {}
    if params is not None:
        for keys, x in jax.tree_util.tree_flatten_with_path(params)[0]:
            shape = tuple(x.shape)
            table[_path(keys)] = (shape, param_spec(_path(keys), shape, mesh, rules, min_size))

    def spec_of(keys, x):
        if not hasattr(x, "shape"):
            return P()
        parts, shape = _path(keys).split("/"), tuple(x.shape)
        for i in range(len(parts)):
            hit = table.get("/".join(parts[i:]))
            if hit is not None and hit[0] == shape:
                return hit[1]
        dim = fsdp_dim(shape, mesh.shape["fsdp"], min_size)
        return P(*["fsdp" if i == dim else None for i in range(len(shape))])

    out = [NamedSharding(mesh, spec_of(k, x)) for k, x in leaves]
    return jax.tree_util.tree_unflatten(treedef, out)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P(BATCH_AXES))


def check_batch_size(global_batch_size: int, accum_steps: int = 1, mesh: Mesh | None = None):
    """Fails with the fix when the batch cannot be split evenly over the batch shards
    (data x fsdp devices of ``mesh``; all devices without one) and hosts."""
    n_dev = batch_size_of(mesh) if mesh is not None else jax.device_count()
    n_proc = jax.process_count()
    micro = global_batch_size // max(accum_steps, 1)
    if global_batch_size % max(accum_steps, 1) or micro % n_dev:
        good = n_dev * max(accum_steps, 1)
        lo = max(good, global_batch_size // good * good)
        raise ValueError(
            f"global_batch_size={global_batch_size} with accum_steps={accum_steps} does not split "
            f"over {n_dev} batch shards (data x fsdp devices): it must be a multiple of "
            f"shards x accum_steps = {good}; set --config.global_batch_size={lo} (or {lo + good})"
        )
    if global_batch_size % n_proc:  # pragma: no cover - implied by the device check
        raise ValueError(f"global_batch_size must be a multiple of process_count={n_proc}")
    n_local, tensor = jax.local_device_count(), mesh.shape["tensor"] if mesh is not None else 1
    if n_proc > 1 and n_local % tensor:
        # each process feeds its own examples: a tensor group, which shares its examples,
        # must not span processes
        raise ValueError(
            f"config.mesh.tensor={tensor} does not divide the {n_local} devices of a process, "
            f"so a tensor group would span processes that read different examples; set "
            f"--config.mesh.tensor to a divisor of {n_local}"
        )


def global_batch(local_batch: dict, mesh: Mesh) -> dict:
    """Assembles this process's numpy batch dict into global arrays split over the batch axes."""
    sharding = batch_sharding(mesh)
    n_proc = jax.process_count()

    def make(x):
        x = np.asarray(x)
        shape = (x.shape[0] * n_proc,) + x.shape[1:]
        return jax.make_array_from_process_local_data(sharding, x, shape)

    return {k: make(v) for k, v in local_batch.items()}
