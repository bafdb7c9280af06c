"""open_clip / OpenAI CLIP key layout (the two are the same for these models).

Flax -> torch module paths:
  ``visual.conv1.proj``            -> ``visual.conv1`` (patch conv, no bias)
  ``visual.blocks_{i}``            -> ``visual.transformer.resblocks.{i}``
  ``text.blocks_{i}``              -> ``transformer.resblocks.{i}`` (text tower at the root)
  ``text.*``                       -> ``*`` (``token_embedding``, ``positional_embedding``,
                                      ``ln_final``, ``text_projection``)
  inside a block: ``norm1/norm2`` -> ``ln_1/ln_2``, ``mlp.fc1/fc2`` -> ``mlp.c_fc/c_proj``,
  ``attn.proj`` -> ``attn.out_proj``, and ``attn.qkv`` -> ``attn.in_proj_weight`` /
  ``attn.in_proj_bias`` (torch ``nn.MultiheadAttention`` packs q, k, v rows in the same
  [q, k, v] x [head0, head1, ...] order as timm's ``qkv``: a plain transpose).
  ModifiedResNet: ``layer{s}_{j}`` -> ``layer{s}.{j}``, ``downsample_{k}`` ->
  ``downsample.{k}`` (torch's ``downsample.-1`` is a parameter-free AvgPool2d).
The raw parameters (``class_embedding``, ``positional_embedding``, ``proj``,
``text_projection``, ``logit_scale``) keep their names and layouts (``proj`` is already
(in, out), used as ``x @ proj``). ``attn_mask`` is a non-persistent buffer in open_clip and
absent from OpenAI checkpoints too; it is dropped if present.
"""

from __future__ import annotations

import numpy as np

from jaxbones.convert.core import (
    Converter,
    LeafMap,
    add_num_batches_tracked,
    register_converter,
)
from jaxbones.layers.stack import StackLayout


def _t(w):
    return np.asarray(w).T


def _ident(w):
    return np.asarray(w)


def _leaf_map(key, torch_module, ndim):
    leaf = key[-1]
    if torch_module.endswith(".attn.qkv"):
        base = torch_module[: -len(".qkv")]
        if leaf == "kernel":  # Dense (D, 3D) <- in_proj_weight (3D, D)
            return LeafMap(f"{base}.in_proj_weight", _t, _t)
        return LeafMap(f"{base}.in_proj_bias", _ident, _ident)
    return None


def scan_layout(model) -> list[StackLayout]:
    # the towers that have a transformer (the ModifiedResNet image tower has no scan)
    out = [StackLayout("blocks", model.text_layers, path=("text",))]
    if not model.is_resnet:
        out.append(StackLayout("blocks", model.vision_layers, path=("visual",)))
    return out


register_converter(
    "clip",
    Converter(
        rules=[
            (r"^visual\.conv1\.proj$", "visual.conv1"),
            (r"^visual\.blocks_(\d+)", r"visual.transformer.resblocks.\1"),
            (r"^text\.blocks_(\d+)", r"transformer.resblocks.\1"),
            (r"^text(\.|$)", ""),
            (r"\.norm1$", ".ln_1"),
            (r"\.norm2$", ".ln_2"),
            (r"\.mlp\.fc1$", ".mlp.c_fc"),
            (r"\.mlp\.fc2$", ".mlp.c_proj"),
            (r"\.attn\.proj$", ".attn.out_proj"),
            (r"layer(\d)_(\d+)", r"layer\1.\2"),
            (r"downsample_(\d)", r"downsample.\1"),
        ],
        ignore=[r"(^|\.)num_batches_tracked$", r"(^|\.)attn_mask$"],
        leaf_map=_leaf_map,
        add_buffers=add_num_batches_tracked,
        scan_layout=scan_layout,
    ),
)
