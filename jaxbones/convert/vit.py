"""timm ViT key layout (also the layout of facebookresearch/mae's fine-tuned ViTs).

Flax ``blocks_{i}.attn.qkv`` <-> torch ``blocks.{i}.attn.qkv``; every other module keeps its
timm name. A ``pos_embed`` trained at another image size is resampled to the model's grid
with timm's bicubic ``resample_abs_pos_embed`` (antialias on, as timm's checkpoint loader).
Scanned models (``scan=True``) are converted through the unrolled layout and restacked.
"""

from __future__ import annotations

import logging

from jaxbones.convert.core import Converter, register_converter
from jaxbones.layers.pos_embed import resample_abs_pos_embed
from jaxbones.layers.stack import StackLayout

log = logging.getLogger("jaxbones.convert")


def resample_pos_embed_to_model(sd: dict, model, key: str = "pos_embed") -> dict:
    """Resamples ``sd[key]`` ([1, prefix + n, D]) to ``model``'s patch grid when they differ
    (a 224-trained checkpoint loaded at 384); prefix tokens are kept."""
    if key not in sd:
        return sd
    v = sd[key]
    n_prefix = model.num_prefix_tokens
    gh, gw = model.grid_size
    if v.shape[1] == n_prefix + gh * gw:
        return sd
    log.info("resampling %s %s to the %dx%d patch grid", key, tuple(v.shape), gh, gw)
    return {**sd, key: resample_abs_pos_embed(v, (gh, gw), num_prefix_tokens=n_prefix)}


def scan_layout(model) -> list[StackLayout]:
    return [StackLayout("blocks", model.depth)]


register_converter(
    "vit",
    Converter(
        rules=[(r"^blocks_(\d+)", r"blocks.\1")],
        canonicalize=resample_pos_embed_to_model,
        scan_layout=scan_layout,
    ),
)
