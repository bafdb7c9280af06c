"""Registration shorthands for the two sources most tags come from; each model file lists its
tags at its bottom ("Pretrained weights") and tests/test_pretrained_cfgs.py checks every fact
against the installed timm / torchvision / open_clip."""

from __future__ import annotations

import re
from typing import Any

from jaxbones.registry import PretrainedCfg, register_pretrained

TIMM_HUB_FILENAME = "model.safetensors"

# torch.hub names files ``<name>-<first hex digits of the file's SHA-256>.<ext>``
_HASH_IN_NAME = re.compile(r"-([a-f0-9]{6,})\.[a-z]+$")


def sha256_prefix_in_name(url: str) -> str:
    """The SHA-256 prefix torch.hub file names carry (``resnet50-0676ba61.pth`` ->
    ``'0676ba61'``), or '' when the name has none."""
    m = _HASH_IN_NAME.search(url.rsplit("/", 1)[-1])
    return m.group(1) if m else ""


def timm_hub(tag: str, **cfg: Any) -> PretrainedCfg:
    """A tag whose file is timm's Hugging Face Hub copy ``timm/<tag>`` (timm's state-dict
    layout, ``model.safetensors``)."""
    return register_pretrained(
        tag, hf_hub_id=f"timm/{tag}", hf_hub_filename=TIMM_HUB_FILENAME, source="timm", **cfg
    )


def torchvision_url(tag: str, url: str, **cfg: Any) -> PretrainedCfg:
    """A tag whose file is a torchvision release (``download.pytorch.org``); the SHA-256 prefix
    comes from the file name. License as timm records it for these weights."""
    return register_pretrained(
        tag,
        url=url,
        sha256=sha256_prefix_in_name(url),
        license="bsd-3-clause",
        source="torchvision",
        **cfg,
    )
