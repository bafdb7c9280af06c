"""What a model family tells the optimiser about its parameters (``ParamGroups``).

Each family declares its ``ParamGroups`` next to its registrations
(``register_model(..., param_groups=...)``) and ``jaxbones.train.optim`` reads it from the
registry entry, so the training code never guesses a family from parameter names. The facts
follow timm (``no_weight_decay``, ``group_matcher``) and MAE/BEiT's ``util/lr_decay.py``.

Parameter paths are '/'-joined names relative to the model's own ``params`` tree
('blocks_3/attn/qkv/kernel').
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable

# {path: shape} -> ({path: layer id, or a tuple of ids over a scanned stack's leading axis},
# number of layers L); the optimiser scales a parameter's lr by decay ** (L - id).
LayerIds = Callable[[dict[str, tuple]], tuple[dict[str, "int | tuple[int, ...]"], int]]


@dataclasses.dataclass(frozen=True)
class ParamGroups:
    """A family's optimiser facts.

    Attributes:
      no_decay: regexes; a parameter with a path component (module or parameter name) that
        fully matches one is exempt from weight decay. Parameters with ndim <= 1 (biases,
        norm scales) are always exempt.
      stacks: regexes of path components that are ``nn.scan`` stacks of identical blocks:
        their parameters carry a leading [depth] axis, which does not count towards ndim.
      layer_ids: the layer of every parameter for layer-wise lr decay (see ``LayerIds``);
        None: the family has no layer order and ``layer_decay`` must stay 1.
    """

    no_decay: tuple[str, ...] = ()
    stacks: tuple[str, ...] = ()
    layer_ids: LayerIds | None = None

    def stacked(self, path: str) -> bool:
        """True when ``path`` lies inside a scanned stack (its leading axis is [depth])."""
        return any(re.fullmatch(r, c) for r in self.stacks for c in path.split("/")[:-1])

    def decays(self, path: str, shape: tuple) -> bool:
        """Whether weight decay applies to the parameter at ``path``."""
        ndim = len(shape) - (1 if self.stacked(path) else 0)
        parts = path.split("/")
        return ndim > 1 and not any(re.fullmatch(r, c) for r in self.no_decay for c in parts)


def transformer_layer_ids(embed: tuple[str, ...]) -> LayerIds:
    """Layer ids of an isotropic transformer with top-level ``blocks_i`` (or a scanned
    ``blocks`` stack): the ``embed`` modules 0, block i i + 1, everything else (final norm,
    head, an MAE decoder) depth + 1 (MAE/BEiT ``util/lr_decay.py``)."""

    def layer_ids(shapes):
        depth = 0
        for p, s in shapes.items():
            if m := re.match(r"^blocks_(\d+)/", p):
                depth = max(depth, int(m.group(1)) + 1)
            elif p.startswith("blocks/"):
                depth = max(depth, s[0])
        ids = {}
        for p, s in shapes.items():
            head = p.split("/")[0]
            if head in embed:
                ids[p] = 0
            elif m := re.fullmatch(r"blocks_(\d+)", head):
                ids[p] = int(m.group(1)) + 1
            elif head == "blocks":
                ids[p] = tuple(i + 1 for i in range(s[0]))
            else:
                ids[p] = depth + 1
        return ids, depth + 1

    return layer_ids


def staged_layer_ids(embed: tuple[str, ...]) -> LayerIds:
    """Layer ids of a hierarchical transformer with ``layers_s_blocks_b`` (or scanned
    ``layers_s_blocks``) and ``layers_s_downsample`` at the start of stage s (timm's layout),
    numbering the blocks of all stages in order: the ``embed`` modules 0, block b of stage s
    sum(depths[:s]) + b + 1, stage s's downsample sum(depths[:s]) (the id of the previous
    stage's last block: the official layout ends each stage with its patch merging),
    everything else sum(depths) + 1 (Swin fine-tuning in SimMIM ``optimizer.py``; timm's
    ``group_matcher`` puts the merging one layer later, with the stage's first block, and the
    final norm one layer below the head)."""

    def layer_ids(shapes):
        depths: dict[int, int] = {}
        for p, s in shapes.items():
            if m := re.match(r"^layers_(\d+)_blocks_(\d+)/", p):
                depths[int(m.group(1))] = max(depths.get(int(m.group(1)), 0), int(m.group(2)) + 1)
            elif m := re.match(r"^layers_(\d+)_blocks/", p):
                depths[int(m.group(1))] = s[0]
        starts = [0]
        for stage in sorted(depths):
            starts.append(starts[-1] + depths[stage])
        total = starts[-1]
        ids = {}
        for p, s in shapes.items():
            head = p.split("/")[0]
            if head in embed:
                ids[p] = 0
            elif m := re.fullmatch(r"layers_(\d+)_blocks_(\d+)", head):
                ids[p] = starts[int(m.group(1))] + int(m.group(2)) + 1
            elif m := re.fullmatch(r"layers_(\d+)_blocks", head):
                ids[p] = tuple(starts[int(m.group(1))] + b + 1 for b in range(s[0]))
            elif m := re.fullmatch(r"layers_(\d+)_downsample", head):
                ids[p] = starts[int(m.group(1))]
            else:
                ids[p] = total + 1
        return ids, total + 1

    return layer_ids
