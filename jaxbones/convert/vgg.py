"""torchvision VGG key layout: ``features_N`` -> ``features.N``, ``classifier_N`` ->
``classifier.N`` (the Sequential indices are kept, so nothing else is renamed)."""

from __future__ import annotations

from jaxbones.convert.core import Converter, add_num_batches_tracked, register_converter

register_converter(
    "vgg",
    Converter(
        rules=[(r"^(features|classifier)_(\d+)", r"\1.\2")],
        add_buffers=add_num_batches_tracked,
    ),
)
