"""The data settings a model is evaluated (and fine-tuned) with, resolved in one place.

``resolve_data_settings(model, pretrained, **explicit)`` returns image_size, mean, std,
interpolation, crop_pct and crop_mode. Each comes from, first match wins:

1. ``explicit``: a value the run sets (None, '', -1 and () mean "not set");
2. the pretrained tag's ``PretrainedCfg`` (``pretrained``: ``'model.tag'``, or a bare model
   name for its default tag): how the checkpoint was trained to be evaluated (timm's
   ViT/Swin configs say bicubic, crop_pct 0.9, Inception mean/std);
3. the registry entry of ``model``: input size, mean, std, crop_pct; bilinear resizing and
   'center' crops (entries do not record an interpolation).

``source`` in the result says which tag or entry the unset values came from.
"""

from __future__ import annotations

from typing import Any

from jaxbones.registry import get_entry, get_pretrained_cfg

KEYS = ("image_size", "mean", "std", "interpolation", "crop_pct", "crop_mode")


def is_unset(value: Any) -> bool:
    """True for the "not set" markers of a run config: None, '', -1 (or any negative
    number) and an empty tuple."""
    if value is None:
        return True
    if isinstance(value, str):
        return value == ""
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float):
        return value < 0
    if isinstance(value, tuple | list):
        return len(value) == 0
    return False


def resolve_data_settings(model: str = "", pretrained: str = "", **explicit: Any) -> dict:
    """The data settings of ``model`` / ``pretrained`` with the ``explicit`` ones on top.

    Args:
      model: a registered model name ('' : the tag's model).
      pretrained: a pretrained tag or bare model name ('' : none; the registry entry).
      **explicit: values for any of ``KEYS`` (unset markers are ignored).

    Returns:
      ``{image_size, mean, std, interpolation, crop_pct, crop_mode, model, source}``.
    """
    unknown = set(explicit) - set(KEYS)
    if unknown:
        raise ValueError(f"unknown data settings {sorted(unknown)}; valid: {KEYS}")
    if pretrained:
        cfg = get_pretrained_cfg(pretrained)
        if model and model != cfg.model:
            raise ValueError(
                f"pretrained {cfg.tag!r} is a {cfg.model} checkpoint but the model is {model!r}: "
                f"set the model to {cfg.model!r} (or leave it empty to take the tag's)"
            )
        model, source = cfg.model, cfg.tag
        base = {
            "image_size": cfg.input_size[0],
            "mean": cfg.mean,
            "std": cfg.std,
            "interpolation": cfg.interpolation,
            "crop_pct": cfg.crop_pct,
            "crop_mode": cfg.crop_mode,
        }
    else:
        if not model:
            raise ValueError("resolve_data_settings needs a model name or a pretrained tag")
        entry = get_entry(model)
        source = f"registry entry {model}"
        base = {
            "image_size": entry.input_size[0],
            "mean": entry.mean,
            "std": entry.std,
            "interpolation": "bilinear",
            "crop_pct": entry.crop_pct,
            "crop_mode": "center",
        }
    out = dict(base)
    overridden = []
    for key, value in explicit.items():
        if not is_unset(value):
            out[key] = tuple(value) if isinstance(value, list | tuple) else value
            overridden.append(key)
    out["mean"], out["std"] = tuple(out["mean"]), tuple(out["std"])
    if len(out["mean"]) != len(out["std"]):
        raise ValueError(f"mean {out['mean']} and std {out['std']} differ in length")
    out["model"] = model
    out["source"] = source + (f" (run config sets {', '.join(overridden)})" if overridden else "")
    return out


def format_settings(settings: dict) -> str:
    """One log line: ``data settings from <source>: image_size 224, mean (...), ...``."""
    values = ", ".join(f"{k} {settings[k]}" for k in KEYS)
    return f"data settings from {settings['source']}: {values}"
