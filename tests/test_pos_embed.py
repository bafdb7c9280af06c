"""Position embeddings: MAE's float64 sin-cos table against an independent implementation
(transformers' ViTMAE table, which stores [sin_h|cos_h|sin_w|cos_w] and rotates the halves
into the original MAE layout), and bicubic resampling against PyTorch / timm."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from timm.layers import resample_abs_pos_embed as timm_resample
from transformers.models.vit_mae.modeling_vit_mae import build_2d_sinusoidal_position_embedding

from jaxbones.layers.pos_embed import (
    bicubic_resize_matrix,
    resample_abs_pos_embed,
    resample_grid,
    sincos_2d_table,
)


@pytest.mark.parametrize("dim,grid", [(768, 14), (512, 14), (1280, 16), (64, 4)])
def test_sincos_table_equals_mae_layout(dim, grid):
    table = sincos_2d_table(dim, grid, cls_token=True)
    assert table.dtype == np.float64 and table.shape == (1 + grid * grid, dim)
    ref = build_2d_sinusoidal_position_embedding(
        grid, grid, dim, cls_token=True, dtype=torch.float64
    ).numpy()
    half = dim // 2
    ref = np.concatenate([ref[:, half:], ref[:, :half]], axis=1)  # HF's rotation to MAE order
    np.testing.assert_allclose(table, ref, rtol=0, atol=1e-12)


def test_sincos_table_semantics():
    # channel 0 is sin(col * 1), channel D/4 cos(col), channel D/2 sin(row): column first
    t = sincos_2d_table(16, (3, 5), cls_token=False)
    rows, cols = np.divmod(np.arange(15), 5)
    np.testing.assert_allclose(t[:, 0], np.sin(cols), atol=1e-15)
    np.testing.assert_allclose(t[:, 4], np.cos(cols), atol=1e-15)
    np.testing.assert_allclose(t[:, 8], np.sin(rows), atol=1e-15)
    np.testing.assert_allclose(t[:, 1], np.sin(cols / 10000 ** (1 / 4)), atol=1e-15)
    assert not np.any(sincos_2d_table(16, 3)[0])  # zero class-token row


@pytest.mark.parametrize("antialias", [False, True])
@pytest.mark.parametrize("n_in,n_out", [(14, 24), (24, 14), (7, 10), (16, 5), (3, 8)])
def test_bicubic_matches_torch(n_in, n_out, antialias):
    # a [C, n_in, n_in + 1] map resized to [n_out, n_out + 2]: both axes, up or down
    x = torch.randn(1, 5, n_in, n_in + 1, dtype=torch.float64)
    size = (n_out, n_out + 2)
    ref = F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=antialias)
    grid = x[0].permute(1, 2, 0).numpy()  # [H, W, C]
    mine = resample_grid(grid, size, antialias)
    np.testing.assert_allclose(mine, ref[0].permute(1, 2, 0).numpy(), rtol=0, atol=1e-12)


def test_bicubic_flax_default_kernel_differs():
    # the trap: a = -0.5 (jax.image.resize's cubic) instead of torch's -0.75
    import jax

    x = np.random.default_rng(0).standard_normal((14, 14, 4))
    mine = np.einsum("oh,hwc->owc", bicubic_resize_matrix(14, 24), x)  # rows 14 -> 24
    jx = np.asarray(jax.image.resize(x, (24, 14, 4), "cubic"))
    assert np.abs(mine - jx).max() > 1e-2


@pytest.mark.parametrize("antialias", [True, False])
@pytest.mark.parametrize(
    "prefix,old,new", [(1, (14, 14), (24, 24)), (0, (16, 16), (7, 7)), (1, (6, 4), (9, 5))]
)
def test_resample_abs_pos_embed_matches_timm(prefix, old, new, antialias):
    g = torch.Generator().manual_seed(0)
    pe = torch.randn(1, prefix + old[0] * old[1], 32, generator=g)
    ref = timm_resample(
        pe, list(new), list(old), num_prefix_tokens=prefix, antialias=antialias
    ).numpy()
    mine = resample_abs_pos_embed(pe.numpy(), new, old, prefix, antialias=antialias)
    assert mine.shape == ref.shape and mine.dtype == np.float32
    # timm resizes in float32; the weights here are float64
    np.testing.assert_allclose(mine, ref, rtol=0, atol=2e-5)


def test_resample_same_size_is_identity_and_bad_grid_names_fix():
    pe = np.random.default_rng(0).standard_normal((1, 197, 8)).astype(np.float32)
    assert resample_abs_pos_embed(pe, (14, 14)) is pe
    with pytest.raises(ValueError, match="old_size"):
        resample_abs_pos_embed(pe[:, :150], (14, 14))
