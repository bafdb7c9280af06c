"""The one fully connected layer: ``Dense``'s parameters, PyTorch's bfloat16 rounding."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from jaxbones.layers.platform import traced_for_cpu

Dtype = Any


def flat_matmul(x, kernel, precision=None):
    """``x [..., K] @ kernel [K, N]`` as one 2-D product over all of ``x``'s leading axes.

    Written over the leading axes as they are, the weight gradient (a product over those
    axes of both the input and the output gradient) made XLA's CPU backend copy the output
    gradient into channel-major order before the product: on ResNet-50's 1x1 convolutions
    about 0.5 s of a 3 s train step went to such copies, and the 2-D form has none (1.22x
    the step). The same products: results differ only by float32 summation order.
    """
    lead = x.shape[:-1]
    y = lax.dot_general(
        x.reshape(-1, x.shape[-1]), kernel, (((1,), (0,)), ((), ())), precision=precision
    )
    return y.reshape(*lead, kernel.shape[1])


class Dense(nn.Module):
    """``y = x @ kernel + bias`` with ``Dense``'s parameters (``kernel`` [in, out], ``bias``).

    Under a low-precision compute ``dtype`` the product is accumulated in float32, the float32
    ``bias`` is added there and the sum is rounded to ``dtype`` once, as PyTorch's bfloat16
    ``linear`` (``addmm``) does. ``Dense`` rounds the product, then rounds it again after
    adding a bfloat16 bias: on ResNet-50's classifier that second rounding made the bf16
    logits 1.2x further from float32 than torch autocast's (README, Parity). In float32 the
    computation is ``Dense``'s.

    The backward pass of the low-precision product runs in ``dtype`` too (``_linear``): the
    output's cotangent is a ``dtype`` value, and left to autodiff the transposed products
    would take it as float32 against a ``dtype`` operand, a mixed product that GPUs run as a
    float32 matmul. PyTorch's bfloat16 ``addmm`` backward is bfloat16 matmuls with float32
    accumulation, which ``_linear``'s is.

    Attributes:
      features: output width; use_bias: add ``bias``.
      dtype: compute dtype (``None``: the input's); param_dtype: parameter dtype.
      kernel_init, bias_init: initialisers (``Dense``'s defaults).
    """

    features: int
    use_bias: bool = True
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32
    kernel_init: Callable = nn.initializers.lecun_normal()
    bias_init: Callable = nn.initializers.zeros

    @nn.compact
    def __call__(self, x):
        kernel = self.param(
            "kernel", self.kernel_init, (x.shape[-1], self.features), self.param_dtype
        )
        dtype = self.dtype or jnp.result_type(x, kernel)
        bias = None
        if self.use_bias:
            bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype)
        x, kernel = x.astype(dtype), kernel.astype(dtype)
        if jnp.promote_types(dtype, jnp.float32) == dtype:  # float32 (or wider): plain Dense
            if traced_for_cpu():
                y = flat_matmul(x, kernel)
            else:
                y = lax.dot_general(x, kernel, (((x.ndim - 1,), (0,)), ((), ())))
            return y if bias is None else y + bias.astype(dtype)
        return _linear(x, kernel, bias)


def _contract_last(a, b):
    """``a @ b`` over ``a``'s last axis and ``b``'s first, accumulated in float32."""
    return lax.dot_general(
        a, b, (((a.ndim - 1,), (0,)), ((), ())), preferred_element_type=jnp.float32
    )


@jax.custom_vjp
def _linear(x, kernel, bias):
    """Low-precision ``x @ kernel + bias``: float32 accumulation and bias, rounded once."""
    y = _contract_last(x, kernel)
    return (y if bias is None else y + bias.astype(jnp.float32)).astype(x.dtype)


def _linear_fwd(x, kernel, bias):
    return _linear(x, kernel, bias), (x, kernel, bias)


def _linear_bwd(res, g):
    x, kernel, bias = res
    lead = tuple(range(x.ndim - 1))
    dx = _contract_last(g, kernel.T).astype(x.dtype)
    dkernel = lax.dot_general(
        x, g, ((lead, lead), ((), ())), preferred_element_type=jnp.float32
    ).astype(kernel.dtype)
    dbias = None if bias is None else g.astype(jnp.float32).sum(lead).astype(bias.dtype)
    return dx, dkernel, dbias


_linear.defvjp(_linear_fwd, _linear_bwd)
