"""Position embeddings: MAE's fixed 2-D sin-cos table and timm-exact resampling of learned
tables to a new patch grid.

``sincos_2d_table`` follows facebookresearch/mae ``util/pos_embed.py`` in float64 (docs/parity.md):
the first half of the channels encodes the column (w) index, the second half the row (h)
index, each half ``[sin(pos * omega), cos(pos * omega)]`` with
``omega = 1 / 10000 ** (arange(D/4) / (D/4))``; rows are in row-major patch order and a zero
row is prepended for the class token. (big_vision's sincos uses other frequencies.)

``resample_abs_pos_embed`` equals timm's function of the same name (``F.interpolate`` in
'bicubic' mode, ``align_corners=False``): with ``antialias=False`` it is the classic Keys cubic
with a=-0.75 and clamped borders, with ``antialias=True`` (timm's default, used when timm
loads a checkpoint into a model of another size) PyTorch's PIL-style separable filter with
a=-0.5 whose support widens on downsampling. Both are built as explicit [out, in] weight
matrices in float64, so the resize is two small matmuls.
"""

from __future__ import annotations

import math

import numpy as np


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def sincos_1d(embed_dim: int, pos: np.ndarray) -> np.ndarray:
    """[len(pos), embed_dim] float64: ``[sin(pos * omega), cos(pos * omega)]`` (MAE)."""
    if embed_dim % 2:
        raise ValueError(f"sin-cos embedding needs an even dim, got {embed_dim}")
    omega = np.arange(embed_dim // 2, dtype=np.float64) / (embed_dim / 2.0)
    omega = 1.0 / 10000**omega  # [D/2]
    out = np.einsum("m,d->md", np.asarray(pos, np.float64).reshape(-1), omega)  # [M, D/2]
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def sincos_2d_table(embed_dim: int, grid_size, cls_token: bool = True) -> np.ndarray:
    """MAE's fixed 2-D sin-cos table, float64 [(1 +) gh * gw, embed_dim].

    ``grid_size``: int or (gh, gw) patches. Channels [0, D/2) encode the column index,
    [D/2, D) the row index (MAE's ``meshgrid(grid_w, grid_h)``); a zero row is prepended for
    the class token when ``cls_token``.
    """
    if embed_dim % 4:
        raise ValueError(f"2-D sin-cos embedding needs dim divisible by 4, got {embed_dim}")
    gh, gw = _pair(grid_size)
    rows, cols = np.meshgrid(np.arange(gh), np.arange(gw), indexing="ij")  # [gh, gw] each
    emb_w = sincos_1d(embed_dim // 2, cols.reshape(-1))  # [gh * gw, D/2], row-major tokens
    emb_h = sincos_1d(embed_dim // 2, rows.reshape(-1))
    table = np.concatenate([emb_w, emb_h], axis=1)
    if cls_token:
        table = np.concatenate([np.zeros((1, embed_dim)), table], axis=0)
    return table


def _cubic(x: np.ndarray, a: float) -> np.ndarray:
    # Keys' cubic convolution kernel on |x| (support 2).
    x = np.abs(x)
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return np.where(x < 1, near, np.where(x < 2, far, 0.0))


def bicubic_resize_matrix(in_size: int, out_size: int, antialias: bool = False) -> np.ndarray:
    """[out_size, in_size] float64 weights of PyTorch's 1-D bicubic resize
    (``align_corners=False``), so ``W @ signal`` equals ``F.interpolate`` along one axis."""
    scale = in_size / out_size  # PyTorch's area_pixel_compute_scale without a scale factor
    w = np.zeros((out_size, in_size))
    if not antialias:
        # upsample_bicubic2d: src = (i + 0.5) * scale - 0.5 (no clamp at 0 for cubic), taps
        # floor(src) - 1 .. floor(src) + 2 with a = -0.75, indices clamped to the border.
        for i in range(out_size):
            src = (i + 0.5) * scale - 0.5
            f = math.floor(src)
            t = src - f
            taps = _cubic(np.array([t + 1, t, 1 - t, 2 - t]), -0.75)
            for j, wt in zip(range(f - 1, f + 3), taps):
                w[i, min(max(j, 0), in_size - 1)] += wt
        return w
    # _upsample_bicubic2d_aa (PIL's filter, a = -0.5): support 2 * max(scale, 1); weights are
    # the kernel at (j - center + 0.5) / max(scale, 1), normalised to sum to one.
    support = 2.0 * scale if scale >= 1.0 else 2.0
    invscale = 1.0 / scale if scale >= 1.0 else 1.0
    for i in range(out_size):
        center = scale * (i + 0.5)
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), in_size)
        js = np.arange(xmin, xmax)
        taps = _cubic((js - center + 0.5) * invscale, -0.5)
        total = taps.sum()
        w[i, xmin:xmax] = taps / total if total != 0 else taps
    return w


def resample_grid(grid: np.ndarray, new_size, antialias: bool = False) -> np.ndarray:
    """Bicubic resize of a [gh, gw, C] grid to ``new_size`` (int or (h, w)), float64."""
    nh, nw = _pair(new_size)
    gh, gw = grid.shape[:2]
    wh = bicubic_resize_matrix(gh, nh, antialias)  # [nh, gh]
    ww = bicubic_resize_matrix(gw, nw, antialias)  # [nw, gw]
    return np.einsum("oh,hwc,pw->opc", wh, np.asarray(grid, np.float64), ww)


def resample_abs_pos_embed(
    posemb,
    new_size,
    old_size=None,
    num_prefix_tokens: int = 1,
    antialias: bool = True,
) -> np.ndarray:
    """timm's ``resample_abs_pos_embed`` on a [1, prefix + gh * gw, C] table (numpy).

    Prefix (class/register) tokens are kept as they are; the grid part is resized bicubically
    from ``old_size`` (default: square) to ``new_size``. ``antialias`` defaults to True as in
    timm (its checkpoint loader uses that); pass False for plain ``F.interpolate`` bicubic.
    Returns a float array of ``posemb``'s dtype.
    """
    posemb = np.asarray(posemb)
    nh, nw = _pair(new_size)
    n = posemb.shape[1] - num_prefix_tokens
    if old_size is None:
        side = int(math.sqrt(n))
        if side * side != n:
            raise ValueError(
                f"cannot infer the grid of a {n}-token position table; pass old_size=(h, w)"
            )
        old_size = (side, side)
    gh, gw = _pair(old_size)
    if (gh, gw) == (nh, nw):
        return posemb
    prefix, grid = posemb[:, :num_prefix_tokens], posemb[:, num_prefix_tokens:]
    grid = resample_grid(grid.reshape(gh, gw, -1), (nh, nw), antialias)  # [nh, nw, C]
    grid = grid.reshape(1, nh * nw, -1).astype(posemb.dtype)
    return np.concatenate([prefix, grid], axis=1)
