"""ResNet, ResNeXt, Wide ResNet (torchvision) and the pre-activation ResNetV2 (timm).

References: torchvision/models/resnet.py (He et al. 2015; ResNeXt, Xie et al. 2016; Wide
ResNet, Zagoruyko & Komodakis 2016) and timm/models/resnetv2.py (He et al. 2016, "Identity
Mappings in Deep Residual Networks"). Parameter names follow the PyTorch modules
(``layer1_0.conv1`` is ``layer1.0.conv1``) so conversion is a rename plus transposes.

``scan=True``: within a stage every block after the first has the same shapes (the first one
changes stride/channels and owns the projection shortcut), so blocks ``1..n-1`` of a stage run
under one ``nn.scan``: parameters and BatchNorm statistics ``layer{s}_1 .. layer{s}_{n-1}``
become one ``layer{s}_rest`` subtree with a leading [n-1] axis (``layer{s}_0`` stays as
is; ResNetV2: ``stages_{s}_blocks_0`` and ``stages_{s}_blocks_rest``). The per-block drop-path
rates are a scanned input, so the linear schedule still varies per block.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxbones.layers import (
    BatchNorm,
    check_input,
    conv2d,
    drop_path,
    drop_path_rates,
    max_pool2d,
)
from jaxbones.layers.stack import block_stack, remat
from jaxbones.models._features import classifier_head, select_levels
from jaxbones.registry import register_model

Dtype = Any


def _bn(mod, name, zero=False):
    return BatchNorm(
        scale_init=nn.initializers.zeros if zero else nn.initializers.ones,
        dtype=mod.dtype,
        param_dtype=mod.param_dtype,
        name=name,
    )


def _conv(mod, features, k, stride=1, groups=1, name=None, zero=False):
    kw = {"kernel_init": nn.initializers.zeros} if zero else {}
    return conv2d(
        features,
        k,
        stride,
        groups=groups,
        dtype=mod.dtype,
        param_dtype=mod.param_dtype,
        name=name,
        **kw,
    )


def _stage(mod, block_cls, x, train: bool, *, name: str, rates, common: dict, first, rest):
    """One stage of ``len(rates)`` blocks built by ``block_cls(**common, **first|rest)``:
    block 0 (``{name}_0``: ``first``, the stride / projection one) then blocks 1..n-1
    (``rest``), unrolled (``{name}_1`` ...) or, with ``mod.scan``, one ``nn.scan`` named
    ``{name}_rest`` whose params and batch_stats have a leading [n-1] axis."""
    # train is the 2nd call argument (self is 0): static for remat
    cls = remat(block_cls, mod.remat_policy, static_argnums=(2,))
    x = cls(**common, **first, drop_path=rates[0], name=f"{name}_0")(x, train)
    x, _ = block_stack(
        mod,
        functools.partial(block_cls, **common, **rest),
        x,
        name=name,
        depth=len(rates) - 1,
        scan=mod.scan,
        args=(train,),
        deterministic=not train,
        drop_path=rates[1:],
        remat_policy=mod.remat_policy,
        start=1,
        stacked_name=f"{name}_rest",
    )
    return x


class BasicBlock(nn.Module):
    """torchvision ``BasicBlock``: two 3x3 convs, expansion 1.

    Attributes:
      planes: output channels; stride: stride of the first conv; downsample: add the
      1x1-conv + BN projection shortcut; drop_path: stochastic depth rate;
      zero_init_last: initialise ``bn2.scale`` to zero; dtype, param_dtype.

    Call: ``(x, train, drop_path_rate=None, drop_path_key=None)``; ``drop_path_rate``
    (traced) replaces ``drop_path`` under ``scan``; ``drop_path_key`` is the key
    ``block_stack`` hands each block.
    """

    planes: int
    stride: int = 1
    downsample: bool = False
    groups: int = 1
    base_width: int = 64
    drop_path: float = 0.0
    zero_init_last: bool = True
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32
    expansion = 1

    @nn.compact
    def __call__(self, x, train: bool = False, drop_path_rate=None, drop_path_key=None):
        shortcut = x
        y = _conv(self, self.planes, 3, self.stride, name="conv1")(x)
        y = nn.relu(_bn(self, "bn1")(y, train))
        y = _conv(self, self.planes, 3, name="conv2")(y)
        y = _bn(self, "bn2", self.zero_init_last)(y, train)
        if self.downsample:
            shortcut = _conv(self, self.planes, 1, self.stride, name="downsample_0")(x)
            shortcut = _bn(self, "downsample_1")(shortcut, train)
        rate = self.drop_path if drop_path_rate is None else drop_path_rate
        y = drop_path(self, y, rate, not train, key=drop_path_key)
        return nn.relu(y + shortcut)


class Bottleneck(nn.Module):
    """torchvision ``Bottleneck`` (v1.5: stride on the 3x3 conv), expansion 4.

    ``width = planes * base_width / 64 * groups`` gives ResNeXt (groups=32, base_width=4)
    and Wide ResNet (base_width=128). Attributes as ``BasicBlock``.
    """

    planes: int
    stride: int = 1
    downsample: bool = False
    groups: int = 1
    base_width: int = 64
    drop_path: float = 0.0
    zero_init_last: bool = True
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32
    expansion = 4

    @nn.compact
    def __call__(self, x, train: bool = False, drop_path_rate=None, drop_path_key=None):
        width = int(self.planes * (self.base_width / 64.0)) * self.groups
        out = self.planes * self.expansion
        shortcut = x
        y = _conv(self, width, 1, name="conv1")(x)
        y = nn.relu(_bn(self, "bn1")(y, train))
        y = _conv(self, width, 3, self.stride, self.groups, name="conv2")(y)
        y = nn.relu(_bn(self, "bn2")(y, train))
        y = _conv(self, out, 1, name="conv3")(y)
        y = _bn(self, "bn3", self.zero_init_last)(y, train)
        if self.downsample:
            shortcut = _conv(self, out, 1, self.stride, name="downsample_0")(x)
            shortcut = _bn(self, "downsample_1")(shortcut, train)
        rate = self.drop_path if drop_path_rate is None else drop_path_rate
        y = drop_path(self, y, rate, not train, key=drop_path_key)
        return nn.relu(y + shortcut)


_BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}


class ResNet(nn.Module):
    """ResNet v1.5 / ResNeXt / Wide ResNet, as torchvision.

    Attributes:
      layers: blocks per stage, e.g. (3, 4, 6, 3) for ResNet-50.
      block: ``'basic'`` (ResNet-18/34) or ``'bottleneck'``.
      num_classes: classifier outputs (0: return pooled features).
      in_chans: input channels.
      groups, base_width: ResNeXt cardinality and width per group (Wide ResNet: 128).
      drop_rate: dropout before the classifier; drop_path_rate: stochastic depth, linear
        over all blocks (timm).
      zero_init_last: zero-initialise the last BN scale of each residual branch.
      global_pool: ``'avg'``, ``'max'`` or ``'avgmax'``.
      features_only, out_indices: return the NHWC maps of the selected levels (strides 2, 4,
        8, 16, 32, as timm's ``features_only``) instead of logits.
      scan: ``nn.scan`` over blocks 1..n-1 of each stage (module docstring);
        remat_policy: a ``jaxbones.layers.REMAT_POLICIES`` name applied to every block.
      dtype, param_dtype: compute and parameter dtypes.
    """

    layers: Sequence[int]
    block: str = "bottleneck"
    num_classes: int = 1000
    in_chans: int = 3
    groups: int = 1
    base_width: int = 64
    drop_rate: float = 0.0
    drop_path_rate: float = 0.0
    zero_init_last: bool = True
    global_pool: str = "avg"
    features_only: bool = False
    out_indices: Sequence[int] = (0, 1, 2, 3, 4)
    scan: bool = False
    remat_policy: str = "none"
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    min_size = 32  # the network downsamples by 32

    @property
    def num_features(self) -> int:
        return 512 * _BLOCKS[self.block].expansion

    @property
    def feature_info(self) -> list[dict]:
        exp = _BLOCKS[self.block].expansion
        levels = [{"num_chs": 64, "reduction": 2, "module": "act1"}] + [
            {"num_chs": 64 * 2**i * exp, "reduction": 4 * 2**i, "module": f"layer{i + 1}"}
            for i in range(4)
        ]
        return select_levels(levels, self.out_indices)

    @nn.compact
    def __call__(self, x, train: bool = False):
        check_input(x, in_chans=self.in_chans, min_size=self.min_size, model="ResNet")
        if self.block not in _BLOCKS:
            raise ValueError(f"block must be one of {sorted(_BLOCKS)}, got {self.block!r}")
        block_cls = _BLOCKS[self.block]
        x = x.astype(self.dtype or x.dtype)
        x = _conv(self, 64, 7, 2, name="conv1")(x)
        x = nn.relu(_bn(self, "bn1")(x, train))
        feats = [x]
        x = max_pool2d(x, 3, 2, 1)
        in_chs = 64
        dprs = drop_path_rates(self.drop_path_rate, self.layers)
        for i, depth in enumerate(self.layers):
            planes = 64 * 2**i
            stride = 2 if i > 0 else 1
            common = {
                "planes": planes,
                "groups": self.groups,
                "base_width": self.base_width,
                "zero_init_last": self.zero_init_last,
                "dtype": self.dtype,
                "param_dtype": self.param_dtype,
            }
            first = {
                "stride": stride,
                "downsample": stride != 1 or in_chs != planes * block_cls.expansion,
            }
            x = _stage(
                self,
                block_cls,
                x,
                train,
                name=f"layer{i + 1}",
                rates=dprs[i],
                common=common,
                first=first,
                rest={"stride": 1, "downsample": False},
            )
            in_chs = planes * block_cls.expansion
            feats.append(x)
        if self.features_only:
            return select_levels(feats, self.out_indices)
        return classifier_head(self, x, train, name="fc")


class PreActBottleneck(nn.Module):
    """timm ``PreActBottleneck``: BN-ReLU before each conv, projection from the pre-activation.

    Attributes:
      features: output channels (mid = features / 4); stride: on the 3x3 conv;
      proj: add the 1x1 ``downsample.conv`` projection; drop_path; zero_init_last: zero
      ``conv3``; dtype, param_dtype. Call as ``Bottleneck``.
    """

    features: int
    stride: int = 1
    proj: bool = False
    drop_path: float = 0.0
    zero_init_last: bool = False
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False, drop_path_rate=None, drop_path_key=None):
        mid = self.features // 4
        x_pre = nn.relu(_bn(self, "norm1")(x, train))
        shortcut = x
        if self.proj:
            shortcut = _conv(self, self.features, 1, self.stride, name="downsample_conv")(x_pre)
        y = _conv(self, mid, 1, name="conv1")(x_pre)
        y = _conv(self, mid, 3, self.stride, name="conv2")(nn.relu(_bn(self, "norm2")(y, train)))
        y = _conv(self, self.features, 1, name="conv3", zero=self.zero_init_last)(
            nn.relu(_bn(self, "norm3")(y, train))
        )
        rate = self.drop_path if drop_path_rate is None else drop_path_rate
        y = drop_path(self, y, rate, not train, key=drop_path_key)
        return y + shortcut


class ResNetV2(nn.Module):
    """Pre-activation ResNet (v2) with BatchNorm, as timm's ``resnetv2_50`` / ``resnetv2_101``.

    Attributes:
      layers: blocks per stage; channels: output channels per stage.
      num_classes, in_chans, drop_rate, drop_path_rate, global_pool, features_only,
      out_indices, dtype, param_dtype: as ``ResNet``.
      zero_init_last: zero-initialise each block's last conv (timm's option for v2).
      scan, remat_policy: as ``ResNet`` (scanned blocks: ``stages_{s}_blocks_rest``).
    """

    layers: Sequence[int]
    channels: Sequence[int] = (256, 512, 1024, 2048)
    num_classes: int = 1000
    in_chans: int = 3
    drop_rate: float = 0.0
    drop_path_rate: float = 0.0
    zero_init_last: bool = False
    global_pool: str = "avg"
    features_only: bool = False
    out_indices: Sequence[int] = (0, 1, 2, 3, 4)
    scan: bool = False
    remat_policy: str = "none"
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    min_size = 32

    @property
    def num_features(self) -> int:
        return self.channels[-1]

    @property
    def feature_info(self) -> list[dict]:
        levels = [{"num_chs": 64, "reduction": 2, "module": "stem.conv"}] + [
            {"num_chs": c, "reduction": 4 * 2**i, "module": f"stages.{i}"}
            for i, c in enumerate(self.channels)
        ]
        return select_levels(levels, self.out_indices)

    @nn.compact
    def __call__(self, x, train: bool = False):
        check_input(x, in_chans=self.in_chans, min_size=self.min_size, model="ResNetV2")
        x = x.astype(self.dtype or x.dtype)
        x = _conv(self, 64, 7, 2, name="stem_conv")(x)
        feats = [x]
        x = max_pool2d(x, 3, 2, 1)
        dprs = drop_path_rates(self.drop_path_rate, self.layers)
        for i, (depth, chs) in enumerate(zip(self.layers, self.channels)):
            x = _stage(
                self,
                PreActBottleneck,
                x,
                train,
                name=f"stages_{i}_blocks",
                rates=dprs[i],
                common={
                    "features": chs,
                    "zero_init_last": self.zero_init_last,
                    "dtype": self.dtype,
                    "param_dtype": self.param_dtype,
                },
                first={"stride": 2 if i > 0 else 1, "proj": True},
                rest={"stride": 1, "proj": False},
            )
            feats.append(x)
        if self.features_only:
            return select_levels(feats, self.out_indices)
        x = nn.relu(_bn(self, "norm")(x, train))
        # timm uses a 1x1 conv classifier (``head.fc``); on pooled features it is a Dense.
        return classifier_head(self, x, train, name="head_fc")


def _reg(name, fn, reference, **kw):
    register_model(name, fn, family=kw.pop("family", "resnet"), reference=reference, **kw)


_tv = "torchvision.models."
_reg("resnet18", functools.partial(ResNet, layers=(2, 2, 2, 2), block="basic"), _tv + "resnet18")
_reg("resnet34", functools.partial(ResNet, layers=(3, 4, 6, 3), block="basic"), _tv + "resnet34")
_reg("resnet50", functools.partial(ResNet, layers=(3, 4, 6, 3)), _tv + "resnet50")
_reg("resnet101", functools.partial(ResNet, layers=(3, 4, 23, 3)), _tv + "resnet101")
_reg("resnet152", functools.partial(ResNet, layers=(3, 8, 36, 3)), _tv + "resnet152")
_reg(
    "resnext50_32x4d",
    functools.partial(ResNet, layers=(3, 4, 6, 3), groups=32, base_width=4),
    _tv + "resnext50_32x4d",
)
_reg(
    "resnext101_32x8d",
    functools.partial(ResNet, layers=(3, 4, 23, 3), groups=32, base_width=8),
    _tv + "resnext101_32x8d",
)
_reg(
    "wide_resnet50_2",
    functools.partial(ResNet, layers=(3, 4, 6, 3), base_width=128),
    _tv + "wide_resnet50_2",
)
_reg(
    "resnetv2_50",
    functools.partial(ResNetV2, layers=(3, 4, 6, 3)),
    "timm.models.resnetv2_50",
    family="resnetv2",
)
_reg(
    "resnetv2_101",
    functools.partial(ResNetV2, layers=(3, 4, 23, 3)),
    "timm.models.resnetv2_101",
    family="resnetv2",
)
