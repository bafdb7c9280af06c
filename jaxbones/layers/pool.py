"""Pooling with PyTorch semantics: explicit symmetric padding, ``ceil_mode`` and
``count_include_pad`` (PyTorch's default True; timm often uses False; Flax's avg_pool
always counts the padding)."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax import lax

from jaxbones.layers.platform import traced_for_cpu


def _out_size(n: int, k: int, s: int, p: int, ceil_mode: bool) -> int:
    # torch.nn.functional.max_pool2d / avg_pool2d output size, including the rule that the
    # last window must start inside the input or the left padding when ceil_mode=True.
    num = n + 2 * p - k
    out = (math.ceil(num / s) if ceil_mode else num // s) + 1
    if ceil_mode and (out - 1) * s >= n + p:
        out -= 1
    return out


def _pads(x, k, s, p, ceil_mode):
    pads = []
    for n, kk, ss, pp in zip(x.shape[1:3], k, s, p):
        out = _out_size(n, kk, ss, pp, ceil_mode)
        extra = max((out - 1) * ss + kk - (n + 2 * pp), 0)  # ceil_mode's high-side overhang
        pads.append((pp, pp + extra))
    return pads


def _norm_args(kernel_size, stride, padding):
    k = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
    s = k if stride is None else ((stride, stride) if isinstance(stride, int) else tuple(stride))
    p = (padding, padding) if isinstance(padding, int) else tuple(padding)
    return k, s, p


def _reduce_window_max(x, k, s, pads):
    # A Python-scalar identity lets JAX pick the differentiable reduce_window_max primitive.
    return lax.reduce_window(x, -jnp.inf, lax.max, (1, *k, 1), (1, *s, 1), [(0, 0), *pads, (0, 0)])


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def _max_pool_phased(x, k, s, pads):
    return _reduce_window_max(x, k, s, pads)


def _max_pool_phased_fwd(x, k, s, pads):
    y = _reduce_window_max(x, k, s, pads)
    return y, (x, y)


def _max_pool_phased_bwd(k, s, pads, res, g):
    """The max-pool gradient without select-and-scatter: each window offset ``(i, j)`` is a
    strided slice of the padded input compared with the output; the first offset (row-major)
    holding the maximum takes the gradient, as PyTorch's CPU kernel does on ties. Offsets
    ``i = a + s*t`` all land on input rows ``a (mod s)``, so the gradient is assembled per
    stride phase ``(a, b)`` at output resolution (shifted by ``t``) and interleaved once."""
    x, y = res
    n, c = x.shape[0], x.shape[3]
    xp = jnp.pad(x, [(0, 0), *pads, (0, 0)], constant_values=-jnp.inf)
    oh, ow = y.shape[1:3]
    hq, wq = -(-xp.shape[1] // s[0]), -(-xp.shape[2] // s[1])  # rows/cols per phase
    zero = jnp.zeros((), g.dtype)
    taken = jnp.zeros(y.shape, bool)
    phases = {}
    for i in range(k[0]):
        for j in range(k[1]):
            end = (n, i + (oh - 1) * s[0] + 1, j + (ow - 1) * s[1] + 1, c)
            window = lax.slice(xp, (0, i, j, 0), end, (1, *s, 1))
            hit = (window == y) & ~taken
            taken = taken | hit
            t, u = i // s[0], j // s[1]
            # output (m, l) of this offset feeds phase row m + t, column l + u
            cfg = [(0, 0, 0), (t, hq - oh - t, 0), (u, wq - ow - u, 0), (0, 0, 0)]
            part = lax.pad(jnp.where(hit, g, zero), zero, cfg)
            key = (i % s[0], j % s[1])
            phases[key] = phases[key] + part if key in phases else part
    empty = jnp.zeros((n, hq, wq, c), g.dtype)
    rows = [jnp.stack([phases.get((a, b), empty) for b in range(s[1])], 3) for a in range(s[0])]
    dxp = jnp.stack(rows, 2).reshape(n, hq * s[0], wq * s[1], c)
    (ph, _), (pw, _) = pads
    return (dxp[:, ph : ph + x.shape[1], pw : pw + x.shape[2]],)


_max_pool_phased.defvjp(_max_pool_phased_fwd, _max_pool_phased_bwd)


def max_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode: bool = False):
    """``torch.nn.functional.max_pool2d`` on NHWC input (padding is -inf).

    On CPU the gradient is ``_max_pool_phased_bwd`` (same values and the same first-maximum
    choice on ties as PyTorch; a NaN maximum passes no gradient): XLA's CPU select-and-scatter
    made ResNet-50's stem pool (112x112x64, batch 8) 6-10x slower forward+backward. Being a
    custom VJP, the CPU path has no forward-mode derivative (``jax.jvp``). Other backends
    keep XLA's gradient: the rewrite was measured on CPU only.
    """
    k, s, p = _norm_args(kernel_size, stride, padding)
    pads = tuple(tuple(pp) for pp in _pads(x, k, s, p, ceil_mode))
    if traced_for_cpu():
        return _max_pool_phased(x, k, s, pads)
    return _reduce_window_max(x, k, s, pads)


def avg_pool2d(
    x, kernel_size, stride=None, padding=0, ceil_mode: bool = False, count_include_pad: bool = True
):
    """``torch.nn.functional.avg_pool2d`` on NHWC input.

    The divisor counts the symmetric padding when ``count_include_pad`` (never the
    ``ceil_mode`` overhang), exactly as PyTorch does.
    """
    k, s, p = _norm_args(kernel_size, stride, padding)
    pads = _pads(x, k, s, p, ceil_mode)
    window, strides = (1, *k, 1), (1, *s, 1)
    summed = lax.reduce_window(x, 0.0, lax.add, window, strides, [(0, 0), *pads, (0, 0)])
    h, w = x.shape[1:3]
    if count_include_pad:
        ones = jnp.ones((1, h + 2 * p[0], w + 2 * p[1], 1), x.dtype)
        cpads = [(0, 0)] + [(0, hi - lo) for lo, hi in pads] + [(0, 0)]
    else:
        ones = jnp.ones((1, h, w, 1), x.dtype)
        cpads = [(0, 0), *pads, (0, 0)]
    count = lax.reduce_window(ones, 0.0, lax.add, window, strides, cpads)
    return summed / count


def global_pool(x, pool_type: str = "avg"):
    """Global pooling over the spatial axes of NHWC (or token axis of [B, L, C]) input."""
    axes = tuple(range(1, x.ndim - 1))
    if pool_type == "avg":
        return x.mean(axes)
    if pool_type == "max":
        return x.max(axes)
    if pool_type == "avgmax":
        return 0.5 * (x.mean(axes) + x.max(axes))
    raise ValueError(f"unknown pool_type {pool_type!r}; valid: avg, max, avgmax")


def _adaptive_ranges(n: int, out: int) -> list[tuple[int, int]]:
    # torch's adaptive pooling windows (aten/src/ATen/native/AdaptiveAveragePooling.cpp):
    # start = floor(i * n / out), end = ceil((i + 1) * n / out); windows may overlap.
    return [((i * n) // out, -((-(i + 1) * n) // out)) for i in range(out)]


def _adaptive_axis(x, axis: int, out: int):
    n = x.shape[axis]
    if n % out == 0:  # equal, disjoint windows: one reshape and mean
        shape = (*x.shape[:axis], out, n // out, *x.shape[axis + 1 :])
        return x.reshape(shape).mean(axis + 1)
    cols = [lax.slice_in_dim(x, s, e, axis=axis).mean(axis) for s, e in _adaptive_ranges(n, out)]
    return jnp.stack(cols, axis=axis)


def adaptive_avg_pool2d(x, output_size):
    """``torch.nn.functional.adaptive_avg_pool2d`` on NHWC input.

    Output cell ``(i, j)`` averages rows ``floor(i*H/oh) .. ceil((i+1)*H/oh)`` and the same
    for columns, exactly as PyTorch (windows overlap when ``H`` is not a multiple of ``oh``,
    and an input smaller than the output is replicated). A rectangle mean equals the mean of
    its row means, so the two axes are pooled one after the other.
    """
    oh, ow = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
    return _adaptive_axis(_adaptive_axis(x, 1, oh), 2, ow)
