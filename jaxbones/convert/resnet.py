"""torchvision / timm ResNet and timm ResNetV2 key layouts.

Scanned models (``scan=True``) are converted through the unrolled layout: ``to_scanned``
stacks blocks ``1..n-1`` of each stage (``layer2_1 .. layer2_3``) into ``layer2_rest`` with a
leading [n-1] axis, in every collection (params and BatchNorm batch_stats); ``to_unrolled``
is the inverse.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxbones.convert.core import (
    Converter,
    LeafMap,
    add_num_batches_tracked,
    register_converter,
)


def _stage_prefixes(model) -> list[tuple[str, int]]:
    if hasattr(model, "channels"):  # ResNetV2
        return [(f"stages_{i}_blocks", d) for i, d in enumerate(model.layers)]
    return [(f"layer{i + 1}", d) for i, d in enumerate(model.layers)]


def to_scanned(variables: dict, model) -> dict:
    out = {}
    for col, tree in variables.items():
        tree = dict(tree)
        for prefix, depth in _stage_prefixes(model):
            if depth > 1:
                rest = [tree.pop(f"{prefix}_{j}") for j in range(1, depth)]
                tree[f"{prefix}_rest"] = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *rest)
        out[col] = tree
    return out


def to_unrolled(variables: dict, model) -> dict:
    out = {}
    for col, tree in variables.items():
        tree = dict(tree)
        for prefix, depth in _stage_prefixes(model):
            if depth > 1:
                rest = tree.pop(f"{prefix}_rest")
                for j in range(1, depth):
                    tree[f"{prefix}_{j}"] = jax.tree_util.tree_map(lambda x, j=j: x[j - 1], rest)
        out[col] = tree
    return out


register_converter(
    "resnet",
    Converter(
        rules=[(r"layer(\d)_(\d+)", r"layer\1.\2"), (r"downsample_(\d)", r"downsample.\1")],
        add_buffers=add_num_batches_tracked,
        to_scanned=to_scanned,
        to_unrolled=to_unrolled,
    ),
)


def _v2_head(key, torch_module, ndim):
    # timm's ResNetV2 classifier is a 1x1 Conv2d: weight (classes, C, 1, 1).
    if key[-2:] == ("head_fc", "kernel"):
        return LeafMap(
            "head.fc.weight",
            lambda w: w[:, :, 0, 0].T,
            lambda k: k.T[:, :, None, None],
        )
    return None


register_converter(
    "resnetv2",
    Converter(
        rules=[
            (r"stages_(\d+)_blocks_(\d+)", r"stages.\1.blocks.\2"),
            (r"downsample_conv", "downsample.conv"),
            (r"^stem_conv", "stem.conv"),
            (r"^head_fc", "head.fc"),
        ],
        leaf_map=_v2_head,
        add_buffers=add_num_batches_tracked,
        to_scanned=to_scanned,
        to_unrolled=to_unrolled,
    ),
)
