"""Convolutions with PyTorch-exact explicit padding.

``padding='SAME'`` in XLA puts the odd pixel of a stride-2 convolution on the high side;
PyTorch pads ``k // 2`` on both sides. On ResNet-50 that shifts logits by 60 of 830
(docs/parity.md), so every convolution here takes an explicit symmetric padding.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxbones.layers.activations import get_act
from jaxbones.layers.norm import BatchNorm

Dtype = Any

# PyTorch's default conv init is kaiming_uniform(a=sqrt(5)); for training from scratch the
# torchvision ResNet recipe uses kaiming_normal(fan_out), which we follow for CNNs.
conv_kernel_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def torch_padding(kernel_size: int, stride: int = 1, dilation: int = 1) -> int:
    """PyTorch's customary symmetric padding ``((stride - 1) + dilation * (k - 1)) // 2``."""
    return ((stride - 1) + dilation * (kernel_size - 1)) // 2


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def conv2d(
    features: int,
    kernel_size: int | tuple[int, int],
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] | None = None,
    dilation: int = 1,
    groups: int = 1,
    bias: bool = False,
    dtype: Dtype | None = None,
    param_dtype: Dtype = jnp.float32,
    kernel_init: Callable = conv_kernel_init,
    name: str | None = None,
) -> nn.Conv:
    """An ``nn.Conv`` equal to ``torch.nn.Conv2d`` with the given symmetric padding.

    ``padding=None`` uses ``torch_padding`` (``k // 2`` for odd kernels at stride 1 and 2).
    """
    kh, kw = _pair(kernel_size)
    sh, sw = _pair(stride)
    if padding is None:
        padding = (torch_padding(kh, sh, dilation), torch_padding(kw, sw, dilation))
    ph, pw = _pair(padding)
    return nn.Conv(
        features,
        (kh, kw),
        strides=(sh, sw),
        padding=((ph, ph), (pw, pw)),
        kernel_dilation=(dilation, dilation),
        feature_group_count=groups,
        use_bias=bias,
        dtype=dtype,
        param_dtype=param_dtype,
        kernel_init=kernel_init,
        name=name,
    )


class ConvNormAct(nn.Module):
    """Conv2d -> BatchNorm -> activation, as timm's ``ConvNormAct`` / torchvision's
    ``Conv2dNormActivation``; submodules are named ``conv`` and ``bn``.

    Attributes:
      features: output channels.
      kernel_size, stride, padding, dilation, groups, bias: as ``torch.nn.Conv2d``
        (``padding=None``: PyTorch's symmetric ``k // 2``).
      act: activation name or callable (``None``: no activation).
      bn_eps: BatchNorm epsilon; norm: build BatchNorm (``True``) or skip it.
      dtype, param_dtype: compute and parameter dtypes.
    """

    features: int
    kernel_size: int = 3
    stride: int = 1
    padding: int | None = None
    dilation: int = 1
    groups: int = 1
    bias: bool = False
    act: str | Callable | None = "relu"
    norm: bool = True
    bn_eps: float = 1e-5
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = conv2d(
            self.features,
            self.kernel_size,
            self.stride,
            self.padding,
            self.dilation,
            self.groups,
            self.bias,
            self.dtype,
            self.param_dtype,
            name="conv",
        )(x)
        if self.norm:
            x = BatchNorm(
                epsilon=self.bn_eps, dtype=self.dtype, param_dtype=self.param_dtype, name="bn"
            )(x, train)
        return get_act(self.act)(x)
