"""DenseNet-121/161/169/201 (DenseNet-BC), as torchvision.

Reference: torchvision/models/densenet.py (Huang et al. 2016, "Densely Connected
Convolutional Networks"; growth rates and block sizes from the paper's Table 1).
Module names mirror torchvision's ``features`` Sequential without the ``features.`` prefix:
``denseblock1/denselayer1/norm1`` is ``features.denseblock1.denselayer1.norm1``.

``memory_efficient=True`` rematerialises each dense layer in the backward pass (``nn.remat``,
the JAX form of torchvision's checkpointed bottleneck; Pleiss et al. 2017): activations of
the concatenations are recomputed instead of stored. Outputs and gradients are identical.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxbones.layers import BatchNorm, avg_pool2d, check_input, conv2d, max_pool2d
from jaxbones.layers.linear import Dense
from jaxbones.models._features import select_levels
from jaxbones.models._pretrained import timm_hub, torchvision_url
from jaxbones.registry import register_model

Dtype = Any


def _bn(mod, name):
    return BatchNorm(dtype=mod.dtype, param_dtype=mod.param_dtype, name=name)


def _conv(mod, features, k, stride=1, name=None):
    return conv2d(features, k, stride, dtype=mod.dtype, param_dtype=mod.param_dtype, name=name)


class DenseLayer(nn.Module):
    """torchvision ``_DenseLayer``: concat(previous) -> BN-ReLU-1x1 conv (bn_size * growth)
    -> BN-ReLU-3x3 conv (growth) -> dropout.

    Attributes:
      growth_rate: output channels (k in the paper); bn_size: bottleneck width factor;
      drop_rate: dropout on the new features; dtype, param_dtype.
    """

    growth_rate: int
    bn_size: int = 4
    drop_rate: float = 0.0
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, features: Sequence[Any], train: bool = False):
        x = jnp.concatenate(list(features), -1)  # [B, H, W, C0 + i * growth]
        x = _conv(self, self.bn_size * self.growth_rate, 1, name="conv1")(
            nn.relu(_bn(self, "norm1")(x, train))
        )
        x = _conv(self, self.growth_rate, 3, name="conv2")(nn.relu(_bn(self, "norm2")(x, train)))
        return nn.Dropout(self.drop_rate)(x, deterministic=not train)


class DenseBlock(nn.Module):
    """torchvision ``_DenseBlock``: ``num_layers`` dense layers, each fed the concatenation
    of the block input and every earlier layer's output.

    Attributes:
      num_layers, growth_rate, bn_size, drop_rate: as ``DenseLayer``.
      memory_efficient: remat each layer (recompute in the backward pass).
      dtype, param_dtype.
    """

    num_layers: int
    growth_rate: int
    bn_size: int = 4
    drop_rate: float = 0.0
    memory_efficient: bool = False
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        # static_argnums counts ``self`` as 0: ``train`` (argument 2) is a Python bool.
        layer_cls = (
            nn.remat(DenseLayer, static_argnums=(2,)) if self.memory_efficient else DenseLayer
        )
        features = [x]
        for i in range(self.num_layers):
            layer = layer_cls(
                growth_rate=self.growth_rate,
                bn_size=self.bn_size,
                drop_rate=self.drop_rate,
                dtype=self.dtype,
                param_dtype=self.param_dtype,
                name=f"denselayer{i + 1}",
            )
            features.append(layer(tuple(features), train))
        return jnp.concatenate(features, -1)


class Transition(nn.Module):
    """torchvision ``_Transition``: BN-ReLU-1x1 conv (halves channels) -> 2x2/2 avg-pool.

    Attributes: features (output channels), dtype, param_dtype.
    """

    features: int
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = _conv(self, self.features, 1, name="conv")(nn.relu(_bn(self, "norm")(x, train)))
        return avg_pool2d(x, 2, 2)


class DenseNet(nn.Module):
    """DenseNet-BC (torchvision layout).

    Attributes:
      growth_rate: channels each dense layer adds (32; 48 for DenseNet-161).
      block_config: dense layers per block, e.g. (6, 12, 24, 16) for DenseNet-121.
      num_init_features: stem conv channels (64; 96 for DenseNet-161).
      bn_size: bottleneck width factor (bn_size * growth_rate channels in the 1x1 conv).
      drop_rate: dropout after every dense layer (torchvision's ``drop_rate``).
      memory_efficient: remat each dense layer (torchvision's ``memory_efficient``).
      num_classes: classifier outputs (0: return the pooled features).
      in_chans: input channels.
      features_only, out_indices: return NHWC maps of relu(norm0) (/2), denseblock1..3
        outputs (/4, /8, /16) and relu(norm5) (/32), as timm's ``features_only`` levels.
      dtype, param_dtype: compute and parameter dtypes.
    """

    growth_rate: int = 32
    block_config: Sequence[int] = (6, 12, 24, 16)
    num_init_features: int = 64
    bn_size: int = 4
    drop_rate: float = 0.0
    memory_efficient: bool = False
    num_classes: int = 1000
    in_chans: int = 3
    features_only: bool = False
    out_indices: Sequence[int] = (0, 1, 2, 3, 4)
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    min_size = 32  # stem /4 and three 2x2 transitions

    def _channels(self) -> list[int]:
        """Channels after each dense block (before its transition)."""
        out, c = [], self.num_init_features
        for i, n in enumerate(self.block_config):
            c += n * self.growth_rate
            out.append(c)
            if i != len(self.block_config) - 1:
                c //= 2
        return out

    @property
    def num_features(self) -> int:
        return self._channels()[-1]

    @property
    def feature_info(self) -> list[dict]:
        chs = self._channels()
        n = len(chs)
        levels = [{"num_chs": self.num_init_features, "reduction": 2, "module": "features.norm0"}]
        levels += [
            {"num_chs": c, "reduction": 4 * 2**i, "module": f"features.denseblock{i + 1}"}
            for i, c in enumerate(chs[:-1])
        ]
        levels.append(
            {"num_chs": chs[-1], "reduction": 4 * 2 ** (n - 1), "module": "features.norm5"}
        )
        return select_levels(levels, self.out_indices)

    @nn.compact
    def __call__(self, x, train: bool = False):
        check_input(x, in_chans=self.in_chans, min_size=self.min_size, model="DenseNet")
        x = x.astype(self.dtype or x.dtype)
        x = _conv(self, self.num_init_features, 7, 2, name="conv0")(x)
        x = nn.relu(_bn(self, "norm0")(x, train))
        feats = [x]
        x = max_pool2d(x, 3, 2, 1)
        chs = self._channels()
        for i, n in enumerate(self.block_config):
            x = DenseBlock(
                num_layers=n,
                growth_rate=self.growth_rate,
                bn_size=self.bn_size,
                drop_rate=self.drop_rate,
                memory_efficient=self.memory_efficient,
                dtype=self.dtype,
                param_dtype=self.param_dtype,
                name=f"denseblock{i + 1}",
            )(x, train)
            if i != len(self.block_config) - 1:
                feats.append(x)
                x = Transition(
                    chs[i] // 2,
                    dtype=self.dtype,
                    param_dtype=self.param_dtype,
                    name=f"transition{i + 1}",
                )(x, train)
        x = nn.relu(_bn(self, "norm5")(x, train))  # torchvision: F.relu after features.norm5
        feats.append(x)
        if self.features_only:
            return select_levels(feats, self.out_indices)
        x = x.mean((1, 2))  # adaptive_avg_pool2d(x, (1, 1)): [B, C]
        if not self.num_classes:
            return x
        return Dense(
            self.num_classes, dtype=self.dtype, param_dtype=self.param_dtype, name="classifier"
        )(x)


# torchvision builders: (growth_rate, block_config, num_init_features)
for _name, _g, _blocks, _init in (
    ("densenet121", 32, (6, 12, 24, 16), 64),
    ("densenet161", 48, (6, 12, 36, 24), 96),
    ("densenet169", 32, (6, 12, 32, 32), 64),
    ("densenet201", 32, (6, 12, 48, 32), 64),
):
    register_model(
        _name,
        functools.partial(DenseNet, growth_rate=_g, block_config=_blocks, num_init_features=_init),
        family="densenet",
        reference="torchvision.models." + _name,
        min_size=32,
    )


# ---------------------------------------------------------------------------------------------
# Pretrained weights: facts from timm's and torchvision's pretrained configs; top-1/top-5
# from timm's results-imagenet.csv at the tag's eval size and crop, or torchvision's weights
# meta. tests/test_pretrained_cfgs.py checks them against the installed libraries. A model's
# first tag is its default.

timm_hub(
    "densenet121.ra_in1k", interpolation="bicubic", license="apache-2.0", top1=75.574, top5=92.648
)
torchvision_url(
    "densenet121.tv_in1k",
    "https://download.pytorch.org/models/densenet121-a639ec97.pth",
    top1=74.434,
    top5=91.972,
)
torchvision_url(
    "densenet161.tv_in1k",
    "https://download.pytorch.org/models/densenet161-8d451a50.pth",
    top1=77.138,
    top5=93.56,
)
torchvision_url(
    "densenet169.tv_in1k",
    "https://download.pytorch.org/models/densenet169-b2777c0a.pth",
    top1=75.6,
    top5=92.806,
)
torchvision_url(
    "densenet201.tv_in1k",
    "https://download.pytorch.org/models/densenet201-c1103571.pth",
    top1=76.896,
    top5=93.37,
)
