"""Upsampling layers with PyTorch-exact semantics on NHWC arrays.

- ``pixel_shuffle`` / ``pixel_unshuffle``: ``torch.nn.PixelShuffle`` / ``PixelUnshuffle``.
  PyTorch reads input channel ``c * s**2 + i * s + j`` into output pixel offset (i, j) of
  output channel ``c``. That is *not* TensorFlow's ``depth_to_space`` (which uses
  ``(i * s + j) * C + c``), so NHWC code must split the channel axis as (C, s, s).
- ``ConvTranspose2d``: ``torch.nn.ConvTranspose2d`` (padding, output_padding, dilation),
  storing the kernel as (kh, kw, O, I) so the shared conv leaf rule
  ``w.transpose(2, 3, 1, 0)`` converts PyTorch's (I, O, kh, kw) weight.
- ``resize``: bilinear (``align_corners=False``) / nearest resize as ``F.interpolate``
  for integer upscaling.
- ``Upsample``: one decoder upsampling step, choosing transposed conv, resize + conv or
  sub-pixel conv (conv to s^2*C channels, then pixel shuffle).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from einops import rearrange
from jax import lax

from jaxbones.layers.conv import conv2d, conv_kernel_init

Dtype = Any

UPSAMPLE_MODES = ("transpose", "bilinear", "nearest", "pixel_shuffle")


def pixel_shuffle(x, scale: int):
    """Depth-to-space as ``torch.nn.PixelShuffle(scale)``: [B, H, W, C*s*s] -> [B, H*s, W*s, C]."""
    cs = x.shape[-1]
    s = scale
    if cs % (s * s):
        raise ValueError(
            f"pixel_shuffle({s}) needs channels divisible by {s * s}, got {cs}; make the "
            f"preceding conv output {s * s} * C channels"
        )
    # channel index c*s*s + i*s + j, as PyTorch
    return rearrange(x, "b h w (c i j) -> b (h i) (w j) c", i=s, j=s)


def pixel_unshuffle(x, scale: int):
    """Space-to-depth as ``torch.nn.PixelUnshuffle(scale)``; the inverse of ``pixel_shuffle``."""
    hs, ws = x.shape[1:3]
    s = scale
    if hs % s or ws % s:
        raise ValueError(
            f"pixel_unshuffle({s}) needs height and width divisible by {s}, got {hs}x{ws}"
        )
    return rearrange(x, "b (h i) (w j) c -> b h w (c i j)", i=s, j=s)


def resize(x, scale: int, method: str = "bilinear"):
    """Integer upscaling of NHWC ``x`` like ``F.interpolate(scale_factor=scale, mode=method)``
    (``align_corners=False``). For upscaling ``jax.image.resize`` uses the same half-pixel
    sample positions and edge clamping as PyTorch (antialiasing only acts on downscaling)."""
    if scale == 1:
        return x
    b, h, w, c = x.shape
    if method not in ("bilinear", "nearest"):
        raise ValueError(f"resize method must be 'bilinear' or 'nearest', got {method!r}")
    if method == "nearest":  # torch 'nearest' picks floor(dst / s): a plain repeat
        return jnp.repeat(jnp.repeat(x, scale, axis=1), scale, axis=2)
    return jax.image.resize(x, (b, h * scale, w * scale, c), "bilinear").astype(x.dtype)


def resize_to(x, size: tuple[int, int], method: str = "bilinear"):
    """Resizes NHWC ``x`` to ``size`` = (H, W) (bilinear, half-pixel centres, no antialias)."""
    b, _, _, c = x.shape
    return jax.image.resize(x, (b, *size, c), method, antialias=False).astype(x.dtype)


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


class ConvTranspose2d(nn.Module):
    """``torch.nn.ConvTranspose2d`` (groups=1) on NHWC input.

    Output size ``(H - 1) * stride - 2 * padding + dilation * (k - 1) + output_padding + 1``,
    exactly as PyTorch. A transposed convolution is the gradient of a convolution: we dilate
    the input by ``stride`` (``lhs_dilation``), pad ``dilation * (k - 1) - padding`` on each
    side (plus ``output_padding`` high) and convolve with the spatially flipped kernel whose
    input/output roles are swapped.

    Attributes:
      features: output channels.
      kernel_size, stride, padding, output_padding, dilation: as PyTorch.
      bias: add a bias; dtype, param_dtype; kernel_init.
    Params: ``kernel`` (kh, kw, O, I) (PyTorch (I, O, kh, kw) transposed (2, 3, 1, 0)), ``bias``.
    """

    features: int
    kernel_size: int | tuple[int, int] = 2
    stride: int | tuple[int, int] = 2
    padding: int | tuple[int, int] = 0
    output_padding: int | tuple[int, int] = 0
    dilation: int = 1
    bias: bool = True
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32
    kernel_init: Callable = conv_kernel_init

    @nn.compact
    def __call__(self, x):
        kh, kw = _pair(self.kernel_size)
        s = _pair(self.stride)
        p = _pair(self.padding)
        op = _pair(self.output_padding)
        d = self.dilation
        for pp, oo, ss in zip(p, op, s):
            if oo >= max(ss, d):
                raise ValueError(f"output_padding {oo} must be smaller than stride or dilation")
        in_chs = x.shape[-1]
        kernel = self.param("kernel", self.kernel_init, (kh, kw, self.features, in_chs))
        kernel = kernel.astype(self.dtype or x.dtype)
        x = x.astype(self.dtype or x.dtype)
        pads = [(d * (k - 1) - pp, d * (k - 1) - pp + oo) for k, pp, oo in zip((kh, kw), p, op)]
        y = lax.conv_general_dilated(
            x,
            kernel[::-1, ::-1],  # flipped: (kh, kw, O, I) read as HWOI
            window_strides=(1, 1),
            padding=pads,
            lhs_dilation=s,
            rhs_dilation=(d, d),
            dimension_numbers=("NHWC", "HWOI", "NHWC"),
        )
        if self.bias:
            b = self.param("bias", nn.initializers.zeros, (self.features,), self.param_dtype)
            y = y + b.astype(y.dtype)
        return y


class Upsample(nn.Module):
    """One decoder upsampling step by an integer ``scale`` to ``features`` channels.

    Modes (``UPSAMPLE_MODES``):
      ``'transpose'``: ``ConvTranspose2d(kernel=scale, stride=scale)`` (the original UNet's
        2x2 "up-convolution"), submodule ``up``.
      ``'bilinear'`` / ``'nearest'``: resize, then a 3x3 conv (submodule ``conv``).
      ``'pixel_shuffle'``: sub-pixel convolution (Shi et al. 2016): a 3x3 conv to
        ``scale**2 * features`` channels (submodule ``conv``), then ``pixel_shuffle``.
    ``scale=1`` (same-resolution features, e.g. a ViT backbone) keeps the channel projection.

    Attributes:
      features: output channels; scale: integer upscaling factor; mode: one of the above.
      dtype, param_dtype.
    """

    features: int
    scale: int = 2
    mode: str = "transpose"
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        s = self.scale
        kw = {"dtype": self.dtype, "param_dtype": self.param_dtype}
        if self.mode == "transpose":
            return ConvTranspose2d(self.features, s, s, name="up", **kw)(x)
        if self.mode in ("bilinear", "nearest"):
            return conv2d(self.features, 3, bias=True, name="conv", **kw)(resize(x, s, self.mode))
        if self.mode == "pixel_shuffle":
            return pixel_shuffle(
                conv2d(self.features * s * s, 3, bias=True, name="conv", **kw)(x), s
            )
        raise ValueError(f"upsample mode must be one of {UPSAMPLE_MODES}, got {self.mode!r}")
