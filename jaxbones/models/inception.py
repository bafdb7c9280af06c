"""Inception-v3, as torchvision's ``inception_v3``.

Reference: torchvision/models/inception.py (Szegedy et al. 2015, "Rethinking the Inception
Architecture for Computer Vision"). Module names are torchvision's (``Mixed_6e.branch7x7_2``
with ``conv``/``bn`` inside), so conversion needs no renaming.

Two parity traps live here (docs/parity.md): every ``BasicConv2d`` BatchNorm uses eps 1e-3 (not
1e-5), and the branch avg-pools use PyTorch's default ``count_include_pad=True``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxbones.constants import IMAGENET_MEAN, IMAGENET_STD, INCEPTION_MEAN, INCEPTION_STD
from jaxbones.layers import ConvNormAct, avg_pool2d, check_input, max_pool2d
from jaxbones.layers.linear import Dense
from jaxbones.models._features import select_levels
from jaxbones.models._pretrained import timm_hub, torchvision_url
from jaxbones.registry import register_model

Dtype = Any

# The aux head pools Mixed_6e 5x5/3 and then applies an unpadded 5x5 conv, so it needs a
# 17x17 map: 299 px is the smallest input that gives one (as in torchvision).
AUX_MIN_MAP = 17
AUX_MIN_SIZE = 299


class _Block(nn.Module):
    """Base of the Inception blocks: builds torchvision ``BasicConv2d`` (conv, BN eps
    ``bn_eps``, ReLU) submodules by name."""

    bn_eps: float = 1e-3
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    def conv(self, name, features, kernel_size, stride=1, padding=0):
        return ConvNormAct(
            features,
            kernel_size,
            stride,
            padding,
            bn_eps=self.bn_eps,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name=name,
        )


def _branch_pool(x):
    # torchvision: F.avg_pool2d(x, 3, stride=1, padding=1), count_include_pad=True (default)
    return avg_pool2d(x, 3, 1, 1, count_include_pad=True)


class InceptionA(_Block):
    """35x35 block (Mixed_5b/c/d). Attributes: pool_features (channels of the pool branch),
    bn_eps, dtype, param_dtype."""

    pool_features: int = 32

    @nn.compact
    def __call__(self, x, train: bool = False):
        b1 = self.conv("branch1x1", 64, 1)(x, train)
        b5 = self.conv("branch5x5_1", 48, 1)(x, train)
        b5 = self.conv("branch5x5_2", 64, 5, padding=2)(b5, train)
        b3 = self.conv("branch3x3dbl_1", 64, 1)(x, train)
        b3 = self.conv("branch3x3dbl_2", 96, 3, padding=1)(b3, train)
        b3 = self.conv("branch3x3dbl_3", 96, 3, padding=1)(b3, train)
        bp = self.conv("branch_pool", self.pool_features, 1)(_branch_pool(x), train)
        return jnp.concatenate([b1, b5, b3, bp], -1)


class InceptionB(_Block):
    """Grid reduction 35 -> 17 (Mixed_6a). Attributes: bn_eps, dtype, param_dtype."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        b3 = self.conv("branch3x3", 384, 3, stride=2)(x, train)
        bd = self.conv("branch3x3dbl_1", 64, 1)(x, train)
        bd = self.conv("branch3x3dbl_2", 96, 3, padding=1)(bd, train)
        bd = self.conv("branch3x3dbl_3", 96, 3, stride=2)(bd, train)
        return jnp.concatenate([b3, bd, max_pool2d(x, 3, 2)], -1)


class InceptionC(_Block):
    """17x17 block with factorised 7x7 convs (Mixed_6b..e). Attributes: channels_7x7,
    bn_eps, dtype, param_dtype."""

    channels_7x7: int = 128

    @nn.compact
    def __call__(self, x, train: bool = False):
        c7 = self.channels_7x7
        b1 = self.conv("branch1x1", 192, 1)(x, train)
        b7 = self.conv("branch7x7_1", c7, 1)(x, train)
        b7 = self.conv("branch7x7_2", c7, (1, 7), padding=(0, 3))(b7, train)
        b7 = self.conv("branch7x7_3", 192, (7, 1), padding=(3, 0))(b7, train)
        bd = self.conv("branch7x7dbl_1", c7, 1)(x, train)
        bd = self.conv("branch7x7dbl_2", c7, (7, 1), padding=(3, 0))(bd, train)
        bd = self.conv("branch7x7dbl_3", c7, (1, 7), padding=(0, 3))(bd, train)
        bd = self.conv("branch7x7dbl_4", c7, (7, 1), padding=(3, 0))(bd, train)
        bd = self.conv("branch7x7dbl_5", 192, (1, 7), padding=(0, 3))(bd, train)
        bp = self.conv("branch_pool", 192, 1)(_branch_pool(x), train)
        return jnp.concatenate([b1, b7, bd, bp], -1)


class InceptionD(_Block):
    """Grid reduction 17 -> 8 (Mixed_7a). Attributes: bn_eps, dtype, param_dtype."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        b3 = self.conv("branch3x3_1", 192, 1)(x, train)
        b3 = self.conv("branch3x3_2", 320, 3, stride=2)(b3, train)
        b7 = self.conv("branch7x7x3_1", 192, 1)(x, train)
        b7 = self.conv("branch7x7x3_2", 192, (1, 7), padding=(0, 3))(b7, train)
        b7 = self.conv("branch7x7x3_3", 192, (7, 1), padding=(3, 0))(b7, train)
        b7 = self.conv("branch7x7x3_4", 192, 3, stride=2)(b7, train)
        return jnp.concatenate([b3, b7, max_pool2d(x, 3, 2)], -1)


class InceptionE(_Block):
    """8x8 block with expanded filter banks (Mixed_7b/c). Attributes: bn_eps, dtype,
    param_dtype."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        b1 = self.conv("branch1x1", 320, 1)(x, train)
        b3 = self.conv("branch3x3_1", 384, 1)(x, train)
        b3 = jnp.concatenate(
            [
                self.conv("branch3x3_2a", 384, (1, 3), padding=(0, 1))(b3, train),
                self.conv("branch3x3_2b", 384, (3, 1), padding=(1, 0))(b3, train),
            ],
            -1,
        )
        bd = self.conv("branch3x3dbl_1", 448, 1)(x, train)
        bd = self.conv("branch3x3dbl_2", 384, 3, padding=1)(bd, train)
        bd = jnp.concatenate(
            [
                self.conv("branch3x3dbl_3a", 384, (1, 3), padding=(0, 1))(bd, train),
                self.conv("branch3x3dbl_3b", 384, (3, 1), padding=(1, 0))(bd, train),
            ],
            -1,
        )
        bp = self.conv("branch_pool", 192, 1)(_branch_pool(x), train)
        return jnp.concatenate([b1, b3, bd, bp], -1)


class InceptionAux(_Block):
    """Auxiliary classifier on Mixed_6e (17x17x768). Attributes: num_classes, bn_eps, dtype,
    param_dtype."""

    num_classes: int = 1000

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = avg_pool2d(x, 5, 3)  # [B, 5, 5, 768] at 299 px (Mixed_6e 17x17)
        x = self.conv("conv0", 128, 1)(x, train)
        x = self.conv("conv1", 768, 5)(x, train)
        x = x.mean((1, 2))  # adaptive_avg_pool2d(x, (1, 1))
        return Dense(self.num_classes, dtype=self.dtype, param_dtype=self.param_dtype, name="fc")(x)


class InceptionV3(nn.Module):
    """Inception-v3 (torchvision ``Inception3``).

    Attributes:
      num_classes: classifier outputs (0: return the 2048 pooled features).
      in_chans: input channels.
      aux_logits: build the auxiliary classifier (``AuxLogits``, as torchvision's default);
        with ``train=True`` the model then returns ``(logits, aux_logits)``. In eval it is
        not computed (its parameters exist so torchvision checkpoints convert strictly).
      transform_input: re-normalise ImageNet-normalised inputs to the (0.5, 0.5) scheme the
        original Google weights expect (torchvision's ``transform_input``).
      drop_rate: dropout before ``fc`` (torchvision: 0.5).
      bn_eps: BatchNorm epsilon of every conv block (torchvision ``BasicConv2d``: 1e-3).
      features_only, out_indices: return NHWC maps of Conv2d_2b_3x3 (64 ch, /2),
        Conv2d_4a_3x3 (192, /4), Mixed_5d (288, /8), Mixed_6e (768, /16), Mixed_7c (2048,
        /32), as timm's ``features_only`` levels for ``inception_v3``.
      dtype, param_dtype: compute and parameter dtypes.
    """

    num_classes: int = 1000
    in_chans: int = 3
    aux_logits: bool = True
    transform_input: bool = False
    drop_rate: float = 0.5
    bn_eps: float = 1e-3
    features_only: bool = False
    out_indices: Sequence[int] = (0, 1, 2, 3, 4)
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    min_size = 75  # torchvision meta "min_size": (75, 75)
    default_input_size = (299, 299, 3)

    @property
    def num_features(self) -> int:
        return 2048

    @property
    def feature_info(self) -> list[dict]:
        levels = [
            {"num_chs": 64, "reduction": 2, "module": "Conv2d_2b_3x3"},
            {"num_chs": 192, "reduction": 4, "module": "Conv2d_4a_3x3"},
            {"num_chs": 288, "reduction": 8, "module": "Mixed_5d"},
            {"num_chs": 768, "reduction": 16, "module": "Mixed_6e"},
            {"num_chs": 2048, "reduction": 32, "module": "Mixed_7c"},
        ]
        return select_levels(levels, self.out_indices)

    @nn.compact
    def __call__(self, x, train: bool = False):
        check_input(x, in_chans=self.in_chans, min_size=self.min_size, model="InceptionV3")
        x = x.astype(self.dtype or x.dtype)
        if self.transform_input:
            # torchvision: x_c * (std_c / 0.5) + (mean_c - 0.5) / 0.5 with ImageNet mean/std
            mean = jnp.array(IMAGENET_MEAN, x.dtype)
            std = jnp.array(IMAGENET_STD, x.dtype)
            x = x * (std / 0.5) + (mean - 0.5) / 0.5
        kw = {"bn_eps": self.bn_eps, "dtype": self.dtype, "param_dtype": self.param_dtype}

        def conv(name, features, k, stride=1, padding=0):
            return ConvNormAct(features, k, stride, padding, name=name, **kw)

        feats = []
        x = conv("Conv2d_1a_3x3", 32, 3, 2)(x, train)  # [B, 149, 149, 32] at 299 px
        x = conv("Conv2d_2a_3x3", 32, 3)(x, train)  # 147
        x = conv("Conv2d_2b_3x3", 64, 3, padding=1)(x, train)  # 147
        feats.append(x)
        x = max_pool2d(x, 3, 2)  # 73
        x = conv("Conv2d_3b_1x1", 80, 1)(x, train)
        x = conv("Conv2d_4a_3x3", 192, 3)(x, train)  # 71
        feats.append(x)
        x = max_pool2d(x, 3, 2)  # 35
        x = InceptionA(pool_features=32, name="Mixed_5b", **kw)(x, train)  # 256 ch
        x = InceptionA(pool_features=64, name="Mixed_5c", **kw)(x, train)  # 288
        x = InceptionA(pool_features=64, name="Mixed_5d", **kw)(x, train)  # 288
        feats.append(x)
        x = InceptionB(name="Mixed_6a", **kw)(x, train)  # [B, 17, 17, 768]
        for name, c7 in (
            ("Mixed_6b", 128),
            ("Mixed_6c", 160),
            ("Mixed_6d", 160),
            ("Mixed_6e", 192),
        ):
            x = InceptionC(channels_7x7=c7, name=name, **kw)(x, train)
        feats.append(x)
        aux = None
        if self.aux_logits and self.num_classes and not self.features_only:
            aux_mod = InceptionAux(num_classes=self.num_classes, name="AuxLogits", **kw)
            if train:
                if min(x.shape[1:3]) < AUX_MIN_MAP:
                    raise ValueError(
                        f"the auxiliary classifier needs a Mixed_6e map of at least 17x17, got "
                        f"{x.shape[1]}x{x.shape[2]}; train at >= {AUX_MIN_SIZE} px or create "
                        "the model with aux_logits=False"
                    )
                aux = aux_mod(x, train)
            elif self.is_initializing():
                # Eval never uses the aux head, but its parameters must exist (torchvision
                # checkpoints hold them); they depend only on the channels, so a 17x17
                # zeros map creates them at any input size.
                aux_mod(jnp.zeros((1, AUX_MIN_MAP, AUX_MIN_MAP, x.shape[-1]), x.dtype), train)
        x = InceptionD(name="Mixed_7a", **kw)(x, train)  # [B, 8, 8, 1280]
        x = InceptionE(name="Mixed_7b", **kw)(x, train)  # 2048
        x = InceptionE(name="Mixed_7c", **kw)(x, train)  # 2048
        feats.append(x)
        if self.features_only:
            return select_levels(feats, self.out_indices)
        x = x.mean((1, 2))  # adaptive_avg_pool2d(x, (1, 1)): [B, 2048]
        x = nn.Dropout(self.drop_rate)(x, deterministic=not train)
        if self.num_classes:
            x = Dense(self.num_classes, dtype=self.dtype, param_dtype=self.param_dtype, name="fc")(
                x
            )
        if train and aux is not None:
            return x, aux
        return x


register_model(
    "inception_v3",
    functools.partial(InceptionV3),
    family="inception",
    input_size=(299, 299, 3),
    mean=INCEPTION_MEAN,
    std=INCEPTION_STD,
    crop_pct=0.875,
    reference="torchvision.models.inception_v3",
    min_size=75,
)


# ---------------------------------------------------------------------------------------------
# Pretrained weights: facts from timm's and torchvision's pretrained configs; top-1/top-5
# from timm's results-imagenet.csv at the tag's eval size and crop, or torchvision's weights
# meta. tests/test_pretrained_cfgs.py checks them against the installed libraries. A model's
# first tag is its default.

# timm's files have no auxiliary classifier (timm builds these without one); torchvision's has.
_NO_AUX = {"aux_logits": False}

torchvision_url(
    "inception_v3.tv_in1k",
    "https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth",
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    crop_pct=0.8743,
    top1=77.294,
    top5=93.45,
    model_kwargs={"transform_input": True},
    notes="torchvision builds it with transform_input=True (weights ported from TF)",
)
timm_hub(
    "inception_v3.tf_in1k",
    model_kwargs=_NO_AUX,
    interpolation="bicubic",
    license="apache-2.0",
    top1=77.866,
    top5=93.644,
)
timm_hub(
    "inception_v3.tf_adv_in1k",
    model_kwargs=_NO_AUX,
    interpolation="bicubic",
    license="apache-2.0",
    top1=77.598,
    top5=93.726,
)
timm_hub(
    "inception_v3.gluon_in1k",
    model_kwargs=_NO_AUX,
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    interpolation="bicubic",
    license="apache-2.0",
    top1=78.806,
    top5=94.372,
)
