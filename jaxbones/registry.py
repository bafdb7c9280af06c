"""The model registry: one name per variant, timm-style.

A variant is registered as a ``functools.partial`` of its family's Linen module together with
the facts a user needs before building it (input size, normalisation, the reference
implementation its parity test compares against). ``create_model`` validates overrides
against the module's dataclass fields so a typo fails with a suggestion instead of being
silently ignored.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INCEPTION_MEAN = (0.5, 0.5, 0.5)
INCEPTION_STD = (0.5, 0.5, 0.5)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


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


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(name: str, fn: Callable[..., nn.Module], **info: Any) -> ModelEntry:
    """Registers ``fn`` (a partial of a Linen module) under ``name``; see ``ModelEntry``."""
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is registered twice")
    entry = ModelEntry(name=name, fn=fn, **info)
    _REGISTRY[name] = entry
    return entry


def _ensure_loaded() -> None:
    # Importing the models package registers every family (each file registers itself).
    import jaxbones.models  # noqa: F401


def list_models(pattern: str = "*") -> list[str]:
    """Sorted names of registered models matching an fnmatch ``pattern``."""
    _ensure_loaded()
    return sorted(n for n in _REGISTRY if fnmatch.fnmatchcase(n, pattern))


def _close(word: str, options: list[str], n: int = 5) -> str:
    matches = difflib.get_close_matches(word, options, n=n, cutoff=0.5)
    if not matches:
        matches = [o for o in options if word.split("_")[0] in o][:n]
    return ", ".join(matches) if matches else "none"


def get_entry(name: str) -> ModelEntry:
    """The registry entry for ``name``; unknown names raise a ValueError naming close matches."""
    _ensure_loaded()
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
    for key in overrides:
        if key not in fields:
            raise ValueError(
                f"{name} has no option {key!r}; close matches: {_close(key, fields)}. "
                f"Valid options: {', '.join(sorted(fields))}"
            )
    return entry.fn(**overrides)


def _input_channels(model: nn.Module, entry: ModelEntry) -> int:
    return getattr(model, "in_chans", entry.input_size[2])


def init_shapes(name: str, **overrides: Any) -> Any:
    """Shapes of the model's variables (no compute), via ``jax.eval_shape``."""
    entry = get_entry(name)
    model = create_model(name, **overrides)
    h, w, _ = getattr(model, "default_input_size", entry.input_size)
    x = jnp.zeros((1, h, w, _input_channels(model, entry)), jnp.float32)
    rngs = {"params": jax.random.PRNGKey(0)}
    init = functools.partial(model.init, train=False)
    if getattr(model, "init_kwargs", None):
        init = functools.partial(init, **model.init_kwargs)
    return jax.eval_shape(lambda r: init(r, x), rngs)


def count_params(tree: Any) -> int:
    return int(sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(tree)))


@functools.cache
def _num_params(name: str) -> int:
    # Scanned stacks hold the same parameters (stacked) and trace one block instead of all.
    overrides = {"scan": True} if "scan" in model_fields(name) else {}
    return count_params(init_shapes(name, **overrides)["params"])


def model_info(name: str) -> dict[str, Any]:
    """Facts about a registered model: input size, mean/std, parameter count, feature levels."""
    entry = get_entry(name)
    model = create_model(name)
    return {
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
    }
