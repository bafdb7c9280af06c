"""torchvision / timm ResNet and timm ResNetV2 key layouts.

Scanned models (``scan=True``) are converted through the unrolled layout: ``scan_layout``
says blocks ``1..n-1`` of each stage (``layer2_1 .. layer2_3``) are ``layer2_rest`` with a
leading [n-1] axis, in every collection (params and BatchNorm batch_stats).
"""

from __future__ import annotations

from jaxbones.convert.core import (
    Converter,
    LeafMap,
    add_num_batches_tracked,
    register_converter,
)
from jaxbones.layers.stack import StackLayout


def scan_layout(model) -> list[StackLayout]:
    if hasattr(model, "channels"):  # ResNetV2
        names = [f"stages_{i}_blocks" for i in range(len(model.layers))]
    else:
        names = [f"layer{i + 1}" for i in range(len(model.layers))]
    return [
        StackLayout(n, d - 1, start=1, stacked_name=f"{n}_rest")
        for n, d in zip(names, model.layers)
    ]


register_converter(
    "resnet",
    Converter(
        rules=[(r"layer(\d)_(\d+)", r"layer\1.\2"), (r"downsample_(\d)", r"downsample.\1")],
        add_buffers=add_num_batches_tracked,
        scan_layout=scan_layout,
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
        scan_layout=scan_layout,
    ),
)
