"""VoVNet (One-Shot Aggregation) and VoVNetV2 with effective squeeze-excitation, as timm.

Reference: timm/models/vovnet.py (timm 1.0.31); Lee et al. 2019, "An Energy and
GPU-Computation Efficient Backbone Network for Real-Time Object Detection" (VoVNet-39/57);
Lee & Park 2019, "CenterMask: Real-Time Anchor-Free Instance Segmentation" (VoVNetV2: identity
shortcuts and eSE). One generic ``VoVNet`` module; a variant is timm's ``model_cfgs`` entry as
dataclass fields. Parameter names follow timm (``stages_1.blocks_0.conv_mid_2`` is
``stages.1.blocks.0.conv_mid.2``).

Facts that decide parity:
  * the stage max pools are ``MaxPool2d(3, stride=2, ceil_mode=True)`` without padding: at
    224 px they give 28/14/7 maps where floor mode gives 27/13/6;
  * one-shot aggregation concatenates ``[block input, mid_1, ..., mid_L]`` in that order; the
    block input is taken *before* the 1x1 ``conv_reduction`` of depthwise blocks;
  * eSE is ``x * hard_sigmoid(fc(mean_hw(x)))`` with a biased 1x1 conv and
    ``hard_sigmoid(x) = relu6(x + 3) / 6`` (torch ``Hardsigmoid``), only on each stage's
    last block;
  * VoVNetV2's identity shortcut skips the first block of every stage, and drop path is
    applied to the block output whether or not the block has a shortcut (as timm).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxbones.layers import (
    BatchNorm,
    ConvNormAct,
    DropPath,
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


class SeparableConvNormAct(nn.Module):
    """timm ``SeparableConvNormAct``: depthwise kxk (``conv_dw``) -> pointwise 1x1
    (``conv_pw``) -> BatchNorm (``bn``) -> activation.

    Attributes:
      features: output channels; kernel_size, stride: of the depthwise conv.
      act, bn_eps, dtype, param_dtype.
    """

    features: int
    kernel_size: int = 3
    stride: int = 1
    act: str | Callable = "relu"
    bn_eps: float = 1e-5
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        c = x.shape[-1]
        kw = {"dtype": self.dtype, "param_dtype": self.param_dtype}
        x = conv2d(c, self.kernel_size, self.stride, groups=c, name="conv_dw", **kw)(x)
        x = conv2d(self.features, 1, name="conv_pw", **kw)(x)
        x = BatchNorm(epsilon=self.bn_eps, name="bn", **kw)(x, train)
        return get_act(self.act)(x)


class EffectiveSE(nn.Module):
    """Effective squeeze-excitation (CenterMask; timm ``EffectiveSEModule``):
    ``x * gate(fc(mean_hw(x)))`` with one biased 1x1 conv ``fc`` (no channel reduction).

    Attributes:
      gate: gating activation (timm: ``'hard_sigmoid'``, relu6(x + 3) / 6).
      add_maxpool: average the mean- and max-pooled descriptors (timm's experimental option).
      dtype, param_dtype.
    """

    gate: str | Callable = "hard_sigmoid"
    add_maxpool: bool = False
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        s = x.mean((1, 2), keepdims=True)  # [B, 1, 1, C]
        if self.add_maxpool:
            s = 0.5 * s + 0.5 * x.max((1, 2), keepdims=True)
        s = conv2d(
            x.shape[-1],
            1,
            bias=True,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            kernel_init=nn.initializers.lecun_normal(),
            name="fc",
        )(s)
        return x * get_act(self.gate)(s)


class OsaBlock(nn.Module):
    """One-shot aggregation block (timm ``OsaBlock``).

    ``layer_per_block`` 3x3 convs in sequence (separable when ``depthwise``, after a 1x1
    ``conv_reduction`` to ``mid_chs`` when the input width differs); the block input and every
    intermediate are concatenated and fused by a 1x1 ``conv_concat``; then eSE, drop path and
    the optional identity shortcut.

    Attributes:
      mid_chs, out_chs, layer_per_block: widths and depth of the block.
      residual: add the block input (VoVNetV2); depthwise: separable 3x3 convs.
      attn: ``''`` or ``'ese'``; drop_path: stochastic depth rate; act, bn_eps, dtype,
      param_dtype.
    """

    mid_chs: int
    out_chs: int
    layer_per_block: int
    residual: bool = False
    depthwise: bool = False
    attn: str = ""
    drop_path: float = 0.0
    act: str | Callable = "relu"
    bn_eps: float = 1e-5
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        kw = {
            "act": self.act,
            "bn_eps": self.bn_eps,
            "dtype": self.dtype,
            "param_dtype": self.param_dtype,
        }
        outputs = [x]
        if self.depthwise and x.shape[-1] != self.mid_chs:
            if self.residual:
                raise ValueError(
                    "a depthwise OSA block whose input width differs from mid_chs has no "
                    "identity shortcut (timm asserts this); use residual=False"
                )
            x = ConvNormAct(self.mid_chs, 1, name="conv_reduction", **kw)(x, train)
        for i in range(self.layer_per_block):
            if self.depthwise:
                x = SeparableConvNormAct(self.mid_chs, name=f"conv_mid_{i}", **kw)(x, train)
            else:
                x = ConvNormAct(self.mid_chs, 3, name=f"conv_mid_{i}", **kw)(x, train)
            outputs.append(x)
        x = jnp.concatenate(outputs, axis=-1)  # [B, H, W, in + L * mid]
        x = ConvNormAct(self.out_chs, 1, name="conv_concat", **kw)(x, train)
        if self.attn == "ese":
            x = EffectiveSE(dtype=self.dtype, param_dtype=self.param_dtype, name="attn")(x)
        elif self.attn:
            raise ValueError(f"attn must be '' or 'ese', got {self.attn!r}")
        x = DropPath(self.drop_path)(x, deterministic=not train)
        if self.residual:
            x = x + outputs[0]
        return x


class VoVNet(nn.Module):
    """VoVNet / VoVNetV2 as timm's ``VovNet`` (stem stride 4, output stride 32).

    Attributes:
      stem_chs: channels of the three stem convs (stride 2, 1, 2).
      stage_conv_chs: mid channels of the OSA blocks per stage.
      stage_out_chs: output channels per stage.
      block_per_stage: OSA blocks per stage; layer_per_block: 3x3 convs per block.
      residual: identity shortcuts on all but each stage's first block (VoVNetV2).
      depthwise: separable convs in the stem (last two) and the blocks.
      attn: ``'ese'`` on each stage's last block (VoVNetV2) or ``''``.
      act: activation (timm: ReLU); bn_eps: 1e-5.
      num_classes: classifier outputs (0: return pooled features); in_chans: input channels.
      drop_rate: dropout before the classifier; drop_path_rate: stochastic depth, linear
        over all blocks (timm).
      global_pool: ``'avg'``, ``'max'`` or ``'avgmax'``.
      features_only, out_indices: return NHWC maps of the selected levels (the ``stem.1``
        output at stride 2, then the four stage outputs, as timm's ``features_only``;
        ``None``: all five).
      dtype, param_dtype: compute and parameter dtypes.
    """

    stem_chs: Sequence[int] = (64, 64, 128)
    stage_conv_chs: Sequence[int] = (128, 160, 192, 224)
    stage_out_chs: Sequence[int] = (256, 512, 768, 1024)
    block_per_stage: Sequence[int] = (1, 1, 2, 2)
    layer_per_block: int = 5
    residual: bool = False
    depthwise: bool = False
    attn: str = ""
    act: str = "relu"
    bn_eps: float = 1e-5
    num_classes: int = 1000
    in_chans: int = 3
    drop_rate: float = 0.0
    drop_path_rate: float = 0.0
    global_pool: str = "avg"
    features_only: bool = False
    out_indices: Sequence[int] | None = None
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    min_size = 32  # stem /4, then three ceil-mode 3x3/2 pools: 32 px ends at 1x1

    @property
    def num_features(self) -> int:
        return self.stage_out_chs[-1]

    @property
    def feature_info(self) -> list[dict]:
        levels = [{"num_chs": self.stem_chs[1], "reduction": 2, "module": "stem.1"}] + [
            {"num_chs": c, "reduction": 4 * 2**i, "module": f"stages.{i}"}
            for i, c in enumerate(self.stage_out_chs)
        ]
        return select_levels(levels, self.out_indices)

    @nn.compact
    def __call__(self, x, train: bool = False):
        check_input(x, in_chans=self.in_chans, min_size=self.min_size, model="VoVNet")
        x = x.astype(self.dtype or x.dtype)
        kw = {
            "act": self.act,
            "bn_eps": self.bn_eps,
            "dtype": self.dtype,
            "param_dtype": self.param_dtype,
        }
        stem_conv = SeparableConvNormAct if self.depthwise else ConvNormAct
        x = ConvNormAct(self.stem_chs[0], 3, 2, name="stem_0", **kw)(x, train)
        x = stem_conv(self.stem_chs[1], 3, 1, name="stem_1", **kw)(x, train)
        feats = [x]
        x = stem_conv(self.stem_chs[2], 3, 2, name="stem_2", **kw)(x, train)
        dprs = drop_path_rates(self.drop_path_rate, self.block_per_stage)
        for i, depth in enumerate(self.block_per_stage):
            if i > 0:
                # timm OsaStage.pool: MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)
                x = max_pool2d(x, 3, 2, 0, ceil_mode=True)
            for j in range(depth):
                x = OsaBlock(
                    self.stage_conv_chs[i],
                    self.stage_out_chs[i],
                    self.layer_per_block,
                    residual=self.residual and j > 0,
                    depthwise=self.depthwise,
                    attn=self.attn if j == depth - 1 else "",
                    drop_path=dprs[i][j],
                    name=f"stages_{i}_blocks_{j}",
                    **kw,
                )(x, train)
            feats.append(x)
        if self.features_only:
            return select_levels(feats, self.out_indices)
        return classifier_head(self, x, train, name="head_fc")


# Variants: timm's model_cfgs (vovnet.py), field for field. Default input 224 px, crop 0.875.
_v2 = functools.partial(VoVNet, residual=True, attn="ese")
_VARIANTS = {
    "vovnet39a": functools.partial(VoVNet, block_per_stage=(1, 1, 2, 2)),
    "vovnet57a": functools.partial(VoVNet, block_per_stage=(1, 1, 4, 3)),
    "ese_vovnet19b_dw": functools.partial(
        _v2, stem_chs=(64, 64, 64), layer_per_block=3, block_per_stage=(1, 1, 1, 1), depthwise=True
    ),
    "ese_vovnet39b": functools.partial(_v2, block_per_stage=(1, 1, 2, 2)),
}
for _name, _fn in _VARIANTS.items():
    register_model(_name, _fn, family="vovnet", reference=f"timm.models.{_name}")


# ---------------------------------------------------------------------------------------------
# Pretrained weights: facts from timm's and torchvision's pretrained configs; top-1/top-5
# from timm's results-imagenet.csv at the tag's eval size and crop, or torchvision's weights
# meta. tests/test_pretrained_cfgs.py checks them against the installed libraries. A model's
# first tag is its default.

timm_hub(
    "ese_vovnet19b_dw.ra_in1k",
    interpolation="bicubic",
    license="apache-2.0",
    top1=76.828,
    top5=93.276,
)
timm_hub(
    "ese_vovnet39b.ra_in1k", interpolation="bicubic", license="apache-2.0", top1=79.312, top5=94.722
)
