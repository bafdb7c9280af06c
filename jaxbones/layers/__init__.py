"""Building blocks with PyTorch-exact numerics (padding, norms, GELU, pooling)."""

from jaxbones.layers.activations import gelu, gelu_tanh, get_act, hard_sigmoid, quick_gelu
from jaxbones.layers.attention import MultiHeadAttention, dot_product_attention
from jaxbones.layers.checks import check_input
from jaxbones.layers.conv import ConvNormAct, conv2d, conv_kernel_init, torch_padding
from jaxbones.layers.drop import DropPath, drop_path, drop_path_rates
from jaxbones.layers.linear import Dense
from jaxbones.layers.mlp import Mlp, dense_init
from jaxbones.layers.norm import BatchNorm, GroupNorm, LayerNorm
from jaxbones.layers.patch_embed import PatchEmbed
from jaxbones.layers.pool import adaptive_avg_pool2d, avg_pool2d, global_pool, max_pool2d
from jaxbones.layers.pos_embed import resample_abs_pos_embed, sincos_2d_table
from jaxbones.layers.stack import (
    REMAT_POLICIES,
    StackLayout,
    block_stack,
    remat,
    residual_dtype,
    restack,
    stack_blocks,
    unstack_blocks,
)
from jaxbones.layers.upsample import (
    UPSAMPLE_MODES,
    ConvTranspose2d,
    Upsample,
    pixel_shuffle,
    pixel_unshuffle,
    resize,
    resize_to,
)

__all__ = [
    "REMAT_POLICIES",
    "UPSAMPLE_MODES",
    "BatchNorm",
    "ConvNormAct",
    "ConvTranspose2d",
    "Dense",
    "DropPath",
    "GroupNorm",
    "LayerNorm",
    "Mlp",
    "MultiHeadAttention",
    "PatchEmbed",
    "StackLayout",
    "Upsample",
    "adaptive_avg_pool2d",
    "avg_pool2d",
    "block_stack",
    "check_input",
    "conv2d",
    "conv_kernel_init",
    "dense_init",
    "dot_product_attention",
    "drop_path",
    "drop_path_rates",
    "gelu",
    "gelu_tanh",
    "get_act",
    "global_pool",
    "hard_sigmoid",
    "max_pool2d",
    "pixel_shuffle",
    "pixel_unshuffle",
    "quick_gelu",
    "remat",
    "resample_abs_pos_embed",
    "residual_dtype",
    "resize",
    "resize_to",
    "restack",
    "sincos_2d_table",
    "stack_blocks",
    "torch_padding",
    "unstack_blocks",
]
