"""timm CspNet (CSPResNet/CSPResNeXt/CSPDarknet/Darknet) key layout."""

from __future__ import annotations

from jaxbones.convert.core import Converter, add_num_batches_tracked, register_converter

register_converter(
    "cspnet",
    Converter(
        rules=[
            (r"^stem_conv1", "stem.conv1"),
            (r"^stages_(\d+)", r"stages.\1"),
            (r"\.blocks_(\d+)", r".blocks.\1"),
            # avg_down: nn.Sequential(AvgPool2d, ConvNormAct) -> the conv is conv_down.1
            (r"\.conv_down_1", ".conv_down.1"),
            (r"^head_fc", "head.fc"),
        ],
        add_buffers=add_num_batches_tracked,
    ),
)
