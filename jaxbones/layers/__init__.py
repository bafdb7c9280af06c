"""Building blocks with PyTorch-exact numerics (padding, norms, GELU, pooling)."""

from jaxbones.layers.activations import gelu, gelu_tanh, get_act, hard_sigmoid, quick_gelu
from jaxbones.layers.attention import dot_product_attention
from jaxbones.layers.checks import check_input
from jaxbones.layers.conv import ConvNormAct, conv2d, conv_kernel_init, torch_padding
from jaxbones.layers.drop import DropPath, drop_path_rates
from jaxbones.layers.mlp import Mlp, dense_init
from jaxbones.layers.norm import BatchNorm, GroupNorm, LayerNorm
from jaxbones.layers.pool import adaptive_avg_pool2d, avg_pool2d, global_pool, max_pool2d

__all__ = [
    "BatchNorm",
    "ConvNormAct",
    "DropPath",
    "GroupNorm",
    "LayerNorm",
    "Mlp",
    "adaptive_avg_pool2d",
    "avg_pool2d",
    "check_input",
    "conv2d",
    "conv_kernel_init",
    "dense_init",
    "dot_product_attention",
    "drop_path_rates",
    "gelu",
    "gelu_tanh",
    "get_act",
    "global_pool",
    "hard_sigmoid",
    "max_pool2d",
    "quick_gelu",
    "torch_padding",
]
