"""Activations by name, with PyTorch's definitions (exact-erf GELU, not Flax's tanh default)."""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp


def gelu(x):
    """Exact (erf) GELU, ``torch.nn.GELU()``; ``jax.nn.gelu`` defaults to the tanh form."""
    return jax.nn.gelu(x, approximate=False)


def gelu_tanh(x):
    """``torch.nn.GELU(approximate='tanh')``."""
    return jax.nn.gelu(x, approximate=True)


def quick_gelu(x):
    """OpenAI CLIP's ``x * sigmoid(1.702 x)``."""
    return x * jax.nn.sigmoid(1.702 * x)


def hard_sigmoid(x):
    """timm's ``hard_sigmoid``: relu6(x + 3) / 6."""
    return jax.nn.relu6(x + 3.0) / 6.0


def mish(x):
    return x * jnp.tanh(jax.nn.softplus(x))


_ACTS: dict[str, Callable] = {
    "relu": jax.nn.relu,
    "relu6": jax.nn.relu6,
    "gelu": gelu,
    "gelu_tanh": gelu_tanh,
    "quick_gelu": quick_gelu,
    "silu": jax.nn.silu,
    "swish": jax.nn.silu,
    "sigmoid": jax.nn.sigmoid,
    "hard_sigmoid": hard_sigmoid,
    "tanh": jnp.tanh,
    "mish": mish,
    "leaky_relu": functools.partial(jax.nn.leaky_relu, negative_slope=0.01),
    "leaky_relu_0.1": functools.partial(jax.nn.leaky_relu, negative_slope=0.1),
    "identity": lambda x: x,
}


def get_act(name: str | Callable | None) -> Callable:
    """Activation function by name (or pass a callable through; ``None`` is identity)."""
    if name is None:
        return _ACTS["identity"]
    if callable(name):
        return name
    if name not in _ACTS:
        raise ValueError(f"unknown activation {name!r}; valid: {', '.join(sorted(_ACTS))}")
    return _ACTS[name]
