"""PyTorch <-> Flax weight conversion for every registered model.

``from_torch(name, state_dict)`` returns Flax variables (``{'params', 'batch_stats'?}``) for
``create_model(name, **overrides)``; ``to_torch(name, variables)`` is the inverse. Family
converters live in this package (one file per family) and register themselves on import.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
from typing import Any

import jax
import numpy as np

from jaxbones.convert.core import (
    ConversionReport,
    Converter,
    LeafMap,
    add_num_batches_tracked,
    default_leaf_map,
    flatten,
    get_converter,
    load_state_dict,
    read_checkpoint,
    register_converter,
    unflatten,
)
from jaxbones.registry import create_model, get_entry, init_shapes, init_variables

log = logging.getLogger("jaxbones.convert")

__all__ = [
    "ConversionReport",
    "Converter",
    "LeafMap",
    "add_num_batches_tracked",
    "default_leaf_map",
    "from_torch",
    "get_converter",
    "load_state_dict",
    "read_checkpoint",
    "register_converter",
    "to_torch",
]


def _converter_for(name: str) -> Converter:
    return get_converter(get_entry(name).family)


def _unrolled_overrides(model, overrides: dict) -> dict:
    # Conversion maps the unrolled layout; scanned models are converted through their twin.
    if getattr(model, "scan", False):
        return {**overrides, "scan": False}
    return overrides


def from_torch(
    name: str,
    state_dict: Any,
    *,
    strict: bool = False,
    skip_mismatched: bool = False,
    seed: int = 0,
    return_report: bool = False,
    **overrides: Any,
):
    """Converts a PyTorch state dict (or checkpoint path) into Flax variables for
    ``create_model(name, **overrides)``.

    Args:
      name: registered model name.
      state_dict: dict of tensors/arrays, a checkpoint dict wrapping one, or a path to a
        ``.pth``/``.pt``/``.bin``/``.safetensors``/``.npz`` file.
      strict: raise if any key is missing or unexpected (default: report and continue;
        missing leaves keep a fresh initialisation from ``seed``).
      skip_mismatched: re-initialise leaves whose shapes differ (a new classifier head for
        ``num_classes=10``) instead of raising.
      return_report: also return the ``ConversionReport``.
      **overrides: model options, as for ``create_model``.
    """
    conv = _converter_for(name)
    model = create_model(name, **overrides)
    unrolled = _unrolled_overrides(model, overrides)
    sd = load_state_dict(state_dict)
    if conv.canonicalize is not None:
        sd = conv.canonicalize(sd, create_model(name, **unrolled))
    shapes = flatten(init_shapes(name, **unrolled))
    report = ConversionReport()
    used: set[str] = set()
    out: dict = {}
    for key, sds in shapes.items():
        m = conv.map(key, len(sds.shape))
        if m.torch_key not in sd:
            report.missing.append(m.torch_key)
            continue
        used.add(m.torch_key)
        arr = np.asarray(m.to_flax(sd[m.torch_key]))
        if arr.shape != tuple(sds.shape):
            report.mismatched.append((m.torch_key, tuple(sd[m.torch_key].shape), tuple(sds.shape)))
            continue
        out[key] = arr.astype(sds.dtype)
    report.unexpected = sorted(k for k in sd if k not in used and not conv.ignored(k))
    if report.mismatched and not skip_mismatched:
        raise ValueError(
            f"{name}: tensors with the wrong shape: "
            + ", ".join(f"{k} torch {a} -> flax {b}" for k, a, b in report.mismatched)
            + ". Check the model options (num_classes, img_size, ...) match the checkpoint, "
            "or pass skip_mismatched=True to re-initialise these (e.g. a new head)."
        )
    if strict and not report.clean:
        raise ValueError(f"{name}: checkpoint does not match the model: {report}")
    if not report.clean:
        log.warning("%s: %s", name, report)
    if len(out) < len(shapes):  # fill missing / re-initialised leaves from a real init
        fresh = flatten(init_variables(name, seed, **unrolled))
        out = {k: out.get(k, fresh[k]) for k in shapes}
    variables = unflatten({k: jax.numpy.asarray(v) for k, v in out.items()})
    if unrolled is not overrides and conv.scan_layout is not None:
        variables = conv.to_scanned(variables, model)
    return (variables, report) if return_report else variables


def to_torch(name: str, variables: Any, *, tensors: bool = False, **overrides: Any) -> dict:
    """Flax variables of ``create_model(name, **overrides)`` -> a PyTorch state dict
    (numpy arrays; torch tensors with ``tensors=True``) that the reference model loads with
    ``load_state_dict(..., strict=True)``."""
    conv = _converter_for(name)
    model = create_model(name, **overrides)
    unrolled = _unrolled_overrides(model, overrides)
    if unrolled is not overrides and conv.scan_layout is not None:
        variables = conv.to_unrolled(variables, model)
    variables = {k: v for k, v in variables.items() if k in ("params", "batch_stats", "buffers")}
    sd = {}
    for key, v in flatten(variables).items():
        arr = np.asarray(v)
        m = conv.map(key, arr.ndim)
        sd[m.torch_key] = np.ascontiguousarray(m.to_torch(arr))
    if conv.add_buffers is not None:
        sd = conv.add_buffers(sd, create_model(name, **unrolled))
    if tensors:
        import torch

        sd = {k: torch.from_numpy(np.array(v)) for k, v in sd.items()}
    return sd


# Family converters register themselves on import (one file per family).
for _m in pkgutil.iter_modules(__path__):
    if _m.name != "core":
        importlib.import_module(f"{__name__}.{_m.name}")
