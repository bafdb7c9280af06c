"""Convolutions with PyTorch-exact explicit padding.

``padding='SAME'`` in XLA puts the odd pixel of a stride-2 convolution on the high side;
PyTorch pads ``k // 2`` on both sides. On ResNet-50 that shifts logits by 60 of 830
(docs/parity.md), so every convolution here takes an explicit symmetric padding.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from jaxbones.layers.activations import get_act
from jaxbones.layers.linear import flat_matmul
from jaxbones.layers.norm import BatchNorm
from jaxbones.layers.platform import traced_for_cpu

Dtype = Any

# PyTorch's default conv init is kaiming_uniform(a=sqrt(5)); for training from scratch the
# torchvision ResNet recipe uses kaiming_normal(fan_out), which we follow for CNNs.
conv_kernel_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def torch_padding(kernel_size: int, stride: int = 1, dilation: int = 1) -> int:
    """PyTorch's customary symmetric padding ``((stride - 1) + dilation * (k - 1)) // 2``."""
    return ((stride - 1) + dilation * (kernel_size - 1)) // 2


def _plain_2d(lhs, rhs, lhs_dilation, dimension_numbers, groups) -> bool:
    # NHWC/HWIO without input dilation or groups: the layout both CPU rewrites read
    if lhs.ndim != 4 or groups != 1:
        return False
    if lhs_dilation is not None and any(d != 1 for d in lhs_dilation):
        return False
    nhwc = lax.conv_dimension_numbers(lhs.shape, rhs.shape, ("NHWC", "HWIO", "NHWC"))
    return lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers) == nhwc


def _is_pointwise(rhs, padding) -> bool:
    # a 1x1 kernel without padding: a matrix product over channels of the (strided) pixels
    if rhs.shape[:2] != (1, 1):
        return False
    if isinstance(padding, str):
        return padding == "VALID"
    return all(tuple(p) == (0, 0) for p in padding)


PATCHES_MAX_BYTES = 2**28  # 256 MiB; the largest measured case (56x56x256, batch 8) is 231 MB


def _patches_pay(lhs, rhs, strides, padding, rhs_dilation) -> bool:
    """Whether a kxk convolution runs faster on XLA's CPU backend as one matrix product over
    its patches (``_patches_product``). Measured, forward + backward, 3x3 kernels: XLA's
    convolution falls to about 4 GFLOP/s when the output has at most 2x2 pixels (ResNet-18 at
    32 px, batch 128: 256 channels at 2x2 441 vs 25 ms, the stride-2 4x4 -> 2x2 158 vs 13 ms;
    512 channels at 1x1 185 vs 25 ms), and from 256 input channels the product wins at the
    ResNet-50/VGG shapes (batch 8: 7x7x512 147 vs 74 ms, 14x14x256 94 vs 79 ms, 28x28x512
    3.3 vs 1.5 s, 56x56x256 2.8 vs 1.7 s; lost only 4x4x256 at batch 128, 0.91x). With 64 or
    128 channels and more than 2x2 output pixels the convolution is as fast or faster, and
    its forward alone 3x faster (batch 8: 56x56x64 98-103 vs 102 ms, 28x28x128 50-52 vs
    66 ms; forward 23 vs 64 ms), so those keep it."""
    if rhs.shape[:2] == (1, 1):
        return False
    height, width = _out_size(lhs, rhs.shape[:2], strides, padding, rhs_dilation)
    return (rhs.shape[2] >= 256 or height * width <= 4) and _patches_fit(lhs, rhs, height, width)


def _patches_fit(lhs, rhs, height, width) -> bool:
    # the patches are a copy the convolution does not need: bounded so that a large image
    # (a UNet at 512 px) does not trade memory for speed beyond the sizes measured
    patch_bytes = lhs.shape[0] * height * width * rhs.shape[0] * rhs.shape[1] * rhs.shape[2]
    return patch_bytes * lhs.dtype.itemsize <= PATCHES_MAX_BYTES


def _out_size(lhs, kernel_hw, strides, padding, rhs_dilation):
    """Output (height, width) of an NHWC convolution with explicit padding."""
    dil = rhs_dilation or (1, 1)
    return tuple(
        (lhs.shape[1 + a] + sum(padding[a]) - dil[a] * (kernel_hw[a] - 1) - 1) // strides[a] + 1
        for a in (0, 1)
    )


def _patches(lhs, kernel_hw, strides, padding, rhs_dilation):
    """The kh * kw shifted (strided, dilated) views of the padded NHWC input side by side on
    the channel axis: [N, Ho, Wo, kh * kw * C], in the order of an HWIO kernel's rows."""
    kh, kw = kernel_hw
    dh, dw = rhs_dilation or (1, 1)
    sh, sw = strides
    c = lhs.shape[3]
    x = jnp.pad(lhs, ((0, 0), tuple(padding[0]), tuple(padding[1]), (0, 0)))
    ho, wo = _out_size(lhs, kernel_hw, strides, padding, rhs_dilation)
    views = [
        lax.slice(
            x,
            (0, i * dh, j * dw, 0),
            (x.shape[0], i * dh + sh * (ho - 1) + 1, j * dw + sw * (wo - 1) + 1, c),
            (1, sh, sw, 1),
        )
        for i in range(kh)
        for j in range(kw)
    ]
    return jnp.concatenate(views, axis=-1)


def _patches_product(lhs, rhs, strides, padding, rhs_dilation, precision):
    """An NHWC/HWIO convolution as one ``dot_general``: its patches (``_patches``) times the
    kernel reshaped to [kh * kw * C, O] (the same products as the convolution; float32
    summation order aside). Its gradients are a product and the transpose of slices (pads),
    which XLA's CPU backend runs at matrix-multiply speed."""
    kh, kw, c, o = rhs.shape
    patches = _patches(lhs, (kh, kw), strides, padding, rhs_dilation)
    return flat_matmul(patches, rhs.reshape(kh * kw * c, o), precision)


FEW_CHANNELS = 4  # an image's channels: RGB(A) or grey


def _weight_grad_by_patches_pays(lhs, rhs, strides, padding, rhs_dilation) -> bool:
    """Whether a convolution over few input channels (a stem or a patch embedding) should
    take its weight gradient as a product over patches (``conv_patches_weight_grad``). XLA's
    CPU weight gradient of ResNet-50's 7x7 stem (3 channels, 112x112 output, batch 8) was
    the largest thunk of the step: forward + weight gradient 188-284 ms, against 108-120 ms
    through the patches. The forward stays a convolution: over 3 channels the patches are
    49 narrow copies and made the stem's forward 3x slower (23 vs 76 ms)."""
    if rhs.shape[2] > FEW_CHANNELS or rhs.shape[:2] == (1, 1):
        return False
    height, width = _out_size(lhs, rhs.shape[:2], strides, padding, rhs_dilation)
    return _patches_fit(lhs, rhs, height, width)


def _nhwc_conv(lhs, rhs, strides, padding, rhs_dilation, precision):
    return lax.conv_general_dilated(
        lhs,
        rhs,
        strides,
        padding,
        rhs_dilation=rhs_dilation,
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        precision=precision,
    )


@partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5))
def conv_patches_weight_grad(lhs, rhs, strides, padding, rhs_dilation, precision):
    """An NHWC/HWIO convolution whose kernel gradient is the product of its patches with
    the output gradient; the forward and the input gradient are XLA's convolution's. Being a
    custom VJP, it has no forward-mode derivative (``jax.jvp``), like the other CPU paths."""
    return _nhwc_conv(lhs, rhs, strides, padding, rhs_dilation, precision)


def _conv_patches_weight_grad_fwd(lhs, rhs, strides, padding, rhs_dilation, precision):
    out = _nhwc_conv(lhs, rhs, strides, padding, rhs_dilation, precision)
    return out, (lhs, rhs)


def _conv_patches_weight_grad_bwd(strides, padding, rhs_dilation, precision, res, dy):
    lhs, rhs = res
    kh, kw, c, o = rhs.shape
    _, input_vjp = jax.vjp(
        lambda x: _nhwc_conv(x, rhs, strides, padding, rhs_dilation, precision), lhs
    )
    (dx,) = input_vjp(dy)  # dead code, removed by XLA, when the input is data
    patches = _patches(lhs, (kh, kw), strides, padding, rhs_dilation)
    pixels = dy.shape[0] * dy.shape[1] * dy.shape[2]
    dw = lax.dot_general(
        patches.reshape(pixels, kh * kw * c),
        dy.reshape(pixels, o),
        (((0,), (0,)), ((), ())),
        precision=precision,
    )
    return dx, dw.reshape(kh, kw, c, o).astype(rhs.dtype)


conv_patches_weight_grad.defvjp(_conv_patches_weight_grad_fwd, _conv_patches_weight_grad_bwd)


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
    """``lax.conv_general_dilated`` that computes 1x1 convolutions, and the kxk convolutions
    ``_patches_pay`` picks, as ``dot_general`` on CPU, and takes the kernel gradient of a
    convolution over an image's few channels as a product over patches
    (``conv_patches_weight_grad``).

    XLA's CPU convolution gradients of a 1x1 kernel cost 2-4x those of the same product as a
    matrix multiply (ResNet-50 shapes, batch 8: 56x56x256->64 fwd+bwd 134 vs 50 ms; the
    stride-2 downsample 56x56x256->512 524 vs 134 ms), and two thirds of ResNet-50's
    convolutions are 1x1. The stride becomes a slice before the product, whose gradient is a
    scatter into zeros instead of a strided-convolution transpose. Larger kernels become a
    product over patches (``_patches_product``). Same products, so results differ from the
    convolution only by float32 summation order. Other backends keep the convolution: the
    rewrites were measured on CPU only.
    """
    if traced_for_cpu() and _plain_2d(
        lhs, rhs, lhs_dilation, dimension_numbers, feature_group_count
    ):
        if _is_pointwise(rhs, padding):
            sh, sw = window_strides
            x = lhs[:, ::sh, ::sw] if (sh, sw) != (1, 1) else lhs
            return flat_matmul(x, rhs[0, 0], precision)
        if padding == "VALID":  # a patch embedding's
            padding = ((0, 0), (0, 0))
        if not isinstance(padding, str):
            args = (
                tuple(window_strides),
                tuple(tuple(p) for p in padding),
                None if rhs_dilation is None else tuple(rhs_dilation),
            )
            if _patches_pay(lhs, rhs, *args):
                return _patches_product(lhs, rhs, *args, precision)
            if _weight_grad_by_patches_pays(lhs, rhs, *args):
                return conv_patches_weight_grad(lhs, rhs, *args, precision)
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
