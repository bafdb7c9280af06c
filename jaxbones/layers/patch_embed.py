"""Patch embedding: a stride-p convolution flattened to tokens (timm ``PatchEmbed``)."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxbones.layers.conv import conv_general_dilated

# timm/MAE initialise the patch projection like a Linear on the flattened patch
# (xavier_uniform over (C, p * p * in_chans)); lecun-style fan_in scaling is close enough for
# training from scratch and irrelevant for converted weights.
_proj_init = nn.initializers.xavier_uniform(in_axis=(0, 1, 2), out_axis=3)


class PatchEmbed(nn.Module):
    """Non-overlapping patches -> tokens: ``Conv(p x p, stride p)`` named ``proj``, then
    ``[B, H/p, W/p, C] -> [B, H/p * W/p, C]`` (row-major, the same token order as PyTorch's
    ``flatten(2).transpose(1, 2)``; docs/parity.md).

    Attributes:
      embed_dim: token width; patch_size: int or (ph, pw); bias: conv bias.
      flatten: return [B, L, C] tokens (False: the NHWC grid).
      dtype, param_dtype: compute and parameter dtypes.
    """

    embed_dim: int
    patch_size: int | tuple[int, int] = 16
    bias: bool = True
    flatten: bool = True
    dtype: Any = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        p = (self.patch_size,) * 2 if isinstance(self.patch_size, int) else self.patch_size
        x = nn.Conv(
            self.embed_dim,
            tuple(p),
            strides=tuple(p),
            padding="VALID",
            use_bias=self.bias,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            kernel_init=_proj_init,
            conv_general_dilated=conv_general_dilated,
            name="proj",
        )(x)
        if not self.flatten:
            return x
        b, h, w, c = x.shape
        return x.reshape(b, h * w, c)  # [B, L, C]
