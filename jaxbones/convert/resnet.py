"""torchvision / timm ResNet and timm ResNetV2 key layouts."""

from __future__ import annotations

from jaxbones.convert.core import (
    Converter,
    LeafMap,
    add_num_batches_tracked,
    register_converter,
)

register_converter(
    "resnet",
    Converter(
        rules=[(r"layer(\d)_(\d+)", r"layer\1.\2"), (r"downsample_(\d)", r"downsample.\1")],
        add_buffers=add_num_batches_tracked,
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
    ),
)
