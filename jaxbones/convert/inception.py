"""torchvision Inception-v3 key layout: module names are identical (``Mixed_5b.branch1x1.conv``,
``AuxLogits.fc``), so only the shared leaf rules apply. A checkpoint with the auxiliary
classifier converts into ``aux_logits=False`` by dropping ``AuxLogits.*``."""

from __future__ import annotations

from jaxbones.convert.core import Converter, add_num_batches_tracked, register_converter


def _drop_unused_aux(sd, model):
    if getattr(model, "aux_logits", True) and getattr(model, "num_classes", 1):
        return sd
    return {k: v for k, v in sd.items() if not k.startswith("AuxLogits.")}


register_converter(
    "inception",
    Converter(canonicalize=_drop_unused_aux, add_buffers=add_num_batches_tracked),
)
