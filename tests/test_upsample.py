"""Upsampling layers against PyTorch: pixel shuffle / unshuffle (and the round trip), the
transposed convolution (weight layout, flip, padding, output_padding, dilation), resizes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from helpers import assert_close, assert_not_close, images, nhwc, to_nchw

from jaxbones.convert import default_leaf_map
from jaxbones.layers import (
    ConvTranspose2d,
    Upsample,
    pixel_shuffle,
    pixel_unshuffle,
    resize,
)

# assert_close tolerances, as a fraction of each reference array's largest magnitude
CONV_TRANSPOSE = {"rtol": 0, "atol_of_max": 1e-6}
RESIZE = {"rtol": 0, "atol_of_max": 1e-6}


@pytest.mark.parametrize("scale,chans", [(2, 3), (3, 2), (4, 1)])
def test_pixel_shuffle_matches_torch(scale, chans):
    x = images((2, 5, 7, chans * scale * scale))
    ref = nhwc(torch.nn.PixelShuffle(scale)(to_nchw(x)))
    out = np.asarray(pixel_shuffle(jnp.asarray(x), scale))
    assert out.shape == (2, 5 * scale, 7 * scale, chans)
    np.testing.assert_array_equal(out, ref)  # a permutation: exact


def test_tensorflow_depth_to_space_order_is_not_torch():
    # TF's depth_to_space reads channel (i * s + j) * C + c; PyTorch reads c * s * s + i * s + j.
    s, c = 2, 3
    x = images((1, 4, 4, c * s * s))
    ref = nhwc(torch.nn.PixelShuffle(s)(to_nchw(x)))
    tf_order = x.reshape(1, 4, 4, s, s, c).transpose(0, 1, 3, 2, 4, 5).reshape(1, 8, 8, c)
    assert np.abs(tf_order - ref).max() > 0.5


@pytest.mark.parametrize("scale,chans", [(2, 3), (3, 2)])
def test_pixel_unshuffle_matches_torch_and_round_trips(scale, chans):
    x = images((2, 4 * scale, 3 * scale, chans), seed=1)
    ref = nhwc(torch.nn.PixelUnshuffle(scale)(to_nchw(x)))
    out = np.asarray(pixel_unshuffle(jnp.asarray(x), scale))
    np.testing.assert_array_equal(out, ref)
    np.testing.assert_array_equal(np.asarray(pixel_shuffle(out, scale)), x)
    y = images((2, 3, 5, chans * scale * scale), seed=2)
    np.testing.assert_array_equal(np.asarray(pixel_unshuffle(pixel_shuffle(y, scale), scale)), y)


def test_pixel_shuffle_bad_channels_names_fix():
    with pytest.raises(ValueError, match="divisible by 4"):
        pixel_shuffle(jnp.zeros((1, 2, 2, 6)), 2)


def _convert_transpose_weight(w: np.ndarray) -> np.ndarray:
    # the shared conv leaf rule of jaxbones.convert maps ConvTranspose2d (I, O, kh, kw) too
    return default_leaf_map("up", "params", "kernel", 4).to_flax(w)


CONV_T_CASES = [
    {"kernel_size": 2, "stride": 2},  # the UNet up-convolution
    {"kernel_size": 3, "stride": 2, "padding": 1, "output_padding": 1},
    {"kernel_size": 4, "stride": 2, "padding": 1},
    {"kernel_size": 3, "stride": 1, "padding": 1},
    {"kernel_size": 3, "stride": 3, "dilation": 2, "padding": 2},
    {"kernel_size": (3, 2), "stride": (2, 1), "padding": (1, 0)},
]


@pytest.mark.parametrize("cfg", CONV_T_CASES)
def test_conv_transpose_matches_torch(cfg):
    torch.manual_seed(0)
    tm = torch.nn.ConvTranspose2d(5, 4, **cfg)
    with torch.no_grad():
        tm.bias.uniform_(-0.5, 0.5)
    x = images((2, 6, 7, 5), seed=3)
    ref = nhwc(tm(to_nchw(x)))
    params = {
        "kernel": _convert_transpose_weight(tm.weight.detach().numpy()),
        "bias": tm.bias.detach().numpy(),
    }
    out = ConvTranspose2d(4, **cfg).apply({"params": params}, x)
    assert_close(out, ref, **CONV_TRANSPOSE)


def test_conv_transpose_without_flip_fails():
    # the trap of docs/parity.md: using the torch kernel without the spatial flip
    torch.manual_seed(0)
    tm = torch.nn.ConvTranspose2d(5, 4, 3, stride=2, padding=1, output_padding=1)
    x = images((2, 6, 7, 5), seed=3)
    ref = nhwc(tm(to_nchw(x)))
    k = _convert_transpose_weight(tm.weight.detach().numpy())[::-1, ::-1]  # cancels the flip
    out = ConvTranspose2d(4, 3, 2, 1, 1).apply(
        {"params": {"kernel": k, "bias": tm.bias.detach().numpy()}}, x
    )
    assert_not_close(out, ref, **CONV_TRANSPOSE)


@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
@pytest.mark.parametrize("scale", [2, 4])
def test_resize_matches_torch_interpolate(mode, scale):
    x = images((2, 5, 6, 3), seed=4)
    kw = {"align_corners": False} if mode == "bilinear" else {}
    ref = nhwc(torch.nn.functional.interpolate(to_nchw(x), scale_factor=scale, mode=mode, **kw))
    assert_close(resize(jnp.asarray(x), scale, mode), ref, **RESIZE)


@pytest.mark.parametrize("mode", ["transpose", "bilinear", "nearest", "pixel_shuffle"])
def test_upsample_modes_shapes(mode):
    x = jnp.asarray(images((2, 4, 5, 6)))
    m = Upsample(7, 2, mode)
    out, _ = jax.eval_shape(lambda x: m.init_with_output(jax.random.PRNGKey(0), x), x)
    assert out.shape == (2, 8, 10, 7)
    with pytest.raises(ValueError, match="pixel_shuffle"):
        jax.eval_shape(lambda x: Upsample(7, 2, "bicubic").init(jax.random.PRNGKey(0), x), x)
