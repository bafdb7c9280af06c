"""Vision Transformer (timm ``vision_transformer.VisionTransformer``), with ``scan`` over the
blocks, named remat policies, multi-scale NHWC features and the pieces MAE reuses.

Parity facts (docs/parity.md): LayerNorm eps 1e-6, exact-erf GELU, fused ``qkv`` in torch row
order, patch tokens in row-major order. Parameter names follow timm (``patch_embed.proj``,
``cls_token``, ``pos_embed``, ``blocks_{i}`` / scanned ``blocks``, ``norm``, ``fc_norm``,
``head``); the family's ``PARAM_GROUPS`` (below; ``jaxbones/layers/param_groups.py``) match
them for weight-decay exemptions and layer-wise learning-rate decay.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxbones.constants import IMAGENET_MEAN, IMAGENET_STD, INCEPTION_MEAN, INCEPTION_STD
from jaxbones.layers.attention import MultiHeadAttention
from jaxbones.layers.checks import check_input
from jaxbones.layers.drop import drop_path, drop_path_rates
from jaxbones.layers.mlp import Mlp, dense_init
from jaxbones.layers.norm import LayerNorm
from jaxbones.layers.param_groups import ParamGroups, transformer_layer_ids
from jaxbones.layers.partitioning import TRANSFORMER_RULES
from jaxbones.layers.patch_embed import PatchEmbed
from jaxbones.layers.stack import block_stack
from jaxbones.models._pretrained import timm_hub
from jaxbones.registry import register_model, register_pretrained

Dtype = Any


class Block(nn.Module):
    """Pre-norm transformer block (timm ``Block``): x + dp(attn(norm1(x))), then
    x + dp(mlp(norm2(x))). Submodules ``norm1``, ``attn`` (``qkv``, ``proj``), ``norm2``,
    ``mlp`` (``fc1``, ``fc2``).

    Attributes:
      num_heads; mlp_ratio: MLP hidden width / dim; qkv_bias; act: MLP activation (exact
      GELU); norm_eps: LayerNorm epsilon (1e-6 for ViT/MAE); proj_drop: dropout after the
      attention projection and in the MLP; attn_drop: attention-probability dropout;
      drop_path: stochastic-depth rate (``drop_path_rate``, traced, replaces it under
      ``scan``; ``drop_path_key`` is the key ``block_stack`` hands each block);
      attn_implementation: kernel for ``dot_product_attention``;
      causal: mask attention to earlier tokens (CLIP's text tower);
      dtype, param_dtype.
    """

    num_heads: int
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    act: str | Callable = "gelu"
    norm_eps: float = 1e-6
    proj_drop: float = 0.0
    attn_drop: float = 0.0
    drop_path: float = 0.0
    attn_implementation: str | None = None
    causal: bool = False
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x, deterministic: bool = True, drop_path_rate=None, drop_path_key=None):
        rate = self.drop_path if drop_path_rate is None else drop_path_rate
        dim = x.shape[-1]
        n = x.shape[1]
        # [L, L] lower-triangular: token i attends to tokens <= i (CLIP's additive -inf mask)
        mask = jnp.tril(jnp.ones((n, n), bool)) if self.causal else None
        norm = functools.partial(
            LayerNorm, epsilon=self.norm_eps, dtype=self.dtype, param_dtype=self.param_dtype
        )
        y = MultiHeadAttention(
            self.num_heads,
            qkv_bias=self.qkv_bias,
            attn_drop=self.attn_drop,
            proj_drop=self.proj_drop,
            implementation=self.attn_implementation,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="attn",
        )(norm(name="norm1")(x), deterministic, mask=mask)
        x = x + drop_path(self, y, rate, deterministic, key=drop_path_key)
        y = Mlp(
            int(dim * self.mlp_ratio),
            act=self.act,
            drop=self.proj_drop,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="mlp",
        )(norm(name="norm2")(x), deterministic)
        return x + drop_path(self, y, rate, deterministic, key=drop_path_key, branch=1)


def _select_indices(indices: Sequence[int], depth: int) -> list[int]:
    out = []
    for i in indices:
        j = i + depth if i < 0 else i
        if not 0 <= j < depth:
            raise ValueError(f"out_indices {tuple(indices)} out of range for depth {depth}")
        out.append(j)
    return out


class VisionTransformer(nn.Module):
    """ViT (timm ``VisionTransformer``).

    Attributes:
      img_size: input size (int or (H, W)); the learned ``pos_embed`` is built for it
        (``jaxbones.convert.from_torch`` resamples tables trained at another size).
      patch_size, in_chans, num_classes (0: return pooled features), embed_dim, depth,
        num_heads, mlp_ratio, qkv_bias: as timm.
      class_token: prepend a class token; global_pool: 'token' (class token), 'avg'
        (mean of the patch tokens, as MAE fine-tuning) or '' (no pooling: all tokens).
      fc_norm: LayerNorm after pooling instead of before (None: on for 'avg', as timm; the
        final ``norm`` is then absent).
      norm_eps: LayerNorm epsilon (1e-6, timm/MAE); act: MLP activation (exact GELU).
      drop_rate: dropout before the head; pos_drop_rate: after adding ``pos_embed``;
        proj_drop_rate: in attention projection and MLP; attn_drop_rate: on attention
        probabilities; drop_path_rate: stochastic depth, linear over the blocks.
      attn_implementation: None | 'xla' | 'cudnn' (``dot_product_attention``).
      scan: ``nn.scan`` over the blocks (one ``blocks`` subtree with a leading [depth] axis);
        remat_policy: name in ``jaxbones.layers.REMAT_POLICIES``.
      features_only: return a list of NHWC maps [B, H/p, W/p, embed_dim], the outputs of the
        blocks in ``out_indices`` (negative counts from the end; timm's default is the last
        three) with prefix tokens removed; feature_norm: apply the final ``norm`` to them
        (timm's ``forward_intermediates(norm=True)``; no-op when ``fc_norm`` replaces it).
      dtype, param_dtype: compute and parameter dtypes.
    """

    img_size: int | tuple[int, int] = 224
    patch_size: int = 16
    in_chans: int = 3
    num_classes: int = 1000
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    class_token: bool = True
    global_pool: str = "token"
    fc_norm: bool | None = None
    norm_eps: float = 1e-6
    act: str | Callable = "gelu"
    drop_rate: float = 0.0
    pos_drop_rate: float = 0.0
    proj_drop_rate: float = 0.0
    attn_drop_rate: float = 0.0
    drop_path_rate: float = 0.0
    attn_implementation: str | None = None
    scan: bool = False
    remat_policy: str = "none"
    features_only: bool = False
    out_indices: Sequence[int] = (-3, -2, -1)
    feature_norm: bool = False
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    @property
    def grid_size(self) -> tuple[int, int]:
        h, w = (self.img_size,) * 2 if isinstance(self.img_size, int) else self.img_size
        return h // self.patch_size, w // self.patch_size

    @property
    def default_input_size(self) -> tuple[int, int, int]:
        gh, gw = self.grid_size
        return gh * self.patch_size, gw * self.patch_size, self.in_chans

    @property
    def num_prefix_tokens(self) -> int:
        return 1 if self.class_token else 0

    @property
    def use_fc_norm(self) -> bool:
        return self.global_pool == "avg" if self.fc_norm is None else self.fc_norm

    @property
    def num_features(self) -> int:
        return self.embed_dim

    @property
    def feature_info(self) -> list[dict]:
        return [
            {"num_chs": self.embed_dim, "reduction": self.patch_size, "module": f"blocks.{i}"}
            for i in _select_indices(self.out_indices, self.depth)
        ]

    def _block(self) -> Callable[..., nn.Module]:
        return functools.partial(
            Block,
            num_heads=self.num_heads,
            mlp_ratio=self.mlp_ratio,
            qkv_bias=self.qkv_bias,
            act=self.act,
            norm_eps=self.norm_eps,
            proj_drop=self.proj_drop_rate,
            attn_drop=self.attn_drop_rate,
            attn_implementation=self.attn_implementation,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
        )

    @nn.compact
    def __call__(self, x, train: bool = False):
        h, w, _ = self.default_input_size
        check_input(x, in_chans=self.in_chans, min_size=self.patch_size, model="ViT")
        if x.shape[1:3] != (h, w):
            raise ValueError(
                f"ViT built for {h}x{w} images got {x.shape[1]}x{x.shape[2]}; create it with "
                f"img_size=({x.shape[1]}, {x.shape[2]}) (a multiple of patch_size="
                f"{self.patch_size}); jaxbones.convert.from_torch resamples pos_embed to it"
            )
        if self.global_pool not in ("token", "avg", ""):
            raise ValueError(f"global_pool must be 'token', 'avg' or '', got {self.global_pool!r}")
        if self.global_pool == "token" and not self.class_token:
            raise ValueError("global_pool='token' needs class_token=True; use global_pool='avg'")
        deterministic = not train
        b = x.shape[0]
        x = x.astype(self.dtype or x.dtype)
        x = PatchEmbed(
            self.embed_dim,
            self.patch_size,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="patch_embed",
        )(x)  # [B, L, D]
        gh, gw = self.grid_size
        n_prefix = self.num_prefix_tokens
        if self.class_token:
            cls = self.param(
                "cls_token", nn.initializers.normal(1e-6), (1, 1, self.embed_dim), self.param_dtype
            )
            x = jnp.concatenate([jnp.broadcast_to(cls.astype(x.dtype), (b, 1, x.shape[-1])), x], 1)
        pos = self.param(
            "pos_embed",
            nn.initializers.truncated_normal(0.02),
            (1, n_prefix + gh * gw, self.embed_dim),
            self.param_dtype,
        )
        x = x + pos.astype(x.dtype)  # [B, prefix + L, D]
        x = nn.Dropout(self.pos_drop_rate)(x, deterministic)

        collect = _select_indices(self.out_indices, self.depth) if self.features_only else []
        x, feats = block_stack(
            self,
            self._block(),
            x,
            depth=self.depth,
            name="blocks",
            args=(deterministic,),
            deterministic=deterministic,
            drop_path=drop_path_rates(self.drop_path_rate, [self.depth])[0],
            scan=self.scan,
            remat_policy=self.remat_policy,
            collect=collect,
        )
        norm = functools.partial(
            LayerNorm, epsilon=self.norm_eps, dtype=self.dtype, param_dtype=self.param_dtype
        )
        final_norm = None if self.use_fc_norm else norm(name="norm")
        if self.features_only:
            out = []
            for f in feats:
                if self.feature_norm and final_norm is not None:
                    f = final_norm(f)
                out.append(f[:, n_prefix:].reshape(b, gh, gw, -1))  # [B, H/p, W/p, D]
            return out
        if final_norm is not None:
            x = final_norm(x)
        if self.global_pool == "avg":
            x = x[:, n_prefix:].mean(axis=1)
        elif self.global_pool == "token":
            x = x[:, 0]
        if self.use_fc_norm:
            x = norm(name="fc_norm")(x)
        if not self.num_classes:
            return x
        x = nn.Dropout(self.drop_rate)(x, deterministic)
        return nn.Dense(
            self.num_classes,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            kernel_init=dense_init,
            name="head",
        )(x)


# timm 1.0.31 ``vision_transformer.py`` model_args: (patch, dim, depth, heads) per size.
_SIZES = {
    "tiny": (192, 12, 3),
    "small": (384, 12, 6),
    "base": (768, 12, 12),
    "large": (1024, 24, 16),
    "huge": (1280, 32, 16),
}
# The timm names of the plain (class-token, learned pos-embed) ViTs and the global-average
# variants; their pretrained configs use Inception normalisation (0.5, 0.5, 0.5).
_VARIANTS = [
    ("vit_tiny_patch16_224", "tiny", 16, 224, {}),
    ("vit_tiny_patch16_384", "tiny", 16, 384, {}),
    ("vit_small_patch16_224", "small", 16, 224, {}),
    ("vit_small_patch16_384", "small", 16, 384, {}),
    ("vit_small_patch32_224", "small", 32, 224, {}),
    ("vit_small_patch32_384", "small", 32, 384, {}),
    ("vit_base_patch16_224", "base", 16, 224, {}),
    ("vit_base_patch16_384", "base", 16, 384, {}),
    ("vit_base_patch32_224", "base", 32, 224, {}),
    ("vit_base_patch32_384", "base", 32, 384, {}),
    ("vit_large_patch14_224", "large", 14, 224, {}),
    ("vit_large_patch16_224", "large", 16, 224, {}),
    ("vit_large_patch16_384", "large", 16, 384, {}),
    # timm's default configs for these are the in21k feature extractors: no head
    ("vit_large_patch32_224", "large", 32, 224, {"num_classes": 0}),
    ("vit_large_patch32_384", "large", 32, 384, {}),
    ("vit_huge_patch14_224", "huge", 14, 224, {"num_classes": 0}),
    # timm: no class token, avg pool, no fc_norm (final norm kept); B/16-gap has 16 heads
    (
        "vit_base_patch16_gap_224",
        "base",
        16,
        224,
        {"num_heads": 16, "class_token": False, "global_pool": "avg", "fc_norm": False},
    ),
    (
        "vit_huge_patch14_gap_224",
        "huge",
        14,
        224,
        {"class_token": False, "global_pool": "avg", "fc_norm": False, "num_classes": 0},
    ),
]
# pretrained configs that use ImageNet normalisation instead of Inception's
_IMAGENET_NORM = {"vit_huge_patch14_gap_224"}
# timm VisionTransformer.no_weight_decay; layer ids as MAE util/lr_decay.py
PARAM_GROUPS = ParamGroups(
    no_decay=("pos_embed", "cls_token"),
    stacks=("blocks",),
    layer_ids=transformer_layer_ids(embed=("cls_token", "pos_embed", "patch_embed")),
)

for _name, _size, _patch, _img, _extra in _VARIANTS:
    _dim, _depth, _heads = _SIZES[_size]
    _kw = {"embed_dim": _dim, "depth": _depth, "num_heads": _heads, **_extra}
    register_model(
        _name,
        functools.partial(VisionTransformer, img_size=_img, patch_size=_patch, **_kw),
        family="vit",
        input_size=(_img, _img, 3),
        mean=IMAGENET_MEAN if _name in _IMAGENET_NORM else INCEPTION_MEAN,
        std=IMAGENET_STD if _name in _IMAGENET_NORM else INCEPTION_STD,
        crop_pct=1.0 if _img == 384 else 0.9,
        reference=f"timm.models.vision_transformer.{_name}",
        min_size=_patch,
        param_groups=PARAM_GROUPS,
        partition_rules=TRANSFORMER_RULES,
    )

__all__ = ["Block", "VisionTransformer"]


# ---------------------------------------------------------------------------------------------
# Pretrained weights: facts from timm's and torchvision's pretrained configs; top-1/top-5
# from timm's results-imagenet.csv at the tag's eval size and crop, or torchvision's weights
# meta. tests/test_pretrained_cfgs.py checks them against the installed libraries. A model's
# first tag is its default.

timm_hub(
    "vit_tiny_patch16_224.augreg_in21k_ft_in1k",
    interpolation="bicubic",
    license="apache-2.0",
    top1=75.452,
    top5=92.858,
)
timm_hub(
    "vit_tiny_patch16_224.augreg_in21k",
    num_classes=21843,
    interpolation="bicubic",
    license="apache-2.0",
)
timm_hub(
    "vit_tiny_patch16_384.augreg_in21k_ft_in1k",
    interpolation="bicubic",
    license="apache-2.0",
    top1=78.438,
    top5=94.542,
)
timm_hub(
    "vit_small_patch16_224.augreg_in21k_ft_in1k",
    interpolation="bicubic",
    license="apache-2.0",
    top1=81.402,
    top5=96.15,
)
timm_hub(
    "vit_small_patch16_224.augreg_in1k",
    interpolation="bicubic",
    license="apache-2.0",
    top1=78.842,
    top5=94.28,
)
timm_hub(
    "vit_small_patch16_224.augreg_in21k",
    num_classes=21843,
    interpolation="bicubic",
    license="apache-2.0",
)
timm_hub(
    "vit_small_patch16_224.dino",
    num_classes=0,
    mean=(0.485, 0.456, 0.406),
    std=(0.229, 0.224, 0.225),
    interpolation="bicubic",
    license="apache-2.0",
)
timm_hub(
    "vit_small_patch16_384.augreg_in21k_ft_in1k",
    interpolation="bicubic",
    license="apache-2.0",
    top1=83.814,
    top5=97.106,
)
timm_hub(
    "vit_small_patch16_384.augreg_in1k",
    interpolation="bicubic",
    license="apache-2.0",
    top1=81.13,
    top5=95.59,
)
timm_hub(
    "vit_small_patch32_224.augreg_in21k_ft_in1k",
    interpolation="bicubic",
    license="apache-2.0",
    top1=76.01,
    top5=93.266,
)
timm_hub(
    "vit_small_patch32_224.augreg_in21k",
    num_classes=21843,
    interpolation="bicubic",
    license="apache-2.0",
)
timm_hub(
    "vit_small_patch32_384.augreg_in21k_ft_in1k",
    interpolation="bicubic",
    license="apache-2.0",
    top1=80.476,
    top5=95.594,
)
timm_hub(
    "vit_base_patch16_224.augreg2_in21k_ft_in1k",
    interpolation="bicubic",
    license="apache-2.0",
    top1=85.108,
    top5=97.53,
)
timm_hub(
    "vit_base_patch16_224.augreg_in21k_ft_in1k",
    interpolation="bicubic",
    license="apache-2.0",
    top1=84.534,
    top5=97.3,
)
timm_hub(
    "vit_base_patch16_224.orig_in21k_ft_in1k",
    interpolation="bicubic",
    license="apache-2.0",
    top1=81.782,
    top5=96.122,
)
timm_hub(
    "vit_base_patch16_224.augreg_in1k",
    interpolation="bicubic",
    license="apache-2.0",
    top1=79.154,
    top5=94.108,
)
timm_hub(
    "vit_base_patch16_224.orig_in21k", num_classes=0, interpolation="bicubic", license="apache-2.0"
)
timm_hub(
    "vit_base_patch16_224.augreg_in21k",
    num_classes=21843,
    interpolation="bicubic",
    license="apache-2.0",
)
timm_hub(
    "vit_base_patch16_224.sam_in1k",
    interpolation="bicubic",
    license="apache-2.0",
    top1=80.246,
    top5=94.764,
)
timm_hub(
    "vit_base_patch16_224.bamboo",
    num_classes=115217,
    mean=(0.48145466, 0.4578275, 0.40821073),
    std=(0.26862954, 0.26130258, 0.27577711),
    interpolation="bicubic",
    crop_pct=1.0,
)
timm_hub(
    "vit_base_patch16_224.dino",
    num_classes=0,
    mean=(0.485, 0.456, 0.406),
    std=(0.229, 0.224, 0.225),
    interpolation="bicubic",
    license="apache-2.0",
)
timm_hub(
    "vit_base_patch16_224.mae",
    num_classes=0,
    mean=(0.485, 0.456, 0.406),
    std=(0.229, 0.224, 0.225),
    interpolation="bicubic",
    license="cc-by-nc-4.0",
)
register_pretrained(
    "vit_base_patch16_224.mae_orig",
    url="https://dl.fbaipublicfiles.com/mae/pretrain/mae_pretrain_vit_base.pth",
    state_dict_key="model",
    source="facebookresearch/mae",
    num_classes=0,
    mean=(0.485, 0.456, 0.406),
    std=(0.229, 0.224, 0.225),
    interpolation="bicubic",
    crop_pct=0.875,
    license="cc-by-nc-4.0",
    notes="MAE pre-trained encoder only (md5 prefix 8cad7c; no head)",
)
register_pretrained(
    "vit_base_patch16_224.mae_ft_in1k_orig",
    url="https://dl.fbaipublicfiles.com/mae/finetune/mae_finetuned_vit_base.pth",
    state_dict_key="model",
    source="facebookresearch/mae",
    mean=(0.485, 0.456, 0.406),
    std=(0.229, 0.224, 0.225),
    interpolation="bicubic",
    crop_pct=0.875,
    license="cc-by-nc-4.0",
    top1=83.664,
    top5=96.53,
    model_kwargs={"global_pool": "avg"},
    notes="MAE fine-tuned on ImageNet-1k (md5 prefix 1b25e9)",
)
timm_hub(
    "vit_base_patch16_384.augreg_in21k_ft_in1k",
    interpolation="bicubic",
    license="apache-2.0",
    top1=86.01,
    top5=97.998,
)
timm_hub(
    "vit_base_patch16_384.orig_in21k_ft_in1k",
    interpolation="bicubic",
    license="apache-2.0",
    top1=84.212,
    top5=97.21,
)
timm_hub(
    "vit_base_patch16_384.augreg_in1k",
    interpolation="bicubic",
    license="apache-2.0",
    top1=81.102,
    top5=95.334,
)
timm_hub(
    "vit_base_patch32_224.augreg_in21k_ft_in1k",
    interpolation="bicubic",
    license="apache-2.0",
    top1=80.732,
    top5=95.574,
)
timm_hub(
    "vit_base_patch32_224.augreg_in1k",
    interpolation="bicubic",
    license="apache-2.0",
    top1=74.908,
    top5=91.77,
)
timm_hub(
    "vit_base_patch32_224.orig_in21k", num_classes=0, interpolation="bicubic", license="apache-2.0"
)
timm_hub(
    "vit_base_patch32_224.augreg_in21k",
    num_classes=21843,
    interpolation="bicubic",
    license="apache-2.0",
)
timm_hub(
    "vit_base_patch32_224.sam_in1k",
    interpolation="bicubic",
    license="apache-2.0",
    top1=73.704,
    top5=91.012,
)
timm_hub(
    "vit_base_patch32_384.augreg_in21k_ft_in1k",
    interpolation="bicubic",
    license="apache-2.0",
    top1=83.358,
    top5=96.828,
)
timm_hub(
    "vit_base_patch32_384.augreg_in1k",
    interpolation="bicubic",
    license="apache-2.0",
    top1=78.75,
    top5=94.238,
)
timm_hub(
    "vit_large_patch16_224.augreg_in21k_ft_in1k",
    interpolation="bicubic",
    license="apache-2.0",
    top1=85.856,
    top5=97.822,
)
timm_hub(
    "vit_large_patch16_224.orig_in21k", num_classes=0, interpolation="bicubic", license="apache-2.0"
)
timm_hub(
    "vit_large_patch16_224.augreg_in21k",
    num_classes=21843,
    interpolation="bicubic",
    license="apache-2.0",
)
timm_hub(
    "vit_large_patch16_224.mae",
    num_classes=0,
    mean=(0.485, 0.456, 0.406),
    std=(0.229, 0.224, 0.225),
    interpolation="bicubic",
    license="cc-by-nc-4.0",
)
register_pretrained(
    "vit_large_patch16_224.mae_orig",
    url="https://dl.fbaipublicfiles.com/mae/pretrain/mae_pretrain_vit_large.pth",
    state_dict_key="model",
    source="facebookresearch/mae",
    num_classes=0,
    mean=(0.485, 0.456, 0.406),
    std=(0.229, 0.224, 0.225),
    interpolation="bicubic",
    crop_pct=0.875,
    license="cc-by-nc-4.0",
    notes="MAE pre-trained encoder only (md5 prefix b8b06e; no head)",
)
register_pretrained(
    "vit_large_patch16_224.mae_ft_in1k_orig",
    url="https://dl.fbaipublicfiles.com/mae/finetune/mae_finetuned_vit_large.pth",
    state_dict_key="model",
    source="facebookresearch/mae",
    mean=(0.485, 0.456, 0.406),
    std=(0.229, 0.224, 0.225),
    interpolation="bicubic",
    crop_pct=0.875,
    license="cc-by-nc-4.0",
    top1=85.952,
    top5=97.57,
    model_kwargs={"global_pool": "avg"},
    notes="MAE fine-tuned on ImageNet-1k (md5 prefix 51f550)",
)
timm_hub(
    "vit_large_patch16_384.augreg_in21k_ft_in1k",
    interpolation="bicubic",
    license="apache-2.0",
    top1=87.096,
    top5=98.302,
)
timm_hub(
    "vit_large_patch32_224.orig_in21k", num_classes=0, interpolation="bicubic", license="apache-2.0"
)
timm_hub(
    "vit_large_patch32_384.orig_in21k_ft_in1k",
    interpolation="bicubic",
    license="apache-2.0",
    top1=81.508,
    top5=96.086,
)
timm_hub(
    "vit_huge_patch14_224.orig_in21k", num_classes=0, interpolation="bicubic", license="apache-2.0"
)
timm_hub(
    "vit_huge_patch14_224.mae",
    num_classes=0,
    mean=(0.485, 0.456, 0.406),
    std=(0.229, 0.224, 0.225),
    interpolation="bicubic",
    license="cc-by-nc-4.0",
)
register_pretrained(
    "vit_huge_patch14_224.mae_orig",
    url="https://dl.fbaipublicfiles.com/mae/pretrain/mae_pretrain_vit_huge.pth",
    state_dict_key="model",
    source="facebookresearch/mae",
    num_classes=0,
    mean=(0.485, 0.456, 0.406),
    std=(0.229, 0.224, 0.225),
    interpolation="bicubic",
    crop_pct=0.875,
    license="cc-by-nc-4.0",
    notes="MAE pre-trained encoder only (md5 prefix 9bdbb0; no head)",
)
register_pretrained(
    "vit_huge_patch14_224.mae_ft_in1k_orig",
    url="https://dl.fbaipublicfiles.com/mae/finetune/mae_finetuned_vit_huge.pth",
    state_dict_key="model",
    source="facebookresearch/mae",
    mean=(0.485, 0.456, 0.406),
    std=(0.229, 0.224, 0.225),
    interpolation="bicubic",
    crop_pct=0.875,
    license="cc-by-nc-4.0",
    top1=86.928,
    top5=98.088,
    model_kwargs={"global_pool": "avg"},
    notes="MAE fine-tuned on ImageNet-1k (md5 prefix 2541f2)",
)
