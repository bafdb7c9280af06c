"""Cross Stage Partial networks (CSPResNet-50, CSPResNeXt-50, CSPDarknet-53) and Darknet-53.

Reference: timm/models/cspnet.py (timm 1.0.31); Wang et al. 2019, "CSPNet: A New Backbone
that can Enhance Learning Capability of CNN"; Redmon & Farhadi 2018, "YOLOv3" (Darknet-53).
One generic ``CspNet`` module covers the four models; a variant is the stage table of timm's
``model_cfgs`` as dataclass fields. Parameter names follow timm (``stages_1.blocks_0.conv1``
is ``stages.1.blocks.0.conv1``), so conversion is a rename plus transposes.

Facts that decide parity (all taken from timm, not from the darknet cfg files):
  * the activation is ``nn.LeakyReLU()`` with PyTorch's default slope 0.01 (timm's
    ``act_layer='leaky_relu'``), not the 0.1 of the original darknet cfgs;
  * BatchNorm eps 1e-5, every conv bias-free with symmetric ``k // 2`` padding;
  * a cross stage splits ``conv_exp``'s output in two halves along channels: the *second* half
    goes through the blocks and ``conv_transition_b``, the first half is the cross path, and
    they are concatenated as ``[cross, blocks]`` before ``conv_transition``;
  * ``cross_linear`` (CSPResNe(X)t) drops the activation after ``conv_exp``;
  * the bottleneck block ends with an activation after the residual sum, the dark block
    does not.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxbones.layers import (
    BatchNorm,
    DropPath,
    avg_pool2d,
    check_input,
    conv2d,
    drop_path_rates,
    get_act,
    max_pool2d,
)
from jaxbones.models._features import classifier_head, select_levels
from jaxbones.models._pretrained import timm_hub
from jaxbones.registry import register_model

Dtype = Any


def _per_stage(value, n: int) -> tuple:
    """timm's ``_pad_arg``: a scalar or short tuple padded to ``n`` stages with its last value."""
    if not isinstance(value, (tuple, list)):
        value = (value,)
    value = tuple(value)
    return value[:n] if len(value) >= n else value + (value[-1],) * (n - len(value))


class ConvBnAct(nn.Module):
    """timm ``ConvNormAct`` (conv -> BatchNorm -> activation) with a zero-init option for the
    last BatchNorm of a residual branch; submodules ``conv`` and ``bn``.

    Attributes:
      features, kernel_size, stride, groups: as ``torch.nn.Conv2d`` (no bias, ``k // 2`` pad).
      act: activation (name or callable; ``None``: none, timm's ``apply_act=False``).
      zero_init: initialise ``bn.scale`` to zero (timm's ``zero_init_last``).
      bn_eps, dtype, param_dtype.
    """

    features: int
    kernel_size: int = 1
    stride: int = 1
    groups: int = 1
    act: str | Callable | None = "leaky_relu"
    zero_init: bool = False
    bn_eps: float = 1e-5
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = conv2d(
            self.features,
            self.kernel_size,
            self.stride,
            groups=self.groups,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="conv",
        )(x)
        x = BatchNorm(
            epsilon=self.bn_eps,
            scale_init=nn.initializers.zeros if self.zero_init else nn.initializers.ones,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="bn",
        )(x, train)
        return get_act(self.act)(x)


class CspBlock(nn.Module):
    """A residual block of a CSP/Darknet stage (timm ``BottleneckBlock`` / ``DarkBlock``).

    ``'bottle'``: 1x1 -> 3x3 (groups) -> 1x1 (no act), + shortcut, activation.
    ``'dark'``: 1x1 -> 3x3, + shortcut (no activation after the sum).

    Attributes:
      features: output channels (equal to the input channels: identity shortcut).
      block_type: ``'bottle'`` or ``'dark'``.
      bottle_ratio: mid channels = round(features * bottle_ratio).
      groups: groups of the 3x3 conv (ResNeXt cardinality).
      act, drop_path, zero_init_last, bn_eps, dtype, param_dtype.
    """

    features: int
    block_type: str = "bottle"
    bottle_ratio: float = 0.5
    groups: int = 1
    act: str | Callable = "leaky_relu"
    drop_path: float = 0.0
    zero_init_last: bool = True
    bn_eps: float = 1e-5
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        if x.shape[-1] != self.features:
            raise ValueError(
                f"CspBlock has an identity shortcut: input channels {x.shape[-1]} must equal "
                f"features={self.features}"
            )
        mid = round(self.features * self.bottle_ratio)
        cba = functools.partial(
            ConvBnAct,
            act=self.act,
            bn_eps=self.bn_eps,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
        )
        zero = self.zero_init_last
        if self.block_type == "bottle":
            y = cba(mid, 1, name="conv1")(x, train)
            y = cba(mid, 3, groups=self.groups, name="conv2")(y, train)
            y = cba(self.features, 1, act=None, zero_init=zero, name="conv3")(y, train)
            y = DropPath(self.drop_path)(y, deterministic=not train) + x
            return get_act(self.act)(y)
        if self.block_type == "dark":
            y = cba(mid, 1, name="conv1")(x, train)
            y = cba(self.features, 3, groups=self.groups, zero_init=zero, name="conv2")(y, train)
            return DropPath(self.drop_path)(y, deterministic=not train) + x
        raise ValueError(f"block_type must be 'bottle' or 'dark', got {self.block_type!r}")


class CspStage(nn.Module):
    """One stage: timm ``CrossStage`` (``stage_type='csp'``) or ``DarkStage`` (``'dark'``).

    Attributes:
      features: output channels; depth: number of blocks; stride: of the downsampling conv.
      stage_type: ``'csp'`` (cross stage partial) or ``'dark'`` (plain residual stage).
      block_type, groups, bottle_ratio: passed to the blocks.
      block_ratio: block channels = round(features * block_ratio).
      expand_ratio: ``conv_exp`` channels = round(features * expand_ratio) (csp only).
      cross_linear: no activation after ``conv_exp`` (csp only).
      down_growth: the downsampling conv outputs ``features`` instead of the input channels
        (csp only; a dark stage always does).
      avg_down: downsample with 2x2 average pooling + 1x1 conv (``conv_down.1``) instead of
        a strided 3x3 conv (timm ``darknetaa53``).
      drop_path: per-block stochastic depth rates; act, zero_init_last, bn_eps, dtype,
      param_dtype.
    """

    features: int
    depth: int
    stride: int = 2
    stage_type: str = "csp"
    block_type: str = "bottle"
    groups: int = 1
    block_ratio: float = 1.0
    bottle_ratio: float = 1.0
    expand_ratio: float = 1.0
    cross_linear: bool = False
    down_growth: bool = False
    avg_down: bool = False
    drop_path: Sequence[float] = ()
    act: str | Callable = "leaky_relu"
    zero_init_last: bool = True
    bn_eps: float = 1e-5
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    def _cba(self, *args, **kw):
        return ConvBnAct(
            *args,
            bn_eps=self.bn_eps,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            act=kw.pop("act", self.act),
            **kw,
        )

    def _down(self, x, chs, train):
        if self.avg_down:
            # timm: nn.Sequential(AvgPool2d(2) or Identity, ConvNormAct 1x1 -> out_chs)
            if self.stride == 2:
                x = avg_pool2d(x, 2, 2)
            return self._cba(self.features, 1, groups=self.groups, name="conv_down_1")(x, train)
        return self._cba(chs, 3, self.stride, groups=self.groups, name="conv_down")(x, train)

    def _blocks(self, x, train):
        block_chs = round(self.features * self.block_ratio)
        rates = tuple(self.drop_path) or (0.0,) * self.depth
        for j in range(self.depth):
            x = CspBlock(
                block_chs,
                self.block_type,
                self.bottle_ratio,
                self.groups,
                self.act,
                rates[j],
                self.zero_init_last,
                self.bn_eps,
                self.dtype,
                self.param_dtype,
                name=f"blocks_{j}",
            )(x, train)
        return x

    @nn.compact
    def __call__(self, x, train: bool = False):
        if self.stage_type == "dark":
            x = self._down(x, self.features, train)
            return self._blocks(x, train)
        if self.stage_type != "csp":
            raise ValueError(f"stage_type must be 'csp' or 'dark', got {self.stage_type!r}")
        if self.stride != 1:
            x = self._down(x, self.features if self.down_growth else x.shape[-1], train)
        exp_chs = round(self.features * self.expand_ratio)
        act_exp = None if self.cross_linear else self.act
        x = self._cba(exp_chs, 1, act=act_exp, name="conv_exp")(x, train)
        # torch: xs, xb = x.split(exp_chs // 2, dim=1): xs is the cross path, xb the blocks'.
        xs, xb = x[..., : exp_chs // 2], x[..., exp_chs // 2 :]
        xb = self._blocks(xb, train)
        xb = self._cba(exp_chs // 2, 1, name="conv_transition_b")(xb, train)
        x = jnp.concatenate([xs, xb], axis=-1)  # [B, H, W, exp_chs], cross path first
        return self._cba(self.features, 1, name="conv_transition")(x, train)


class CspNet(nn.Module):
    """CSPNet / Darknet as timm's ``CspNet`` (single-conv stems, output stride 32).

    Attributes:
      depths: blocks per stage, e.g. (1, 2, 8, 8, 4) for (CSP)Darknet-53.
      channels: output channels per stage.
      strides: stride per stage (scalar or tuple padded with its last value).
      stem_chs, stem_kernel_size: the stem conv (``stem.conv1``).
      stem_stride: 1 (Darknet), 2, or 4 (stride-2 conv + 3x3/2 max pool, CSPResNet).
      stage_type: ``'csp'`` or ``'dark'``; block_type: ``'bottle'`` or ``'dark'``.
      groups, block_ratio, bottle_ratio, expand_ratio: per stage (scalar or tuple), as timm's
        ``CspStagesCfg``.
      cross_linear, down_growth, avg_down: as ``CspStage``.
      act: activation everywhere (timm ``'leaky_relu'``: slope 0.01); bn_eps: 1e-5.
      num_classes: classifier outputs (0: return pooled features); in_chans: input channels.
      drop_rate: dropout before the classifier; drop_path_rate: stochastic depth, linear over
        all blocks (timm).
      zero_init_last: zero-initialise the last BatchNorm of every residual branch.
      global_pool: ``'avg'``, ``'max'`` or ``'avgmax'``.
      features_only, out_indices: return NHWC maps of the selected levels instead of logits;
        level 0 is the stem conv output (before the stem pool), then every stage output, as
        timm's ``features_only`` (``None``: all levels).
      dtype, param_dtype: compute and parameter dtypes.
    """

    depths: Sequence[int]
    channels: Sequence[int]
    strides: int | Sequence[int] = 2
    stem_chs: int = 32
    stem_kernel_size: int = 3
    stem_stride: int = 1
    stage_type: str = "csp"
    block_type: str = "bottle"
    groups: int | Sequence[int] = 1
    block_ratio: float | Sequence[float] = 1.0
    bottle_ratio: float | Sequence[float] = 1.0
    expand_ratio: float | Sequence[float] = 1.0
    cross_linear: bool = False
    down_growth: bool = False
    avg_down: bool = False
    act: str = "leaky_relu"
    bn_eps: float = 1e-5
    num_classes: int = 1000
    in_chans: int = 3
    drop_rate: float = 0.0
    drop_path_rate: float = 0.0
    zero_init_last: bool = True
    global_pool: str = "avg"
    features_only: bool = False
    out_indices: Sequence[int] | None = None
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    min_size = 32  # the network downsamples by 32

    @property
    def num_features(self) -> int:
        return self.channels[-1]

    def _stem_conv_stride(self) -> int:
        if self.stem_stride not in (1, 2, 4):
            raise ValueError(f"stem_stride must be 1, 2 or 4, got {self.stem_stride}")
        return min(self.stem_stride, 2)

    @property
    def feature_info(self) -> list[dict]:
        red = self._stem_conv_stride()
        levels = [{"num_chs": self.stem_chs, "reduction": red, "module": "stem.conv1"}]
        red = self.stem_stride
        for i, (c, s) in enumerate(zip(self.channels, _per_stage(self.strides, len(self.depths)))):
            red *= s
            levels.append({"num_chs": c, "reduction": red, "module": f"stages.{i}"})
        return select_levels(levels, self.out_indices)

    @nn.compact
    def __call__(self, x, train: bool = False):
        check_input(x, in_chans=self.in_chans, min_size=self.min_size, model="CspNet")
        n = len(self.depths)
        if len(self.channels) != n:
            raise ValueError(f"channels {self.channels} needs one entry per stage of {self.depths}")
        x = x.astype(self.dtype or x.dtype)
        x = ConvBnAct(
            self.stem_chs,
            self.stem_kernel_size,
            self._stem_conv_stride(),
            act=self.act,
            bn_eps=self.bn_eps,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="stem_conv1",
        )(x, train)
        feats = [x]
        if self.stem_stride == 4:
            x = max_pool2d(x, 3, 2, 1)  # timm stem.pool: MaxPool2d(3, 2, padding=1)
        dprs = drop_path_rates(self.drop_path_rate, self.depths)
        per = {
            k: _per_stage(getattr(self, k), n)
            for k in ("strides", "groups", "block_ratio", "bottle_ratio", "expand_ratio")
        }
        for i in range(n):
            x = CspStage(
                features=self.channels[i],
                depth=self.depths[i],
                stride=per["strides"][i],
                stage_type=self.stage_type,
                block_type=self.block_type,
                groups=per["groups"][i],
                block_ratio=per["block_ratio"][i],
                bottle_ratio=per["bottle_ratio"][i],
                expand_ratio=per["expand_ratio"][i],
                cross_linear=self.cross_linear,
                down_growth=self.down_growth,
                avg_down=self.avg_down,
                drop_path=tuple(dprs[i]),
                act=self.act,
                zero_init_last=self.zero_init_last,
                bn_eps=self.bn_eps,
                dtype=self.dtype,
                param_dtype=self.param_dtype,
                name=f"stages_{i}",
            )(x, train)
            feats.append(x)
        if self.features_only:
            return select_levels(feats, self.out_indices)
        return classifier_head(self, x, train, name="head_fc")


# Variants: timm's model_cfgs (cspnet.py), field for field. Default input 256 px, crop 0.887.
_csp_resnet = functools.partial(
    CspNet,
    depths=(3, 3, 5, 2),
    strides=(1, 2),
    stem_chs=64,
    stem_kernel_size=7,
    stem_stride=4,
    cross_linear=True,
)
_darknet = functools.partial(
    CspNet, depths=(1, 2, 8, 8, 4), channels=(64, 128, 256, 512, 1024), strides=2
)
_VARIANTS = {
    "darknet53": functools.partial(
        _darknet, stage_type="dark", block_type="dark", bottle_ratio=0.5
    ),
    "cspdarknet53": functools.partial(
        _darknet,
        block_type="dark",
        expand_ratio=(2.0, 1.0),
        bottle_ratio=(0.5, 1.0),
        block_ratio=(1.0, 0.5),
        down_growth=True,
    ),
    "cspresnet50": functools.partial(
        _csp_resnet, channels=(128, 256, 512, 1024), expand_ratio=2.0, bottle_ratio=0.5
    ),
    "cspresnext50": functools.partial(
        _csp_resnet, channels=(256, 512, 1024, 2048), groups=32, block_ratio=0.5
    ),
}
for _name, _fn in _VARIANTS.items():
    register_model(
        _name,
        _fn,
        family="cspnet",
        input_size=(256, 256, 3),
        crop_pct=0.887,
        reference=f"timm.models.{_name}",
    )


# ---------------------------------------------------------------------------------------------
# Pretrained weights: facts from timm's and torchvision's pretrained configs; top-1/top-5
# from timm's results-imagenet.csv at the tag's eval size and crop, or torchvision's weights
# meta. tests/test_pretrained_cfgs.py checks them against the installed libraries. A model's
# first tag is its default.

timm_hub(
    "darknet53.c2ns_in1k", interpolation="bicubic", license="apache-2.0", top1=80.008, top5=95.046
)
timm_hub("cspdarknet53.ra_in1k", license="apache-2.0", top1=80.078, top5=95.06)
timm_hub("cspresnet50.ra_in1k", license="apache-2.0", top1=79.578, top5=94.698)
timm_hub("cspresnext50.ra_in1k", license="apache-2.0", top1=80.548, top5=95.33)
