"""Transfer learning: which parameters train when a pretrained model is fine-tuned.

Three modes (``experiments/finetune.py``):
  'full'         every parameter trains, starting from the pretrained weights.
  'last_stages'  the last ``n`` stages and everything after them (final norm, head) train;
                 the stem and the earlier stages are frozen. BatchNorm statistics keep
                 updating everywhere, as in PyTorch when parameters only stop requiring
                 gradients.
  'head'         only a new head trains; the model runs in inference mode during training
                 (task ``'classification_frozen'``: BatchNorm uses and keeps its pretrained
                 running statistics, no dropout or drop path), so the features are exactly
                 the pretrained model's.

The head is found from the parameter shapes: the leaves whose shape follows ``num_classes``.
Stages are named differently per family (``layer3_1`` in ResNet, ``stages_2`` in CSPNet,
``blocks_11`` in ViT, ``layers_3_blocks_0`` in Swin); ``STAGE_PATTERNS`` maps each family
to the top-level parameter names of its stages and of what follows the last stage. Families
without an entry (CLIP, SAM, UNet, ...) fail naming the modes that do work.
"""

from __future__ import annotations

import re

from flax import traverse_util

from jaxbones.registry import create_model, get_entry, init_shapes
from jaxbones.train.tasks import FrozenClassification

MODES = ("full", "last_stages", "head")

# family -> ([(regex on the top-level parameter name with the stage number as group 1,
#             offset added to that number)], regex of the top-level names after the last stage)
STAGE_PATTERNS: dict[str, tuple[list[tuple[str, int]], str]] = {
    "resnet": ([(r"^layer(\d+)_", -1)], r"^fc$"),
    "resnetv2": ([(r"^stages_(\d+)(_|$)", 0)], r"^(norm|head_fc)$"),
    "cspnet": ([(r"^stages_(\d+)(_|$)", 0)], r"^head_fc$"),
    "vovnet": ([(r"^stages_(\d+)(_|$)", 0)], r"^head_fc$"),
    # transition k downsamples into dense block k + 1 (stage k)
    "densenet": ([(r"^denseblock(\d+)$", -1), (r"^transition(\d+)$", 0)], r"^(norm5|classifier)$"),
    "inception": ([(r"^Mixed_(\d)", -5)], r"^(fc|AuxLogits)$"),
    "swin": ([(r"^layers_(\d+)_", 0)], r"^(norm|head)$"),
    # a ViT has no stages: each block counts as one
    "vit": ([(r"^blocks_(\d+)$", 0)], r"^(norm|fc_norm|head)$"),
    "vgg": ([], r"^(classifier_\d+|pre_logits.*)$"),  # stages from feature_info (pools)
}


def head_paths(model: str, **model_kwargs) -> list[str]:
    """'a/b/c' paths of the parameters whose shape follows ``num_classes`` (the head)."""
    kw = {k: v for k, v in model_kwargs.items() if k != "num_classes"}
    a = traverse_util.flatten_dict(init_shapes(model, num_classes=7, **kw)["params"], sep="/")
    b = traverse_util.flatten_dict(init_shapes(model, num_classes=11, **kw)["params"], sep="/")
    heads = sorted(p for p in a if p not in b or a[p].shape != b[p].shape)
    if not heads:
        raise ValueError(f"{model} has no parameter that depends on num_classes: no head")
    return heads


def _vgg_stage(name: str, model: str, model_kwargs: dict) -> int | None:
    m = re.match(r"^features_(\d+)$", name)
    if not m:
        return None
    kw = {k: v for k, v in model_kwargs.items() if k != "num_classes"}
    levels = [int(f["module"].split(".")[-1]) for f in create_model(model, **kw).feature_info]
    idx = int(m.group(1))
    return next(i for i, end in enumerate(levels) if idx <= end)


def stage_of(model: str, params, **model_kwargs) -> dict[str, int | str]:
    """Top-level parameter name -> stage number, 'stem' (before stage 0) or 'tail' (after
    the last stage: final norm, head)."""
    family = get_entry(model).family
    if family not in STAGE_PATTERNS:
        raise ValueError(
            f"mode 'last_stages': the stages of {model} (family {family}) are not known; "
            f"use mode 'full' or 'head', or list what trains in config.optimizer.trainable "
            f"(regexes on 'a/b/c' parameter paths). Families with stages: "
            f"{', '.join(sorted(STAGE_PATTERNS))}"
        )
    patterns, tail = STAGE_PATTERNS[family]
    out: dict[str, int | str] = {}
    for name in params:
        if name in ("blocks", "decoder_blocks"):  # a scanned ViT stacks all blocks in one
            raise ValueError(
                f"mode 'last_stages' freezes whole blocks, but {model} with scan=True stacks "
                "them into one parameter: use --config.model_kwargs.scan=False"
            )
        stage = None
        for regex, offset in patterns:
            if m := re.match(regex, name):
                stage = int(m.group(1)) + offset
                break
        if family == "vgg":
            stage = _vgg_stage(name, model, model_kwargs)
        if stage is not None:
            out[name] = stage
        elif re.match(tail, name):
            out[name] = "tail"
        else:
            out[name] = "stem"
    if not any(isinstance(s, int) for s in out.values()):
        raise ValueError(f"no stage of {model} found among its parameters {sorted(params)}")
    return out


def trainable_patterns(
    mode: str, model: str, params, num_stages: int = 1, **model_kwargs
) -> tuple[str, ...]:
    """Regexes for ``config.optimizer.trainable`` (``()``: everything trains) for ``mode``.

    ``params``: the model's parameter tree (shapes suffice); ``num_stages``: how many of the
    last stages train in 'last_stages'.
    """
    if mode == "full":
        return ()
    if mode == "head":
        return tuple(f"^{re.escape(p)}$" for p in head_paths(model, **model_kwargs))
    if mode != "last_stages":
        raise ValueError(f"fine-tuning mode {mode!r}: use one of {MODES}")
    stages = stage_of(model, params, **model_kwargs)
    total = 1 + max(s for s in stages.values() if isinstance(s, int))
    if not 1 <= num_stages <= total:
        raise ValueError(f"{model} has {total} stages: train_stages must be in 1..{total}")
    first = total - num_stages
    names = sorted(
        n for n, s in stages.items() if s == "tail" or (isinstance(s, int) and s >= first)
    )
    return tuple(f"^{re.escape(n)}/" for n in names)


def apply_mode(config):
    """Sets ``config.optimizer.trainable``, the task and the re-initialised head for
    ``config.mode`` / ``config.train_stages`` / ``config.new_head`` (after overrides; the
    model and its options come from the pretrained tag)."""
    from jaxbones.train.pretrained import resolve_config
    from jaxbones.train.tasks import model_kwargs

    resolved = resolve_config(config)
    kw = model_kwargs(resolved, img_size=resolved.image_size)
    kw.pop("dtype", None)
    patterns = ()
    if config.mode != "full":
        params = init_shapes(resolved.model, **kw)["params"]
        patterns = trainable_patterns(
            config.mode, resolved.model, params, config.train_stages, **kw
        )
    with config.unlocked(), config.ignore_type():
        config.optimizer.trainable = patterns
        if config.mode == "head":
            config.task = FrozenClassification.name
        if config.new_head:
            heads = head_paths(resolved.model, **kw)
            config.pretrained_reinit = tuple(f"^{re.escape(p)}$" for p in heads)
    return config
