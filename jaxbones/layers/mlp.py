"""Transformer MLP (timm ``Mlp``): fc1 -> act -> dropout -> fc2 -> dropout."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxbones.layers.activations import get_act, in_float32
from jaxbones.layers.linear import Dense

Dtype = Any
dense_init = nn.initializers.truncated_normal(0.02)


class Mlp(nn.Module):
    """Two-layer MLP with submodules ``fc1`` and ``fc2`` (timm names).

    Attributes:
      hidden_features: width of fc1; out_features: width of fc2 (default: input width).
      act: activation (exact GELU by default); drop: dropout after each layer.
      bias: use biases; dtype, param_dtype: compute and parameter dtypes.
    """

    hidden_features: int
    out_features: int | None = None
    act: str | Callable = "gelu"
    drop: float = 0.0
    bias: bool = True
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x, deterministic: bool = True):
        out = self.out_features or x.shape[-1]
        kw = {
            "use_bias": self.bias,
            "dtype": self.dtype,
            "param_dtype": self.param_dtype,
            "kernel_init": dense_init,
        }
        x = Dense(self.hidden_features, name="fc1", **kw)(x)
        x = in_float32(get_act(self.act))(x)
        x = nn.Dropout(self.drop)(x, deterministic)
        x = Dense(out, name="fc2", **kw)(x)
        return nn.Dropout(self.drop)(x, deterministic)
