"""Masked autoencoder pre-training (He et al. 2021; facebookresearch/mae ``models_mae.py``).

``model.apply(variables, images, train=..., noise=None)`` returns ``(loss, pred, mask)``:
``pred`` [B, L, p*p*C] per-patch pixel predictions (normalised-pixel space with
``norm_pix_loss``), ``mask`` [B, L] 1 for removed patches. Without ``noise``, per-sample noise
[B, L] is drawn with ``jax.random.uniform`` from the ``'mask'`` RNG stream (falling back to
``'dropout'`` when no ``'mask'`` key is given, and to ``'params'`` during ``init``); the
``int(L * (1 - mask_ratio))`` patches with the smallest noise are kept (a static count, so
shapes are static and the masking shards over the batch). The encoder latent [B, 1 + keep, D]
and ``ids_restore`` [B, L] are sown into the ``'intermediates'`` collection (apply with
``mutable=['intermediates']`` to read them).

Fixed position tables: ``pos_embed`` and ``decoder_pos_embed`` are the float64 MAE sin-cos
tables (``jaxbones.layers.pos_embed.sincos_2d_table``) stored as ordinary ``params`` (so
checkpoints and parameter counts match the original: 111,907,840 for the base model) but
used through ``jax.lax.stop_gradient``: their gradient is exactly zero, and the training
system's rule leaves ``pos_embed``/``decoder_pos_embed`` out of weight decay, so AdamW never
changes them. ``FIXED_PARAMS`` names them for optimizers that should mask them explicitly.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from einops import rearrange

from jaxbones.layers.checks import check_input
from jaxbones.layers.drop import drop_path_rates
from jaxbones.layers.mlp import dense_init
from jaxbones.layers.norm import LayerNorm
from jaxbones.layers.param_groups import ParamGroups, transformer_layer_ids
from jaxbones.layers.partitioning import TRANSFORMER_RULES
from jaxbones.layers.patch_embed import PatchEmbed
from jaxbones.layers.pos_embed import sincos_2d_table
from jaxbones.layers.stack import block_stack
from jaxbones.models.vit import Block
from jaxbones.registry import register_model, register_pretrained

Dtype = Any

# parameter names that hold fixed (non-trainable) tables
FIXED_PARAMS = ("pos_embed", "decoder_pos_embed")


def patchify(images, patch_size: int):
    """[B, H, W, C] -> [B, L, p*p*C], patches row-major, each patch flattened (p, q, c) as
    MAE's ``einsum('nchpwq->nhwpqc')``."""
    p = patch_size
    return rearrange(images, "b (h p) (w q) c -> b (h w) (p q c)", p=p, q=p)


def unpatchify(patches, patch_size: int, grid_size, channels: int = 3):
    """[B, L, p*p*C] -> [B, H, W, C]; the inverse of ``patchify`` for a (gh, gw) grid."""
    gh, gw = (grid_size, grid_size) if isinstance(grid_size, int) else grid_size
    p = patch_size
    return rearrange(
        patches, "b (h w) (p q c) -> b (h p) (w q) c", h=gh, w=gw, p=p, q=p, c=channels
    )


def random_masking(noise, keep: int):
    """MAE's per-sample shuffle: returns (ids_keep [B, keep], mask [B, L], ids_restore [B, L]).

    The ``keep`` smallest noise values are kept; ``mask`` is 1 for removed patches in the
    original patch order. ``jnp.argsort`` is stable, as needed for ties to match."""
    ids_shuffle = jnp.argsort(noise, axis=1)  # ascending: small is keep
    ids_restore = jnp.argsort(ids_shuffle, axis=1)
    ids_keep = ids_shuffle[:, :keep]
    mask = (ids_restore >= keep).astype(jnp.float32)  # == gather(ones with [:keep]=0, restore)
    return ids_keep, mask, ids_restore


def mae_loss(images, pred, mask, patch_size: int, norm_pix_loss: bool):
    """Mean over removed patches of the per-patch MSE (float32). With ``norm_pix_loss`` the
    target patch is normalised by its mean and unbiased (ddof=1) variance + 1e-6 (MAE)."""
    target = patchify(images.astype(jnp.float32), patch_size)
    if norm_pix_loss:
        mean = target.mean(-1, keepdims=True)
        var = target.var(-1, keepdims=True, ddof=1)
        target = (target - mean) / (var + 1.0e-6) ** 0.5
    per_patch = jnp.square(pred.astype(jnp.float32) - target).mean(-1)  # [B, L]
    return (per_patch * mask).sum() / mask.sum()


def reconstruct(
    pred,
    mask,
    images,
    patch_size: int,
    norm_pix_loss: bool = False,
    paste_visible: bool = True,
):
    """Turns a prediction back into images for visualisation.

    Args:
      pred: [B, L, p*p*C] from the model; mask: [B, L] (1 = removed); images: the [B, H, W, C]
        inputs (needed to undo ``norm_pix_loss``: each predicted patch is scaled back with the
        mean and unbiased std of the true patch, as the MAE demo does).
      paste_visible: put the visible input patches back (MAE's "reconstruction + visible").

    Returns:
      dict of [B, H, W, C] arrays: ``masked`` (input with removed patches zeroed),
      ``reconstruction`` (the prediction as an image) and ``pasted`` (visible patches from the
      input, removed ones from the prediction) when ``paste_visible``.
    """
    _b, h, w, c = images.shape
    grid = (h // patch_size, w // patch_size)
    target = patchify(images.astype(jnp.float32), patch_size)
    pred = pred.astype(jnp.float32)
    if norm_pix_loss:
        mean = target.mean(-1, keepdims=True)
        var = target.var(-1, keepdims=True, ddof=1)
        pred = pred * (var + 1.0e-6) ** 0.5 + mean
    m = mask[..., None].astype(jnp.float32)  # [B, L, 1]
    out = {
        "masked": unpatchify(target * (1 - m), patch_size, grid, c),
        "reconstruction": unpatchify(pred, patch_size, grid, c),
    }
    if paste_visible:
        out["pasted"] = unpatchify(target * (1 - m) + pred * m, patch_size, grid, c)
    return out


def _table_init(table: np.ndarray):
    def init(key, shape, dtype=jnp.float32):
        del key
        assert tuple(shape) == (1, *table.shape), (shape, table.shape)
        return jnp.asarray(table[None], dtype)

    return init


class MaskedAutoencoderViT(nn.Module):
    """MAE with a ViT encoder and a lightweight ViT decoder (``models_mae.MaskedAutoencoderViT``).

    Attributes:
      img_size, patch_size, in_chans, embed_dim, depth, num_heads: the encoder ViT.
      decoder_embed_dim, decoder_depth, decoder_num_heads: the decoder (512, 8, 16 in MAE).
      mlp_ratio: MLP width for both; norm_eps: LayerNorm epsilon (1e-6); act: exact GELU.
      mask_ratio: fraction of patches removed (0.75); norm_pix_loss: per-patch normalised
        pixel targets.
      drop_path_rate: encoder stochastic depth (0 in MAE pre-training).
      attn_implementation: None | 'xla' | 'cudnn'.
      scan: ``nn.scan`` over encoder and decoder blocks (``blocks`` and ``decoder_blocks``
        subtrees with a leading [depth] axis); remat_policy: a ``REMAT_POLICIES`` name.
      dtype, param_dtype: compute and parameter dtypes (loss in float32).
    """

    img_size: int = 224
    patch_size: int = 16
    in_chans: int = 3
    embed_dim: int = 1024
    depth: int = 24
    num_heads: int = 16
    decoder_embed_dim: int = 512
    decoder_depth: int = 8
    decoder_num_heads: int = 16
    mlp_ratio: float = 4.0
    norm_eps: float = 1e-6
    act: str | Callable = "gelu"
    mask_ratio: float = 0.75
    norm_pix_loss: bool = False
    drop_path_rate: float = 0.0
    attn_implementation: str | None = None
    scan: bool = False
    remat_policy: str = "none"
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    num_prefix_tokens = 1

    @property
    def grid_size(self) -> tuple[int, int]:
        g = self.img_size // self.patch_size
        return g, g

    @property
    def num_patches(self) -> int:
        return self.grid_size[0] * self.grid_size[1]

    @property
    def num_keep(self) -> int:
        """Visible patches per sample: MAE's static ``int(L * (1 - mask_ratio))``."""
        return int(self.num_patches * (1 - self.mask_ratio))

    @property
    def default_input_size(self) -> tuple[int, int, int]:
        s = self.grid_size[0] * self.patch_size
        return s, s, self.in_chans

    def _block(self, num_heads: int):
        return functools.partial(
            Block,
            num_heads=num_heads,
            mlp_ratio=self.mlp_ratio,
            norm_eps=self.norm_eps,
            act=self.act,
            attn_implementation=self.attn_implementation,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
        )

    def _noise(self, b: int):
        if self.has_rng("mask") or self.is_initializing():
            key = self.make_rng("mask")
        elif self.has_rng("dropout"):
            key = self.make_rng("dropout")
        else:
            raise ValueError(
                "MAE masking needs randomness: pass noise=[B, L] or rngs={'mask': key}"
            )
        return jax.random.uniform(key, (b, self.num_patches), jnp.float32)

    @nn.compact
    def __call__(self, images, train: bool = False, noise=None):
        s = self.default_input_size[0]
        check_input(images, in_chans=self.in_chans, min_size=self.patch_size, model="MAE")
        if images.shape[1:3] != (s, s):
            raise ValueError(
                f"MAE built for {s}x{s} images got {images.shape[1]}x{images.shape[2]}; "
                f"create it with img_size={images.shape[1]} (square, a multiple of "
                f"{self.patch_size})"
            )
        b = images.shape[0]
        deterministic = not train
        dt = self.dtype or images.dtype
        norm = functools.partial(LayerNorm, epsilon=self.norm_eps, dtype=self.dtype)
        norm = functools.partial(norm, param_dtype=self.param_dtype)
        dense = functools.partial(
            nn.Dense, dtype=self.dtype, param_dtype=self.param_dtype, kernel_init=dense_init
        )
        d, dd = self.embed_dim, self.decoder_embed_dim
        n = self.num_patches

        # ---- encoder on the visible patches
        x = PatchEmbed(
            d, self.patch_size, dtype=self.dtype, param_dtype=self.param_dtype, name="patch_embed"
        )(images.astype(dt))  # [B, L, D]
        cls = self.param("cls_token", nn.initializers.normal(0.02), (1, 1, d), self.param_dtype)
        pos = self.param(
            "pos_embed",
            _table_init(sincos_2d_table(d, self.grid_size)),
            (1, n + 1, d),
            self.param_dtype,
        )
        pos = jax.lax.stop_gradient(pos).astype(dt)  # fixed table
        x = x + pos[:, 1:]
        if noise is None:
            noise = self._noise(b)
        if noise.shape != (b, n):
            raise ValueError(f"noise must have shape [B, L] = {(b, n)}, got {noise.shape}")
        ids_keep, mask, ids_restore = random_masking(noise, self.num_keep)
        x = jnp.take_along_axis(x, ids_keep[..., None], axis=1)  # [B, keep, D]
        cls = (cls.astype(dt) + pos[:, :1]).astype(dt)
        x = jnp.concatenate([jnp.broadcast_to(cls, (b, 1, d)), x], axis=1)  # [B, 1 + keep, D]
        x, _ = block_stack(
            self,
            self._block(self.num_heads),
            x,
            depth=self.depth,
            name="blocks",
            args=(deterministic,),
            deterministic=deterministic,
            drop_path=drop_path_rates(self.drop_path_rate, [self.depth])[0],
            scan=self.scan,
            remat_policy=self.remat_policy,
        )
        latent = norm(name="norm")(x)
        self.sow("intermediates", "latent", latent)
        self.sow("intermediates", "ids_restore", ids_restore)

        # ---- decoder: mask tokens appended, unshuffled with ids_restore, cls kept first
        y = dense(dd, name="decoder_embed")(latent)  # [B, 1 + keep, Dd]
        mask_token = self.param(
            "mask_token", nn.initializers.normal(0.02), (1, 1, dd), self.param_dtype
        )
        tokens = jnp.concatenate(
            [y[:, 1:], jnp.broadcast_to(mask_token.astype(y.dtype), (b, n - self.num_keep, dd))],
            axis=1,
        )  # [B, L, Dd] in shuffled order
        tokens = jnp.take_along_axis(tokens, ids_restore[..., None], axis=1)  # original order
        y = jnp.concatenate([y[:, :1], tokens], axis=1)  # [B, 1 + L, Dd]
        dpos = self.param(
            "decoder_pos_embed",
            _table_init(sincos_2d_table(dd, self.grid_size)),
            (1, n + 1, dd),
            self.param_dtype,
        )
        y = y + jax.lax.stop_gradient(dpos).astype(y.dtype)
        y, _ = block_stack(
            self,
            self._block(self.decoder_num_heads),
            y,
            depth=self.decoder_depth,
            name="decoder_blocks",
            args=(deterministic,),
            deterministic=deterministic,
            scan=self.scan,
            remat_policy=self.remat_policy,
        )
        y = norm(name="decoder_norm")(y)
        pred = dense(self.patch_size**2 * self.in_chans, name="decoder_pred")(y)[:, 1:]
        loss = mae_loss(images, pred, mask, self.patch_size, self.norm_pix_loss)
        return loss, pred, mask


_MAE = [
    # name, patch, (dim, depth, heads): models_mae.py's mae_vit_*_dec512d8b
    ("mae_vit_base_patch16_dec512d8b", 16, (768, 12, 12)),
    ("mae_vit_large_patch16_dec512d8b", 16, (1024, 24, 16)),
    ("mae_vit_huge_patch14_dec512d8b", 14, (1280, 32, 16)),
]
# main_pretrain.py groups with timm's add_weight_decay and no skip list: only 1-D params and
# biases are exempt, so cls_token and mask_token are decayed; the fixed tables are not trained
# there (requires_grad=False) and are kept out of decay here (tests/test_param_group_parity.py).
# Layer ids as util/lr_decay.py (the decoder, used only in pretraining, counts with the head)
PARAM_GROUPS = ParamGroups(
    no_decay=FIXED_PARAMS,
    stacks=("blocks", "decoder_blocks"),
    layer_ids=transformer_layer_ids(embed=("cls_token", "pos_embed", "patch_embed")),
)
for _name, _patch, (_dim, _depth, _heads) in _MAE:
    register_model(
        _name,
        functools.partial(
            MaskedAutoencoderViT,
            patch_size=_patch,
            embed_dim=_dim,
            depth=_depth,
            num_heads=_heads,
            decoder_embed_dim=512,
            decoder_depth=8,
            decoder_num_heads=16,
        ),
        family="mae",
        reference="facebookresearch/mae models_mae (transformers.ViTMAEForPreTraining)",
        min_size=_patch,
        param_groups=PARAM_GROUPS,
        partition_rules=TRANSFORMER_RULES,  # encoder and decoder blocks
    )


# ---------------------------------------------------------------------------------------------
# Pretrained weights: facebookresearch/mae's visualisation checkpoints (encoder + decoder,
# ``{'model': state_dict}``); the encoder-only and fine-tuned releases are vit tags.

register_pretrained(
    "mae_vit_base_patch16_dec512d8b.visualize_in1k",
    url="https://dl.fbaipublicfiles.com/mae/visualize/mae_visualize_vit_base.pth",
    state_dict_key="model",
    source="facebookresearch/mae",
    num_classes=0,
    license="cc-by-nc-4.0",
    notes="encoder + decoder trained on unnormalised pixels, for reconstructions",
)
register_pretrained(
    "mae_vit_large_patch16_dec512d8b.visualize_in1k",
    url="https://dl.fbaipublicfiles.com/mae/visualize/mae_visualize_vit_large.pth",
    state_dict_key="model",
    source="facebookresearch/mae",
    num_classes=0,
    license="cc-by-nc-4.0",
    notes="encoder + decoder trained on unnormalised pixels, for reconstructions",
)
register_pretrained(
    "mae_vit_large_patch16_dec512d8b.visualize_ganloss_in1k",
    url="https://dl.fbaipublicfiles.com/mae/visualize/mae_visualize_vit_large_ganloss.pth",
    state_dict_key="model",
    source="facebookresearch/mae",
    num_classes=0,
    license="cc-by-nc-4.0",
    notes="encoder + decoder trained with an extra GAN loss, for sharper reconstructions",
)
register_pretrained(
    "mae_vit_huge_patch14_dec512d8b.visualize_in1k",
    url="https://dl.fbaipublicfiles.com/mae/visualize/mae_visualize_vit_huge.pth",
    state_dict_key="model",
    source="facebookresearch/mae",
    num_classes=0,
    license="cc-by-nc-4.0",
    notes="encoder + decoder trained on unnormalised pixels, for reconstructions",
)
