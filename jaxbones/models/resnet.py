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
from jaxbones.layers.param_groups import ParamGroups
from jaxbones.layers.stack import block_stack, remat
from jaxbones.models._features import classifier_head, select_levels
from jaxbones.models._pretrained import timm_hub, torchvision_url
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


# scanned stages: the blocks after the first are one `{stage}_rest` stack
PARAM_GROUPS = ParamGroups(stacks=(r".+_rest",))


def _reg(name, fn, reference, **kw):
    family = kw.pop("family", "resnet")
    register_model(name, fn, family=family, reference=reference, param_groups=PARAM_GROUPS, **kw)


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


# ---------------------------------------------------------------------------------------------
# Pretrained weights: facts from timm's and torchvision's pretrained configs; top-1/top-5
# from timm's results-imagenet.csv at the tag's eval size and crop, or torchvision's weights
# meta. tests/test_pretrained_cfgs.py checks them against the installed libraries. A model's
# first tag is its default.

timm_hub(
    "resnet18.a1_in1k",
    interpolation="bicubic",
    crop_pct=0.95,
    license="apache-2.0",
    top1=71.504,
    top5=90.086,
)
timm_hub(
    "resnet18.a2_in1k",
    interpolation="bicubic",
    crop_pct=0.95,
    license="apache-2.0",
    top1=70.634,
    top5=89.486,
)
timm_hub(
    "resnet18.a3_in1k",
    input_size=(160, 160, 3),
    interpolation="bicubic",
    crop_pct=0.95,
    license="apache-2.0",
    top1=65.67,
    top5=86.268,
)
torchvision_url(
    "resnet18.tv_in1k",
    "https://download.pytorch.org/models/resnet18-f37072fd.pth",
    top1=69.758,
    top5=89.078,
)
timm_hub("resnet18.fb_ssl_yfcc100m_ft_in1k", license="cc-by-nc-4.0", top1=72.636, top5=91.416)
timm_hub("resnet18.fb_swsl_ig1b_ft_in1k", license="cc-by-nc-4.0", top1=73.286, top5=91.754)
timm_hub(
    "resnet18.gluon_in1k", interpolation="bicubic", license="apache-2.0", top1=70.844, top5=89.75
)
timm_hub(
    "resnet34.a1_in1k",
    interpolation="bicubic",
    crop_pct=0.95,
    license="apache-2.0",
    top1=76.42,
    top5=92.896,
)
timm_hub(
    "resnet34.a2_in1k",
    interpolation="bicubic",
    crop_pct=0.95,
    license="apache-2.0",
    top1=75.52,
    top5=92.454,
)
timm_hub(
    "resnet34.a3_in1k",
    input_size=(160, 160, 3),
    interpolation="bicubic",
    crop_pct=0.95,
    license="apache-2.0",
    top1=70.58,
    top5=89.54,
)
timm_hub(
    "resnet34.bt_in1k", interpolation="bicubic", license="apache-2.0", top1=75.176, top5=92.166
)
timm_hub(
    "resnet34.ra4_e3600_r224_in1k",
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
    interpolation="bicubic",
    crop_pct=0.9,
    license="apache-2.0",
    top1=77.492,
    top5=93.498,
)
torchvision_url(
    "resnet34.tv_in1k",
    "https://download.pytorch.org/models/resnet34-b627a593.pth",
    top1=73.314,
    top5=91.42,
)
timm_hub(
    "resnet34.gluon_in1k", interpolation="bicubic", license="apache-2.0", top1=74.574, top5=91.988
)
timm_hub(
    "resnet50.a1_in1k",
    interpolation="bicubic",
    crop_pct=0.95,
    license="apache-2.0",
    top1=80.382,
    top5=94.598,
)
timm_hub(
    "resnet50.a1h_in1k",
    input_size=(176, 176, 3),
    interpolation="bicubic",
    crop_pct=0.9,
    license="apache-2.0",
    top1=79.264,
    top5=94.498,
)
timm_hub(
    "resnet50.a2_in1k",
    interpolation="bicubic",
    crop_pct=0.95,
    license="apache-2.0",
    top1=79.828,
    top5=94.56,
)
timm_hub(
    "resnet50.a3_in1k",
    input_size=(160, 160, 3),
    interpolation="bicubic",
    crop_pct=0.95,
    license="apache-2.0",
    top1=75.994,
    top5=92.494,
)
timm_hub(
    "resnet50.b1k_in1k",
    interpolation="bicubic",
    crop_pct=0.95,
    license="apache-2.0",
    top1=79.564,
    top5=94.622,
)
timm_hub(
    "resnet50.b2k_in1k",
    interpolation="bicubic",
    crop_pct=0.95,
    license="apache-2.0",
    top1=79.388,
    top5=94.58,
)
timm_hub(
    "resnet50.c1_in1k",
    interpolation="bicubic",
    crop_pct=0.95,
    license="apache-2.0",
    top1=79.766,
    top5=94.954,
)
timm_hub(
    "resnet50.c2_in1k",
    interpolation="bicubic",
    crop_pct=0.95,
    license="apache-2.0",
    top1=79.868,
    top5=94.862,
)
timm_hub(
    "resnet50.d_in1k",
    interpolation="bicubic",
    crop_pct=0.95,
    license="apache-2.0",
    top1=79.904,
    top5=94.666,
)
timm_hub(
    "resnet50.ram_in1k", interpolation="bicubic", license="apache-2.0", top1=79.034, top5=94.386
)
timm_hub(
    "resnet50.am_in1k", interpolation="bicubic", license="apache-2.0", top1=79.004, top5=94.392
)
timm_hub("resnet50.ra_in1k", interpolation="bicubic", license="apache-2.0", top1=78.82, top5=94.314)
timm_hub(
    "resnet50.bt_in1k", interpolation="bicubic", license="apache-2.0", top1=78.444, top5=94.274
)
torchvision_url(
    "resnet50.tv_in1k",
    "https://download.pytorch.org/models/resnet50-0676ba61.pth",
    top1=76.13,
    top5=92.862,
)
torchvision_url(
    "resnet50.tv2_in1k",
    "https://download.pytorch.org/models/resnet50-11ad3fa6.pth",
    crop_pct=0.9655,
    top1=80.858,
    top5=95.434,
)
timm_hub("resnet50.bamboo", num_classes=0, interpolation="bicubic", crop_pct=1.0)
timm_hub("resnet50.fb_ssl_yfcc100m_ft_in1k", license="cc-by-nc-4.0", top1=79.252, top5=94.826)
timm_hub("resnet50.fb_swsl_ig1b_ft_in1k", license="cc-by-nc-4.0", top1=81.146, top5=95.98)
timm_hub(
    "resnet50.gluon_in1k", interpolation="bicubic", license="apache-2.0", top1=77.58, top5=93.704
)
timm_hub(
    "resnet101.a1h_in1k",
    interpolation="bicubic",
    crop_pct=0.95,
    license="apache-2.0",
    top1=81.95,
    top5=95.76,
)
timm_hub(
    "resnet101.a1_in1k",
    interpolation="bicubic",
    crop_pct=0.95,
    license="apache-2.0",
    top1=81.494,
    top5=95.164,
)
timm_hub(
    "resnet101.a2_in1k",
    interpolation="bicubic",
    crop_pct=0.95,
    license="apache-2.0",
    top1=81.344,
    top5=95.198,
)
timm_hub(
    "resnet101.a3_in1k",
    input_size=(160, 160, 3),
    interpolation="bicubic",
    crop_pct=0.95,
    license="apache-2.0",
    top1=77.928,
    top5=93.686,
)
torchvision_url(
    "resnet101.tv_in1k",
    "https://download.pytorch.org/models/resnet101-63fe2227.pth",
    top1=77.374,
    top5=93.546,
)
torchvision_url(
    "resnet101.tv2_in1k",
    "https://download.pytorch.org/models/resnet101-cd907fc2.pth",
    crop_pct=0.9655,
    top1=81.886,
    top5=95.78,
)
timm_hub(
    "resnet101.gluon_in1k", interpolation="bicubic", license="apache-2.0", top1=79.306, top5=94.538
)
timm_hub(
    "resnet152.a1h_in1k",
    interpolation="bicubic",
    crop_pct=0.95,
    license="apache-2.0",
    top1=82.818,
    top5=96.124,
)
timm_hub(
    "resnet152.a1_in1k",
    interpolation="bicubic",
    crop_pct=0.95,
    license="apache-2.0",
    top1=81.998,
    top5=95.294,
)
timm_hub(
    "resnet152.a2_in1k",
    interpolation="bicubic",
    crop_pct=0.95,
    license="apache-2.0",
    top1=81.764,
    top5=95.27,
)
timm_hub(
    "resnet152.a3_in1k",
    input_size=(160, 160, 3),
    interpolation="bicubic",
    crop_pct=0.95,
    license="apache-2.0",
    top1=78.896,
    top5=94.14,
)
torchvision_url(
    "resnet152.tv_in1k",
    "https://download.pytorch.org/models/resnet152-394f9c45.pth",
    top1=78.312,
    top5=94.046,
)
torchvision_url(
    "resnet152.tv2_in1k",
    "https://download.pytorch.org/models/resnet152-f82ba261.pth",
    crop_pct=0.9655,
    top1=82.284,
    top5=96.002,
)
timm_hub(
    "resnet152.gluon_in1k", interpolation="bicubic", license="apache-2.0", top1=79.712, top5=94.72
)
timm_hub(
    "resnext50_32x4d.a1h_in1k",
    interpolation="bicubic",
    crop_pct=0.95,
    license="apache-2.0",
    top1=81.14,
    top5=95.32,
)
timm_hub(
    "resnext50_32x4d.a1_in1k",
    interpolation="bicubic",
    crop_pct=0.95,
    license="apache-2.0",
    top1=80.526,
    top5=94.458,
)
timm_hub(
    "resnext50_32x4d.a2_in1k",
    interpolation="bicubic",
    crop_pct=0.95,
    license="apache-2.0",
    top1=80.444,
    top5=94.63,
)
timm_hub(
    "resnext50_32x4d.a3_in1k",
    input_size=(160, 160, 3),
    interpolation="bicubic",
    crop_pct=0.95,
    license="apache-2.0",
    top1=77.732,
    top5=93.314,
)
timm_hub(
    "resnext50_32x4d.ra_in1k", interpolation="bicubic", license="apache-2.0", top1=79.8, top5=94.608
)
torchvision_url(
    "resnext50_32x4d.tv_in1k",
    "https://download.pytorch.org/models/resnext50_32x4d-7cdf4587.pth",
    top1=77.618,
    top5=93.698,
)
torchvision_url(
    "resnext50_32x4d.tv2_in1k",
    "https://download.pytorch.org/models/resnext50_32x4d-1a0047aa.pth",
    crop_pct=0.9655,
    top1=81.198,
    top5=95.34,
)
timm_hub(
    "resnext50_32x4d.fb_ssl_yfcc100m_ft_in1k", license="cc-by-nc-4.0", top1=80.316, top5=95.386
)
timm_hub("resnext50_32x4d.fb_swsl_ig1b_ft_in1k", license="cc-by-nc-4.0", top1=82.162, top5=96.224)
timm_hub(
    "resnext50_32x4d.gluon_in1k",
    interpolation="bicubic",
    license="apache-2.0",
    top1=79.354,
    top5=94.424,
)
torchvision_url(
    "resnext101_32x8d.tv_in1k",
    "https://download.pytorch.org/models/resnext101_32x8d-8ba56ff5.pth",
    top1=79.312,
    top5=94.526,
)
torchvision_url(
    "resnext101_32x8d.tv2_in1k",
    "https://download.pytorch.org/models/resnext101_32x8d-110c445d.pth",
    crop_pct=0.9655,
    top1=82.834,
    top5=96.228,
)
timm_hub("resnext101_32x8d.fb_wsl_ig1b_ft_in1k", license="cc-by-nc-4.0", top1=82.72, top5=96.624)
timm_hub(
    "resnext101_32x8d.fb_ssl_yfcc100m_ft_in1k", license="cc-by-nc-4.0", top1=81.62, top5=96.036
)
timm_hub("resnext101_32x8d.fb_swsl_ig1b_ft_in1k", license="cc-by-nc-4.0", top1=84.276, top5=97.188)
timm_hub(
    "wide_resnet50_2.racm_in1k",
    interpolation="bicubic",
    license="apache-2.0",
    top1=81.466,
    top5=95.544,
)
torchvision_url(
    "wide_resnet50_2.tv_in1k",
    "https://download.pytorch.org/models/wide_resnet50_2-95faca4d.pth",
    top1=78.468,
    top5=94.086,
)
torchvision_url(
    "wide_resnet50_2.tv2_in1k",
    "https://download.pytorch.org/models/wide_resnet50_2-9ba9bcbe.pth",
    crop_pct=0.9655,
    top1=81.602,
    top5=95.758,
)
timm_hub(
    "resnetv2_50.a1h_in1k",
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
    interpolation="bicubic",
    crop_pct=0.95,
    license="apache-2.0",
    top1=80.41,
    top5=95.082,
)
timm_hub(
    "resnetv2_101.a1h_in1k",
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
    interpolation="bicubic",
    crop_pct=0.95,
    license="apache-2.0",
    top1=82.042,
    top5=95.866,
)
