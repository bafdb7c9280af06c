"""VGG-11/13/16/19 with and without BatchNorm, as torchvision.

Reference: torchvision/models/vgg.py (Simonyan & Zisserman 2014, "Very Deep Convolutional
Networks for Large-Scale Image Recognition", configurations A, B, D, E of Table 1).
Parameter names follow torchvision's ``nn.Sequential`` indices: ``features_N`` is
``features.N`` (convs and BatchNorms; ReLU and max-pool hold an index but no weights) and
``classifier_0/3/6`` are ``classifier.0/3/6``. The 7x7 adaptive average pool before the
classifier makes the logits defined at any input size >= 32 px.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxbones.layers import BatchNorm, adaptive_avg_pool2d, check_input, conv2d, max_pool2d
from jaxbones.layers.linear import Dense
from jaxbones.models._features import select_levels
from jaxbones.models._pretrained import torchvision_url
from jaxbones.registry import register_model

Dtype = Any


def _cfg(*convs_per_stage: int) -> tuple:
    # conv widths 64, 128, 256, 512, 512 per stage, each stage closed by a max-pool
    out = []
    for width, n in zip((64, 128, 256, 512, 512), convs_per_stage):
        out += [width] * n + ["M"]
    return tuple(out)


# torchvision ``cfgs`` (paper Table 1): channels per 3x3 conv, "M" a 2x2/2 max-pool.
CFGS = {
    "A": _cfg(1, 1, 2, 2, 2),
    "B": _cfg(2, 2, 2, 2, 2),
    "D": _cfg(2, 2, 3, 3, 3),
    "E": _cfg(2, 2, 4, 4, 4),
}


class VGG(nn.Module):
    """VGG (torchvision layout).

    Attributes:
      cfg: layer configuration, a tuple of conv widths and ``"M"`` (max-pool), or a key of
        ``CFGS`` (``"A"`` VGG-11, ``"B"`` VGG-13, ``"D"`` VGG-16, ``"E"`` VGG-19).
      batch_norm: BatchNorm after every conv (``vgg*_bn``).
      num_classes: classifier outputs (0: return the 4096 pre-logits features).
      in_chans: input channels.
      drop_rate: dropout in the classifier (torchvision: 0.5, active when ``train=True``).
      features_only, out_indices: return NHWC maps instead of logits: the activation before
        each max-pool (reductions 1, 2, 4, 8, 16) and the last max-pool's output (32), as
        timm's ``features_only`` levels for ``vgg*``.
      dtype, param_dtype: compute and parameter dtypes.
    """

    cfg: str | Sequence[Any] = "A"
    batch_norm: bool = False
    num_classes: int = 1000
    in_chans: int = 3
    drop_rate: float = 0.5
    features_only: bool = False
    out_indices: Sequence[int] = (0, 1, 2, 3, 4, 5)
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    min_size = 32  # five 2x2/2 max-pools

    @property
    def layer_cfg(self) -> tuple:
        return tuple(CFGS[self.cfg] if isinstance(self.cfg, str) else self.cfg)

    @property
    def num_features(self) -> int:
        return 4096

    @property
    def feature_info(self) -> list[dict]:
        levels, idx, chs, red = [], 0, self.in_chans, 1
        for v in self.layer_cfg:
            if v == "M":
                # torchvision index of the ReLU just before this pool (timm's ``module``)
                levels.append({"num_chs": chs, "reduction": red, "module": f"features.{idx - 1}"})
                idx, red = idx + 1, red * 2
            else:
                idx, chs = idx + (3 if self.batch_norm else 2), v
        levels.append({"num_chs": chs, "reduction": red, "module": f"features.{idx - 1}"})
        return select_levels(levels, self.out_indices)

    @nn.compact
    def __call__(self, x, train: bool = False):
        check_input(x, in_chans=self.in_chans, min_size=self.min_size, model="VGG")
        x = x.astype(self.dtype or x.dtype)
        feats, idx = [], 0
        for v in self.layer_cfg:
            if v == "M":
                feats.append(x)
                x = max_pool2d(x, 2, 2)
                idx += 1
                continue
            x = conv2d(
                v,
                3,
                padding=1,
                bias=True,
                dtype=self.dtype,
                param_dtype=self.param_dtype,
                name=f"features_{idx}",
            )(x)
            if self.batch_norm:
                x = BatchNorm(
                    dtype=self.dtype, param_dtype=self.param_dtype, name=f"features_{idx + 1}"
                )(x, train)
            x = nn.relu(x)
            idx += 3 if self.batch_norm else 2
        feats.append(x)
        if self.features_only:
            return select_levels(feats, self.out_indices)
        x = adaptive_avg_pool2d(x, 7)  # [B, 7, 7, 512]
        # torch flattens NCHW: channel-major order, so transpose before reshaping.
        x = x.transpose(0, 3, 1, 2).reshape(x.shape[0], -1)  # [B, 512 * 7 * 7]

        def dense(n, name):
            return Dense(n, dtype=self.dtype, param_dtype=self.param_dtype, name=name)

        x = nn.relu(dense(4096, "classifier_0")(x))
        x = nn.Dropout(self.drop_rate)(x, deterministic=not train)
        x = nn.relu(dense(4096, "classifier_3")(x))
        x = nn.Dropout(self.drop_rate)(x, deterministic=not train)
        if not self.num_classes:
            return x  # [B, 4096] pre-logits
        return dense(self.num_classes, "classifier_6")(x)


for _depth, _cfg in (("11", "A"), ("13", "B"), ("16", "D"), ("19", "E")):
    for _bn in (False, True):
        _name = f"vgg{_depth}" + ("_bn" if _bn else "")
        register_model(
            _name,
            functools.partial(VGG, cfg=_cfg, batch_norm=_bn),
            family="vgg",
            reference="torchvision.models." + _name,
            min_size=32,
        )


# ---------------------------------------------------------------------------------------------
# Pretrained weights: facts from timm's and torchvision's pretrained configs; top-1/top-5
# from timm's results-imagenet.csv at the tag's eval size and crop, or torchvision's weights
# meta. tests/test_pretrained_cfgs.py checks them against the installed libraries. A model's
# first tag is its default.

torchvision_url(
    "vgg11.tv_in1k",
    "https://download.pytorch.org/models/vgg11-8a719046.pth",
    top1=69.02,
    top5=88.628,
)
torchvision_url(
    "vgg11_bn.tv_in1k",
    "https://download.pytorch.org/models/vgg11_bn-6002323d.pth",
    top1=70.37,
    top5=89.81,
)
torchvision_url(
    "vgg13.tv_in1k",
    "https://download.pytorch.org/models/vgg13-19584684.pth",
    top1=69.928,
    top5=89.246,
)
torchvision_url(
    "vgg13_bn.tv_in1k",
    "https://download.pytorch.org/models/vgg13_bn-abd245e5.pth",
    top1=71.586,
    top5=90.374,
)
torchvision_url(
    "vgg16.tv_in1k",
    "https://download.pytorch.org/models/vgg16-397923af.pth",
    top1=71.592,
    top5=90.382,
)
torchvision_url(
    "vgg16_bn.tv_in1k",
    "https://download.pytorch.org/models/vgg16_bn-6c64b313.pth",
    top1=73.36,
    top5=91.516,
)
torchvision_url(
    "vgg19.tv_in1k",
    "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
    top1=72.376,
    top5=90.876,
)
torchvision_url(
    "vgg19_bn.tv_in1k",
    "https://download.pytorch.org/models/vgg19_bn-c79401a0.pth",
    top1=74.218,
    top5=91.842,
)
