"""The model registry: one name per variant, timm-style, and the pretrained tags of each.

A variant is registered as a ``functools.partial`` of its family's Linen module together with
the facts a user needs before building it (input size, normalisation, the reference
implementation its parity test compares against). ``create_model`` validates overrides
against the module's dataclass fields so a typo fails with a suggestion instead of being
silently ignored.

Published weights are registered per tag (``'resnet50.tv_in1k'``, timm's ``name.tag``) with
``register_pretrained``: where the file lives, how it was trained to be evaluated (mean/std,
interpolation, crop) and what it scored. The first tag registered for a model is its default
(the bare name means it, as in timm). Loading lives in ``jaxbones.weights``.

The registry is passive: model files register themselves when ``jaxbones`` imports
``jaxbones.models``; nothing here imports upwards.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import flax.core as flax_core
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxbones.constants import IMAGENET_MEAN, IMAGENET_STD

if TYPE_CHECKING:
    from jaxbones.layers.param_groups import ParamGroups


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    """Everything the registry knows about one registered variant.

    Attributes:
      name: timm-style name.
      fn: a callable (usually ``functools.partial`` of the family module) returning the module.
      family: converter family used by ``jaxbones.convert``.
      input_size: default (H, W, C) of the input images.
      mean, std: per-channel normalisation of [0, 1] images.
      crop_pct: centre-crop fraction used for evaluation.
      reference: the PyTorch implementation the parity tests compare against.
      min_size: smallest spatial input size the network accepts.
      param_groups: the family's optimiser facts (weight-decay exemptions, scanned stacks,
        layer ids for layer-wise lr decay); None: only the ndim rule applies.
      partition_rules: the family's (path regex, logical axes) pairs naming the parameter
        dimensions tensor parallelism splits (``jaxbones/layers/partitioning.py``); empty:
        data / FSDP only.
    """

    name: str
    fn: Callable[..., nn.Module]
    family: str
    input_size: tuple[int, int, int] = (224, 224, 3)
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    crop_pct: float = 0.875
    reference: str = ""
    min_size: int = 32
    param_groups: ParamGroups | None = None
    partition_rules: tuple = ()


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(name: str, fn: Callable[..., nn.Module], **info: Any) -> ModelEntry:
    """Registers ``fn`` (a partial of a Linen module) under ``name``; see ``ModelEntry``."""
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is registered twice")
    entry = ModelEntry(name=name, fn=fn, **info)
    _REGISTRY[name] = entry
    return entry


def list_models(pattern: str = "*") -> list[str]:
    """Sorted names of registered models matching an fnmatch ``pattern``."""
    return sorted(n for n in _REGISTRY if fnmatch.fnmatchcase(n, pattern))


def _close(word: str, options: list[str], n: int = 5) -> str:
    matches = difflib.get_close_matches(word, options, n=n, cutoff=0.5)
    if not matches:
        matches = [o for o in options if word.split("_")[0] in o][:n]
    return ", ".join(matches) if matches else "none"


def get_entry(name: str) -> ModelEntry:
    """The registry entry for ``name``; unknown names raise a ValueError naming close matches."""
    if name not in _REGISTRY:
        raise ValueError(
            f"unknown model {name!r}; close matches: {_close(name, list(_REGISTRY))}. "
            "See jaxbones.list_models() for every registered name."
        )
    return _REGISTRY[name]


def _module_class(fn: Callable[..., Any]) -> type:
    while isinstance(fn, functools.partial):
        fn = fn.func
    return fn


def model_fields(name: str) -> list[str]:
    """Dataclass fields of the model's module that ``create_model`` accepts as overrides."""
    cls = _module_class(get_entry(name).fn)
    return [f.name for f in dataclasses.fields(cls) if f.init and f.name not in ("parent", "name")]


def create_model(name: str, **overrides: Any) -> nn.Module:
    """Builds the registered model ``name``, with dataclass-field ``overrides``.

    Raises:
      ValueError: unknown name or override (the message names close matches).
    """
    entry = get_entry(name)
    fields = model_fields(name)
    if "pretrained" in overrides and "pretrained" not in fields:
        raise ValueError(
            f"create_model builds a module without weights (Flax keeps them apart); for "
            f"published weights use `model, variables = jaxbones.load_pretrained({name!r})` "
            f"(tags: jaxbones.list_pretrained({name + '*'!r}))"
        )
    for key in overrides:
        if key not in fields:
            raise ValueError(
                f"{name} has no option {key!r}; close matches: {_close(key, fields)}. "
                f"Valid options: {', '.join(sorted(fields))}"
            )
    return entry.fn(**overrides)


def dummy_input(name: str, model: nn.Module, batch: int = 1) -> jax.ShapeDtypeStruct:
    """The [batch, H, W, C] float32 input shape ``model`` (built from ``name``) is initialised
    with: its own ``default_input_size`` if it has one (ViT/MAE/SAM follow ``img_size``), else
    the registered input size; channels from ``in_chans``."""
    entry = get_entry(name)
    h, w, c = getattr(model, "default_input_size", entry.input_size)
    return jax.ShapeDtypeStruct((batch, h, w, getattr(model, "in_chans", c)), jnp.float32)


def init_kwargs(model: nn.Module) -> dict[str, Any]:
    """Extra ``init`` arguments a model needs besides the image (CLIP's text, for example)."""
    return dict(getattr(model, "init_kwargs", None) or {})


def init_shapes(name: str, **overrides: Any) -> Any:
    """Shapes of the model's variables (no compute), via ``jax.eval_shape``."""
    model = create_model(name, **overrides)
    x = dummy_input(name, model)
    init = functools.partial(model.init, train=False, **init_kwargs(model))
    return jax.eval_shape(lambda r: init(r, jnp.zeros(x.shape, x.dtype)), jax.random.PRNGKey(0))


def init_variables(name: str, seed: int = 0, **overrides: Any) -> dict[str, Any]:
    """Freshly initialised variables of ``create_model(name, **overrides)`` as numpy arrays.

    The init program runs once, so on CPU it is compiled without XLA's backend optimisations
    (a ResNet-18 init compiles in ~1 s instead of ~30 s; the values are the same)."""
    model = create_model(name, **overrides)
    x = dummy_input(name, model)
    init = functools.partial(model.init, train=False, **init_kwargs(model))
    options = FAST_COMPILE if jax.default_backend() == "cpu" else None
    fn = jax.jit(lambda r: init(r, jnp.zeros(x.shape, x.dtype)), compiler_options=options)
    variables = fn(jax.random.PRNGKey(seed))
    return jax.tree_util.tree_map(np.asarray, flax_core.unfreeze(variables))


# XLA options for a program that runs once (an init, a FLOP count, a test): the backend's
# optimisation passes change its speed, not its results, and cost most of the compile time.
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def count_params(tree: Any) -> int:
    return int(sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(tree)))


@functools.cache
def _num_params(name: str) -> int:
    # Scanned stacks hold the same parameters (stacked) and trace one block instead of all.
    overrides = {"scan": True} if "scan" in model_fields(name) else {}
    return count_params(init_shapes(name, **overrides)["params"])


def model_info(name: str) -> dict[str, Any]:
    """Facts about a registered model (input size, mean/std, parameter count, feature levels,
    pretrained tags); for a tag (``'resnet50.tv_in1k'``) also the tag's ``pretrained_cfg``."""
    cfg = None
    if "." in name:
        cfg = get_pretrained_cfg(name)
        name = cfg.model
    entry = get_entry(name)
    model = create_model(name)
    info = {
        "name": name,
        "family": entry.family,
        "input_size": entry.input_size,
        "mean": entry.mean,
        "std": entry.std,
        "crop_pct": entry.crop_pct,
        "num_params": _num_params(name),
        "num_classes": getattr(model, "num_classes", None),
        "feature_info": list(getattr(model, "feature_info", [])),
        "reference": entry.reference,
        "min_size": entry.min_size,
        "pretrained_tags": [c.tag for c in _PRETRAINED.get(name, {}).values()],
    }
    if cfg is not None:
        info["pretrained_cfg"] = dataclasses.asdict(cfg)
    return info


# ---------------------------------------------------------------------------------------------
# Pretrained tags


@dataclasses.dataclass(frozen=True)
class PretrainedCfg:
    """One published checkpoint of a registered model, and how it is meant to be evaluated.

    Exactly one source: ``hf_hub_id`` (+ ``hf_hub_filename``) for Hugging Face Hub repos, or
    ``url`` for plain downloads (``sha256`` is the published hash or its published prefix:
    torchvision puts the first hex digits of the SHA-256 in the file name).

    Attributes:
      tag: ``'model.tag'``; model: the registered model name (the part before the dot).
      hf_hub_id, hf_hub_filename, url, sha256, filename: where the file is (``filename``:
        the name it is cached under; default the URL's last component).
      state_dict_key: the key wrapping the state dict inside the checkpoint (``'model'``
        for MAE and Swin releases), or '' when the file is the state dict.
      model_kwargs: ``create_model`` options the checkpoint needs (``global_pool='avg'`` for
        MAE fine-tuned weights, ``quick_gelu=True`` for OpenAI CLIP).
      num_classes: classes of the checkpoint's head (0: no head).
      input_size: (H, W, C) the checkpoint was trained / evaluated at.
      mean, std: per-channel normalisation of [0, 1] images.
      interpolation: 'bilinear' | 'bicubic' | 'nearest' resizing for evaluation.
      crop_pct: centre-crop fraction at evaluation (resize shorter side to size / crop_pct).
      crop_mode: 'center' (timm's default) | 'squash' | 'border'.
      license: the weights' license; top1 / top5: published ImageNet-1k validation accuracy in
        percent (None where none is published); source: where the facts come from; notes.
    """

    tag: str
    model: str
    hf_hub_id: str = ""
    hf_hub_filename: str = ""
    url: str = ""
    sha256: str = ""
    filename: str = ""
    state_dict_key: str = ""
    model_kwargs: dict = dataclasses.field(default_factory=dict)
    num_classes: int = 1000
    input_size: tuple[int, int, int] = (224, 224, 3)
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    interpolation: str = "bilinear"
    crop_pct: float = 0.875
    crop_mode: str = "center"
    license: str = ""
    top1: float | None = None
    top5: float | None = None
    source: str = ""
    notes: str = ""

    @property
    def source_name(self) -> str:
        """Where the file comes from, for messages: ``hf-hub:repo/file`` or the URL."""
        if self.hf_hub_id:
            return f"hf-hub:{self.hf_hub_id}/{self.hf_hub_filename}"
        return self.url

    @property
    def file_name(self) -> str:
        if self.hf_hub_id:
            return self.hf_hub_filename
        return self.filename or self.url.rsplit("/", 1)[-1].split("?")[0]


_PRETRAINED: dict[str, dict[str, PretrainedCfg]] = {}  # model -> {tag: cfg}, default first

_INTERPOLATIONS = ("bilinear", "bicubic", "nearest")


def register_pretrained(tag: str, **cfg: Any) -> PretrainedCfg:
    """Registers the published checkpoint ``tag`` (``'model.tag'``); see ``PretrainedCfg``.

    Fields left out default to the model's registered input size, mean, std and crop_pct.
    The first tag registered for a model is its default."""
    model, sep, short = tag.partition(".")
    if not sep or not short:
        raise ValueError(f"pretrained tag {tag!r} must be 'model.tag'")
    entry = get_entry(model)
    if tag in _PRETRAINED.get(model, {}):
        raise ValueError(f"pretrained tag {tag!r} is registered twice")
    defaults = {
        "input_size": entry.input_size,
        "mean": entry.mean,
        "std": entry.std,
        "crop_pct": entry.crop_pct,
    }
    c = PretrainedCfg(tag=tag, model=model, **{**defaults, **cfg})
    if bool(c.hf_hub_id) == bool(c.url):
        raise ValueError(f"{tag}: give exactly one of hf_hub_id and url")
    if c.hf_hub_id and not c.hf_hub_filename:
        raise ValueError(f"{tag}: hf_hub_id needs hf_hub_filename")
    if c.interpolation not in _INTERPOLATIONS:
        raise ValueError(f"{tag}: interpolation {c.interpolation!r} not in {_INTERPOLATIONS}")
    _PRETRAINED.setdefault(model, {})[tag] = c
    return c


def list_pretrained(pattern: str = "*") -> list[str]:
    """Sorted pretrained tags (``'model.tag'``) whose tag or model name matches ``pattern``."""
    return sorted(
        c.tag
        for tags in _PRETRAINED.values()
        for c in tags.values()
        if fnmatch.fnmatchcase(c.tag, pattern) or fnmatch.fnmatchcase(c.model, pattern)
    )


def get_pretrained_cfg(name: str) -> PretrainedCfg:
    """The ``PretrainedCfg`` of a tag, or of a bare model name's default tag.

    Raises:
      ValueError: unknown model, a model without published weights, or an unknown tag (the
        message lists the model's tags and close matches).
    """
    model, _, short = name.partition(".")
    get_entry(model)
    tags = _PRETRAINED.get(model, {})
    if not tags:
        with_weights = sorted(_PRETRAINED)
        raise ValueError(
            f"{model} has no published weights registered; models with pretrained tags "
            f"close to it: {_close(model, with_weights)}. See jaxbones.list_pretrained()."
        )
    if not short:
        return next(iter(tags.values()))
    if name not in tags:
        raise ValueError(
            f"unknown pretrained tag {name!r}; {model} has: {', '.join(tags)}. "
            f"Close matches: {_close(name, list(tags))}"
        )
    return tags[name]
