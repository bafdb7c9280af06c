"""Swin Transformer v1 key layouts: timm's (the target of the rules) and the official
microsoft/Swin-Transformer release, canonicalised into timm's.

Differences of the official layout (docs/parity.md): ``layers.N.downsample`` (PatchMerging) sits
at the END of stage N (stages 0..2) where timm puts it at the START of stage N+1; the
classifier is ``head`` instead of ``head.fc``; ``relative_position_index`` and ``attn_mask``
are persistent buffers (jaxbones recomputes both: dropped). Relative-position-bias tables whose
window differs from the target model's (224/window-7 weights fine-tuned at 384/window 12) are
resampled like timm's ``checkpoint_filter_fn``.
"""

from __future__ import annotations

import re

import numpy as np

from jaxbones.convert.core import Converter, register_converter
from jaxbones.layers.stack import StackLayout

_TABLE = "relative_position_bias_table"


# ----------------------------------------------------------------------------- resampling


def _geometric_positions(src: int, dst: int) -> np.ndarray:
    # BEiT/timm: source table offsets placed on a geometric progression whose half-width
    # reaches dst // 2 (bisection on the ratio q), so the centre keeps unit spacing.
    left, right = 1.01, 1.5
    while right - left > 1e-6:
        q = (left + right) / 2.0
        gp = (1.0 - q ** (src // 2)) / (1.0 - q)
        if gp > dst // 2:
            right = q
        else:
            left = q
    dis, cur = [], 1.0
    for i in range(src // 2):
        dis.append(cur)
        cur += q ** (i + 1)
    return np.array([-d for d in reversed(dis)] + [0.0] + dis, np.float32)


def _linear_weights(points: np.ndarray, targets: np.ndarray) -> np.ndarray:
    # [len(targets), len(points)] weights of piecewise-linear interpolation on an uneven grid,
    # clamped outside it (timm's RegularGridInterpolator: bucketize, left/right distances).
    n = len(points)
    right = np.minimum(np.searchsorted(points, targets, side="left"), n - 1)
    left = np.clip(right - 1, 0, n - 1)
    d_left = np.maximum(targets - points[left], 0)
    d_right = np.maximum(points[right] - targets, 0)
    both = (d_left == 0) & (d_right == 0)
    d_left = np.where(both, 1.0, d_left)
    d_right = np.where(both, 1.0, d_right)
    wts = np.zeros((len(targets), n), np.float64)
    rows = np.arange(len(targets))
    np.add.at(wts, (rows, left), d_right / (d_left + d_right))
    np.add.at(wts, (rows, right), d_left / (d_left + d_right))
    return wts


def _cubic(t: np.ndarray, a: float = -0.75) -> np.ndarray:
    # Keys cubic convolution kernel with PyTorch's a = -0.75 (docs/parity.md: not -0.5).
    t = np.abs(t)
    return np.where(
        t <= 1,
        ((a + 2) * t - (a + 3)) * t * t + 1,
        np.where(t < 2, ((a * t - 5 * a) * t + 8 * a) * t - 4 * a, 0.0),
    )


def _bicubic_weights(src: int, dst: int) -> np.ndarray:
    # [dst, src] weights of torch.nn.functional.interpolate(mode='bicubic',
    # align_corners=False) along one axis: source coordinate (i + 0.5) * src/dst - 0.5
    # (not clamped for cubic), taps floor-1..floor+2 with indices clamped to the border.
    wts = np.zeros((dst, src), np.float64)
    for i in range(dst):
        x = (i + 0.5) * (src / dst) - 0.5
        x0 = int(np.floor(x))
        t = x - x0
        for k in range(-1, 3):
            wts[i, min(max(x0 + k, 0), src - 1)] += _cubic(np.array(k - t))
    return wts


def resize_rel_pos_bias_table(
    table: np.ndarray,
    new_window: tuple[int, int],
    old_window: tuple[int, int] | None = None,
    method: str = "timm",
) -> np.ndarray:
    """Resamples a ((2*wh-1)*(2*ww-1), heads) relative position bias table to ``new_window``.

    ``method='timm'``: timm's ``resize_rel_pos_bias_table`` (what ``timm.create_model(...,
    pretrained=True)`` and ``checkpoint_filter_fn`` do; BEiT's geometric source grid with linear
    interpolation). ``method='bicubic'``: the official Swin-Transformer fine-tuning code
    (``F.interpolate(mode='bicubic')``, timm's ``resize_rel_pos_bias_table_simple``).
    ``old_window`` defaults to the square window the table size implies."""
    table = np.asarray(table)
    n_old, heads = table.shape
    dst = (2 * new_window[0] - 1, 2 * new_window[1] - 1)
    if old_window is None:
        side = round(n_old**0.5)
        if side * side != n_old:
            raise ValueError(
                f"cannot infer the window of a {n_old}-row relative position table; pass old_window"
            )
        src = (side, side)
    else:
        src = (2 * old_window[0] - 1, 2 * old_window[1] - 1)
    if src == dst:
        return table
    grid = table.astype(np.float32).T.reshape(heads, src[0], src[1])  # [heads, sh, sw]
    if method == "timm":
        wy = _linear_weights(
            _geometric_positions(src[0], dst[0]),
            np.arange(-(dst[0] // 2), dst[0] // 2 + 0.1, 1.0, dtype=np.float32),
        )
        wx = _linear_weights(
            _geometric_positions(src[1], dst[1]),
            np.arange(-(dst[1] // 2), dst[1] // 2 + 0.1, 1.0, dtype=np.float32),
        )
    elif method == "bicubic":
        wy, wx = _bicubic_weights(src[0], dst[0]), _bicubic_weights(src[1], dst[1])
    else:
        raise ValueError(f"unknown resize method {method!r}; valid: 'timm', 'bicubic'")
    out = np.einsum("yi,hij,xj->hyx", wy, grid.astype(np.float64), wx)  # [heads, dh, dw]
    return out.reshape(heads, -1).T.astype(table.dtype)


# ----------------------------------------------------------------------------- layouts


def canonicalize(sd: dict, model) -> dict:
    """Official Swin-Transformer or timm state dict -> timm's layout for ``model``'s windows."""
    official_merging = "layers.0.downsample.reduction.weight" in sd
    official_head = "head.weight" in sd and "head.fc.weight" not in sd
    specs = model.stage_specs()
    out = {}
    for k, v in sd.items():
        if k.endswith(("relative_position_index", "attn_mask")):
            continue  # buffers: recomputed as constants in the Flax module
        if official_merging:  # end of stage N -> start of stage N + 1
            k = re.sub(
                r"^layers\.(\d+)\.downsample", lambda m: f"layers.{int(m[1]) + 1}.downsample", k
            )
        if official_head and k.startswith("head."):
            k = "head.fc." + k[len("head.") :]
        m = re.match(r"^layers\.(\d+)\.blocks\.\d+\.attn\." + _TABLE + "$", k)
        if m and int(m[1]) < len(specs):
            wh, ww = specs[int(m[1])]["window"]
            if v.shape[0] != (2 * wh - 1) * (2 * ww - 1):
                v = resize_rel_pos_bias_table(v, (wh, ww))
        out[k] = v
    return out


def scan_layout(model) -> list[StackLayout]:
    return [StackLayout(f"layers_{i}_blocks", d) for i, d in enumerate(model.depths)]


register_converter(
    "swin",
    Converter(
        rules=[
            (r"^layers_(\d+)_blocks_(\d+)", r"layers.\1.blocks.\2"),
            (r"^layers_(\d+)_downsample", r"layers.\1.downsample"),
            (r"^head$", "head.fc"),
        ],
        ignore=[r"relative_position_index$", r"attn_mask$"],
        canonicalize=canonicalize,
        scan_layout=scan_layout,
    ),
)
