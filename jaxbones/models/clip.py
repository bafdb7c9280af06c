"""CLIP (OpenAI ``clip/model.py``, open_clip ``model.CLIP``): an image tower (a ViT with
``ln_pre`` and a bias-free projection, or the ModifiedResNet with attention pooling), a causal
text transformer pooled at the end-of-text token, both projected to a shared embedding, and a
learnable logit scale.

Parity facts (open_clip 3.3.0 ``transformer.py`` / ``modified_resnet.py``):
- LayerNorm eps is PyTorch's default 1e-5 (not ViT's 1e-6).
- OpenAI checkpoints use QuickGELU (``x * sigmoid(1.702 x)``); open_clip's configs without
  ``-quickgelu`` use exact GELU. ``quick_gelu`` is a field; it changes no parameter.
- The vision transformer blocks are the ViT ``Block`` (``attn.in_proj_weight`` is the fused
  qkv in [q, k, v] row order, ``out_proj`` is ``attn.proj``, ``mlp.c_fc``/``c_proj`` are
  ``mlp.fc1``/``fc2``); the text tower adds the causal mask.
- Text pooling takes the token at ``argmax(token ids)`` (the end-of-text id 49407 is the
  largest id); the text positional table has exactly ``context_length`` rows, so inputs are
  padded to ``context_length`` (``jaxbones.text.tokenize`` does this).
- ``logit_scale`` is stored as a log (init ``log(1 / 0.07)``); the model returns its exp.

Parameter names follow open_clip where a leaf is a raw parameter (``class_embedding``,
``positional_embedding``, ``proj``, ``text_projection``, ``logit_scale``) and jaxbones'
ViT/ResNet names elsewhere; ``jaxbones.convert`` maps them (``convert/clip.py``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxbones.constants import CLIP_MEAN, CLIP_STD
from jaxbones.layers.attention import dot_product_attention
from jaxbones.layers.checks import check_input
from jaxbones.layers.conv import conv2d
from jaxbones.layers.drop import drop_path_rates
from jaxbones.layers.norm import BatchNorm, LayerNorm
from jaxbones.layers.param_groups import ParamGroups
from jaxbones.layers.partitioning import TRANSFORMER_RULES
from jaxbones.layers.patch_embed import PatchEmbed
from jaxbones.layers.pool import avg_pool2d
from jaxbones.layers.stack import block_stack
from jaxbones.models.vit import Block
from jaxbones.registry import register_model, register_pretrained

Dtype = Any

# open_clip ``tokenizer.py``: the CLIP BPE vocabulary size and context length
VOCAB_SIZE = 49408
CONTEXT_LENGTH = 77


def l2_normalize(x, eps: float = 1e-12):
    """``torch.nn.functional.normalize(x, dim=-1)``: x / max(||x||, eps), in float32."""
    xf = x.astype(jnp.float32)
    norm = jnp.sqrt(jnp.sum(jnp.square(xf), axis=-1, keepdims=True))
    return (xf / jnp.maximum(norm, eps)).astype(x.dtype)


def _clip_block(width, heads, mlp_ratio, act, norm_eps, causal, attn_impl, dtype, param_dtype):
    return functools.partial(
        Block,
        num_heads=heads,
        mlp_ratio=mlp_ratio,
        qkv_bias=True,  # torch nn.MultiheadAttention: in_proj_bias
        act=act,
        norm_eps=norm_eps,
        causal=causal,
        attn_implementation=attn_impl,
        dtype=dtype,
        param_dtype=param_dtype,
    )


class CLIPVisionTransformer(nn.Module):
    """open_clip ``VisionTransformer`` (class-token pooling, learnable positions).

    conv1 (patch conv, no bias) -> prepend ``class_embedding`` -> + ``positional_embedding``
    -> ``ln_pre`` -> blocks -> ``ln_post`` on the class token -> ``@ proj`` (no bias).

    Attributes:
      img_size, patch_size, width, layers, heads, mlp_ratio: as open_clip (heads = width / 64).
      output_dim: embedding width after ``proj``; act: 'gelu' or 'quick_gelu';
      norm_eps: LayerNorm epsilon (1e-5); in_chans: input channels; drop_path_rate:
      stochastic depth (linear over the blocks); attn_implementation: see
      ``dot_product_attention``; scan, remat_policy: as ViT; dtype, param_dtype.
    """

    img_size: int = 224
    patch_size: int = 32
    width: int = 768
    layers: int = 12
    heads: int = 12
    mlp_ratio: float = 4.0
    output_dim: int = 512
    act: str | Callable = "gelu"
    norm_eps: float = 1e-5
    in_chans: int = 3
    drop_path_rate: float = 0.0
    attn_implementation: str | None = None
    scan: bool = False
    remat_policy: str = "none"
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        g = self.img_size // self.patch_size
        if x.shape[1:3] != (g * self.patch_size,) * 2:
            raise ValueError(
                f"CLIP ViT built for {g * self.patch_size}x{g * self.patch_size} images got "
                f"{x.shape[1]}x{x.shape[2]}; create it with img_size={x.shape[1]} (square, a "
                f"multiple of patch_size={self.patch_size})"
            )
        b = x.shape[0]
        scale = self.width**-0.5  # open_clip: class/positional embeddings ~ width^-0.5 * N(0, 1)
        x = PatchEmbed(
            self.width,
            self.patch_size,
            bias=False,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="conv1",
        )(x.astype(self.dtype or x.dtype))  # [B, L, W]
        cls = self.param(
            "class_embedding", nn.initializers.normal(scale), (self.width,), self.param_dtype
        )
        x = jnp.concatenate([jnp.broadcast_to(cls.astype(x.dtype), (b, 1, self.width)), x], 1)
        pos = self.param(
            "positional_embedding",
            nn.initializers.normal(scale),
            (g * g + 1, self.width),
            self.param_dtype,
        )
        x = x + pos.astype(x.dtype)  # [B, 1 + L, W]
        norm = functools.partial(
            LayerNorm, epsilon=self.norm_eps, dtype=self.dtype, param_dtype=self.param_dtype
        )
        x = norm(name="ln_pre")(x)
        block = _clip_block(
            self.width,
            self.heads,
            self.mlp_ratio,
            self.act,
            self.norm_eps,
            False,
            self.attn_implementation,
            self.dtype,
            self.param_dtype,
        )
        x, _ = block_stack(
            self,
            block,
            x,
            depth=self.layers,
            name="blocks",
            args=(not train,),
            deterministic=not train,
            drop_path=drop_path_rates(self.drop_path_rate, [self.layers])[0],
            scan=self.scan,
            remat_policy=self.remat_policy,
        )
        x = norm(name="ln_post")(x[:, 0])  # [B, W] class token (LN is per token)
        proj = self.param(
            "proj", nn.initializers.normal(scale), (self.width, self.output_dim), self.param_dtype
        )
        return x @ proj.astype(x.dtype)  # [B, output_dim]


class Bottleneck(nn.Module):
    """ModifiedResNet bottleneck: every conv has stride 1; a stride-s ``avg_pool2d`` after
    conv2 (and before the 1x1 downsample conv) does the downsampling ("anti-aliased").

    Submodules ``conv1/bn1``, ``conv2/bn2``, ``conv3/bn3`` and, when the shape changes,
    ``downsample_0`` (1x1 conv) / ``downsample_1`` (BatchNorm).

    Attributes:
      planes: bottleneck width (output is 4 * planes); stride: 1 or 2; dtype, param_dtype.
    """

    planes: int
    stride: int = 1
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        conv = functools.partial(conv2d, dtype=self.dtype, param_dtype=self.param_dtype)
        bn = functools.partial(BatchNorm, dtype=self.dtype, param_dtype=self.param_dtype)
        out_ch = self.planes * 4
        y = nn.relu(bn(name="bn1")(conv(self.planes, 1, name="conv1")(x), train))
        y = nn.relu(bn(name="bn2")(conv(self.planes, 3, name="conv2")(y), train))
        if self.stride > 1:
            y = avg_pool2d(y, self.stride)
        # open_clip init_parameters: bn3.weight zeros (each block starts as the identity)
        y = bn(scale_init=nn.initializers.zeros, name="bn3")(
            conv(out_ch, 1, name="conv3")(y), train
        )
        if self.stride > 1 or x.shape[-1] != out_ch:
            if self.stride > 1:
                x = avg_pool2d(x, self.stride)
            x = bn(name="downsample_1")(conv(out_ch, 1, name="downsample_0")(x), train)
        return nn.relu(y + x)


class AttentionPool2d(nn.Module):
    """QKV attention pooling (OpenAI CLIP): the mean token is prepended to the flattened
    map, ``positional_embedding`` added, and the output of that first (mean) query is
    projected by ``c_proj``. Only the first query is computed (its output does not depend on
    the other queries). Submodules ``q_proj``, ``k_proj``, ``v_proj``, ``c_proj``.

    Attributes:
      spacial_dim: side of the input map (img_size / 32); num_heads; output_dim;
      attn_implementation; dtype, param_dtype.
    """

    spacial_dim: int
    num_heads: int
    output_dim: int
    attn_implementation: str | None = None
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        b, h, w, c = x.shape
        if (h, w) != (self.spacial_dim,) * 2:
            raise ValueError(
                f"AttentionPool2d has positions for a {self.spacial_dim}x{self.spacial_dim} map "
                f"but got {h}x{w}; create the model with img_size={32 * h} to match the input"
            )
        x = x.reshape(b, h * w, c)  # [B, HW, C] row-major, as torch's flatten(2)
        x = jnp.concatenate([x.mean(axis=1, keepdims=True), x], axis=1)  # [B, 1 + HW, C]
        pos = self.param(
            "positional_embedding",
            nn.initializers.normal(c**-0.5),
            (h * w + 1, c),
            self.param_dtype,
        )
        x = x + pos.astype(x.dtype)
        dense = functools.partial(
            nn.Dense,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            kernel_init=nn.initializers.normal(c**-0.5),
        )
        hd = c // self.num_heads
        q = dense(c, name="q_proj")(x[:, :1]).reshape(b, 1, self.num_heads, hd)
        k = dense(c, name="k_proj")(x).reshape(b, h * w + 1, self.num_heads, hd)
        v = dense(c, name="v_proj")(x).reshape(b, h * w + 1, self.num_heads, hd)
        out = dot_product_attention(q, k, v, implementation=self.attn_implementation)
        out = out.reshape(b, c)  # [B, C], heads contiguous
        return dense(self.output_dim, name="c_proj")(out)


class ModifiedResNet(nn.Module):
    """OpenAI CLIP's ResNet: a 3-conv stem (3x3/2, 3x3, 3x3) + 2x2 average pool, bottleneck
    stages with anti-aliased (avg-pool) downsampling, and ``attnpool`` instead of global
    average pooling.

    Attributes:
      layers: blocks per stage (RN50: (3, 4, 6, 3)); width: stem width (64);
      heads: attention-pool heads (width * 32 / 64); output_dim; img_size (the attention
      pool's positions are built for img_size / 32); in_chans; attn_implementation;
      dtype, param_dtype.
    """

    layers: Sequence[int] = (3, 4, 6, 3)
    width: int = 64
    heads: int = 32
    output_dim: int = 1024
    img_size: int = 224
    in_chans: int = 3
    attn_implementation: str | None = None
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        conv = functools.partial(conv2d, dtype=self.dtype, param_dtype=self.param_dtype)
        bn = functools.partial(BatchNorm, dtype=self.dtype, param_dtype=self.param_dtype)
        x = x.astype(self.dtype or x.dtype)
        w = self.width
        x = nn.relu(bn(name="bn1")(conv(w // 2, 3, 2, name="conv1")(x), train))
        x = nn.relu(bn(name="bn2")(conv(w // 2, 3, name="conv2")(x), train))
        x = nn.relu(bn(name="bn3")(conv(w, 3, name="conv3")(x), train))
        x = avg_pool2d(x, 2)
        for i, n in enumerate(self.layers):
            for j in range(n):
                x = Bottleneck(
                    w * 2**i,
                    stride=2 if (i > 0 and j == 0) else 1,
                    dtype=self.dtype,
                    param_dtype=self.param_dtype,
                    name=f"layer{i + 1}_{j}",
                )(x, train)
        return AttentionPool2d(
            self.img_size // 32,
            self.heads,
            self.output_dim,
            attn_implementation=self.attn_implementation,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="attnpool",
        )(x)


class CLIPTextTransformer(nn.Module):
    """open_clip's text tower: ``token_embedding`` + ``positional_embedding`` -> causal
    blocks -> ``ln_final`` -> the token at argmax(ids) (end of text) -> ``@ text_projection``.

    Attributes:
      context_length (77), vocab_size (49408), width, heads, layers, mlp_ratio, output_dim;
      act: 'gelu' or 'quick_gelu'; norm_eps (1e-5); causal: causal mask (open_clip
      ``no_causal_mask=False``); attn_implementation; scan, remat_policy; dtype, param_dtype.
    """

    context_length: int = CONTEXT_LENGTH
    vocab_size: int = VOCAB_SIZE
    width: int = 512
    heads: int = 8
    layers: int = 12
    mlp_ratio: float = 4.0
    output_dim: int = 512
    act: str | Callable = "gelu"
    norm_eps: float = 1e-5
    causal: bool = True
    attn_implementation: str | None = None
    scan: bool = False
    remat_policy: str = "none"
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, text, train: bool = False):
        if text.ndim != 2 or text.shape[1] != self.context_length:
            raise ValueError(
                f"CLIP text tower expects token ids [batch, {self.context_length}], got shape "
                f"{tuple(text.shape)}; tokenize with jaxbones.text.tokenize(texts, "
                f"context_length={self.context_length}) (pads with 0)"
            )
        x = nn.Embed(
            self.vocab_size,
            self.width,
            embedding_init=nn.initializers.normal(0.02),  # open_clip init_parameters
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="token_embedding",
        )(text)  # [B, T, W]
        pos = self.param(
            "positional_embedding",
            nn.initializers.normal(0.01),
            (self.context_length, self.width),
            self.param_dtype,
        )
        x = x + pos.astype(x.dtype)
        block = _clip_block(
            self.width,
            self.heads,
            self.mlp_ratio,
            self.act,
            self.norm_eps,
            self.causal,
            self.attn_implementation,
            self.dtype,
            self.param_dtype,
        )
        x, _ = block_stack(
            self,
            block,
            x,
            depth=self.layers,
            name="blocks",
            args=(not train,),
            deterministic=not train,
            scan=self.scan,
            remat_policy=self.remat_policy,
        )
        x = LayerNorm(
            self.norm_eps, dtype=self.dtype, param_dtype=self.param_dtype, name="ln_final"
        )(x)
        eot = jnp.argmax(text, axis=-1)  # [B] first position of the largest id (EOT)
        x = x[jnp.arange(x.shape[0]), eot]  # [B, W]
        proj = self.param(
            "text_projection",
            nn.initializers.normal(self.width**-0.5),
            (self.width, self.output_dim),
            self.param_dtype,
        )
        return x @ proj.astype(x.dtype)  # [B, output_dim]


class CLIP(nn.Module):
    """CLIP: ``visual`` (CLIPVisionTransformer, or ModifiedResNet when ``vision_layers`` is a
    tuple), ``text`` (CLIPTextTransformer) and ``logit_scale`` (log; init log(1/0.07)).

    ``apply(v, image, text)`` returns ``(image_features, text_features, logit_scale.exp())``
    with L2-normalised features, as open_clip's ``CLIP.forward``; either input may be None
    (its features are None). ``apply(v, image, method='encode_image', normalize=...)`` and
    ``apply(v, text, method='encode_text', normalize=...)`` run one tower; ``method='logits'``
    gives (logits_per_image, logits_per_text). Initialising with images only still creates
    the text tower (on a dummy sequence), so ``model.init(rng, images)`` is complete.

    Attributes:
      embed_dim: shared embedding width.
      img_size, in_chans: input images; vision_layers: int (ViT depth) or per-stage block
        counts (ModifiedResNet); vision_width: ViT width / ResNet stem width;
        vision_patch_size: ViT patch; vision_head_width: 64 (heads = width / 64, and
        width * 32 / 64 for the ResNet attention pool).
      context_length, vocab_size, text_width, text_heads, text_layers: text tower;
        text_causal: causal attention mask (open_clip ``no_causal_mask=False``).
      mlp_ratio: MLP width / model width (4); quick_gelu: QuickGELU (OpenAI checkpoints)
        instead of exact GELU (open_clip configs without ``-quickgelu``).
      init_logit_scale: initial log logit scale; drop_path_rate: vision stochastic depth.
      attn_implementation, scan, remat_policy: as ViT (both towers); dtype, param_dtype.
    """

    embed_dim: int = 512
    img_size: int = 224
    in_chans: int = 3
    vision_layers: int | tuple[int, ...] = 12
    vision_width: int = 768
    vision_patch_size: int | None = 32
    vision_head_width: int = 64
    context_length: int = CONTEXT_LENGTH
    vocab_size: int = VOCAB_SIZE
    text_width: int = 512
    text_heads: int = 8
    text_layers: int = 12
    text_causal: bool = True
    mlp_ratio: float = 4.0
    quick_gelu: bool = False
    init_logit_scale: float = math.log(1 / 0.07)
    drop_path_rate: float = 0.0
    attn_implementation: str | None = None
    scan: bool = False
    remat_policy: str = "none"
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    @property
    def is_resnet(self) -> bool:
        return not isinstance(self.vision_layers, int)

    @property
    def default_input_size(self) -> tuple[int, int, int]:
        return self.img_size, self.img_size, self.in_chans

    def setup(self):
        act = "quick_gelu" if self.quick_gelu else "gelu"
        common = {
            "attn_implementation": self.attn_implementation,
            "dtype": self.dtype,
            "param_dtype": self.param_dtype,
        }
        if self.is_resnet:
            self.visual = ModifiedResNet(
                layers=tuple(self.vision_layers),
                width=self.vision_width,
                heads=self.vision_width * 32 // self.vision_head_width,
                output_dim=self.embed_dim,
                img_size=self.img_size,
                in_chans=self.in_chans,
                **common,
            )
        else:
            self.visual = CLIPVisionTransformer(
                img_size=self.img_size,
                patch_size=self.vision_patch_size,
                width=self.vision_width,
                layers=self.vision_layers,
                heads=self.vision_width // self.vision_head_width,
                mlp_ratio=self.mlp_ratio,
                output_dim=self.embed_dim,
                act=act,
                in_chans=self.in_chans,
                drop_path_rate=self.drop_path_rate,
                scan=self.scan,
                remat_policy=self.remat_policy,
                **common,
            )
        self.text = CLIPTextTransformer(
            context_length=self.context_length,
            vocab_size=self.vocab_size,
            width=self.text_width,
            heads=self.text_heads,
            layers=self.text_layers,
            mlp_ratio=self.mlp_ratio,
            output_dim=self.embed_dim,
            act=act,
            causal=self.text_causal,
            scan=self.scan,
            remat_policy=self.remat_policy,
            **common,
        )
        self.logit_scale = self.param(
            "logit_scale", nn.initializers.constant(self.init_logit_scale), (), jnp.float32
        )

    def encode_image(self, image, normalize: bool = False, train: bool = False):
        """[B, H, W, C] images -> [B, embed_dim] features (L2-normalised if ``normalize``)."""
        check_input(image, in_chans=self.in_chans, min_size=32, model="CLIP")
        x = self.visual(image, train=train)
        return l2_normalize(x) if normalize else x

    def encode_text(self, text, normalize: bool = False, train: bool = False):
        """[B, context_length] token ids -> [B, embed_dim] features."""
        x = self.text(text, train=train)
        return l2_normalize(x) if normalize else x

    def __call__(self, image=None, text=None, train: bool = False):
        img = None if image is None else self.encode_image(image, True, train)
        if text is None and self.is_initializing():
            # create the text tower's parameters even when init is given images only
            self.text(jnp.zeros((1, self.context_length), jnp.int32))
        txt = None if text is None else self.encode_text(text, True, train)
        if image is None and self.is_initializing():
            self.visual(jnp.zeros((1, *self.default_input_size), jnp.float32))
        return img, txt, jnp.exp(self.logit_scale)

    def logits(self, image, text, train: bool = False):
        """(logits_per_image [Bi, Bt], logits_per_text [Bt, Bi]), scaled by exp(logit_scale)."""
        img, txt, scale = self(image, text, train=train)
        li = scale * img.astype(jnp.float32) @ txt.astype(jnp.float32).T
        return li, li.T


# open_clip 3.3.0 model_configs/*.json: (embed_dim, vision layers, vision width, patch)
_VARIANTS = {
    "clip_vit_b32": ("ViT-B-32", 512, 12, 768, 32, {"text_width": 512, "text_heads": 8}),
    "clip_vit_b16": ("ViT-B-16", 512, 12, 768, 16, {"text_width": 512, "text_heads": 8}),
    "clip_vit_l14": ("ViT-L-14", 768, 24, 1024, 14, {"text_width": 768, "text_heads": 12}),
    "clip_rn50": ("RN50", 1024, (3, 4, 6, 3), 64, None, {"text_width": 512, "text_heads": 8}),
}

# open_clip decays every parameter with ndim >= 2 (the position and token embeddings too)
PARAM_GROUPS = ParamGroups(stacks=("blocks",))

for _name, (_cfg, _dim, _layers, _width, _patch, _text) in _VARIANTS.items():
    register_model(
        _name,
        functools.partial(
            CLIP,
            embed_dim=_dim,
            vision_layers=_layers,
            vision_width=_width,
            vision_patch_size=_patch,
            **_text,
        ),
        family="clip",
        input_size=(224, 224, 3),
        mean=CLIP_MEAN,
        std=CLIP_STD,
        crop_pct=1.0,  # open_clip eval: resize shortest side to 224, centre crop 224
        reference=f"open_clip.{_cfg}",
        min_size=32 if _patch is None else _patch,
        # both towers' transformer blocks (a ResNet image tower stays data / FSDP only)
        param_groups=PARAM_GROUPS,
        partition_rules=TRANSFORMER_RULES,
    )

__all__ = [
    "CLIP",
    "AttentionPool2d",
    "Bottleneck",
    "CLIPTextTransformer",
    "CLIPVisionTransformer",
    "ModifiedResNet",
    "l2_normalize",
]


# ---------------------------------------------------------------------------------------------
# Pretrained weights: open_clip's pretrained table (hub repo, mean/std, quick_gelu);
# tests/test_pretrained_cfgs.py checks them against the installed open_clip. Files are
# open_clip state dicts; no classifier (num_classes=0). A model's first tag is its default.

register_pretrained(
    "clip_vit_b32.openai",
    hf_hub_id="timm/vit_base_patch32_clip_224.openai",
    hf_hub_filename="open_clip_pytorch_model.bin",
    source="open_clip",
    num_classes=0,
    interpolation="bicubic",
    license="mit",
    model_kwargs={"quick_gelu": True},
)
register_pretrained(
    "clip_vit_b32.laion400m_e31",
    hf_hub_id="timm/vit_base_patch32_clip_224.laion400m_e31",
    hf_hub_filename="open_clip_pytorch_model.bin",
    source="open_clip",
    num_classes=0,
    interpolation="bicubic",
    license="mit",
    model_kwargs={"quick_gelu": True},
)
register_pretrained(
    "clip_vit_b32.laion400m_e32",
    hf_hub_id="timm/vit_base_patch32_clip_224.laion400m_e32",
    hf_hub_filename="open_clip_pytorch_model.bin",
    source="open_clip",
    num_classes=0,
    interpolation="bicubic",
    license="mit",
    model_kwargs={"quick_gelu": True},
)
register_pretrained(
    "clip_vit_b32.laion2b_e16",
    hf_hub_id="timm/vit_base_patch32_clip_224.laion2b_e16",
    hf_hub_filename="open_clip_pytorch_model.bin",
    source="open_clip",
    num_classes=0,
    interpolation="bicubic",
    license="mit",
)
register_pretrained(
    "clip_vit_b32.laion2b_s34b_b79k",
    hf_hub_id="laion/CLIP-ViT-B-32-laion2B-s34B-b79K",
    hf_hub_filename="open_clip_pytorch_model.bin",
    source="open_clip",
    num_classes=0,
    interpolation="bicubic",
    license="mit",
)
register_pretrained(
    "clip_vit_b32.datacomp_xl_s13b_b90k",
    hf_hub_id="laion/CLIP-ViT-B-32-DataComp.XL-s13B-b90K",
    hf_hub_filename="open_clip_pytorch_model.bin",
    source="open_clip",
    num_classes=0,
    interpolation="bicubic",
)
register_pretrained(
    "clip_vit_b32.metaclip_400m",
    hf_hub_id="timm/vit_base_patch32_clip_224.metaclip_400m",
    hf_hub_filename="open_clip_pytorch_model.bin",
    source="open_clip",
    num_classes=0,
    interpolation="bicubic",
    license="cc-by-nc-4.0",
    model_kwargs={"quick_gelu": True},
)
register_pretrained(
    "clip_vit_b32.metaclip_fullcc",
    hf_hub_id="timm/vit_base_patch32_clip_224.metaclip_2pt5b",
    hf_hub_filename="open_clip_pytorch_model.bin",
    source="open_clip",
    num_classes=0,
    interpolation="bicubic",
    license="cc-by-nc-4.0",
    model_kwargs={"quick_gelu": True},
)
register_pretrained(
    "clip_vit_b16.openai",
    hf_hub_id="timm/vit_base_patch16_clip_224.openai",
    hf_hub_filename="open_clip_pytorch_model.bin",
    source="open_clip",
    num_classes=0,
    interpolation="bicubic",
    license="mit",
    model_kwargs={"quick_gelu": True},
)
register_pretrained(
    "clip_vit_b16.laion400m_e31",
    hf_hub_id="timm/vit_base_patch16_clip_224.laion400m_e31",
    hf_hub_filename="open_clip_pytorch_model.bin",
    source="open_clip",
    num_classes=0,
    interpolation="bicubic",
    license="mit",
)
register_pretrained(
    "clip_vit_b16.laion400m_e32",
    hf_hub_id="timm/vit_base_patch16_clip_224.laion400m_e32",
    hf_hub_filename="open_clip_pytorch_model.bin",
    source="open_clip",
    num_classes=0,
    interpolation="bicubic",
    license="mit",
)
register_pretrained(
    "clip_vit_b16.laion2b_s34b_b88k",
    hf_hub_id="laion/CLIP-ViT-B-16-laion2B-s34B-b88K",
    hf_hub_filename="open_clip_pytorch_model.bin",
    source="open_clip",
    num_classes=0,
    interpolation="bicubic",
    license="mit",
)
register_pretrained(
    "clip_vit_b16.datacomp_xl_s13b_b90k",
    hf_hub_id="laion/CLIP-ViT-B-16-DataComp.XL-s13B-b90K",
    hf_hub_filename="open_clip_pytorch_model.bin",
    source="open_clip",
    num_classes=0,
    interpolation="bicubic",
)
register_pretrained(
    "clip_vit_b16.metaclip_400m",
    hf_hub_id="timm/vit_base_patch16_clip_224.metaclip_400m",
    hf_hub_filename="open_clip_pytorch_model.bin",
    source="open_clip",
    num_classes=0,
    interpolation="bicubic",
    license="cc-by-nc-4.0",
    model_kwargs={"quick_gelu": True},
)
register_pretrained(
    "clip_vit_b16.metaclip_fullcc",
    hf_hub_id="timm/vit_base_patch16_clip_224.metaclip_2pt5b",
    hf_hub_filename="open_clip_pytorch_model.bin",
    source="open_clip",
    num_classes=0,
    interpolation="bicubic",
    license="cc-by-nc-4.0",
    model_kwargs={"quick_gelu": True},
)
register_pretrained(
    "clip_vit_l14.openai",
    hf_hub_id="timm/vit_large_patch14_clip_224.openai",
    hf_hub_filename="open_clip_pytorch_model.bin",
    source="open_clip",
    num_classes=0,
    interpolation="bicubic",
    license="mit",
    model_kwargs={"quick_gelu": True},
)
register_pretrained(
    "clip_vit_l14.laion400m_e31",
    hf_hub_id="timm/vit_large_patch14_clip_224.laion400m_e31",
    hf_hub_filename="open_clip_pytorch_model.bin",
    source="open_clip",
    num_classes=0,
    interpolation="bicubic",
    license="mit",
)
register_pretrained(
    "clip_vit_l14.laion400m_e32",
    hf_hub_id="timm/vit_large_patch14_clip_224.laion400m_e32",
    hf_hub_filename="open_clip_pytorch_model.bin",
    source="open_clip",
    num_classes=0,
    interpolation="bicubic",
    license="mit",
)
register_pretrained(
    "clip_vit_l14.laion2b_s32b_b82k",
    hf_hub_id="laion/CLIP-ViT-L-14-laion2B-s32B-b82K",
    hf_hub_filename="open_clip_pytorch_model.bin",
    source="open_clip",
    num_classes=0,
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
    interpolation="bicubic",
    license="mit",
)
register_pretrained(
    "clip_vit_l14.datacomp_xl_s13b_b90k",
    hf_hub_id="laion/CLIP-ViT-L-14-DataComp.XL-s13B-b90K",
    hf_hub_filename="open_clip_pytorch_model.bin",
    source="open_clip",
    num_classes=0,
    interpolation="bicubic",
)
register_pretrained(
    "clip_vit_l14.metaclip_400m",
    hf_hub_id="timm/vit_large_patch14_clip_224.metaclip_400m",
    hf_hub_filename="open_clip_pytorch_model.bin",
    source="open_clip",
    num_classes=0,
    interpolation="bicubic",
    license="cc-by-nc-4.0",
    model_kwargs={"quick_gelu": True},
)
register_pretrained(
    "clip_vit_l14.metaclip_fullcc",
    hf_hub_id="timm/vit_large_patch14_clip_224.metaclip_2pt5b",
    hf_hub_filename="open_clip_pytorch_model.bin",
    source="open_clip",
    num_classes=0,
    interpolation="bicubic",
    license="cc-by-nc-4.0",
    model_kwargs={"quick_gelu": True},
)
register_pretrained(
    "clip_rn50.openai",
    hf_hub_id="timm/resnet50_clip.openai",
    hf_hub_filename="open_clip_pytorch_model.bin",
    source="open_clip",
    num_classes=0,
    interpolation="bicubic",
    license="mit",
    model_kwargs={"quick_gelu": True},
)
register_pretrained(
    "clip_rn50.yfcc15m",
    hf_hub_id="timm/resnet50_clip.yfcc15m",
    hf_hub_filename="open_clip_pytorch_model.bin",
    source="open_clip",
    num_classes=0,
    interpolation="bicubic",
    model_kwargs={"quick_gelu": True},
)
register_pretrained(
    "clip_rn50.cc12m",
    hf_hub_id="timm/resnet50_clip.cc12m",
    hf_hub_filename="open_clip_pytorch_model.bin",
    source="open_clip",
    num_classes=0,
    interpolation="bicubic",
    model_kwargs={"quick_gelu": True},
)
