"""ViT family: exact parameter counts (against timm), eval parity with timm (full size for
tiny/small/base patch 16 and base patch 32, reduced depth for the big ones), negative tests
for the GELU / LayerNorm-eps traps, scan == unrolled with conversion into both layouts,
remat, drop-path schedule under scan, bf16 compute, multi-scale features, global-pool
(MAE fine-tuned) checkpoints and position-embedding resampling 224 -> 384."""

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
    fast_jit,
    images,
    max_abs_diff,
    nhwc,
    randomize_,
    to_nchw,
    torch_count,
)
from timm.models.vision_transformer import checkpoint_filter_fn

import jaxbones
from jaxbones.registry import count_params, init_shapes

# assert_close tolerances, as a fraction of each reference array's largest magnitude
LOGITS = {"rtol": 0, "atol_of_max": 1e-5}
SENSITISED_LOGITS = {"rtol": 0, "atol_of_max": 1e-5}
# bfloat16 keeps 8 bits of mantissa (3.9e-3): measured 5.9e-3 of max|logit| after 2 blocks
BF16_LOGITS = {"rtol": 0, "atol_of_max": 2e-2}
FEATURES = {"rtol": 0, "atol_of_max": 1e-5}

# timm 1.0.31's counts, asserted against timm below (1000 classes; timm builds
# vit_large_patch32_224, vit_huge_patch14_224 and vit_huge_patch14_gap_224 without a head).
PARAM_COUNTS = {
    "vit_tiny_patch16_224": 5_717_416,
    "vit_tiny_patch16_384": 5_790_376,
    "vit_small_patch16_224": 22_050_664,
    "vit_small_patch16_384": 22_196_584,
    "vit_small_patch32_224": 22_878_952,
    "vit_small_patch32_384": 22_915_432,
    "vit_base_patch16_224": 86_567_656,
    "vit_base_patch16_384": 86_859_496,
    "vit_base_patch32_224": 88_224_232,
    "vit_base_patch32_384": 88_297_192,
    "vit_large_patch14_224": 304_203_752,
    "vit_large_patch16_224": 304_326_632,
    "vit_large_patch16_384": 304_715_752,
    "vit_large_patch32_224": 305_510_400,
    "vit_large_patch32_384": 306_632_680,
    "vit_huge_patch14_224": 630_764_800,
    "vit_base_patch16_gap_224": 86_566_120,
    "vit_huge_patch14_gap_224": 630_762_240,
}
# full-size parity for these; every other ViT is parity-tested at reduced depth
FULL_PARITY = ["vit_tiny_patch16_224", "vit_small_patch16_224", "vit_base_patch16_224"]
REDUCED_PARITY = [n for n in PARAM_COUNTS if n not in FULL_PARITY]
PARITY_MODELS = list(PARAM_COUNTS)
# forward/backward smoke test at reduced size (full size is parity-tested)
# the smoke test's input is img_size: 4x4 patches (56 px for patch 14)
SMOKE_OVERRIDES = {n: {"depth": 2, "img_size": 56 if "patch14" in n else 64} for n in PARAM_COUNTS}


def timm_model(name: str, seed: int = 0, **kwargs) -> torch.nn.Module:
    torch.manual_seed(seed)
    return randomize_(timm.create_model(name, pretrained=False, **kwargs), seed).eval()


def apply(name, variables, x, **overrides):
    # eager: one forward op by op is several times cheaper than compiling it on CPU
    return jaxbones.create_model(name, **overrides).apply(variables, x)


def torch_out(tm, x):
    with torch.no_grad():
        return tm(to_nchw(x)).numpy()


def _timm_count(name: str) -> int:
    # timm's count on the meta device (shapes only); blocks are identical, so the count is
    # affine in depth: count(d) = count(1) + (d - 1) * (count(2) - count(1)).
    with torch.device("meta"):
        c1, c2 = (torch_count(timm.create_model(name, depth=d)) for d in (1, 2))
    depth = _DEPTHS[name]
    return c1 + (depth - 1) * (c2 - c1)


_DEPTHS = {n: jaxbones.create_model(n).depth for n in PARAM_COUNTS}


@pytest.mark.parametrize("name", PARAM_COUNTS)
def test_param_counts_match_timm(name):
    # the scanned twin has the same parameters and traces one block (cheap eval_shape)
    assert count_params(init_shapes(name, scan=True)["params"]) == PARAM_COUNTS[name]
    assert _timm_count(name) == PARAM_COUNTS[name]


def test_model_info_vit_base():
    assert jaxbones.model_info("vit_base_patch16_224")["num_params"] == 86_567_656


@pytest.mark.parametrize("name", FULL_PARITY)
def test_eval_parity_full(name):
    tm = timm_model(name)
    variables = convert(name, tm)
    x = images((1, 224, 224, 3))
    out = apply(name, variables, x)
    chex.assert_shape(out, (1, 1000))
    assert_close(out, torch_out(tm, x), **LOGITS)


@pytest.mark.parametrize("name", REDUCED_PARITY)
def test_eval_parity_reduced_depth(name):
    # the same architecture at depth 1 (2 for the patch-14 / patch-32 representatives)
    depth = 2 if name in ("vit_large_patch14_224", "vit_base_patch32_224") else 1
    tm = timm_model(name, depth=depth)
    variables = convert(name, tm, depth=depth)
    size = jaxbones.model_info(name)["input_size"][0]
    x = images((1, size, size, 3))
    assert_close(apply(name, variables, x, depth=depth), torch_out(tm, x), **LOGITS)


def _sensitised(depth=2):
    """vit_small with tiny token statistics (LayerNorm eps dominates the variance) and a
    large fc2 (GELU differences reach the logits): the traps of docs/parity.md become visible."""
    tm = timm_model("vit_small_patch16_224", depth=depth, img_size=64)
    with torch.no_grad():
        tm.patch_embed.proj.bias.zero_()
        tm.pos_embed.mul_(0.01)
        tm.cls_token.mul_(0.01)
        for blk in tm.blocks:
            blk.mlp.fc2.weight.mul_(30.0)
    x = images((1, 64, 64, 3)) * 0.01
    return tm, x


@pytest.mark.parametrize(
    "override", [{}, {"act": "gelu_tanh"}, {"norm_eps": 1e-5}], ids=["exact", "tanh", "eps"]
)
def test_traps_fail_the_parity_check(override):
    tm, x = _sensitised()
    variables = convert("vit_small_patch16_224", tm, depth=2, img_size=64)
    out = apply("vit_small_patch16_224", variables, x, depth=2, img_size=64, **override)
    ref = torch_out(tm, x)
    if override:
        assert_not_close(out, ref, **SENSITISED_LOGITS)
    else:
        assert_close(out, ref, **SENSITISED_LOGITS)


def test_scan_equals_unrolled_and_layouts_convert():
    name = "vit_tiny_patch16_224"
    tm = timm_model(name, depth=3, img_size=64)
    unrolled = convert(name, tm, depth=3, img_size=64)
    scanned = convert(name, tm, depth=3, img_size=64, scan=True)
    assert "blocks_0" in unrolled["params"] and "blocks" not in unrolled["params"]
    qkv = scanned["params"]["blocks"]["attn"]["qkv"]["kernel"]
    assert qkv.shape == (3, 192, 3 * 192)
    np.testing.assert_array_equal(qkv[1], unrolled["params"]["blocks_1"]["attn"]["qkv"]["kernel"])
    x = images((2, 64, 64, 3))

    def jit_apply(variables, **ov):  # both compiled: XLA then gives bit-identical results
        return jax.jit(jaxbones.create_model(name, depth=3, img_size=64, **ov).apply)(variables, x)

    a = jit_apply(unrolled)
    b = jit_apply(scanned, scan=True)
    c = jit_apply(scanned, scan=True, remat_policy="full")
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(np.asarray(a), np.asarray(c))
    assert_close(b, torch_out(tm, x), **LOGITS)
    # scanned -> torch state dict round trip
    back = jaxbones.convert.to_torch(name, scanned, depth=3, img_size=64, scan=True)
    sd = tm.state_dict()
    assert set(back) == set(sd)
    for k, v in back.items():
        np.testing.assert_array_equal(v, sd[k].numpy(), err_msg=k)


def test_drop_path_schedule_under_scan_and_remat_gradients():
    # rates over 2 blocks are linear [0, 1]: block 0 always kept, block 1 always dropped, so
    # train mode is deterministic and equals the eval output of block 0 alone, scanned or not.
    name = "vit_tiny_patch16_224"
    x = images((2, 32, 32, 3))
    kw = {"depth": 2, "img_size": 32, "drop_path_rate": 1.0}
    m_unrolled = jaxbones.create_model(name, **kw)
    v = fast_jit(m_unrolled.init)(jax.random.PRNGKey(0), x)
    one = {**v["params"]}
    del one["blocks_1"]
    expect = fast_jit(jaxbones.create_model(name, depth=1, img_size=32).apply)({"params": one}, x)
    rngs = {"drop_path": jax.random.PRNGKey(1), "dropout": jax.random.PRNGKey(2)}
    got = fast_jit(lambda v: m_unrolled.apply(v, x, train=True, rngs=rngs))(v)
    np.testing.assert_allclose(got, expect, rtol=1e-6, atol=1e-6)
    conv = jaxbones.convert.get_converter("vit")
    for policy in ("dots",):
        m_scan = jaxbones.create_model(name, scan=True, remat_policy=policy, **kw)
        vs = conv.to_scanned(v, m_scan)
        got_scan = fast_jit(lambda v, m_scan=m_scan: m_scan.apply(v, x, train=True, rngs=rngs))(vs)
        np.testing.assert_allclose(got_scan, expect, rtol=1e-6, atol=1e-6)

        def loss(p, m_scan=m_scan):
            return jnp.sum(m_scan.apply({"params": p}, x, train=True, rngs=rngs) ** 2)

        grads = jax.jit(jax.grad(loss))(vs["params"])
        chex.assert_tree_all_finite(grads)
        # the always-dropped block gets no gradient; the kept one does
        g = grads["blocks"]["mlp"]["fc2"]["kernel"]
        assert float(jnp.abs(g[1]).max()) == 0.0 and float(jnp.abs(g[0]).max()) > 0


def test_dropout_and_attention_dropout_are_random_in_training():
    name = "vit_tiny_patch16_224"
    m = jaxbones.create_model(
        name, depth=2, img_size=64, attn_drop_rate=0.2, proj_drop_rate=0.1, drop_path_rate=0.1
    )
    x = images((2, 64, 64, 3))
    v = m.init(jax.random.PRNGKey(0), x)

    @jax.jit
    def run(seed):
        rngs = {"dropout": jax.random.PRNGKey(seed), "drop_path": jax.random.PRNGKey(seed + 1)}
        return m.apply(v, x, train=True, rngs=rngs)

    assert max_abs_diff(run(0), run(5)) > 1e-3
    np.testing.assert_array_equal(run(3), run(3))
    eval_out = m.apply(v, x)
    np.testing.assert_array_equal(eval_out, m.apply(v, x))


def test_bf16_compute_keeps_f32_params():
    name = "vit_tiny_patch16_224"
    tm = timm_model(name, depth=2, img_size=64)
    variables = convert(name, tm, depth=2, img_size=64)
    x = images((2, 64, 64, 3))
    m = jaxbones.create_model(name, depth=2, img_size=64, dtype=jnp.bfloat16)
    assert all(p.dtype == jnp.float32 for p in jax.tree_util.tree_leaves(variables))
    out = m.apply(variables, x)
    assert out.dtype == jnp.bfloat16
    assert_close(out.astype(jnp.float32), torch_out(tm, x), **BF16_LOGITS)


def test_features_match_timm_intermediates():
    # a non-square grid (4 x 6 patches) pins the row-major NHWC reshape
    name, ov = "vit_small_patch16_224", {"depth": 4, "img_size": (64, 96)}
    tm = timm_model(name, **ov)
    variables = convert(name, tm, **ov)
    scanned = convert(name, tm, scan=True, **ov)
    x = images((1, 64, 96, 3))
    for feature_norm in (False, True):
        kw = {"features_only": True, "out_indices": (0, 2, -1), "feature_norm": feature_norm}
        model = jaxbones.create_model(name, **ov, **kw)
        assert [f["reduction"] for f in model.feature_info] == [16, 16, 16]
        assert [f["module"] for f in model.feature_info] == ["blocks.0", "blocks.2", "blocks.3"]
        feats = model.apply(variables, x)
        with torch.no_grad():
            ref = tm.forward_intermediates(
                to_nchw(x), indices=[0, 2, 3], norm=feature_norm, intermediates_only=True
            )
        assert len(feats) == 3
        chex.assert_shape(list(feats), (1, 4, 6, 384))
        assert_close(list(feats), [nhwc(r) for r in ref], **FEATURES)
        # the scanned model gives the same features
        feats_s = jaxbones.create_model(name, scan=True, **ov, **kw).apply(scanned, x)
        chex.assert_trees_all_close(list(feats_s), list(feats), rtol=1e-5, atol=1e-5)


def test_global_pool_fc_norm_checkpoint():
    """MAE fine-tuned files are timm ViTs with global_pool='avg': ``fc_norm`` + ``head``,
    no final ``norm``; they load into the global-pool ViT."""
    name = "vit_base_patch16_224"
    tm = timm_model(name, depth=2, global_pool="avg", img_size=64)
    sd = tm.state_dict()
    assert "fc_norm.weight" in sd and "norm.weight" not in sd
    variables = jaxbones.convert.from_torch(
        name, {"model": sd}, strict=True, depth=2, global_pool="avg", img_size=64
    )
    x = images((1, 64, 64, 3))
    out = apply(name, variables, x, depth=2, global_pool="avg", img_size=64)
    assert_close(out, torch_out(tm, x), **LOGITS)


@pytest.mark.parametrize("target", ["vit_tiny_patch16_384", "img_size"])
def test_pos_embed_resampled_224_to_384_matches_timm(target):
    src = timm_model("vit_tiny_patch16_224", depth=2)
    sd224 = src.state_dict()
    ref_model = timm.create_model("vit_tiny_patch16_384", depth=2).eval()
    ref_model.load_state_dict(checkpoint_filter_fn(sd224, ref_model))  # timm's resampling
    if target == "img_size":
        name, ov = "vit_tiny_patch16_224", {"depth": 2, "img_size": 384}
    else:
        name, ov = target, {"depth": 2}
    variables = jaxbones.convert.from_torch(name, sd224, strict=True, **ov)
    assert variables["params"]["pos_embed"].shape == (1, 1 + 24 * 24, 192)
    x = images((1, 384, 384, 3))
    assert_close(apply(name, variables, x, **ov), torch_out(ref_model, x), **LOGITS)


def test_wrong_image_size_names_the_fix():
    m = jaxbones.create_model("vit_tiny_patch16_224", depth=1)
    with pytest.raises(ValueError, match="img_size"):
        m.init(jax.random.PRNGKey(0), jnp.zeros((1, 256, 256, 3)))
    m = jaxbones.create_model("vit_tiny_patch16_224", depth=1, img_size=(160, 96))
    out = m.init_with_output(jax.random.PRNGKey(0), jnp.zeros((1, 160, 96, 3)))[0]
    assert out.shape == (1, 1000)


def test_bf16_is_no_further_from_f32_than_torch_autocast():
    # a float32 residual stream, float32 GELU and one rounding per Dense put jaxbones' bf16
    # logits as close to float32 as autocast's (ratio 1.05 here); a bfloat16 residual stream
    # with twice-rounded Dense outputs measured about 1.3
    from scripts.train_parity import bf16_errors

    e = bf16_errors("vit_tiny_patch16_224", size=64, batch=4, depth=4, img_size=64)
    assert e["jax_rms"] < 1.2 * e["torch_rms"], e
