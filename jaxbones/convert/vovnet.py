"""timm VovNet (VoVNet / VoVNetV2 with eSE) key layout."""

from __future__ import annotations

from jaxbones.convert.core import Converter, add_num_batches_tracked, register_converter

register_converter(
    "vovnet",
    Converter(
        rules=[
            (r"^stem_(\d)", r"stem.\1"),
            (r"^stages_(\d+)_blocks_(\d+)", r"stages.\1.blocks.\2"),
            (r"\.conv_mid_(\d+)", r".conv_mid.\1"),
            (r"^head_fc", "head.fc"),
        ],
        add_buffers=add_num_batches_tracked,
    ),
)
