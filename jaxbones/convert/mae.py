"""facebookresearch/mae checkpoint layout (``models_mae.MaskedAutoencoderViT``).

Keys: ``patch_embed.proj``, ``cls_token``, ``pos_embed`` (fixed), ``blocks.{i}.*`` (timm
``Block``), ``norm``, ``decoder_embed``, ``mask_token``, ``decoder_pos_embed`` (fixed),
``decoder_blocks.{i}.*``, ``decoder_norm``, ``decoder_pred``; files wrap them as
``{'model': state_dict}`` (unwrapped by ``load_state_dict``). The released encoder-only
pre-trained files load with the decoder reported missing (not an error unless ``strict``);
the fixed tables are recomputed when absent or built for another image size. Fine-tuned MAE
files are plain timm ViTs with ``global_pool='avg'`` (``fc_norm`` + ``head``): load them with
``from_torch('vit_base_patch16_224', sd, global_pool='avg')``.
"""

from __future__ import annotations

import numpy as np

from jaxbones.convert.core import Converter, register_converter
from jaxbones.layers.pos_embed import sincos_2d_table
from jaxbones.layers.stack import StackLayout


def from_transformers_layout(sd: dict) -> dict:
    """transformers' ``ViTMAEForPreTraining`` keys -> facebookresearch/mae keys (separate
    q/k/v projections fused into ``attn.qkv`` with [q; k; v] rows). Tensors stay torch
    tensors or numpy arrays, as given."""
    out = {}
    for k, v in sd.items():
        k = k.replace("vit.embeddings.patch_embeddings.projection", "patch_embed.proj")
        k = k.replace("vit.embeddings.position_embeddings", "pos_embed")
        k = k.replace("vit.embeddings.cls_token", "cls_token")
        k = k.replace("vit.layers.", "blocks.").replace("vit.layernorm", "norm")
        k = k.replace("decoder.decoder_layers.", "decoder_blocks.").replace("decoder.", "", 1)
        k = k.replace("layernorm_before", "norm1").replace("layernorm_after", "norm2")
        k = k.replace("attention.o_proj", "attn.proj")
        out[k] = v
    for k in [k for k in out if ".attention.q_proj." in k]:
        qkv = [out.pop(k.replace("q_proj", p)) for p in ("q_proj", "k_proj", "v_proj")]
        if hasattr(qkv[0], "detach"):  # torch tensors: torch is installed
            import torch

            fused = torch.cat(qkv, 0)
        else:
            fused = np.concatenate(qkv, 0)
        out[k.replace("attention.q_proj", "attn.qkv")] = fused
    return out


def _fixed_tables(sd: dict, model) -> dict:
    # The tables are deterministic functions of (dim, grid): fill them in when the file has
    # none (encoder-only exports may drop them) or has them for another grid.
    out = dict(sd)
    for key, dim in (
        ("pos_embed", model.embed_dim),
        ("decoder_pos_embed", model.decoder_embed_dim),
    ):
        shape = (1, model.num_patches + 1, dim)
        encoder_present = any(k.startswith("blocks.") for k in sd)
        decoder_present = any(k.startswith("decoder_") for k in sd)
        present = decoder_present if key.startswith("decoder") else encoder_present
        if present and (key not in sd or tuple(sd[key].shape) != shape):
            out[key] = sincos_2d_table(dim, model.grid_size)[None].astype("float32")
    return out


def scan_layout(model) -> list[StackLayout]:
    return [
        StackLayout("blocks", model.depth),
        StackLayout("decoder_blocks", model.decoder_depth),
    ]


register_converter(
    "mae",
    Converter(
        rules=[(r"^blocks_(\d+)", r"blocks.\1"), (r"^decoder_blocks_(\d+)", r"decoder_blocks.\1")],
        canonicalize=_fixed_tables,
        scan_layout=scan_layout,
    ),
)
