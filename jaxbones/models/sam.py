"""Segment Anything (facebookresearch/segment-anything ``segment_anything.modeling``).

Three parts, each a Linen module with the official parameter names:
  ``SamImageEncoder``: ViTDet-style ViT on a padded square image: 16x16 patch embed, learned
    absolute position table [1, img/16, img/16, D], blocks with windowed attention (window 14,
    zero-padded to a multiple of the window) except at ``global_attn_indexes``, decomposed
    relative positions (MViTv2) added to the attention logits, and a neck to 256 channels
    (conv1x1 -> LayerNorm2d -> conv3x3 -> LayerNorm2d, no biases, eps 1e-6).
  ``SamPromptEncoder``: random-Fourier positional encoding (a fixed Gaussian matrix, a buffer
    in torch, here the non-trainable ``buffers`` collection), learned point / box-corner /
    not-a-point embeddings, and a conv stack that downscales a low-res mask prompt 4x.
  ``SamMaskDecoder``: two-way transformer (tokens <-> image, cross attention at half width),
    IoU token + 4 mask tokens (1 single-mask + 3 multimask), 4x transposed-conv upscaling and
    per-token hypernetwork MLPs, an IoU prediction MLP.
``Sam`` holds the three (``image_encoder``, ``prompt_encoder``, ``mask_decoder``) and is what
the registry builds (``sam_vit_b/l/h``).

Layout: NHWC everywhere. Images into ``Sam`` are normalised [B, img, img, 3] (ImageNet mean/std
on [0, 1] pixels, which equals SAM's ``pixel_mean/std`` on [0, 255]), padded bottom/right
(``preprocess``). Masks are NHWC too: mask prompts [B, 4h, 4w, 1], mask logits
[B, 4h, 4w, C] (C = 3 with ``multimask_output``, else 1) where (h, w) = img / 16.

Parity facts: encoder LayerNorm eps 1e-6 (build_sam passes it), LayerNorm2d eps 1e-6, the
two-way transformer's LayerNorms 1e-5 (torch default); exact-erf GELU; ReLU in the
two-way MLPs; rel-pos logits use the *unscaled* q; point coordinates are shifted by +0.5.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from einops import rearrange

from jaxbones.constants import IMAGENET_MEAN, IMAGENET_STD
from jaxbones.layers.activations import get_act
from jaxbones.layers.attention import dot_product_attention
from jaxbones.layers.conv import conv2d
from jaxbones.layers.mlp import Mlp
from jaxbones.layers.norm import LayerNorm
from jaxbones.layers.param_groups import ParamGroups
from jaxbones.layers.partitioning import attention_rules, mlp_rules
from jaxbones.layers.patch_embed import PatchEmbed
from jaxbones.layers.stack import block_stack
from jaxbones.layers.upsample import ConvTranspose2d, resize_to
from jaxbones.registry import register_model, register_pretrained

Dtype = Any

# torch nn.Linear's default init (kaiming_uniform(a=sqrt(5)) == U(+-1/sqrt(fan_in))), which
# segment_anything keeps; uniform draws also compile far faster than truncated normals.
linear_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")

# segment_anything/modeling/sam.py: Sam(pixel_mean=..., pixel_std=...) on [0, 255] pixels.
PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)


# ----------------------------------------------------------------------------- rel-pos


def linear_resize_matrix(in_size: int, out_size: int) -> np.ndarray:
    """[out, in] float64 weights of ``F.interpolate(mode='linear', align_corners=False)``:
    src = (i + 0.5) * in / out - 0.5 clamped at 0, taps floor(src) and floor(src) + 1
    (clamped to the last index)."""
    w = np.zeros((out_size, in_size))
    scale = in_size / out_size
    for i in range(out_size):
        src = max((i + 0.5) * scale - 0.5, 0.0)
        i0 = min(math.floor(src), in_size - 1)
        i1 = min(i0 + 1, in_size - 1)
        lam = src - i0
        w[i, i0] += 1.0 - lam
        w[i, i1] += lam
    return w


def resize_rel_pos(rel_pos, length: int):
    """Linear resize of a [L, C] relative-position table to [length, C] (numpy or jax), as
    segment_anything's ``get_rel_pos`` does when the table was trained for another size."""
    if rel_pos.shape[0] == length:
        return rel_pos
    w = linear_resize_matrix(rel_pos.shape[0], length)
    if isinstance(rel_pos, np.ndarray):
        return (w @ rel_pos.astype(np.float64)).astype(rel_pos.dtype)
    return jnp.asarray(w, jnp.float32) @ rel_pos.astype(jnp.float32)


def rel_pos_index(q_size: int, k_size: int) -> np.ndarray:
    """[q_size, k_size] int table indices of ``get_rel_pos``: query/key coordinates are scaled
    to the longer side, offset so the most negative distance is row 0 (float32 as torch,
    truncated like ``.long()``)."""
    q = np.arange(q_size, dtype=np.float32)[:, None] * np.float32(max(k_size / q_size, 1.0))
    k = np.arange(k_size, dtype=np.float32)[None, :] * np.float32(max(q_size / k_size, 1.0))
    rel = (q - k) + np.float32((k_size - 1) * max(q_size / k_size, 1.0))
    return rel.astype(np.int64)


def get_rel_pos(q_size: int, k_size: int, rel_pos):
    """segment_anything ``get_rel_pos``: [q_size, k_size, C] embeddings of the relative
    positions, from a [L, C] table linearly resized to 2 * max(q, k) - 1 rows if needed."""
    table = resize_rel_pos(rel_pos, 2 * max(q_size, k_size) - 1)
    return table[rel_pos_index(q_size, k_size)]


def decomposed_rel_pos_bias(q, rel_pos_h, rel_pos_w, q_size, k_size):
    """MViTv2 decomposed relative positions as an additive attention-logit bias.

    q: [B, qh * qw, H, D] (unscaled queries); returns [B, H, qh * qw, kh * kw] with
    bias[b, n, (i, j), (k, l)] = q[b, (i, j), n] . Rh[i, k] + q[b, (i, j), n] . Rw[j, l].
    """
    qh, qw = q_size
    kh, kw = k_size
    rh = get_rel_pos(qh, kh, rel_pos_h).astype(q.dtype)  # [qh, kh, D]
    rw = get_rel_pos(qw, kw, rel_pos_w).astype(q.dtype)  # [qw, kw, D]
    b, _, nh, d = q.shape
    rq = q.reshape(b, qh, qw, nh, d)
    rel_h = jnp.einsum("bhwnc,hkc->bnhwk", rq, rh)  # [B, H, qh, qw, kh]
    rel_w = jnp.einsum("bhwnc,wkc->bnhwk", rq, rw)  # [B, H, qh, qw, kw]
    bias = rel_h[..., :, None] + rel_w[..., None, :]  # [B, H, qh, qw, kh, kw]
    return bias.reshape(b, nh, qh * qw, kh * kw)


def window_partition(x, window: int):
    """[B, H, W, C] -> ([B * nW, window, window, C], (Hp, Wp)): zero-pads bottom/right to a
    multiple of ``window`` first (segment_anything ``window_partition``)."""
    h, w = x.shape[1:3]
    ph, pw = (-h) % window, (-w) % window
    if ph or pw:
        x = jnp.pad(x, ((0, 0), (0, ph), (0, pw), (0, 0)))
    windows = rearrange(x, "b (nh p) (nw q) c -> (b nh nw) p q c", p=window, q=window)
    return windows, (h + ph, w + pw)


def window_unpartition(windows, window: int, pad_hw, hw):
    """Inverse of ``window_partition``; crops the padding."""
    hp, wp = pad_hw
    h, w = hw
    x = rearrange(windows, "(b nh nw) p q c -> b (nh p) (nw q) c", nh=hp // window, nw=wp // window)
    return x[:, :h, :w]


# ----------------------------------------------------------------------------- image encoder


class SamAttention(nn.Module):
    """Image-encoder attention (``Attention`` in image_encoder.py): fused ``qkv``, ``proj``,
    and per-axis relative-position tables ``rel_pos_h`` / ``rel_pos_w`` [2 * size - 1, D_head]
    for an ``input_size`` (the window, or the whole grid for global blocks).

    Attributes:
      num_heads; qkv_bias; use_rel_pos; input_size: (h, w) the rel-pos tables are built for;
      attn_implementation: ``dot_product_attention`` kernel; dtype, param_dtype.
    """

    num_heads: int
    qkv_bias: bool = True
    use_rel_pos: bool = True
    input_size: tuple[int, int] = (14, 14)
    attn_implementation: str | None = None
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        b, h, w, c = x.shape
        hd = c // self.num_heads
        dense = functools.partial(
            nn.Dense, dtype=self.dtype, param_dtype=self.param_dtype, kernel_init=linear_init
        )
        qkv = dense(3 * c, use_bias=self.qkv_bias, name="qkv")(x)
        qkv = qkv.reshape(b, h * w, 3, self.num_heads, hd)  # torch row order [q, k, v][head]
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]  # each [B, L, H, D]
        bias = None
        if self.use_rel_pos:
            ih, iw = self.input_size
            init = nn.initializers.zeros  # torch: rel_pos_zero_init=True
            rph = self.param("rel_pos_h", init, (2 * ih - 1, hd), self.param_dtype)
            rpw = self.param("rel_pos_w", init, (2 * iw - 1, hd), self.param_dtype)
            bias = decomposed_rel_pos_bias(q, rph, rpw, (h, w), (h, w))
        out = dot_product_attention(q, k, v, bias=bias, implementation=self.attn_implementation)
        out = out.reshape(b, h, w, c)  # heads contiguous, as torch
        return dense(c, name="proj")(out)


class SamBlock(nn.Module):
    """Image-encoder block: x + attn(norm1(x)) (windowed with padding when ``window_size`` >
    0), then x + mlp(norm2(x)). Submodules ``norm1``, ``attn``, ``norm2``, ``mlp`` (``fc1``,
    ``fc2`` = torch ``lin1``, ``lin2``).

    Attributes:
      num_heads, mlp_ratio, qkv_bias, norm_eps, use_rel_pos; window_size: 0 for global
      attention; input_size: the patch grid (rel-pos size of global blocks);
      attn_implementation, dtype, param_dtype.
    """

    num_heads: int
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    norm_eps: float = 1e-6
    use_rel_pos: bool = True
    window_size: int = 0
    input_size: tuple[int, int] = (64, 64)
    attn_implementation: str | None = None
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        kw = {"dtype": self.dtype, "param_dtype": self.param_dtype}
        shortcut = x
        x = LayerNorm(self.norm_eps, name="norm1", **kw)(x)
        ws = self.window_size
        h, w = x.shape[1:3]
        if ws > 0:
            x, pad_hw = window_partition(x, ws)  # [B * nW, ws, ws, C]
        x = SamAttention(
            self.num_heads,
            qkv_bias=self.qkv_bias,
            use_rel_pos=self.use_rel_pos,
            input_size=(ws, ws) if ws > 0 else tuple(self.input_size),
            attn_implementation=self.attn_implementation,
            name="attn",
            **kw,
        )(x)
        if ws > 0:
            x = window_unpartition(x, ws, pad_hw, (h, w))
        x = shortcut + x
        y = Mlp(int(x.shape[-1] * self.mlp_ratio), act="gelu", name="mlp", **kw)(
            LayerNorm(self.norm_eps, name="norm2", **kw)(x)
        )
        return x + y


def windowed_runs(depth: int, global_attn_indexes: Sequence[int]) -> dict[int, int]:
    """{first block: length} of the runs of 2+ consecutive windowed blocks, which ``scan``
    stacks (vit_b: {0: 2, 3: 2, 6: 2, 9: 2}; vit_h: {0: 7, 8: 7, 16: 7, 24: 7})."""
    runs, start = {}, None
    for i in range(depth + 1):
        windowed = i < depth and i not in global_attn_indexes
        if windowed and start is None:
            start = i
        elif not windowed and start is not None:
            if i - start >= 2:
                runs[start] = i - start
            start = None
    return runs


class SamImageEncoder(nn.Module):
    """SAM's ViT image encoder (``ImageEncoderViT``): [B, img, img, 3] -> [B, img/16,
    img/16, out_chans].

    Attributes:
      img_size, patch_size, in_chans, embed_dim, depth, num_heads, mlp_ratio, qkv_bias,
      out_chans: as torch; norm_eps: block LayerNorm eps (1e-6 in build_sam);
      use_abs_pos: learned ``pos_embed`` [1, img/p, img/p, D]; use_rel_pos: decomposed
      relative positions; window_size: window of the non-global blocks (0: all global);
      global_attn_indexes: blocks with global attention; remat_policy: name in
      ``jaxbones.layers.REMAT_POLICIES`` applied to every block; scan: ``nn.scan`` over each
      run of 2+ consecutive windowed blocks (global blocks differ in shape and stay
      unrolled); a run starting at block i is one ``scan_{i}`` subtree with a leading
      [run length] axis (``windowed_runs``); attn_implementation;
      dtype, param_dtype.
    Submodules: ``patch_embed.proj``, ``blocks_{i}``, ``neck_0`` (conv1x1), ``neck_1``
    (LayerNorm2d), ``neck_2`` (conv3x3), ``neck_3`` (LayerNorm2d); param ``pos_embed``.
    """

    img_size: int = 1024
    patch_size: int = 16
    in_chans: int = 3
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    out_chans: int = 256
    qkv_bias: bool = True
    norm_eps: float = 1e-6
    use_abs_pos: bool = True
    use_rel_pos: bool = True
    window_size: int = 14
    global_attn_indexes: Sequence[int] = (2, 5, 8, 11)
    remat_policy: str = "none"
    scan: bool = False
    attn_implementation: str | None = None
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    @property
    def grid_size(self) -> int:
        return self.img_size // self.patch_size

    @nn.compact
    def __call__(self, x):
        kw = {"dtype": self.dtype, "param_dtype": self.param_dtype}
        g = self.grid_size
        if x.shape[1:3] != (g * self.patch_size,) * 2:
            raise ValueError(
                f"SAM image encoder built for {self.img_size}x{self.img_size} images got "
                f"{x.shape[1]}x{x.shape[2]}; pad images to img_size (Sam.preprocess / "
                f"SamPredictor do) or create the model with img_size={max(x.shape[1:3])}"
            )
        x = x.astype(self.dtype or x.dtype)
        x = PatchEmbed(self.embed_dim, self.patch_size, flatten=False, name="patch_embed", **kw)(
            x
        )  # [B, g, g, D]
        if self.use_abs_pos:
            pos = self.param(
                "pos_embed", nn.initializers.zeros, (1, g, g, self.embed_dim), self.param_dtype
            )
            x = x + pos.astype(x.dtype)
        cfg = dict(
            mlp_ratio=self.mlp_ratio,
            qkv_bias=self.qkv_bias,
            norm_eps=self.norm_eps,
            use_rel_pos=self.use_rel_pos,
            input_size=(g, g),
            attn_implementation=self.attn_implementation,
            **kw,
        )
        runs = windowed_runs(self.depth, self.global_attn_indexes) if self.scan else {}
        i = 0
        while i < self.depth:
            # a run of identical windowed blocks i .. i + n - 1 is one scanned subtree
            n = runs.get(i, 1)
            window = 0 if i in self.global_attn_indexes else self.window_size
            x, _ = block_stack(
                self,
                functools.partial(SamBlock, num_heads=self.num_heads, window_size=window, **cfg),
                x,
                name="blocks",
                depth=n,
                scan=i in runs,
                remat_policy=self.remat_policy,
                start=i,
                stacked_name=f"scan_{i}",
            )
            i += n
        # neck: LayerNorm2d(eps=1e-6) on NHWC is a LayerNorm over channels
        x = conv2d(self.out_chans, 1, padding=0, name="neck_0", **kw)(x)
        x = LayerNorm(1e-6, name="neck_1", **kw)(x)
        x = conv2d(self.out_chans, 3, padding=1, name="neck_2", **kw)(x)
        return LayerNorm(1e-6, name="neck_3", **kw)(x)


# ----------------------------------------------------------------------------- prompt encoder


class _Embedding(nn.Module):
    """A learned table ``weight`` [num, features] (torch ``nn.Embedding``), returned whole."""

    num: int
    features: int
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self):
        init = nn.initializers.normal(1.0)  # torch nn.Embedding: N(0, 1)
        return self.param("weight", init, (self.num, self.features), self.param_dtype)


class SamPromptEncoder(nn.Module):
    """SAM's prompt encoder (``PromptEncoder``).

    ``__call__(points, labels, boxes, masks, batch_size=1)`` -> (sparse [B, N, C], dense
    [B, h, w, C]); ``dense_pe()`` -> [h, w, C] positional encoding of the embedding grid.
    Points: [B, N, 2] (x, y) pixels of the padded input image, labels [B, N] (1 foreground,
    0 background, -1 padding); a padding point is appended when no box is given. Boxes:
    [B, 4] xyxy. Masks: [B, 4h, 4w, 1] logits. Without prompts the batch is ``batch_size``.

    Attributes:
      embed_dim; image_embedding_size: (h, w) of the image embedding; input_image_size:
      (H, W) of the padded input; mask_in_chans: hidden channels of the mask stack;
      dtype, param_dtype.
    Variables: ``buffers/pe_layer/positional_encoding_gaussian_matrix`` [2, C/2] (fixed),
    params ``point_embeddings_{0..3}``, ``not_a_point_embed``, ``no_mask_embed``,
    ``mask_downscaling_{0,1,3,4,6}``.
    """

    embed_dim: int = 256
    image_embedding_size: tuple[int, int] = (64, 64)
    input_image_size: tuple[int, int] = (1024, 1024)
    mask_in_chans: int = 16
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    def setup(self):
        n = self.embed_dim // 2
        # torch: register_buffer(scale * randn(2, C/2)), scale 1; fixed, not a parameter
        self.gaussian = self.variable(
            "buffers",
            "positional_encoding_gaussian_matrix",
            lambda: jax.random.normal(self.make_rng("params"), (2, n), jnp.float32),
        )
        emb = functools.partial(_Embedding, features=self.embed_dim, param_dtype=self.param_dtype)
        # 0/1: negative/positive point, 2/3: box top-left/bottom-right corner
        self.point_embeddings = [emb(1) for _ in range(4)]  # named point_embeddings_{i}
        self.not_a_point_embed = emb(1)
        self.no_mask_embed = emb(1)
        kw = {"dtype": self.dtype, "param_dtype": self.param_dtype}
        c = self.mask_in_chans
        self.mask_downscaling_0 = conv2d(c // 4, 2, stride=2, padding=0, bias=True, **kw)
        self.mask_downscaling_1 = LayerNorm(1e-6, **kw)
        self.mask_downscaling_3 = conv2d(c, 2, stride=2, padding=0, bias=True, **kw)
        self.mask_downscaling_4 = LayerNorm(1e-6, **kw)
        self.mask_downscaling_6 = conv2d(self.embed_dim, 1, padding=0, bias=True, **kw)

    def _pe(self, coords):
        """Random Fourier features of coordinates in [0, 1]^2: [..., 2] -> [..., C]."""
        coords = 2.0 * coords.astype(jnp.float32) - 1.0
        coords = coords @ self.gaussian.value
        coords = coords * np.float32(2 * np.pi)
        return jnp.concatenate([jnp.sin(coords), jnp.cos(coords)], axis=-1)

    def dense_pe(self):
        """[h, w, C] encoding of the embedding grid's pixel centres (torch ``get_dense_pe``
        permuted to HWC)."""
        h, w = self.image_embedding_size
        y = (jnp.arange(h, dtype=jnp.float32) + 0.5) / h
        x = (jnp.arange(w, dtype=jnp.float32) + 0.5) / w
        grid = jnp.stack(jnp.broadcast_arrays(x[None, :], y[:, None]), axis=-1)  # [h, w, 2]
        return self._pe(grid)

    def _pe_coords(self, coords):
        h, w = self.input_image_size
        return self._pe(coords / jnp.asarray([w, h], jnp.float32))

    def _embed_masks(self, masks):
        x = get_act("gelu")(self.mask_downscaling_1(self.mask_downscaling_0(masks)))
        x = get_act("gelu")(self.mask_downscaling_4(self.mask_downscaling_3(x)))
        return self.mask_downscaling_6(x)  # [B, h, w, C]

    def __call__(self, points=None, labels=None, boxes=None, masks=None, batch_size: int = 1):
        pe = [e() for e in self.point_embeddings]  # each [1, C]
        not_a_point, no_mask = self.not_a_point_embed(), self.no_mask_embed()
        if points is not None:
            bs = points.shape[0]
        elif boxes is not None:
            bs = boxes.shape[0]
        elif masks is not None:
            bs = masks.shape[0]
        else:
            bs = batch_size
        sparse = [jnp.zeros((bs, 0, self.embed_dim), jnp.float32)]
        if points is not None:
            if labels is None:
                raise ValueError("point prompts need labels (1 foreground, 0 background)")
            points = points.astype(jnp.float32) + 0.5  # pixel centres
            labels = labels.astype(jnp.int32)
            if boxes is None:  # a padding point (label -1) when no box follows
                points = jnp.concatenate([points, jnp.zeros((bs, 1, 2), jnp.float32)], 1)
                labels = jnp.concatenate([labels, -jnp.ones((bs, 1), jnp.int32)], 1)
            emb = self._pe_coords(points)  # [B, N, C]
            lab = labels[..., None]
            emb = jnp.where(lab == -1, not_a_point[0], emb)
            emb = emb + jnp.where(lab == 0, pe[0][0], 0.0) + jnp.where(lab == 1, pe[1][0], 0.0)
            sparse.append(emb)
        if boxes is not None:
            corners = (boxes.astype(jnp.float32) + 0.5).reshape(-1, 2, 2)  # [B, 2, (x, y)]
            emb = self._pe_coords(corners) + jnp.concatenate([pe[2], pe[3]], 0)
            sparse.append(emb)
        sparse = jnp.concatenate(sparse, axis=1)  # [B, N, C]
        if masks is not None:
            dense = self._embed_masks(masks)
        else:
            if self.is_initializing():  # create the mask stack's parameters
                h, w = self.image_embedding_size
                self._embed_masks(jnp.zeros((1, 4 * h, 4 * w, 1), jnp.float32))
            h, w = self.image_embedding_size
            dense = jnp.broadcast_to(no_mask[0], (bs, h, w, self.embed_dim))
        return sparse, dense


# ----------------------------------------------------------------------------- mask decoder


class TokenAttention(nn.Module):
    """Two-way-transformer attention (transformer.py ``Attention``): separate ``q_proj``,
    ``k_proj``, ``v_proj`` to ``dim / downsample_rate``, heads, ``out_proj`` back to dim.

    Attributes: num_heads; downsample_rate; dtype, param_dtype.
    """

    num_heads: int
    downsample_rate: int = 1
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, q, k, v):
        dim = q.shape[-1]
        inner = dim // self.downsample_rate
        if inner % self.num_heads:
            raise ValueError(f"num_heads={self.num_heads} must divide {inner}")
        dense = functools.partial(
            nn.Dense, dtype=self.dtype, param_dtype=self.param_dtype, kernel_init=linear_init
        )

        def heads(t):  # [B, N, inner] -> [B, N, H, inner / H]
            return t.reshape(*t.shape[:2], self.num_heads, inner // self.num_heads)

        q = heads(dense(inner, name="q_proj")(q))
        k = heads(dense(inner, name="k_proj")(k))
        v = heads(dense(inner, name="v_proj")(v))
        out = dot_product_attention(q, k, v)  # scale 1 / sqrt(head dim), as torch
        return dense(dim, name="out_proj")(out.reshape(*out.shape[:2], inner))


class TwoWayBlock(nn.Module):
    """``TwoWayAttentionBlock``: token self-attention, token->image cross attention, token
    MLP (ReLU), image->token cross attention; post-norms ``norm1..norm4`` (eps 1e-5).

    Attributes: num_heads, mlp_dim, downsample_rate (cross attention), skip_first_layer_pe,
    dtype, param_dtype.
    """

    num_heads: int
    mlp_dim: int = 2048
    downsample_rate: int = 2
    skip_first_layer_pe: bool = False
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, queries, keys, query_pe, key_pe):
        kw = {"dtype": self.dtype, "param_dtype": self.param_dtype}
        norm = functools.partial(LayerNorm, 1e-5, **kw)  # torch nn.LayerNorm default
        attn = functools.partial(TokenAttention, self.num_heads, **kw)
        if self.skip_first_layer_pe:
            queries = attn(name="self_attn")(queries, queries, queries)
        else:
            q = queries + query_pe
            queries = queries + attn(name="self_attn")(q, q, queries)
        queries = norm(name="norm1")(queries)
        q, k = queries + query_pe, keys + key_pe
        cross = attn(self.downsample_rate, name="cross_attn_token_to_image")
        queries = norm(name="norm2")(queries + cross(q, k, keys))
        mlp = Mlp(self.mlp_dim, act="relu", name="mlp", **kw)
        queries = norm(name="norm3")(queries + mlp(queries))
        q, k = queries + query_pe, keys + key_pe
        cross = attn(self.downsample_rate, name="cross_attn_image_to_token")
        keys = norm(name="norm4")(keys + cross(k, q, queries))
        return queries, keys


class TwoWayTransformer(nn.Module):
    """``TwoWayTransformer``: ``layers_{i}`` then ``final_attn_token_to_image`` and
    ``norm_final_attn``. Returns (tokens [B, N, C], image tokens [B, HW, C]).

    Attributes: depth, num_heads, mlp_dim, downsample_rate, dtype, param_dtype.
    """

    depth: int = 2
    num_heads: int = 8
    mlp_dim: int = 2048
    downsample_rate: int = 2
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, image_embedding, image_pe, point_embedding):
        kw = {"dtype": self.dtype, "param_dtype": self.param_dtype}
        b, h, w, c = image_embedding.shape
        keys = image_embedding.reshape(b, h * w, c)  # [B, HW, C] row-major as torch
        key_pe = image_pe.reshape(b, h * w, c)
        queries = point_embedding
        for i in range(self.depth):
            queries, keys = TwoWayBlock(
                self.num_heads,
                self.mlp_dim,
                self.downsample_rate,
                skip_first_layer_pe=i == 0,
                name=f"layers_{i}",
                **kw,
            )(queries, keys, point_embedding, key_pe)
        q, k = queries + point_embedding, keys + key_pe
        attn = TokenAttention(
            self.num_heads, self.downsample_rate, name="final_attn_token_to_image", **kw
        )
        queries = queries + attn(q, k, keys)
        return LayerNorm(1e-5, name="norm_final_attn", **kw)(queries), keys


class MLP(nn.Module):
    """MaskFormer MLP (mask_decoder.py ``MLP``): ``layers_{i}`` Dense, ReLU between.

    Attributes: hidden_dim, output_dim, num_layers, dtype, param_dtype.
    """

    hidden_dim: int
    output_dim: int
    num_layers: int
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        dims = [self.hidden_dim] * (self.num_layers - 1) + [self.output_dim]
        for i, d in enumerate(dims):
            x = nn.Dense(
                d,
                dtype=self.dtype,
                param_dtype=self.param_dtype,
                kernel_init=linear_init,
                name=f"layers_{i}",
            )(x)
            if i < self.num_layers - 1:
                x = jax.nn.relu(x)
        return x


class SamMaskDecoder(nn.Module):
    """SAM's mask decoder (``MaskDecoder``).

    ``__call__(image_embeddings [Bi, h, w, C], image_pe [h, w, C], sparse [B, N, C], dense
    [B, h, w, C], multimask_output)`` -> (mask logits [B, 4h, 4w, M], iou [B, M]) with M = 3
    (multimask: tokens 1..3) or 1 (token 0). ``Bi`` is 1 (one image, many prompts) or B.

    Attributes:
      transformer_dim; num_multimask_outputs; iou_head_depth, iou_head_hidden_dim;
      transformer_depth, transformer_heads, transformer_mlp_dim, downsample_rate: the
      ``TwoWayTransformer``; dtype, param_dtype.
    Submodules: ``transformer``, ``iou_token``, ``mask_tokens``, ``output_upscaling_0``
    (ConvTranspose2d), ``output_upscaling_1`` (LayerNorm2d), ``output_upscaling_3``
    (ConvTranspose2d), ``output_hypernetworks_mlps_{i}``, ``iou_prediction_head``.
    """

    transformer_dim: int = 256
    num_multimask_outputs: int = 3
    iou_head_depth: int = 3
    iou_head_hidden_dim: int = 256
    transformer_depth: int = 2
    transformer_heads: int = 8
    transformer_mlp_dim: int = 2048
    downsample_rate: int = 2
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, image_embeddings, image_pe, sparse, dense, multimask_output: bool = True):
        kw = {"dtype": self.dtype, "param_dtype": self.param_dtype}
        c = self.transformer_dim
        n_masks = self.num_multimask_outputs + 1
        iou_token = _Embedding(1, c, self.param_dtype, name="iou_token")()
        mask_tokens = _Embedding(n_masks, c, self.param_dtype, name="mask_tokens")()
        b = sparse.shape[0]
        out_tokens = jnp.concatenate([iou_token, mask_tokens], 0)  # [1 + M, C]
        out_tokens = jnp.broadcast_to(out_tokens, (b, *out_tokens.shape))
        tokens = jnp.concatenate([out_tokens, sparse.astype(out_tokens.dtype)], 1)
        bi = image_embeddings.shape[0]
        if b % bi:
            raise ValueError(f"{b} prompt sets for {bi} images: use 1 image or one per prompt")
        src = jnp.repeat(image_embeddings, b // bi, axis=0) + dense  # [B, h, w, C]
        pos = jnp.broadcast_to(image_pe, src.shape)
        _, h, w, _ = src.shape
        hs, src = TwoWayTransformer(
            self.transformer_depth,
            self.transformer_heads,
            self.transformer_mlp_dim,
            self.downsample_rate,
            name="transformer",
            **kw,
        )(src, pos, tokens)
        iou_out = hs[:, 0]  # [B, C]
        mask_out = hs[:, 1 : 1 + n_masks]  # [B, M, C]
        x = src.reshape(b, h, w, c)
        x = ConvTranspose2d(c // 4, 2, 2, name="output_upscaling_0", **kw)(x)
        x = get_act("gelu")(LayerNorm(1e-6, name="output_upscaling_1", **kw)(x))
        x = ConvTranspose2d(c // 8, 2, 2, name="output_upscaling_3", **kw)(x)
        x = get_act("gelu")(x)  # [B, 4h, 4w, C/8]
        hyper = jnp.stack(
            [
                MLP(c, c // 8, 3, name=f"output_hypernetworks_mlps_{i}", **kw)(mask_out[:, i])
                for i in range(n_masks)
            ],
            axis=1,
        )  # [B, M, C/8]
        masks = jnp.einsum("bmc,bhwc->bhwm", hyper, x)  # [B, 4h, 4w, M]
        iou = MLP(
            self.iou_head_hidden_dim, n_masks, self.iou_head_depth, name="iou_prediction_head", **kw
        )(iou_out)
        sl = slice(1, None) if multimask_output else slice(0, 1)
        return masks[..., sl], iou[:, sl]


# ----------------------------------------------------------------------------- full model


def preprocess(images, img_size: int, mean=PIXEL_MEAN, std=PIXEL_STD):
    """``Sam.preprocess`` on NHWC [0, 255] pixels: normalise, then zero-pad bottom/right to
    img_size x img_size (the long side must already be img_size: ``ResizeLongestSide``)."""
    x = (jnp.asarray(images, jnp.float32) - jnp.asarray(mean)) / jnp.asarray(std)
    h, w = x.shape[1:3]
    if h > img_size or w > img_size:
        raise ValueError(f"image {h}x{w} is larger than img_size={img_size}; resize it first")
    return jnp.pad(x, ((0, 0), (0, img_size - h), (0, img_size - w), (0, 0)))


def postprocess_masks(masks, img_size: int, input_size, original_size):
    """``Sam.postprocess_masks`` on NHWC logits [B, h, w, M]: bilinear (align_corners=False)
    to img_size, crop the padding to ``input_size`` (H, W), bilinear to ``original_size``."""
    masks = resize_to(masks, (img_size, img_size))
    masks = masks[:, : input_size[0], : input_size[1]]
    return resize_to(masks, tuple(original_size))


class Sam(nn.Module):
    """Segment Anything (``segment_anything.modeling.Sam``).

    ``apply(variables, images, point_coords=None, point_labels=None, boxes=None,
    mask_inputs=None, multimask_output=True)`` on normalised, padded images [B, img, img, 3]
    with one prompt set per image returns ``{'low_res_logits': [B, img/4, img/4, M],
    'iou_predictions': [B, M]}``. Without prompts each image gets the empty prompt. Methods
    for the predictor (``apply(..., method=...)``): ``encode_image``, ``encode_prompts``,
    ``decode_masks``. ``preprocess`` / ``postprocess_masks`` are the module-level functions.

    Attributes:
      img_size, patch_size, in_chans; encoder_embed_dim, encoder_depth, encoder_num_heads,
      encoder_global_attn_indexes, window_size, mlp_ratio, norm_eps: the image encoder;
      prompt_embed_dim (encoder neck and decoder width, 256); mask_in_chans (16);
      decoder_depth (2), decoder_num_heads (8), decoder_mlp_dim (2048), num_multimask_outputs
      (3), iou_head_depth (3), iou_head_hidden_dim (256); use_abs_pos, use_rel_pos;
      pixel_mean, pixel_std ([0, 255] scale, for ``preprocess``); remat_policy, scan (image
      encoder blocks, see ``SamImageEncoder``); attn_implementation (image encoder); dtype, param_dtype.
    """

    img_size: int = 1024
    patch_size: int = 16
    in_chans: int = 3
    encoder_embed_dim: int = 768
    encoder_depth: int = 12
    encoder_num_heads: int = 12
    encoder_global_attn_indexes: Sequence[int] = (2, 5, 8, 11)
    window_size: int = 14
    mlp_ratio: float = 4.0
    norm_eps: float = 1e-6
    use_abs_pos: bool = True
    use_rel_pos: bool = True
    prompt_embed_dim: int = 256
    mask_in_chans: int = 16
    decoder_depth: int = 2
    decoder_num_heads: int = 8
    decoder_mlp_dim: int = 2048
    num_multimask_outputs: int = 3
    iou_head_depth: int = 3
    iou_head_hidden_dim: int = 256
    pixel_mean: Sequence[float] = PIXEL_MEAN
    pixel_std: Sequence[float] = PIXEL_STD
    remat_policy: str = "none"
    scan: bool = False
    attn_implementation: str | None = None
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    @property
    def embedding_size(self) -> tuple[int, int]:
        g = self.img_size // self.patch_size
        return g, g

    @property
    def default_input_size(self) -> tuple[int, int, int]:
        return self.img_size, self.img_size, self.in_chans

    def setup(self):
        kw = {"dtype": self.dtype, "param_dtype": self.param_dtype}
        self.image_encoder = SamImageEncoder(
            img_size=self.img_size,
            patch_size=self.patch_size,
            in_chans=self.in_chans,
            embed_dim=self.encoder_embed_dim,
            depth=self.encoder_depth,
            num_heads=self.encoder_num_heads,
            mlp_ratio=self.mlp_ratio,
            out_chans=self.prompt_embed_dim,
            norm_eps=self.norm_eps,
            use_abs_pos=self.use_abs_pos,
            use_rel_pos=self.use_rel_pos,
            window_size=self.window_size,
            global_attn_indexes=tuple(self.encoder_global_attn_indexes),
            remat_policy=self.remat_policy,
            scan=self.scan,
            attn_implementation=self.attn_implementation,
            **kw,
        )
        self.prompt_encoder = SamPromptEncoder(
            embed_dim=self.prompt_embed_dim,
            image_embedding_size=self.embedding_size,
            input_image_size=(self.img_size, self.img_size),
            mask_in_chans=self.mask_in_chans,
            **kw,
        )
        self.mask_decoder = SamMaskDecoder(
            transformer_dim=self.prompt_embed_dim,
            num_multimask_outputs=self.num_multimask_outputs,
            iou_head_depth=self.iou_head_depth,
            iou_head_hidden_dim=self.iou_head_hidden_dim,
            transformer_depth=self.decoder_depth,
            transformer_heads=self.decoder_num_heads,
            transformer_mlp_dim=self.decoder_mlp_dim,
            **kw,
        )

    def encode_image(self, images):
        """Normalised padded images [B, img, img, 3] -> embeddings [B, h, w, C]."""
        return self.image_encoder(images)

    def encode_prompts(self, point_coords=None, point_labels=None, boxes=None, mask_inputs=None):
        """(sparse [B, N, C], dense [B, h, w, C]); see ``SamPromptEncoder``."""
        return self.prompt_encoder(point_coords, point_labels, boxes, mask_inputs)

    def dense_pe(self):
        """[h, w, C] positional encoding of the image-embedding grid."""
        return self.prompt_encoder.dense_pe()

    def decode_masks(self, image_embeddings, sparse, dense, multimask_output: bool = True):
        """(mask logits [B, 4h, 4w, M], iou [B, M]) from image and prompt embeddings."""
        return self.mask_decoder(
            image_embeddings, self.prompt_encoder.dense_pe(), sparse, dense, multimask_output
        )

    def __call__(
        self,
        images,
        point_coords=None,
        point_labels=None,
        boxes=None,
        mask_inputs=None,
        multimask_output: bool = True,
        train: bool = False,
    ):
        del train  # no dropout / stochastic depth in SAM
        emb = self.image_encoder(images)
        sparse, dense = self.prompt_encoder(
            point_coords, point_labels, boxes, mask_inputs, batch_size=images.shape[0]
        )
        masks, iou = self.mask_decoder(
            emb, self.prompt_encoder.dense_pe(), sparse, dense, multimask_output
        )
        return {"low_res_logits": masks, "iou_predictions": iou}


# the image encoder's absolute position embedding; scanned runs of blocks are scan_{i}
PARAM_GROUPS = ParamGroups(no_decay=("pos_embed",), stacks=(r"scan_\d+",))
# tensor parallelism in the image encoder, where the compute is; the prompt encoder and the
# small two-way mask decoder stay data / FSDP only
PARTITION_RULES = attention_rules(r"image_encoder/(.+/)?attn") + mlp_rules(
    r"image_encoder/(.+/)?mlp"
)
# segment_anything/build_sam.py: (embed_dim, depth, heads, global_attn_indexes)
_SIZES = {
    "b": (768, 12, 12, (2, 5, 8, 11)),
    "l": (1024, 24, 16, (5, 11, 17, 23)),
    "h": (1280, 32, 16, (7, 15, 23, 31)),
}
for _s, (_d, _n, _h, _g) in _SIZES.items():
    register_model(
        f"sam_vit_{_s}",
        functools.partial(
            Sam,
            encoder_embed_dim=_d,
            encoder_depth=_n,
            encoder_num_heads=_h,
            encoder_global_attn_indexes=_g,
        ),
        family="sam",
        input_size=(1024, 1024, 3),
        # SAM's pixel_mean/std on [0, 255] are ImageNet's on [0, 1]
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        crop_pct=1.0,
        reference=f"segment_anything.sam_model_registry.vit_{_s}",
        min_size=16,
        param_groups=PARAM_GROUPS,
        partition_rules=PARTITION_RULES,
    )


# ---------------------------------------------------------------------------------------------
# Pretrained weights: the three checkpoints of facebookresearch/segment-anything's README.

register_pretrained(
    "sam_vit_b.sa1b",
    url="https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth",
    num_classes=0,
    license="apache-2.0",
    source="facebookresearch/segment-anything",
    notes="trained on SA-1B; the file name's hex suffix is not a published hash",
)
register_pretrained(
    "sam_vit_l.sa1b",
    url="https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth",
    num_classes=0,
    license="apache-2.0",
    source="facebookresearch/segment-anything",
    notes="trained on SA-1B; the file name's hex suffix is not a published hash",
)
register_pretrained(
    "sam_vit_h.sa1b",
    url="https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth",
    num_classes=0,
    license="apache-2.0",
    source="facebookresearch/segment-anything",
    notes="trained on SA-1B; the file name's hex suffix is not a published hash",
)
