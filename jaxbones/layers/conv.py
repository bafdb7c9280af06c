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
from jax import lax

from jaxbones.layers.activations import get_act
from jaxbones.layers.norm import BatchNorm
from jaxbones.layers.platform import traced_for_cpu

Dtype = Any

# PyTorch's default conv init is kaiming_uniform(a=sqrt(5)); for training from scratch the
# torchvision ResNet recipe uses kaiming_normal(fan_out), which we follow for CNNs.
conv_kernel_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def torch_padding(kernel_size: int, stride: int = 1, dilation: int = 1) -> int:
    """PyTorch's customary symmetric padding ``((stride - 1) + dilation * (k - 1)) // 2``."""
    return ((stride - 1) + dilation * (kernel_size - 1)) // 2


def _is_pointwise(lhs, rhs, padding, lhs_dilation, dimension_numbers, feature_group_count):
    # A 1x1 kernel without padding, input dilation or groups over NHWC/HWIO: a matrix product
    # over channels of the (strided) pixels.
    if lhs.ndim != 4 or rhs.shape[:2] != (1, 1) or feature_group_count != 1:
        return False
    if isinstance(padding, str):
        if padding != "VALID":
            return False
    elif any(tuple(p) != (0, 0) for p in padding):
        return False
    if lhs_dilation is not None and any(d != 1 for d in lhs_dilation):
        return False
    nhwc = lax.conv_dimension_numbers(lhs.shape, rhs.shape, ("NHWC", "HWIO", "NHWC"))
    return lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers) == nhwc


def conv_general_dilated(
    lhs,
    rhs,
    window_strides,
    padding,
    lhs_dilation=None,
    rhs_dilation=None,
    dimension_numbers=None,
    feature_group_count=1,
    precision=None,
    **kwargs,
):
    """``lax.conv_general_dilated`` that computes 1x1 convolutions as ``dot_general`` on CPU.

    XLA's CPU convolution gradients of a 1x1 kernel cost 2-4x those of the same product as a
    matrix multiply (ResNet-50 shapes, batch 8: 56x56x256->64 fwd+bwd 134 vs 50 ms; the
    stride-2 downsample 56x56x256->512 524 vs 134 ms), and two thirds of ResNet-50's
    convolutions are 1x1. The stride becomes a slice before the product, whose gradient is a
    scatter into zeros instead of a strided-convolution transpose. Same products, so results
    differ from the convolution only by float32 summation order. Other backends keep the
    convolution: the rewrite was measured on CPU only.
    """
    if traced_for_cpu() and _is_pointwise(
        lhs, rhs, padding, lhs_dilation, dimension_numbers, feature_group_count
    ):
        sh, sw = window_strides
        x = lhs[:, ::sh, ::sw] if (sh, sw) != (1, 1) else lhs
        return lax.dot_general(x, rhs[0, 0], (((3,), (0,)), ((), ())), precision=precision)
    return lax.conv_general_dilated(
        lhs,
        rhs,
        window_strides,
        padding,
        lhs_dilation=lhs_dilation,
        rhs_dilation=rhs_dilation,
        dimension_numbers=dimension_numbers,
        feature_group_count=feature_group_count,
        precision=precision,
        **kwargs,
    )


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
    Parameters are ``nn.Conv``'s (``kernel`` HWIO, ``bias``); 1x1 kernels run as a matrix
    product on CPU (``conv_general_dilated``).
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
        conv_general_dilated=conv_general_dilated,
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
