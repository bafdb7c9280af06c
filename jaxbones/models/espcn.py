"""ESPCN super-resolution (Shi et al. 2016, "Real-Time Single Image and Video Super-Resolution
Using an Efficient Sub-Pixel Convolutional Neural Network").

Three convolutions on the low-resolution image (5x5 -> 64, tanh; 3x3 -> 32, tanh; 3x3 ->
``scale**2 * C``) followed by a pixel shuffle (``torch.nn.PixelShuffle`` order) to the
high-resolution image [B, H*r, W*r, C]. The paper works on the luminance channel (C = 1) and
uses valid convolutions on training crops; we pad ``k // 2`` (as PyTorch's example) so the
output is exactly ``scale`` times the input. Parameter names ``conv1..conv3`` match a PyTorch
module with those attributes (``jaxbones/convert/espcn.py``).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxbones.layers import check_input, conv2d, get_act, pixel_shuffle
from jaxbones.registry import register_model

Dtype = Any


class ESPCN(nn.Module):
    """Efficient sub-pixel convolutional network.

    Attributes:
      scale: upscaling factor r.
      in_chans: image channels (input and output; 1 = luminance as the paper).
      widths: channels of the two hidden convs (the paper: 64, 32).
      act: hidden activation (the paper: tanh).
      dtype, param_dtype.
    Returns the super-resolved image [B, H*scale, W*scale, in_chans].
    """

    scale: int = 3
    in_chans: int = 1
    widths: Sequence[int] = (64, 32)
    act: str = "tanh"
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    min_size = 1

    @nn.compact
    def __call__(self, x, train: bool = False):
        check_input(x, in_chans=self.in_chans, model="ESPCN")
        kw = {"bias": True, "dtype": self.dtype, "param_dtype": self.param_dtype}
        act = get_act(self.act)
        x = x.astype(self.dtype or x.dtype)
        x = act(conv2d(self.widths[0], 5, name="conv1", **kw)(x))
        x = act(conv2d(self.widths[1], 3, name="conv2", **kw)(x))
        x = conv2d(self.in_chans * self.scale**2, 3, name="conv3", **kw)(x)
        return pixel_shuffle(x, self.scale)


for _r in (2, 3, 4):
    register_model(
        f"espcn_x{_r}",
        functools.partial(ESPCN, scale=_r),
        family="espcn",
        input_size=(64, 64, 1),
        mean=(0.0,),
        std=(1.0,),
        crop_pct=1.0,
        min_size=1,
    )
