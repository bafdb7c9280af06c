"""torchvision DenseNet key layout: every module except ``classifier`` lives under
``features.`` (``denseblock1.denselayer1.norm1`` -> ``features.denseblock1.denselayer1.norm1``).

The checkpoints torchvision downloads still use the old names ``denselayer1.norm.1.weight``
(torchvision renames them in ``_load_state_dict``); ``canonicalize`` does the same rename."""

from __future__ import annotations

import re

from jaxbones.convert.core import Converter, add_num_batches_tracked, register_converter

# torchvision densenet.py ``_load_state_dict``: ``...denselayerN.norm.1.weight`` -> ``norm1``
_OLD = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)


def _rename_old_keys(sd, model=None):
    out = {}
    for k, v in sd.items():
        m = _OLD.match(k)
        out[m.group(1) + m.group(2) if m else k] = v
    return out


register_converter(
    "densenet",
    Converter(
        rules=[(r"^(?!classifier)", "features.")],
        canonicalize=_rename_old_keys,
        add_buffers=add_num_batches_tracked,
    ),
)
