"""Swin Transformer v1: exact parameter counts, parity with timm (shifted windows, masks,
relative position bias, patch merging), negative tests for the traps, scanned == unrolled,
the official checkpoint layout, relative-position-table resampling, features, input checks."""

import copy
import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import timm
import torch
from helpers import (
    assert_close,
    assert_not_close,
    convert,
    images,
    randomize_,
    to_nchw,
    torch_count,
)
from timm.layers import resize_rel_pos_bias_table as timm_resize
from timm.layers.pos_embed_rel import resize_rel_pos_bias_table_simple as timm_resize_simple

import jaxbones
from jaxbones.convert.swin import resize_rel_pos_bias_table
from jaxbones.models import swin as swin_mod

# assert_close tolerances, as a fraction of each reference array's largest magnitude
LOGITS = {"rtol": 0, "atol_of_max": 1e-5}
SMALL_LOGITS = {"rtol": 0, "atol_of_max": 1e-5}
FEATURES = {"rtol": 0, "atol_of_max": 1e-5}

# timm's own counts (1000 classes); the 224 ones are also in docs/parity.md / the Swin paper.
PARAM_COUNTS = {
    "swin_tiny_patch4_window7_224": 28_288_354,
    "swin_small_patch4_window7_224": 49_606_258,
    "swin_base_patch4_window7_224": 87_768_224,
    "swin_base_patch4_window12_384": 87_903_584,
    "swin_large_patch4_window7_224": 196_532_476,
    "swin_large_patch4_window12_384": 196_735_516,
}
PARITY_MODELS = list(PARAM_COUNTS)
# forward/backward smoke test (tests/test_registry.py) at 64 px with window 4 and one block per
# stage, two in stage 0 (W-MSA + SW-MSA), at full width; the full-depth forward passes are
# covered by the parity tests below.
SMOKE_OVERRIDES = {
    n: {"depths": (2, 1, 1, 1), "img_size": 64, "window_size": 4} for n in PARAM_COUNTS
}

TINY = "swin_tiny_patch4_window7_224"
# A small configuration with every case: stage resolutions 16, 8, 4, 2 with window 4, so
# stages 0-1 shift, stage 2 has one window and no shift, stage 3's window shrinks to 2.
SMALL = {
    "img_size": 64,
    "window_size": 4,
    "embed_dim": 32,
    "depths": (2, 2, 2, 2),
    "num_heads": (1, 2, 4, 8),
}


def torch_model(name, seed=0, **kw):
    """timm model with ``randomize_`` plus O(1) relative position bias tables and sharper
    attention (qkv x4): at init (std 0.02) attention is near-uniform and window, shift and
    mask mistakes barely show."""
    torch.manual_seed(seed)
    tm = randomize_(timm.create_model(name, pretrained=False, **kw), seed).eval()
    with torch.no_grad():
        for n, p in tm.named_parameters():
            if n.endswith("relative_position_bias_table"):
                p.normal_(0.0, 1.0)
            elif n.endswith("attn.qkv.weight"):
                p.mul_(4.0)
    return tm


def forward(name, variables, x, **ov):
    model = jaxbones.create_model(name, **ov)
    return jax.jit(lambda v, x: model.apply(v, x))(variables, x)


def torch_forward(tm, x):
    with torch.no_grad():
        return tm(to_nchw(x)).numpy()


@pytest.mark.parametrize("name", PARITY_MODELS)
def test_param_count(name):
    assert jaxbones.model_info(name)["num_params"] == PARAM_COUNTS[name]
    with torch.device("meta"):  # shapes only: no 200M-parameter initialisation
        assert torch_count(timm.create_model(name, pretrained=False)) == PARAM_COUNTS[name]


def test_parity_tiny_full():
    tm = torch_model(TINY)
    x = images((2, 224, 224, 3))
    out = forward(TINY, convert(TINY, tm), x)
    chex.assert_shape(out, (2, 1000))
    assert_close(out, torch_forward(tm, x), **LOGITS)


@pytest.mark.parametrize(
    "name, kw",
    [
        ("swin_small_patch4_window7_224", {"depths": (1, 1, 2, 1)}),
        ("swin_base_patch4_window7_224", {"depths": (1, 1, 2, 1), "num_classes": 10}),
        # window 12 at 384 (stage 3: 12x12 = one window, no shift), reduced depth/width
        (
            "swin_base_patch4_window12_384",
            {"depths": (2, 1, 2, 1), "embed_dim": 32, "num_heads": (1, 2, 4, 8)},
        ),
        # Swin-L: full width, one block per stage
        ("swin_large_patch4_window7_224", {"depths": (1, 1, 1, 1)}),
        ("swin_large_patch4_window12_384", {"depths": (1, 1, 1, 1)}),
    ],
)
def test_parity_reduced(name, kw):
    tm = torch_model(name, **kw)
    size = jaxbones.model_info(name)["input_size"][0]
    x = images((1, size, size, 3), seed=1)
    out = forward(name, convert(name, tm, **kw), x, **kw)
    assert_close(out, torch_forward(tm, x), **LOGITS)


@functools.cache
def _small_reference():
    """(timm model, images, converted variables, timm logits, our logits) for SMALL."""
    tm = torch_model(TINY, seed=2, **SMALL)
    x = images((2, 64, 64, 3), seed=2)
    variables = convert(TINY, tm, **SMALL)
    return tm, x, variables, torch_forward(tm, x), forward(TINY, variables, x, **SMALL)


def test_parity_small_and_negatives(monkeypatch):
    """The small configuration matches (batch 2: windows of two images); dropping the shift,
    swapping the middle two PatchMerging inputs or dropping the mask fails the same check
    (errors 4.6e-3, 4.9e-2, 2.9e-3)."""
    _, x, variables, ref, out = _small_reference()
    assert_close(out, ref, **SMALL_LOGITS)

    orig_ws = swin_mod.window_and_shift
    traps = {
        "no shift": ("window_and_shift", lambda r, w: (orig_ws(r, w)[0], (0, 0))),
        "merge order": ("MERGE_ORDER", ((0, 0), (0, 1), (1, 0), (1, 1))),
        "no mask": ("attention_mask", lambda h, w, win, s: None),
    }
    for what, (attr, value) in traps.items():
        with monkeypatch.context() as m:
            m.setattr(swin_mod, attr, value)
            wrong = forward(TINY, variables, x, **SMALL)
        assert_not_close({what: wrong}, {what: ref}, **SMALL_LOGITS)


def test_mask_and_index_equal_timm_buffers():
    for kw in ({}, SMALL, {"img_size": 384, "window_size": 12}, {"img_size": (64, 96), **SMALL}):
        tm = timm.create_model(TINY, pretrained=False, **{**kw, "depths": (2, 2, 2, 2)})
        specs = jaxbones.create_model(TINY, **kw).stage_specs()
        for stage, spec in zip(tm.layers, specs):
            assert spec["resolution"] == tuple(stage.output_resolution)
            for j, blk in enumerate(stage.blocks):
                assert tuple(blk.window_size) == spec["window"]
                assert tuple(blk.shift_size) == (spec["shift"] if j % 2 else (0, 0))
                idx = swin_mod.relative_position_index(*spec["window"])
                np.testing.assert_array_equal(idx, blk.attn.relative_position_index.numpy())
                mask = swin_mod.attention_mask(*spec["resolution"], blk.window_size, blk.shift_size)
                if blk.attn_mask is None:
                    assert mask is None
                else:
                    np.testing.assert_array_equal(mask, blk.attn_mask.numpy())
    # at 224 / window 7 the last stage (7x7) is one window without shift; stages 0-2 shift by 3
    specs = jaxbones.create_model(TINY).stage_specs()
    assert [s["shift"] for s in specs] == [(3, 3), (3, 3), (3, 3), (0, 0)]
    assert [s["window"] for s in specs] == [(7, 7)] * 4


def test_scan_equals_unrolled_and_converts():
    """One ``layers_{s}_blocks`` subtree per stage with a leading [depth] axis, the W-MSA /
    SW-MSA alternation as a scanned 0/1 input: same logits as the unrolled stack (to float32
    rounding: XLA compiles the loop body differently), with and without remat."""
    tm, x, variables, ref, unrolled = _small_reference()
    scanned_vars = jaxbones.convert.from_torch(
        TINY, tm.state_dict(), strict=True, scan=True, **SMALL
    )
    assert scanned_vars["params"]["layers_0_blocks"]["attn"]["qkv"]["kernel"].shape == (2, 32, 96)
    model = jaxbones.create_model(TINY, scan=True, **SMALL)
    stacked = jaxbones.convert.get_converter("swin").to_scanned(variables, model)
    chex.assert_trees_all_equal(stacked, scanned_vars)
    for policy in ("none", "full"):
        out = forward(TINY, scanned_vars, x, scan=True, remat_policy=policy, **SMALL)
        chex.assert_trees_all_close(out, unrolled, rtol=0, atol=2e-6)
    assert_close(unrolled, ref, **SMALL_LOGITS)
    back = jaxbones.convert.to_torch(TINY, scanned_vars, scan=True, **SMALL)
    sd = tm.state_dict()
    assert set(back) == set(sd)
    for k, v in back.items():
        np.testing.assert_array_equal(v, sd[k].numpy(), err_msg=k)


def test_scan_remat_drop_path_trains():
    """Training through scanned + rematerialised stages with per-block drop-path rates
    (traced under scan) differentiates to a gradient for every parameter (shapes only: traced
    with eval_shape, not compiled, to keep CI time down)."""
    model = jaxbones.create_model(
        TINY, scan=True, remat_policy="dots", drop_path_rate=0.3, proj_drop_rate=0.1, **SMALL
    )
    x = jnp.ones((2, 64, 64, 3))
    variables = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)
    rngs = {"dropout": jax.random.PRNGKey(1), "drop_path": jax.random.PRNGKey(2)}

    def loss(params):
        return jnp.mean(model.apply({"params": params}, x, train=True, rngs=rngs) ** 2)

    grads = jax.eval_shape(jax.grad(loss), variables["params"])
    assert jax.tree_util.tree_structure(grads) == jax.tree_util.tree_structure(variables["params"])


class OfficialSwin(torch.nn.Module):
    """The official microsoft/Swin-Transformer module placement, re-implemented around timm's
    blocks: ``layers.N`` = blocks then PatchMerging (``downsample``, stages 0..2) at the end,
    ``head`` a plain Linear, ``relative_position_index`` / ``attn_mask`` persistent buffers."""

    def __init__(self, tm):
        super().__init__()
        tm = copy.deepcopy(tm)
        self.patch_embed, self.norm, self.head = tm.patch_embed, tm.norm, tm.head.fc
        self.layers = torch.nn.ModuleList()
        for i, stage in enumerate(tm.layers):
            layer = torch.nn.Module()
            layer.blocks = stage.blocks
            layer.downsample = tm.layers[i + 1].downsample if i + 1 < len(tm.layers) else None
            for blk in stage.blocks:
                blk.attn.register_buffer(
                    "relative_position_index", blk.attn.relative_position_index
                )
                if blk.attn_mask is not None:
                    blk.register_buffer("attn_mask", blk.attn_mask)
            self.layers.append(layer)

    def forward(self, x):
        x = self.patch_embed(x)  # [B, H, W, C]
        for layer in self.layers:
            x = layer.blocks(x)
            if layer.downsample is not None:  # official PatchMerging.forward
                x0, x1 = x[:, 0::2, 0::2], x[:, 1::2, 0::2]
                x2, x3 = x[:, 0::2, 1::2], x[:, 1::2, 1::2]
                x = torch.cat([x0, x1, x2, x3], -1)
                x = layer.downsample.reduction(layer.downsample.norm(x))
        return self.head(self.norm(x).mean((1, 2)))


def test_official_layout_converts():
    tm, x, variables, ref, _ = _small_reference()
    off = OfficialSwin(tm).eval()
    sd = off.state_dict()
    assert "layers.0.downsample.reduction.weight" in sd and "head.weight" in sd
    assert "layers.3.downsample.reduction.weight" not in sd
    assert (
        "layers.0.blocks.1.attn_mask" in sd
        and "layers.0.blocks.0.attn.relative_position_index" in sd
    )
    # the re-implementation is the same network
    assert_close(torch_forward(off, x), ref, **SMALL_LOGITS)
    ours = jaxbones.convert.from_torch(TINY, {"model": sd}, strict=True, **SMALL)
    chex.assert_trees_all_equal(ours, variables)
    assert_close(forward(TINY, ours, x, **SMALL), ref, **SMALL_LOGITS)


def test_rel_pos_table_resize_matches_timm():
    table = torch.randn(13 * 13, 3)
    for new in ((12, 12), (5, 5), (12, 8)):
        shape = ((2 * new[0] - 1) * (2 * new[1] - 1), 3)
        ours = resize_rel_pos_bias_table(table.numpy(), new)
        np.testing.assert_allclose(ours, timm_resize(table, new, shape).numpy(), atol=1e-5)
        bic = resize_rel_pos_bias_table(table.numpy(), new, method="bicubic")
        np.testing.assert_allclose(bic, timm_resize_simple(table, new, shape).numpy(), atol=1e-5)


def test_window7_weights_into_window12_model():
    """Window-7 weights fine-tuned with window 12 (as 224/w7 -> 384/w12): tables resampled
    like timm's checkpoint filter, and our model matches timm loaded the same way. Two stages
    keep it small: 56 px (grids 14, 7) -> 96 px (grids 24, 12; the last is one window)."""
    kw = {"embed_dim": 32, "depths": (2, 2), "num_heads": (1, 2)}
    src = torch_model(TINY, seed=3, img_size=56, **kw)
    sd = src.state_dict()
    dst = timm.create_model(TINY, pretrained=False, img_size=96, window_size=12, **kw).eval()
    dst.load_state_dict(timm.models.swin_transformer.checkpoint_filter_fn(dict(sd), dst))
    ov = {"img_size": 96, "window_size": 12, **kw}
    ours = jaxbones.convert.from_torch(TINY, sd, strict=True, **ov)
    for s, b in ((0, 1), (1, 0)):
        table = ours["params"][f"layers_{s}_blocks_{b}"]["attn"]["relative_position_bias_table"]
        assert table.shape == (23 * 23, kw["num_heads"][s])
        ref_table = dst.layers[s].blocks[b].attn.relative_position_bias_table.detach().numpy()
        np.testing.assert_allclose(np.asarray(table), ref_table, atol=1e-5)
    x = images((1, 96, 96, 3), seed=3)
    assert_close(forward(TINY, ours, x, **ov), torch_forward(dst, x), **SMALL_LOGITS)


def test_features_match_timm():
    tm, x, variables, _, _ = _small_reference()
    tf = timm.create_model(TINY, pretrained=False, features_only=True, out_indices=(1, 3), **SMALL)
    # timm's FeatureListNet flattens ``layers.N`` into ``layers_N`` and drops norm / head
    sd = tm.state_dict()
    keep = {k: v for k, v in sd.items() if not k.startswith(("norm.", "head."))}
    tf.load_state_dict({k.replace("layers.", "layers_", 1): v for k, v in keep.items()})
    fm = jaxbones.create_model(TINY, features_only=True, out_indices=(1, 3), **SMALL)
    assert [(d["num_chs"], d["reduction"]) for d in fm.feature_info] == list(
        zip(tf.feature_info.channels(), tf.feature_info.reduction())
    )
    params = {"params": {k: v for k, v in variables["params"].items() if k not in ("norm", "head")}}
    feats = jax.jit(fm.apply)(params, x)
    with torch.no_grad():
        refs = tf.eval()(to_nchw(x))
    assert_close(list(feats), list(refs), **FEATURES)  # both NHWC


def test_input_size_errors_list_sizes():
    model = jaxbones.create_model(TINY)
    with pytest.raises(ValueError, match=r"divisible by 224.*\[224, 448\]"):
        jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 300, 300, 3)))
    with pytest.raises(ValueError, match="at least 384x384"):
        m384 = jaxbones.create_model("swin_base_patch4_window12_384")
        jax.eval_shape(m384.init, jax.random.PRNGKey(0), jnp.zeros((1, 224, 224, 3)))
    # twice the size works (masks are built for the actual input)
    out = jax.eval_shape(model.init_with_output, jax.random.PRNGKey(0), jnp.zeros((1, 448, 448, 3)))
    assert out[0].shape == (1, 1000)


def test_dtype_and_info():
    model = jaxbones.create_model(TINY, dtype=jnp.bfloat16, **SMALL)
    out, variables = jax.eval_shape(
        model.init_with_output, jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 3))
    )
    assert out.dtype == jnp.bfloat16
    assert {v.dtype for v in jax.tree_util.tree_leaves(variables)} == {jnp.dtype(jnp.float32)}
    info = jaxbones.model_info("swin_base_patch4_window12_384")
    assert info["input_size"] == (384, 384, 3) and info["crop_pct"] == 1.0
    assert [f["reduction"] for f in info["feature_info"]] == [4, 8, 16, 32]
