"""PyTorch <-> Flax weight mapping: the shared tensor rules and the per-family hooks.

A conversion walks the *Flax* side: the variable shapes of the target model (from
``jax.eval_shape``, no compute) are enumerated, each leaf is mapped to a PyTorch key by the
family's module-path rules and the shared leaf rules below, and the tensor is transposed.
State-dict keys that no leaf consumed are *unexpected*; leaves with no tensor are *missing*.
Both are reported by name.

Shared leaf rules (docs/parity.md):
  Conv ``kernel`` (kh, kw, I/g, O)  <- ``weight`` (O, I/g, kh, kw): ``w.transpose(2, 3, 1, 0)``
  Dense ``kernel`` (in, out)        <- ``weight`` (out, in):       ``w.T``
  norm ``scale`` / ``bias``         <- ``weight`` / ``bias``
  BatchNorm ``mean`` / ``var``      <- ``running_mean`` / ``running_var``
  anything else (``cls_token``, ``pos_embed``, tables) keeps its name and layout.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from flax import traverse_util

from jaxbones.layers.stack import StackLayout, restack

log = logging.getLogger("jaxbones.convert")

FlaxKey = tuple[str, ...]  # (collection, module, ..., leaf)


@dataclasses.dataclass(frozen=True)
class LeafMap:
    """Where one Flax leaf lives in a PyTorch state dict and how to move it."""

    torch_key: str
    to_flax: Callable[[np.ndarray], np.ndarray]
    to_torch: Callable[[np.ndarray], np.ndarray]


def _ident(a):
    return a


def _conv_to_flax(w):
    return w.transpose(2, 3, 1, 0)


def _conv_to_torch(w):
    return w.transpose(3, 2, 0, 1)


def _t(w):
    return w.T


_LEAF_NAMES = {
    ("params", "scale"): "weight",
    ("params", "bias"): "bias",
    ("params", "embedding"): "weight",
    ("batch_stats", "mean"): "running_mean",
    ("batch_stats", "var"): "running_var",
}


def default_leaf_map(torch_module: str, collection: str, leaf: str, ndim: int) -> LeafMap:
    """The shared rules for a leaf whose module maps to ``torch_module``."""
    prefix = f"{torch_module}." if torch_module else ""
    if collection == "params" and leaf == "kernel":
        if ndim == 4:
            return LeafMap(prefix + "weight", _conv_to_flax, _conv_to_torch)
        if ndim == 2:
            return LeafMap(prefix + "weight", _t, _t)
    name = _LEAF_NAMES.get((collection, leaf), leaf)
    return LeafMap(prefix + name, _ident, _ident)


@dataclasses.dataclass
class Converter:
    """One family's mapping.

    Attributes:
      rules: ``(regex, replacement)`` pairs applied in order to the dotted Flax module path
        (``layer1_0.downsample_0``) to give the PyTorch module path (``layer1.0.downsample.0``).
      ignore: regexes of PyTorch keys that are dropped without a report (buffers the Flax
        module recomputes, such as ``num_batches_tracked`` or Swin's ``relative_position_index``).
      canonicalize: ``(state_dict, model) -> state_dict`` turning other published layouts
        (official Swin, original MAE, open_clip) into the one the rules expect.
      leaf_map: ``(flax_key, torch_module, ndim) -> LeafMap | None``: special leaves.
      add_buffers: ``(state_dict, model) -> state_dict``: buffers PyTorch expects that Flax
        does not store (``to_torch``).
      scan_layout: ``model -> [StackLayout]``, where the ``block_stack`` calls of a family
        with ``scan=True`` keep their blocks; conversion always maps the unrolled layout and
        ``to_scanned`` / ``to_unrolled`` restack it.
    """

    rules: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    ignore: list[str] = dataclasses.field(default_factory=lambda: [r"(^|\.)num_batches_tracked$"])
    canonicalize: Callable[[dict, Any], dict] | None = None
    leaf_map: Callable[[FlaxKey, str, int], LeafMap | None] | None = None
    add_buffers: Callable[[dict, Any], dict] | None = None
    scan_layout: Callable[[Any], Sequence[StackLayout]] | None = None

    def to_scanned(self, variables: dict, model) -> dict:
        """Variables of the unrolled twin of ``model`` -> those of ``model`` (``scan=True``)."""
        return restack(variables, self.scan_layout(model), scanned=True)

    def to_unrolled(self, variables: dict, model) -> dict:
        """Variables of ``model`` (``scan=True``) -> those of its unrolled twin."""
        return restack(variables, self.scan_layout(model), scanned=False)

    def torch_module(self, module_path: tuple[str, ...]) -> str:
        path = ".".join(module_path)
        for pattern, repl in self.rules:
            path = re.sub(pattern, repl, path)
        return path

    def map(self, key: FlaxKey, ndim: int) -> LeafMap:
        collection, *modules, leaf = key
        tmod = self.torch_module(tuple(modules))
        if self.leaf_map is not None:
            special = self.leaf_map(key, tmod, ndim)
            if special is not None:
                return special
        return default_leaf_map(tmod, collection, leaf, ndim)

    def ignored(self, torch_key: str) -> bool:
        return any(re.search(p, torch_key) for p in self.ignore)


_CONVERTERS: dict[str, Converter] = {}


def register_converter(family: str, converter: Converter) -> Converter:
    if family in _CONVERTERS:
        raise ValueError(f"converter for family {family!r} is registered twice")
    _CONVERTERS[family] = converter
    return converter


def get_converter(family: str) -> Converter:
    if family not in _CONVERTERS:
        raise ValueError(
            f"no PyTorch converter for model family {family!r}; families with one: "
            f"{', '.join(sorted(_CONVERTERS))}"
        )
    return _CONVERTERS[family]


# ----------------------------------------------------------------------------- loading


_WRAPPERS = ("state_dict", "model", "model_state", "module", "model_ema", "ema")


def _torch_load(torch, path: str) -> Any:
    """``torch.load`` of a weights file; a truncated or corrupt file raises a ValueError that
    names it (torch's own errors are a bare EOFError, KeyError or unpickling error)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        first = (str(e).strip().splitlines() or [""])[0][:200]
        raise ValueError(
            f"{path} ({os.path.getsize(path)} bytes) is not a readable PyTorch checkpoint "
            f"({type(e).__name__}: {first}); the file is probably truncated or corrupt: "
            "download or save it again"
        ) from e


def to_numpy(v: Any) -> np.ndarray:
    if hasattr(v, "detach"):  # torch.Tensor, without importing torch
        v = v.detach().cpu()
        if str(v.dtype) == "torch.bfloat16":
            v = v.float()
        return v.numpy()
    return np.asarray(v)


def read_checkpoint(path: str | os.PathLike) -> Any:
    """The object stored in a ``.pth``/``.pt``/``.bin`` (torch), ``.safetensors`` or ``.npz``
    checkpoint file, as saved (a state dict, or a dict wrapping one)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no checkpoint at {path!r}")
    if path.endswith(".safetensors"):
        from safetensors.numpy import load_file

        return load_file(path)
    if path.endswith(".npz"):
        return dict(np.load(path))
    try:
        import torch
    except ImportError as e:  # pragma: no cover - torch is a test dependency
        raise ImportError(
            f"reading {path} needs PyTorch: pip install torch (or convert it to .safetensors first)"
        ) from e
    return _torch_load(torch, path)


def load_state_dict(source: Any) -> dict[str, np.ndarray]:
    """A flat ``{key: np.ndarray}`` from a state dict, a checkpoint dict wrapping one
    (``{'model': ...}``, ``{'state_dict': ...}``), or a ``.pth``/``.pt``/``.bin``/
    ``.safetensors``/``.npz`` path. A ``module.`` prefix (DataParallel) is stripped."""
    if isinstance(source, (str, os.PathLike)):
        source = read_checkpoint(source)
    if not isinstance(source, dict):
        raise TypeError(f"expected a state dict (dict of tensors/arrays), got {type(source)}")
    for wrapper in _WRAPPERS:
        inner = source.get(wrapper)
        if isinstance(inner, dict) and any(hasattr(v, "shape") for v in inner.values()):
            source = inner
            break
    out = {}
    for k, v in source.items():
        if not hasattr(v, "shape"):
            continue  # epoch counters, args, optimizer state...
        k = k.removeprefix("module.")
        out[k] = to_numpy(v)
    return out


# ----------------------------------------------------------------------------- reports


@dataclasses.dataclass
class ConversionReport:
    """What a conversion could not place: Flax leaves without a tensor (``missing``, filled
    from a fresh initialisation), tensors no leaf used (``unexpected``), and tensors whose
    shape differs (``mismatched``: (key, torch shape, flax shape))."""

    missing: list[str] = dataclasses.field(default_factory=list)
    unexpected: list[str] = dataclasses.field(default_factory=list)
    mismatched: list[tuple[str, tuple, tuple]] = dataclasses.field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def __str__(self) -> str:
        lines = []
        if self.missing:
            lines.append(f"missing ({len(self.missing)}): {', '.join(self.missing)}")
        if self.unexpected:
            lines.append(f"unexpected ({len(self.unexpected)}): {', '.join(self.unexpected)}")
        if self.mismatched:
            lines.append(
                "mismatched shapes: "
                + ", ".join(f"{k} torch {a} vs flax {b}" for k, a, b in self.mismatched)
            )
        return "; ".join(lines) or "all keys matched"


def flatten(variables: dict) -> dict[FlaxKey, Any]:
    return traverse_util.flatten_dict(variables)


def unflatten(flat: dict[FlaxKey, Any]) -> dict:
    return traverse_util.unflatten_dict(flat)


def add_num_batches_tracked(sd: dict, model=None) -> dict:
    """Adds the ``num_batches_tracked`` counters PyTorch BatchNorm expects (value 0)."""
    out = dict(sd)
    for k in sd:
        if k.endswith("running_mean"):
            out[k[: -len("running_mean")] + "num_batches_tracked"] = np.array(0, np.int64)
    return out
