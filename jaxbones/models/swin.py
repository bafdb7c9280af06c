"""Swin Transformer v1 (Liu et al. 2021, "Swin Transformer: Hierarchical Vision Transformer
using Shifted Windows"), numerically equal to timm's ``swin_transformer.py``.

Reference: timm/models/swin_transformer.py (timm 1.0.31), itself a port of
microsoft/Swin-Transformer. We follow timm's module placement: stages ``layers_{s}`` whose
``PatchMerging`` downsample sits at the *start* of stages 1..3 (the official code puts it at the
end of stages 0..2; ``jaxbones.convert`` moves it). Flax names: ``patch_embed`` (``proj``,
``norm``), blocks ``layers_{s}_blocks_{b}`` (``norm1``, ``attn`` with ``qkv``, ``proj`` and
``relative_position_bias_table``, ``norm2``, ``mlp``), ``layers_{s}_downsample`` (``norm``,
``reduction``), ``norm``, ``head``. With ``scan=True`` the blocks of stage ``s`` are one
``layers_{s}_blocks`` subtree with a leading [depth] axis.

Everything that depends only on shapes (the relative position index, the shifted-window
attention mask, per-stage window and shift sizes) is computed with numpy at trace time: those
are constants, never parameters.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
from einops import rearrange

from jaxbones.layers import (
    LayerNorm,
    Mlp,
    block_stack,
    check_input,
    conv2d,
    dense_init,
    dot_product_attention,
    drop_path,
    drop_path_rates,
    global_pool,
)
from jaxbones.layers.param_groups import ParamGroups, staged_layer_ids
from jaxbones.layers.partitioning import TRANSFORMER_RULES
from jaxbones.models._pretrained import timm_hub
from jaxbones.registry import register_model, register_pretrained

Dtype = Any
LN_EPS = 1e-5  # timm/official Swin use nn.LayerNorm's default eps (docs/parity.md)
MASK_VALUE = -100.0  # official/timm value added to logits of pairs from different regions

# PatchMerging concatenation order as (row offset, column offset) of each 2x2 neighbour:
# x0 = x[0::2, 0::2], x1 = x[1::2, 0::2], x2 = x[0::2, 1::2], x3 = x[1::2, 1::2] (official code;
# timm's reshape(B, H/2, 2, W/2, 2, C).permute(0, 1, 3, 4, 2, 5) gives the same order).
MERGE_ORDER = ((0, 0), (1, 0), (0, 1), (1, 1))


# ----------------------------------------------------------------------------- constants


def _pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, (int, np.integer)) else (int(v[0]), int(v[1]))


def resolve_window_sizes(window_size, num_stages: int) -> tuple[tuple[int, int], ...]:
    """One (h, w) window per stage from an int, an (h, w) pair, or one int/pair per stage
    (timm's ``resolve_stage_window_sizes``: a sequence of two ints is one (h, w) window)."""
    if isinstance(window_size, (int, np.integer)):
        window_size = (window_size,) * num_stages
    elif len(window_size) == 2 and not isinstance(window_size[0], (list, tuple)):
        window_size = (tuple(window_size),) * num_stages
    if len(window_size) != num_stages:
        raise ValueError(
            f"window_size {window_size} has {len(window_size)} entries but the model has "
            f"{num_stages} stages; pass one int, one (h, w) pair, or one per stage"
        )
    out = tuple(_pair(w) for w in window_size)
    if any(w <= 0 for ws in out for w in ws):
        raise ValueError(f"window sizes must be positive, got {out}")
    return out


def window_and_shift(resolution, window) -> tuple[tuple[int, int], tuple[int, int]]:
    """timm's ``_calc_window_shift``: a stage whose resolution is not larger than the window
    uses one window of the whole resolution and no shift (per axis); otherwise the shift is
    half the window (SW-MSA in every second block)."""
    win = tuple(min(r, w) for r, w in zip(resolution, window))
    shift = tuple(0 if r <= w else w // 2 for r, w in zip(resolution, win))
    return win, shift


def relative_position_index(win_h: int, win_w: int) -> np.ndarray:
    """[N, N] index into the ((2*win_h-1)*(2*win_w-1), heads) bias table, N = win_h*win_w:
    ``(dy + win_h - 1) * (2*win_w - 1) + (dx + win_w - 1)`` for every pair (i, j) of window
    positions, dy/dx = coordinate of i minus coordinate of j (row-major positions)."""
    ys, xs = np.meshgrid(np.arange(win_h), np.arange(win_w), indexing="ij")
    coords = np.stack([ys.reshape(-1), xs.reshape(-1)])  # [2, N]
    rel = coords[:, :, None] - coords[:, None, :]  # [2, N, N]
    return (rel[0] + win_h - 1) * (2 * win_w - 1) + (rel[1] + win_w - 1)


def window_partition(x, window: tuple[int, int]):
    """[B, H, W, C] -> [B * nW, wh * ww, C]; windows in row-major order, batch outermost."""
    wh, ww = window
    return rearrange(x, "b (nh wh) (nw ww) c -> (b nh nw) (wh ww) c", wh=wh, ww=ww)


def window_reverse(windows, window: tuple[int, int], h: int, w: int):
    """[B * nW, wh * ww, C] -> [B, H, W, C], the inverse of ``window_partition``."""
    wh, ww = window
    return rearrange(
        windows, "(b nh nw) (wh ww) c -> b (nh wh) (nw ww) c", nh=h // wh, nw=w // ww, wh=wh
    )


def attention_mask(
    h: int, w: int, window: tuple[int, int], shift: tuple[int, int]
) -> np.ndarray | None:
    """The SW-MSA mask [nW, N, N] (float32): the shifted image is labelled in 3x3 regions
    (split at -window and -shift on each axis, the same slices as the reference, so a zero
    shift on one axis behaves identically), labels are partitioned into windows, and pairs
    with different labels get -100. ``None`` when there is no shift."""
    if not any(shift):
        return None
    (wh, ww), (sh, sw) = window, shift
    img = np.zeros((1, h, w, 1), np.float32)
    cnt = 0
    for hs in ((0, -wh), (-wh, -sh), (-sh, None)):
        for ws in ((0, -ww), (-ww, -sw), (-sw, None)):
            img[:, hs[0] : hs[1], ws[0] : ws[1], :] = cnt
            cnt += 1
    labels = window_partition(img, window)[..., 0]  # [nW, N]
    diff = labels[:, None, :] - labels[:, :, None]  # [nW, N, N]
    return np.where(diff != 0, MASK_VALUE, 0.0).astype(np.float32)


# ----------------------------------------------------------------------------- modules


class SwinPatchEmbed(nn.Module):
    """Non-overlapping patch embedding: conv ``proj`` (kernel = stride = patch) then LayerNorm
    ``norm``; NHWC in, NHWC out (timm ``PatchEmbed(output_fmt='NHWC', norm_layer=LayerNorm)``).

    Attributes: patch_size, embed_dim, dtype, param_dtype.
    """

    patch_size: int
    embed_dim: int
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        x = conv2d(
            self.embed_dim,
            self.patch_size,
            self.patch_size,
            padding=0,
            bias=True,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            kernel_init=nn.initializers.lecun_normal(),
            name="proj",
        )(x)
        return LayerNorm(LN_EPS, dtype=self.dtype, param_dtype=self.param_dtype, name="norm")(x)


class WindowAttention(nn.Module):
    """Window multi-head self-attention with a learned relative position bias (W-MSA/SW-MSA).

    Attributes:
      num_heads: attention heads; window_size: (h, w) of a window.
      qkv_bias: bias on the fused ``qkv`` projection; proj_drop: dropout after ``proj``.
      attn_implementation: passed to ``dot_product_attention`` (None, 'xla', 'cudnn').
      dtype, param_dtype.

    Parameters: ``qkv`` (Dense 3C, rows [q, k, v] x heads), ``proj``,
    ``relative_position_bias_table`` ((2*wh-1)*(2*ww-1), heads).
    """

    num_heads: int
    window_size: tuple[int, int]
    qkv_bias: bool = True
    proj_drop: float = 0.0
    attn_implementation: str | None = None
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x, mask=None, deterministic: bool = True):
        # x: [B*nW, N, C]; mask: None or [nW, N, N] additive (0 / -100).
        bn, n, c = x.shape
        heads = self.num_heads
        wh, ww = self.window_size
        dense = functools.partial(
            nn.Dense, dtype=self.dtype, param_dtype=self.param_dtype, kernel_init=dense_init
        )
        qkv = dense(3 * c, use_bias=self.qkv_bias, name="qkv")(x)
        qkv = qkv.reshape(bn, n, 3, heads, c // heads)  # [B*nW, N, 3, H, D]
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]  # [B*nW, N, H, D]
        table = self.param(
            "relative_position_bias_table",
            nn.initializers.truncated_normal(0.02),
            ((2 * wh - 1) * (2 * ww - 1), heads),
            self.param_dtype,
        )
        index = relative_position_index(wh, ww).reshape(-1)  # constant [N*N]
        rel = table[index].reshape(n, n, heads).transpose(2, 0, 1)  # [H, N, N]
        bias = rel.astype(jnp.float32)[None]  # [1, H, N, N]
        if mask is not None:
            nw = mask.shape[0]
            bias = bias + mask[:, None]  # [nW, H, N, N]
            bias = jnp.broadcast_to(bias[None], (bn // nw, nw, heads, n, n))
            bias = bias.reshape(bn, heads, n, n)  # window w of image b is row b * nW + w
        y = dot_product_attention(q, k, v, bias=bias, implementation=self.attn_implementation)
        y = dense(c, name="proj")(y.reshape(bn, n, c))
        return nn.Dropout(self.proj_drop)(y, deterministic)


class SwinBlock(nn.Module):
    """Swin block: ``x + drop_path(attn(norm1(x)))`` in (shifted) windows, then
    ``x + drop_path(mlp(norm2(x)))``, on NHWC maps.

    Attributes:
      num_heads, window_size: (h, w), shift_size: (h, w) cyclic shift (0: W-MSA).
      mlp_ratio, qkv_bias, proj_drop, drop_path (rate), attn_implementation, dtype,
      param_dtype.

    Call: ``(x, deterministic, shift=None, drop_path_rate=None, drop_path_key=None)``. Under
    ``scan`` ``shift_size`` is the stage's shift and ``shift`` (traced 0/1) switches it on per
    block, and ``drop_path_rate`` (traced) replaces ``drop_path``; ``drop_path_key`` is the
    key ``block_stack`` hands each block.
    """

    num_heads: int
    window_size: tuple[int, int]
    shift_size: tuple[int, int] = (0, 0)
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    proj_drop: float = 0.0
    drop_path: float = 0.0
    attn_implementation: str | None = None
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(
        self,
        x,
        deterministic: bool = True,
        shift=None,
        drop_path_rate=None,
        drop_path_key=None,
    ):
        _, h, w, c = x.shape
        kw = {"dtype": self.dtype, "param_dtype": self.param_dtype}
        shift, on = self.shift_size, shift
        rate = self.drop_path if drop_path_rate is None else drop_path_rate
        mask = attention_mask(h, w, self.window_size, shift)  # numpy constant or None
        if mask is not None and on is not None:
            mask = jnp.asarray(mask) * on.astype(jnp.float32)
        y = LayerNorm(LN_EPS, name="norm1", **kw)(x)
        if any(shift):
            s = (-shift[0], -shift[1]) if on is None else (-shift[0] * on, -shift[1] * on)
            y = jnp.roll(y, s, axis=(1, 2))  # cyclic shift before window attention
        y = window_partition(y, self.window_size)  # [B*nW, N, C]
        y = WindowAttention(
            self.num_heads,
            self.window_size,
            self.qkv_bias,
            self.proj_drop,
            self.attn_implementation,
            name="attn",
            **kw,
        )(y, mask, deterministic)
        y = window_reverse(y, self.window_size, h, w)  # [B, H, W, C]
        if any(shift):
            s = shift if on is None else (shift[0] * on, shift[1] * on)
            y = jnp.roll(y, s, axis=(1, 2))  # undo the shift
        x = x + drop_path(self, y, rate, deterministic, key=drop_path_key)
        y = LayerNorm(LN_EPS, name="norm2", **kw)(x)
        y = Mlp(int(c * self.mlp_ratio), drop=self.proj_drop, name="mlp", **kw)(y, deterministic)
        return x + drop_path(self, y, rate, deterministic, key=drop_path_key, branch=1)


class PatchMerging(nn.Module):
    """2x2 patch merging: concatenate the four neighbours in ``MERGE_ORDER`` (4C), LayerNorm
    ``norm``, then ``reduction`` Linear(4C -> out_dim, no bias).

    Attributes: out_dim, dtype, param_dtype.
    """

    out_dim: int
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        x = jnp.concatenate([x[:, i::2, j::2] for i, j in MERGE_ORDER], -1)  # [B, H/2, W/2, 4C]
        x = LayerNorm(LN_EPS, dtype=self.dtype, param_dtype=self.param_dtype, name="norm")(x)
        return nn.Dense(
            self.out_dim,
            use_bias=False,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            kernel_init=dense_init,
            name="reduction",
        )(x)


class SwinTransformer(nn.Module):
    """Swin Transformer v1, as timm's ``SwinTransformer``.

    Attributes:
      img_size: int or (h, w); fixes each stage's window (shrunk to the stage resolution when
        that is not larger than ``window_size``, with no shift) and the bias-table shapes.
        Inputs may be any multiple of ``input_multiple`` (``img_size`` for the registered
        models); the masks are built for the actual input.
      patch_size, in_chans, num_classes (0: pooled features), global_pool ('avg', 'max').
      embed_dim: stage-0 width (doubles per stage); depths, num_heads: per stage.
      window_size: int, (h, w), or one per stage.
      mlp_ratio, qkv_bias, drop_rate (before the head), proj_drop_rate, drop_path_rate
        (timm's linear schedule over all blocks; timm's default 0.1).
      features_only, out_indices: return the NHWC stage outputs (reductions 4, 8, 16, 32)
        instead of logits.
      scan: ``nn.scan`` over each stage's blocks (the W-MSA/SW-MSA alternation is a scanned
        0/1 input); remat_policy: a ``jaxbones.layers.REMAT_POLICIES`` name.
      attn_implementation: None, 'xla' or 'cudnn' (``dot_product_attention``).
      dtype, param_dtype: compute and parameter dtypes.
    """

    img_size: int | Sequence[int] = 224
    patch_size: int = 4
    in_chans: int = 3
    num_classes: int = 1000
    global_pool: str = "avg"
    embed_dim: int = 96
    depths: Sequence[int] = (2, 2, 6, 2)
    num_heads: Sequence[int] = (3, 6, 12, 24)
    window_size: Any = 7
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    drop_rate: float = 0.0
    proj_drop_rate: float = 0.0
    drop_path_rate: float = 0.1
    features_only: bool = False
    out_indices: Sequence[int] = (0, 1, 2, 3)
    scan: bool = False
    remat_policy: str = "none"
    attn_implementation: str | None = None
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    @property
    def default_input_size(self) -> tuple[int, int, int]:
        h, w = _pair(self.img_size)
        return (h, w, self.in_chans)

    @property
    def num_features(self) -> int:
        return self.embed_dim * 2 ** (len(self.depths) - 1)

    def stage_specs(self) -> list[dict]:
        """Per stage at ``img_size``: ``dim``, ``heads``, ``resolution``, ``window``,
        ``shift`` (all static python values)."""
        n = len(self.depths)
        if len(self.num_heads) != n:
            raise ValueError(
                f"depths {self.depths} and num_heads {self.num_heads} differ in length"
            )
        windows = resolve_window_sizes(self.window_size, n)
        gh, gw = (s // self.patch_size for s in _pair(self.img_size))
        specs = []
        for i in range(n):
            res = (-(-gh // 2**i), -(-gw // 2**i))  # timm's ceil((grid) / 2^i)
            win, shift = window_and_shift(res, windows[i])
            specs.append(
                {
                    "dim": self.embed_dim * 2**i,
                    "heads": self.num_heads[i],
                    "resolution": res,
                    "window": win,
                    "shift": shift,
                }
            )
        return specs

    @property
    def input_multiple(self) -> tuple[int, int]:
        """Heights/widths must be multiples of these: at stage ``s`` the map
        (size / (patch * 2^s)) must split into whole windows (which also makes every 2x2
        merge exact)."""
        mh = mw = self.patch_size * 2 ** (len(self.depths) - 1)
        for i, spec in enumerate(self.stage_specs()):
            scale = self.patch_size * 2**i
            mh = math.lcm(mh, scale * spec["window"][0])
            mw = math.lcm(mw, scale * spec["window"][1])
        return mh, mw

    @property
    def feature_info(self) -> list[dict]:
        levels = [
            {
                "num_chs": self.embed_dim * 2**i,
                "reduction": self.patch_size * 2**i,
                "module": f"layers.{i}",
            }
            for i in range(len(self.depths))
        ]
        n = len(levels)
        for i in self.out_indices:
            if not -n <= i < n:
                raise ValueError(
                    f"out_indices {tuple(self.out_indices)} out of range; valid 0..{n - 1}"
                )
        return [levels[i] for i in self.out_indices]

    def _check(self, x):
        mh, mw = self.input_multiple
        name = "SwinTransformer"
        if mh == mw:
            check_input(x, in_chans=self.in_chans, min_size=mh, multiple=mh, model=name)
            return
        check_input(x, in_chans=self.in_chans, model=name)
        h, w = x.shape[1:3]
        if h % mh or w % mw or h < mh or w < mw:
            ok_h = sorted({max(mh, h // mh * mh), (h // mh + 1) * mh})
            ok_w = sorted({max(mw, w // mw * mw), (w // mw + 1) * mw})
            raise ValueError(
                f"{name} needs heights that are multiples of {mh} and widths that are multiples "
                f"of {mw} (patch x 2^stage x window per stage), got {h}x{w}; sizes that work near "
                f"it: heights {ok_h}, widths {ok_w}; or change img_size / window_size"
            )

    @nn.compact
    def __call__(self, x, train: bool = False):
        self._check(x)
        kw = {"dtype": self.dtype, "param_dtype": self.param_dtype}
        x = x.astype(self.dtype or x.dtype)
        x = SwinPatchEmbed(self.patch_size, self.embed_dim, name="patch_embed", **kw)(x)
        dprs = drop_path_rates(self.drop_path_rate, self.depths)
        feats = []
        for i, spec in enumerate(self.stage_specs()):
            if i > 0:
                x = PatchMerging(spec["dim"], name=f"layers_{i}_downsample", **kw)(x)
            block_kw = {
                "num_heads": spec["heads"],
                "window_size": spec["window"],
                "mlp_ratio": self.mlp_ratio,
                "qkv_bias": self.qkv_bias,
                "proj_drop": self.proj_drop_rate,
                "attn_implementation": self.attn_implementation,
                **kw,
            }
            depth = self.depths[i]
            x, _ = block_stack(
                self,
                functools.partial(SwinBlock, shift_size=spec["shift"], **block_kw),
                x,
                name=f"layers_{i}_blocks",
                depth=depth,
                scan=self.scan,
                args=(not train,),
                deterministic=not train,
                drop_path=dprs[i],
                remat_policy=self.remat_policy,
                # W-MSA in even blocks, SW-MSA in odd ones
                block_kwargs=[{} if j % 2 else {"shift_size": (0, 0)} for j in range(depth)],
                scanned_inputs={"shift": jnp.arange(depth, dtype=jnp.int32) % 2},
            )
            feats.append(x)
        if self.features_only:
            return [feats[i] for i in self.out_indices]
        x = LayerNorm(LN_EPS, name="norm", **kw)(x)
        x = global_pool(x, self.global_pool)
        if not self.num_classes:
            return x
        x = nn.Dropout(self.drop_rate)(x, deterministic=not train)
        return nn.Dense(self.num_classes, kernel_init=dense_init, name="head", **kw)(x)


# timm SwinTransformer.no_weight_decay; layer ids over all stages' blocks in order (SimMIM)
PARAM_GROUPS = ParamGroups(
    no_decay=("relative_position_bias_table",),
    stacks=(r"layers_\d+_blocks",),
    layer_ids=staged_layer_ids(embed=("patch_embed",)),
)


def _reg(name, img_size, window, embed_dim, depths, heads):
    fn = functools.partial(
        SwinTransformer,
        img_size=img_size,
        window_size=window,
        embed_dim=embed_dim,
        depths=depths,
        num_heads=heads,
    )
    register_model(
        name,
        fn,
        family="swin",
        input_size=(img_size, img_size, 3),
        crop_pct=0.9 if img_size == 224 else 1.0,  # timm default_cfgs
        reference=f"timm.models.{name}",
        min_size=img_size,
        param_groups=PARAM_GROUPS,
        partition_rules=TRANSFORMER_RULES,
    )


# timm/models/swin_transformer.py model entrypoints (patch 4 everywhere).
_reg("swin_tiny_patch4_window7_224", 224, 7, 96, (2, 2, 6, 2), (3, 6, 12, 24))
_reg("swin_small_patch4_window7_224", 224, 7, 96, (2, 2, 18, 2), (3, 6, 12, 24))
_reg("swin_base_patch4_window7_224", 224, 7, 128, (2, 2, 18, 2), (4, 8, 16, 32))
_reg("swin_base_patch4_window12_384", 384, 12, 128, (2, 2, 18, 2), (4, 8, 16, 32))
_reg("swin_large_patch4_window7_224", 224, 7, 192, (2, 2, 18, 2), (6, 12, 24, 48))
_reg("swin_large_patch4_window12_384", 384, 12, 192, (2, 2, 18, 2), (6, 12, 24, 48))


# ---------------------------------------------------------------------------------------------
# Pretrained weights: facts from timm's and torchvision's pretrained configs; top-1/top-5
# from timm's results-imagenet.csv at the tag's eval size and crop, or torchvision's weights
# meta. tests/test_pretrained_cfgs.py checks them against the installed libraries. A model's
# first tag is its default.

timm_hub(
    "swin_tiny_patch4_window7_224.ms_in1k",
    interpolation="bicubic",
    license="mit",
    top1=81.388,
    top5=95.54,
)
timm_hub(
    "swin_tiny_patch4_window7_224.ms_in22k_ft_in1k",
    interpolation="bicubic",
    license="mit",
    top1=80.966,
    top5=96.02,
)
timm_hub(
    "swin_tiny_patch4_window7_224.ms_in22k",
    num_classes=21841,
    interpolation="bicubic",
    license="mit",
)
register_pretrained(
    "swin_tiny_patch4_window7_224.ms_in1k_orig",
    url="https://github.com/SwinTransformer/storage/releases/download/v1.0.0/swin_tiny_patch4_window7_224.pth",
    state_dict_key="model",
    source="microsoft/Swin-Transformer",
    interpolation="bicubic",
    license="mit",
    top1=81.388,
    top5=95.54,
    notes="the original release of swin_tiny_patch4_window7_224.ms_in1k (official key layout)",
)
register_pretrained(
    "swin_tiny_patch4_window7_224.ms_in22k_ft_in1k_orig",
    url="https://github.com/SwinTransformer/storage/releases/download/v1.0.8/swin_tiny_patch4_window7_224_22kto1k_finetune.pth",
    state_dict_key="model",
    source="microsoft/Swin-Transformer",
    interpolation="bicubic",
    license="mit",
    top1=80.966,
    top5=96.02,
    notes="the original release of swin_tiny_patch4_window7_224.ms_in22k_ft_in1k (official key layout)",
)
register_pretrained(
    "swin_tiny_patch4_window7_224.ms_in22k_orig",
    url="https://github.com/SwinTransformer/storage/releases/download/v1.0.8/swin_tiny_patch4_window7_224_22k.pth",
    state_dict_key="model",
    source="microsoft/Swin-Transformer",
    num_classes=21841,
    interpolation="bicubic",
    license="mit",
    notes="the original release of swin_tiny_patch4_window7_224.ms_in22k (official key layout)",
)
timm_hub(
    "swin_small_patch4_window7_224.ms_in22k_ft_in1k",
    interpolation="bicubic",
    license="mit",
    top1=83.33,
    top5=96.996,
)
timm_hub(
    "swin_small_patch4_window7_224.ms_in1k",
    interpolation="bicubic",
    license="mit",
    top1=83.228,
    top5=96.326,
)
timm_hub(
    "swin_small_patch4_window7_224.ms_in22k",
    num_classes=21841,
    interpolation="bicubic",
    license="mit",
)
register_pretrained(
    "swin_small_patch4_window7_224.ms_in22k_ft_in1k_orig",
    url="https://github.com/SwinTransformer/storage/releases/download/v1.0.8/swin_small_patch4_window7_224_22kto1k_finetune.pth",
    state_dict_key="model",
    source="microsoft/Swin-Transformer",
    interpolation="bicubic",
    license="mit",
    top1=83.33,
    top5=96.996,
    notes="the original release of swin_small_patch4_window7_224.ms_in22k_ft_in1k (official key layout)",
)
register_pretrained(
    "swin_small_patch4_window7_224.ms_in1k_orig",
    url="https://github.com/SwinTransformer/storage/releases/download/v1.0.0/swin_small_patch4_window7_224.pth",
    state_dict_key="model",
    source="microsoft/Swin-Transformer",
    interpolation="bicubic",
    license="mit",
    top1=83.228,
    top5=96.326,
    notes="the original release of swin_small_patch4_window7_224.ms_in1k (official key layout)",
)
register_pretrained(
    "swin_small_patch4_window7_224.ms_in22k_orig",
    url="https://github.com/SwinTransformer/storage/releases/download/v1.0.8/swin_small_patch4_window7_224_22k.pth",
    state_dict_key="model",
    source="microsoft/Swin-Transformer",
    num_classes=21841,
    interpolation="bicubic",
    license="mit",
    notes="the original release of swin_small_patch4_window7_224.ms_in22k (official key layout)",
)
timm_hub(
    "swin_base_patch4_window7_224.ms_in22k_ft_in1k",
    interpolation="bicubic",
    license="mit",
    top1=85.276,
    top5=97.566,
)
timm_hub(
    "swin_base_patch4_window7_224.ms_in1k",
    interpolation="bicubic",
    license="mit",
    top1=83.604,
    top5=96.45,
)
timm_hub(
    "swin_base_patch4_window7_224.ms_in22k",
    num_classes=21841,
    interpolation="bicubic",
    license="mit",
)
register_pretrained(
    "swin_base_patch4_window7_224.ms_in22k_ft_in1k_orig",
    url="https://github.com/SwinTransformer/storage/releases/download/v1.0.0/swin_base_patch4_window7_224_22kto1k.pth",
    state_dict_key="model",
    source="microsoft/Swin-Transformer",
    interpolation="bicubic",
    license="mit",
    top1=85.276,
    top5=97.566,
    notes="the original release of swin_base_patch4_window7_224.ms_in22k_ft_in1k (official key layout)",
)
register_pretrained(
    "swin_base_patch4_window7_224.ms_in1k_orig",
    url="https://github.com/SwinTransformer/storage/releases/download/v1.0.0/swin_base_patch4_window7_224.pth",
    state_dict_key="model",
    source="microsoft/Swin-Transformer",
    interpolation="bicubic",
    license="mit",
    top1=83.604,
    top5=96.45,
    notes="the original release of swin_base_patch4_window7_224.ms_in1k (official key layout)",
)
register_pretrained(
    "swin_base_patch4_window7_224.ms_in22k_orig",
    url="https://github.com/SwinTransformer/storage/releases/download/v1.0.0/swin_base_patch4_window7_224_22k.pth",
    state_dict_key="model",
    source="microsoft/Swin-Transformer",
    num_classes=21841,
    interpolation="bicubic",
    license="mit",
    notes="the original release of swin_base_patch4_window7_224.ms_in22k (official key layout)",
)
timm_hub(
    "swin_base_patch4_window12_384.ms_in22k_ft_in1k",
    interpolation="bicubic",
    license="mit",
    top1=86.442,
    top5=98.068,
)
timm_hub(
    "swin_base_patch4_window12_384.ms_in1k",
    interpolation="bicubic",
    license="mit",
    top1=84.478,
    top5=96.886,
)
timm_hub(
    "swin_base_patch4_window12_384.ms_in22k",
    num_classes=21841,
    interpolation="bicubic",
    license="mit",
)
register_pretrained(
    "swin_base_patch4_window12_384.ms_in22k_ft_in1k_orig",
    url="https://github.com/SwinTransformer/storage/releases/download/v1.0.0/swin_base_patch4_window12_384_22kto1k.pth",
    state_dict_key="model",
    source="microsoft/Swin-Transformer",
    interpolation="bicubic",
    license="mit",
    top1=86.442,
    top5=98.068,
    notes="the original release of swin_base_patch4_window12_384.ms_in22k_ft_in1k (official key layout)",
)
register_pretrained(
    "swin_base_patch4_window12_384.ms_in1k_orig",
    url="https://github.com/SwinTransformer/storage/releases/download/v1.0.0/swin_base_patch4_window12_384.pth",
    state_dict_key="model",
    source="microsoft/Swin-Transformer",
    interpolation="bicubic",
    license="mit",
    top1=84.478,
    top5=96.886,
    notes="the original release of swin_base_patch4_window12_384.ms_in1k (official key layout)",
)
register_pretrained(
    "swin_base_patch4_window12_384.ms_in22k_orig",
    url="https://github.com/SwinTransformer/storage/releases/download/v1.0.0/swin_base_patch4_window12_384_22k.pth",
    state_dict_key="model",
    source="microsoft/Swin-Transformer",
    num_classes=21841,
    interpolation="bicubic",
    license="mit",
    notes="the original release of swin_base_patch4_window12_384.ms_in22k (official key layout)",
)
timm_hub(
    "swin_large_patch4_window7_224.ms_in22k_ft_in1k",
    interpolation="bicubic",
    license="mit",
    top1=86.32,
    top5=97.89,
)
timm_hub(
    "swin_large_patch4_window7_224.ms_in22k",
    num_classes=21841,
    interpolation="bicubic",
    license="mit",
)
register_pretrained(
    "swin_large_patch4_window7_224.ms_in22k_ft_in1k_orig",
    url="https://github.com/SwinTransformer/storage/releases/download/v1.0.0/swin_large_patch4_window7_224_22kto1k.pth",
    state_dict_key="model",
    source="microsoft/Swin-Transformer",
    interpolation="bicubic",
    license="mit",
    top1=86.32,
    top5=97.89,
    notes="the original release of swin_large_patch4_window7_224.ms_in22k_ft_in1k (official key layout)",
)
register_pretrained(
    "swin_large_patch4_window7_224.ms_in22k_orig",
    url="https://github.com/SwinTransformer/storage/releases/download/v1.0.0/swin_large_patch4_window7_224_22k.pth",
    state_dict_key="model",
    source="microsoft/Swin-Transformer",
    num_classes=21841,
    interpolation="bicubic",
    license="mit",
    notes="the original release of swin_large_patch4_window7_224.ms_in22k (official key layout)",
)
timm_hub(
    "swin_large_patch4_window12_384.ms_in22k_ft_in1k",
    interpolation="bicubic",
    license="mit",
    top1=87.142,
    top5=98.228,
)
timm_hub(
    "swin_large_patch4_window12_384.ms_in22k",
    num_classes=21841,
    interpolation="bicubic",
    license="mit",
)
register_pretrained(
    "swin_large_patch4_window12_384.ms_in22k_ft_in1k_orig",
    url="https://github.com/SwinTransformer/storage/releases/download/v1.0.0/swin_large_patch4_window12_384_22kto1k.pth",
    state_dict_key="model",
    source="microsoft/Swin-Transformer",
    interpolation="bicubic",
    license="mit",
    top1=87.142,
    top5=98.228,
    notes="the original release of swin_large_patch4_window12_384.ms_in22k_ft_in1k (official key layout)",
)
register_pretrained(
    "swin_large_patch4_window12_384.ms_in22k_orig",
    url="https://github.com/SwinTransformer/storage/releases/download/v1.0.0/swin_large_patch4_window12_384_22k.pth",
    state_dict_key="model",
    source="microsoft/Swin-Transformer",
    num_classes=21841,
    interpolation="bicubic",
    license="mit",
    notes="the original release of swin_large_patch4_window12_384.ms_in22k (official key layout)",
)
