"""Normalisation layers with PyTorch conventions.

Statistics are computed in float32 (float64 for float64 inputs, ``stats_dtype``) with the
two-pass variance (``E[(x - mean)^2]``), whatever the compute dtype: Flax's
``use_fast_variance`` (``E[x^2] - E[x]^2``) loses 5.7e-2 at mean 300 (see docs/parity.md).
Epsilons are explicit: PyTorch, timm and Flax disagree on the defaults.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from jaxbones.layers.platform import traced_for_cpu

Dtype = Any


def stats_dtype(dtype):
    """float32, or the input's dtype where it is wider (float64 under ``jax_enable_x64``)."""
    return jnp.promote_types(dtype, jnp.float32)


def _normalize(x, mean, var, eps):
    return (x - mean) * lax.rsqrt(var + eps)


def _batch_stats(x):
    axes = tuple(range(x.ndim - 1))
    mean = x.mean(axes)
    return mean, jnp.square(x - mean).mean(axes)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def batch_norm_train(x, scale, bias, eps):
    """Training-mode BatchNorm of ``x`` (in ``stats_dtype``) over all axes but the last:
    ``(y, mean, biased var)`` with ``y = (x - mean) * rsqrt(var + eps) * scale + bias``.

    The forward is the module's two-pass computation. The backward is the closed form
    ``dx = scale * rstd * (dy - mean(dy) - xhat * mean(dy * xhat))`` (plus the terms of
    ``mean`` and ``var`` should their cotangents be nonzero), written per channel as
    ``dx = k * dy + m * (x - mean) + c``: one reduction over ``(dy, x)`` and one elementwise
    pass. Autodiff of the two-pass variance builds a longer chain of passes over the
    activation instead (ResNet-50's backward BatchNorm cost 1.7x its forward on CPU).
    """
    mean, var = _batch_stats(x)
    return _normalize(x, mean, var, eps) * scale + bias, mean, var


def _batch_norm_train_fwd(x, scale, bias, eps):
    y, mean, var = batch_norm_train(x, scale, bias, eps)
    return (y, mean, var), (x, mean, var, scale)


def _batch_norm_train_bwd(eps, res, cts):
    x, mean, var, scale = res
    dy, dmean, dvar = cts
    axes = tuple(range(x.ndim - 1))
    n = x.size // x.shape[-1]
    rstd = lax.rsqrt(var + eps)
    xc = x - mean
    dbias = dy.sum(axes)
    dscale = (dy * xc).sum(axes) * rstd  # sum(dy * xhat)
    k = scale * rstd
    m = (2.0 * dvar - k * rstd * dscale) / n
    c = (dmean - k * dbias) / n
    return k * dy + m * xc + c, dscale, dbias


batch_norm_train.defvjp(_batch_norm_train_fwd, _batch_norm_train_bwd)


class BatchNorm(nn.Module):
    """BatchNorm over the last (channel) axis, matching ``torch.nn.BatchNorm2d``.

    Attributes:
      momentum: weight of the old running statistics (Flax convention); PyTorch's default
        ``momentum=0.1`` is 0.9 here.
      epsilon: added to the variance (PyTorch default 1e-5).
      use_scale, use_bias: affine parameters ``scale`` (torch ``weight``) and ``bias``.
      scale_init: initialiser of ``scale`` (zeros for zero-init-last-BN residual blocks).
      dtype: output dtype (statistics and normalisation in ``stats_dtype``: float32 or wider).
      param_dtype: dtype of ``scale``/``bias``.

    In training the running variance is updated with the unbiased batch variance
    (N / (N - 1)), as PyTorch does, while the batch itself is normalised with the biased one.
    Under a global-array ``jit`` the reductions cover the global batch.
    """

    momentum: float = 0.9
    epsilon: float = 1e-5
    use_scale: bool = True
    use_bias: bool = True
    scale_init: Any = nn.initializers.ones
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        c = x.shape[-1]
        ra_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((c,), jnp.float32))
        ra_var = self.variable("batch_stats", "var", lambda: jnp.ones((c,), jnp.float32))
        xf = x.astype(stats_dtype(x.dtype))
        if not train:
            y = _affine(self, _normalize(xf, ra_mean.value, ra_var.value, self.epsilon), c)
        elif traced_for_cpu():
            # the closed-form backward (``batch_norm_train``); measured on CPU only
            scale, bias = _affine_params(self, c, xf.dtype)
            one, zero = jnp.ones((c,), xf.dtype), jnp.zeros((c,), xf.dtype)
            y, mean, var = batch_norm_train(
                xf, one if scale is None else scale, zero if bias is None else bias, self.epsilon
            )
        else:
            mean, var = _batch_stats(xf)
            y = _affine(self, _normalize(xf, mean, var, self.epsilon), c)
        if train and not self.is_initializing():
            n = xf.size // c
            unbiased = var * (n / max(n - 1, 1))
            m = self.momentum
            ra_mean.value = m * ra_mean.value + (1 - m) * lax.stop_gradient(mean)
            ra_var.value = m * ra_var.value + (1 - m) * lax.stop_gradient(unbiased)
        return y.astype(self.dtype or x.dtype)


def _affine_params(mod: nn.Module, c, dtype):
    """``(scale, bias)`` as ``dtype``, ``None`` for a disabled one (created in this order)."""
    scale = bias = None
    if mod.use_scale:
        init = getattr(mod, "scale_init", nn.initializers.ones)
        scale = mod.param("scale", init, (c,), mod.param_dtype).astype(dtype)
    if mod.use_bias:
        bias = mod.param("bias", nn.initializers.zeros, (c,), mod.param_dtype)
        bias = bias.astype(dtype)
    return scale, bias


def _affine(mod: nn.Module, y, c):
    scale, bias = _affine_params(mod, c, y.dtype)
    if scale is not None:
        y = y * scale
    if bias is not None:
        y = y + bias
    return y


class LayerNorm(nn.Module):
    """LayerNorm over the last axis with an explicit ``epsilon`` (no default on purpose).

    timm's ViT/MAE use 1e-6, PyTorch's default and Swin use 1e-5. On NHWC maps this is also
    PyTorch's channels-first ``LayerNorm2d``.

    Attributes:
      epsilon: added to the variance.
      use_scale, use_bias: affine parameters ``scale`` (torch ``weight``) and ``bias``.
      dtype: output dtype (statistics in ``stats_dtype``); param_dtype: parameter dtype.
    """

    epsilon: float
    use_scale: bool = True
    use_bias: bool = True
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        xf = x.astype(stats_dtype(x.dtype))
        mean = xf.mean(-1, keepdims=True)
        var = jnp.square(xf - mean).mean(-1, keepdims=True)
        y = _affine(self, _normalize(xf, mean, var, self.epsilon), x.shape[-1])
        return y.astype(self.dtype or x.dtype)


class GroupNorm(nn.Module):
    """GroupNorm over NHWC (or [..., C]) inputs, matching ``torch.nn.GroupNorm``.

    Attributes:
      num_groups: channel groups; channels must divide evenly.
      epsilon: explicit (PyTorch default 1e-5; Flax's 1e-6 differs).
      use_scale, use_bias, dtype, param_dtype: as in ``LayerNorm``.
    """

    num_groups: int
    epsilon: float
    use_scale: bool = True
    use_bias: bool = True
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        c = x.shape[-1]
        if c % self.num_groups:
            raise ValueError(f"GroupNorm: {c} channels do not split into {self.num_groups} groups")
        xf = x.astype(stats_dtype(x.dtype))
        g = xf.reshape(x.shape[0], -1, self.num_groups, c // self.num_groups)  # [B, HW, G, C/G]
        mean = g.mean((1, 3), keepdims=True)
        var = jnp.square(g - mean).mean((1, 3), keepdims=True)
        y = _normalize(g, mean, var, self.epsilon).reshape(x.shape)
        return _affine(self, y, c).astype(self.dtype or x.dtype)
