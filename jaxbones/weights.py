"""Published weights by name: ``model, variables = load_pretrained('resnet50.tv_in1k')``.

A tag (``'model.tag'``, or a bare model name for its default tag; ``list_pretrained()``)
names a ``PretrainedCfg`` registered next to its model family. Loading it:

1. ``jaxbones.hub.fetch`` gets the checkpoint file (Hub repo or URL; cached, verified).
2. The file is converted once with ``jaxbones.convert.from_torch`` (strict: every tensor of
   the checkpoint's own architecture must be there) and the Flax variables are cached under
   ``$JAXBONES_CACHE/converted``, keyed by the tag and the source file's identity, so later
   loads read one ``.npz`` instead of converting again.
3. The checkpoint's variables are fitted to the model asked for: a different ``num_classes``
   re-initialises the head (and says so), a different ``in_chans`` adapts the first
   convolution as timm does (summed over RGB for one channel; repeated and rescaled by
   3 / in_chans for more), ``features_only`` drops the head, and ``scan=True`` restacks.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxbones import convert, hub
from jaxbones.convert.core import flatten, unflatten
from jaxbones.registry import (
    PretrainedCfg,
    create_model,
    get_entry,
    get_pretrained_cfg,
    init_shapes,
    init_variables,
    model_fields,
)

log = logging.getLogger("jaxbones.weights")

# Bumped whenever a converter changes what it produces for the same file, so stale converted
# caches are not read back.
CONVERTED_FORMAT = 1
_CONVERSION_OPTIONS = ("img_size",)


@dataclasses.dataclass
class LoadReport:
    """What ``load_pretrained`` did beyond copying the checkpoint.

    Attributes:
      tag: the resolved tag; file: the checkpoint file read; from_cache: the converted
      variables came from the cache; reinitialized: leaves of a new head (other num_classes);
      adapted: first-conv leaves fitted to in_chans; dropped: checkpoint leaves the model does
      not have (the head of a ``features_only`` model).
    """

    tag: str
    file: str
    from_cache: bool = False
    reinitialized: list[str] = dataclasses.field(default_factory=list)
    adapted: list[str] = dataclasses.field(default_factory=list)
    dropped: list[str] = dataclasses.field(default_factory=list)


def load_pretrained(
    name: str,
    *,
    file: str | os.PathLike | None = None,
    num_classes: int | None = None,
    in_chans: int | None = None,
    seed: int = 0,
    cache: bool = True,
    return_report: bool = False,
    **overrides: Any,
) -> tuple[nn.Module, dict[str, Any]]:
    """The model of a pretrained tag and its published weights as Flax variables.

    Args:
      name: ``'model.tag'`` or a bare model name (its default tag); see ``list_pretrained``.
      file: a local checkpoint file in the tag's published format, used instead of the
        tag's URL or Hub repo (the tag still gives the model options and data settings).
      num_classes: classes of the new head; default the checkpoint's. A different number
        re-initialises the head from ``seed`` (logged).
      in_chans: input channels; default 3. Others adapt the first convolution.
      cache: read and write the converted variables under ``$JAXBONES_CACHE/converted``.
      return_report: also return a ``LoadReport``.
      **overrides: further ``create_model`` options (``scan``, ``remat_policy``, ``dtype``,
        ``drop_path_rate``, ``features_only``, ...). Options that change the architecture the
        checkpoint was trained with make the load fail with the mismatching tensors named.

    Returns:
      ``(model, variables)`` (and the report): ``model.apply(variables, images_nhwc)``.
    """
    cfg = get_pretrained_cfg(name)
    native = dict(cfg.model_kwargs)
    if "num_classes" in model_fields(cfg.model):  # CLIP, MAE and SAM have no classifier
        native["num_classes"] = cfg.num_classes
    # The converters resample position tables to another image size, so that happens once
    # at conversion (and is part of the converted cache's key).
    native.update({k: overrides[k] for k in _CONVERSION_OPTIONS if k in overrides})
    for key in cfg.model_kwargs:
        if key in overrides and overrides[key] != native[key]:
            raise ValueError(
                f"{cfg.tag} was trained with {key}={native[key]!r}; loading it with "
                f"{key}={overrides[key]!r} is not possible. Leave {key} out."
            )
    path = Path(file) if file is not None else hub.fetch(cfg)
    if not path.is_file():
        raise FileNotFoundError(f"{cfg.tag}: no checkpoint file at {str(path)!r}")
    report = LoadReport(tag=cfg.tag, file=str(path))
    source = _converted(cfg, path, native, cache, report, verify=file is None)

    kwargs = {**native, **overrides}
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    if in_chans is not None:
        kwargs["in_chans"] = in_chans
    model = create_model(cfg.model, **kwargs)
    unrolled = {**kwargs, "scan": False} if getattr(model, "scan", False) else kwargs
    variables = _fit(cfg, source, unrolled, seed, report)
    if unrolled is not kwargs:
        conv = convert.get_converter(get_entry(cfg.model).family)
        variables = conv.to_scanned(variables, model)
    return (model, variables, report) if return_report else (model, variables)


def _source_key(cfg: PretrainedCfg, path: Path, native: dict) -> str:
    # The file's identity: a re-downloaded or replaced file converts again.
    st = path.stat()
    ident = f"{CONVERTED_FORMAT}|{cfg.tag}|{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    ident += f"|{sorted(native.items())}|{cfg.state_dict_key}"
    return hashlib.sha256(ident.encode()).hexdigest()[:16]


def _converted(
    cfg: PretrainedCfg, path: Path, native: dict, cache: bool, report: LoadReport, verify: bool
) -> dict[tuple[str, ...], np.ndarray]:
    """The checkpoint's variables for its own architecture, flat, from the cache or converted."""
    cached = hub.cache_dir() / "converted" / cfg.tag / f"{_source_key(cfg, path, native)}.npz"
    if cache and cached.is_file():
        try:
            with np.load(cached) as z:
                report.from_cache = True
                return {tuple(k.split("/")): z[k] for k in z.files}
        except (OSError, ValueError) as e:  # a damaged cache entry is rebuilt, not fatal
            log.warning(
                "%s: converted cache %s unreadable (%s); converting again", cfg.tag, cached, e
            )
    if verify:
        _verify(cfg, path)
    state_dict = _read(cfg, path)
    variables = convert.from_torch(cfg.model, state_dict, strict=True, **native)
    flat = {k: np.asarray(v) for k, v in flatten(variables).items()}
    if cache:
        _write_npz(cached, flat)
    return flat


def _verify(cfg: PretrainedCfg, path: Path) -> None:
    # A URL's published hash is checked on every conversion, so a file that was damaged or
    # truncated after its download (or copied in by hand) is caught before it is used.
    if not cfg.sha256 or cfg.hf_hub_id:
        return
    digest = hub.sha256_file(path)
    if not digest.startswith(cfg.sha256.lower()):
        raise hub.ChecksumError(
            f"{cfg.tag}: {path} has SHA-256 {digest}, but {cfg.file_name} is published with "
            f"{cfg.sha256}; delete the file and load again to download it again."
        )


def _read(cfg: PretrainedCfg, path: Path) -> dict[str, np.ndarray]:
    raw: Any = str(path)
    if cfg.state_dict_key:
        raw = convert.read_checkpoint(path)
        if cfg.state_dict_key not in raw:
            raise ValueError(
                f"{cfg.tag}: {path} has no {cfg.state_dict_key!r} entry (keys: "
                f"{', '.join(map(str, list(raw)[:8]))}); is it the file this tag names "
                f"({cfg.file_name})?"
            )
        raw = raw[cfg.state_dict_key]
    return convert.load_state_dict(raw)


def _write_npz(dest: Path, flat: dict[tuple[str, ...], np.ndarray]) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **{"/".join(k): v for k, v in flat.items()})
        os.replace(tmp, dest)  # readers see the whole file or none
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def adapt_input_conv(kernel: np.ndarray, in_chans: int) -> np.ndarray:
    """A first-conv kernel [kh, kw, 3, out] trained on RGB, fitted to ``in_chans`` inputs as
    timm's ``adapt_input_conv`` does: summed over RGB for 1 channel; for more, RGB repeated
    to cover the channels and scaled by 3 / in_chans so activations keep their scale."""
    rgb = kernel.shape[2]
    if in_chans == 1:
        return kernel.sum(axis=2, keepdims=True)
    reps = math.ceil(in_chans / rgb)
    return np.tile(kernel, (1, 1, reps, 1))[:, :, :in_chans] * (rgb / in_chans)


def _fit(
    cfg: PretrainedCfg, source: dict, kwargs: dict, seed: int, report: LoadReport
) -> dict[str, Any]:
    """The checkpoint's leaves fitted to ``create_model(cfg.model, **kwargs)``."""
    target = flatten(init_shapes(cfg.model, **kwargs))
    out: dict = {}
    fresh_keys: list[tuple[str, ...]] = []
    in_chans = kwargs.get("in_chans", cfg.input_size[2])
    for key, sds in target.items():
        shape = tuple(sds.shape)
        arr = source.get(key)
        new_head = kwargs.get("num_classes") != cfg.num_classes
        if arr is None and new_head and kwargs.get("num_classes") in shape:
            fresh_keys.append(key)  # a head the checkpoint does not have (num_classes=0)
            continue
        if arr is None:
            raise ValueError(
                f"{cfg.tag}: the model has {'/'.join(key)} {shape} but the checkpoint does not; "
                f"options {kwargs} change the architecture it was trained with."
            )
        if arr.shape == shape:
            out[key] = arr
        elif _is_input_conv(arr, shape, in_chans):
            out[key] = adapt_input_conv(arr, in_chans).astype(arr.dtype)
            report.adapted.append("/".join(key))
        elif new_head and cfg.num_classes in arr.shape:
            fresh_keys.append(key)
        else:
            raise ValueError(
                f"{cfg.tag}: {'/'.join(key)} is {arr.shape} in the checkpoint but {shape} in "
                f"the model built with {kwargs}; these options change the architecture."
            )
    report.dropped = ["/".join(k) for k in source if k not in target]
    if fresh_keys:
        fresh = flatten(init_variables(cfg.model, seed, **kwargs))
        out.update({k: fresh[k] for k in fresh_keys})
        report.reinitialized = ["/".join(k) for k in fresh_keys]
        log.warning(
            "%s: new head for num_classes=%s (checkpoint has %d): %s re-initialised",
            cfg.tag,
            kwargs.get("num_classes"),
            cfg.num_classes,
            ", ".join(report.reinitialized),
        )
    if report.adapted:
        log.info("%s: %s adapted to in_chans=%d", cfg.tag, ", ".join(report.adapted), in_chans)
    return jax.tree_util.tree_map(jnp.asarray, unflatten(out))


def _is_input_conv(arr: np.ndarray, shape: tuple, in_chans: int) -> bool:
    return (
        arr.ndim == 4
        and len(shape) == 4
        and arr.shape[2] == 3
        and shape[2] == in_chans
        and arr.shape[:2] + arr.shape[3:] == shape[:2] + shape[3:]
    )
