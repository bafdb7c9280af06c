"""Official segment-anything checkpoint layout (``sam_vit_b_01ec64.pth`` etc.).

Flax module paths map to torch ones by turning ``name_{i}`` into ``name.{i}``
(``image_encoder.blocks_3`` -> ``image_encoder.blocks.3``, ``neck_0`` -> ``neck.0``,
``transformer.layers_1`` -> ``transformer.layers.1``) and the shared MLP names
``mlp.fc1/fc2`` into SAM's ``mlp.lin1/lin2``. The prompt encoder's fixed Gaussian matrix is
the ``buffers`` collection here and the buffer ``prompt_encoder.pe_layer.
positional_encoding_gaussian_matrix`` in torch. The fused ``qkv`` Linear converts with a plain
transpose (torch row order), ``ConvTranspose2d`` (I, O, kh, kw) with the shared conv rule.

Loading 1024-px weights into a model built with another ``img_size``: ``pos_embed``
[1, 64, 64, D] is resized bicubically (``F.interpolate`` bicubic, align_corners=False, no
antialias: detectron2's ViTDet ``get_abs_pos``), and each global block's ``rel_pos_h/w``
[2 * 64 - 1, D_head] is resized linearly to 2 * grid - 1 rows, exactly what torch's
``get_rel_pos`` would do at run time with the full-size tables.

``scan=True`` models are converted through their unrolled twin; each run of windowed blocks
``blocks_{i}..`` is restacked into ``scan_{i}`` (``scan_layout``) and back.
"""

from __future__ import annotations

import logging
import re

import numpy as np

from jaxbones.convert.core import Converter, LeafMap, register_converter
from jaxbones.layers.pos_embed import resample_grid
from jaxbones.layers.stack import StackLayout
from jaxbones.models.sam import resize_rel_pos, windowed_runs

log = logging.getLogger("jaxbones.convert")

_GAUSSIAN = "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"


def _ident(a):
    return a


def _leaf_map(key, torch_module, ndim):
    if key[0] == "buffers" and key[-1] == "positional_encoding_gaussian_matrix":
        return LeafMap(_GAUSSIAN, _ident, _ident)
    return None


def resample_to_model(sd: dict, model) -> dict:
    """Resizes ``pos_embed`` and the global blocks' rel-pos tables of a checkpoint trained at
    another image size (or window) to ``model`` (a ``Sam``)."""
    sd = dict(sd)
    g = model.img_size // model.patch_size
    key = "image_encoder.pos_embed"
    if key in sd and sd[key].shape[1:3] != (g, g):
        log.info("resampling %s %s to %dx%d", key, tuple(sd[key].shape), g, g)
        grid = resample_grid(sd[key][0], (g, g), antialias=False)  # [g, g, D] float64
        sd[key] = grid[None].astype(sd[key].dtype)
    pat = re.compile(r"^image_encoder\.blocks\.(\d+)\.attn\.rel_pos_[hw]$")
    for k in list(sd):
        m = pat.match(k)
        if not m:
            continue
        i = int(m.group(1))
        size = g if i in model.encoder_global_attn_indexes else model.window_size
        n = 2 * size - 1
        if sd[k].shape[0] != n:
            log.info("resampling %s %s to %d rows", k, tuple(sd[k].shape), n)
            sd[k] = resize_rel_pos(np.asarray(sd[k]), n)
    return sd


def scan_layout(model) -> list[StackLayout]:
    """One stack ``scan_{start}`` per run of windowed blocks (``windowed_runs``)."""
    runs = windowed_runs(model.encoder_depth, model.encoder_global_attn_indexes)
    return [
        StackLayout("blocks", n, start=start, stacked_name=f"scan_{start}", path=("image_encoder",))
        for start, n in runs.items()
    ]


register_converter(
    "sam",
    Converter(
        rules=[(r"_(\d+)(?=\.|$)", r".\1"), (r"\.mlp\.fc([12])$", r".mlp.lin\1")],
        canonicalize=resample_to_model,
        leaf_map=_leaf_map,
        scan_layout=scan_layout,
    ),
)
