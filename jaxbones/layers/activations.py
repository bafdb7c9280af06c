"""Activations by name, with PyTorch's definitions (exact-erf GELU, not Flax's tanh default)."""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxbones.layers.platform import traced_for_cpu


def _gelu_erf(x):
    sqrt_half = np.sqrt(0.5).astype(x.dtype)
    return (0.5 * x * (1.0 + lax.erf(x * sqrt_half))).astype(x.dtype)


@jax.custom_vjp
def gelu_recomputed(x):
    """``_gelu_erf`` whose backward keeps only ``x`` and computes the derivative
    ``Φ(x) + x φ(x)`` itself, with ``Φ(x) = (1 - erf(-x/√2)) / 2``.

    Under autodiff XLA's CPU backend stored ``erf(x/√2)`` in the forward: one elementwise
    pass to write it, one to read it for the output, and a backward pass reading four
    arrays (ViT-S/16, 8 x 197 x 1536 floats: 3.3 + 3.2-3.9 + 2.2 ms in the step). Here the
    forward is one pass and the backward one. The backward's ``erf`` takes ``-x/√2`` because
    XLA merges identical expressions: ``erf(x/√2)`` again would be the forward's, stored.
    """
    return _gelu_erf(x)


def _gelu_recomputed_fwd(x):
    return _gelu_erf(x), x


def _gelu_recomputed_bwd(x, dy):
    xf = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    cdf = 0.5 - 0.5 * lax.erf(-xf * np.float32(np.sqrt(0.5)))
    pdf = jnp.exp(-0.5 * xf * xf) * np.float32(1.0 / np.sqrt(2.0 * np.pi))
    return (((cdf + xf * pdf) * dy).astype(x.dtype),)


gelu_recomputed.defvjp(_gelu_recomputed_fwd, _gelu_recomputed_bwd)


def gelu(x):
    """Exact (erf) GELU, ``torch.nn.GELU()``, in torch's formula ``x / 2 * (1 + erf(x / √2))``.

    ``jax.nn.gelu(approximate=False)`` computes ``x / 2 * erfc(-x / √2)``: the same function,
    but XLA's CPU ``erfc`` cost 2.5x ``erf`` (8 x 197 x 1536 floats: 2.33 vs 0.93 ms, torch's
    kernel 1.58 ms), and the GELU was 6% of ViT-S/16's CPU train step. Traced for the CPU,
    its gradient is ``gelu_recomputed``'s.
    """
    return gelu_recomputed(x) if traced_for_cpu() else _gelu_erf(x)


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


def in_float32(fn: Callable) -> Callable:
    """``fn`` evaluated in float32 and rounded once to its input's dtype, as PyTorch's
    bfloat16 activation kernels do (XLA would round each step of erf's polynomial to bfloat16).

    The gradient is evaluated the same way from the saved low-precision input (PyTorch's
    ``GeluBackward`` does this too): left to autodiff, the float32 intermediates of the forward
    would be kept for the backward, a float32 copy of the widest activation of every block
    (7.4 GB of ViT-B/16's 25.6 GB at batch 256) and a float32 pass over it each way. Float32
    inputs are ``fn`` unchanged."""

    @jax.custom_vjp
    def low_precision(x):
        return fn(x.astype(jnp.float32)).astype(x.dtype)

    def fwd(x):
        return low_precision(x), x

    def bwd(x, g):
        _, vjp = jax.vjp(fn, x.astype(jnp.float32))
        return (vjp(g.astype(jnp.float32))[0].astype(x.dtype),)

    low_precision.defvjp(fwd, bwd)

    @functools.wraps(fn)
    def apply(x):
        if jnp.promote_types(x.dtype, jnp.float32) == x.dtype:
            return fn(x)
        return low_precision(x)

    return apply


def get_act(name: str | Callable | None) -> Callable:
    """Activation function by name (or pass a callable through; ``None`` is identity)."""
    if name is None:
        return _ACTS["identity"]
    if callable(name):
        return name
    if name not in _ACTS:
        raise ValueError(f"unknown activation {name!r}; valid: {', '.join(sorted(_ACTS))}")
    return _ACTS[name]
