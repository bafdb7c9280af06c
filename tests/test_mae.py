"""MAE: parity with transformers' ViTMAEForPreTraining (a port of facebookresearch/mae that
accepts ``noise``) for mask, ids_restore, latent, prediction and loss, with and without
norm_pix_loss; masking invariants; sharded == unsharded masking; exact parameter counts;
original-layout and encoder-only checkpoints; scan; the fixed tables; reconstruction."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from helpers import (
    assert_close,
    assert_not_close,
    fast_jit,
    images,
    randomize_,
    to_nchw,
    torch_count,
)
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from transformers import ViTMAEConfig, ViTMAEForPreTraining
from transformers.models.vit_mae.modeling_vit_mae import build_2d_sinusoidal_position_embedding

import jaxbones
from jaxbones.convert.mae import from_transformers_layout
from jaxbones.models.mae import patchify, reconstruct, unpatchify
from jaxbones.registry import count_params, init_shapes

# assert_close tolerances (atol absolute; atol_of_max a fraction of the reference's max |value|)
LATENT = {"rtol": 0, "atol": 5e-6}  # |latent| <= 4: measured 1.4e-6
PREDICTION = {"rtol": 0, "atol": 1e-6}  # |prediction| <= 0.8: measured 1.2e-7
LOSS = {"rtol": 0, "atol_of_max": 1e-6}  # measured 1.1e-7 of the loss

PARAM_COUNTS = {
    "mae_vit_base_patch16_dec512d8b": 111_907_840,  # docs/parity.md; 111,655,680 trainable
    "mae_vit_large_patch16_dec512d8b": 329_541_888,
    "mae_vit_huge_patch14_dec512d8b": 657_074_508,
}
PARITY_MODELS = list(PARAM_COUNTS)
# the smoke test's input is img_size: 4x4 patches (56 px for patch 14)
SMOKE_OVERRIDES = {
    n: {
        "depth": 1,
        "decoder_depth": 1,
        "img_size": 56 if "patch14" in n else 64,
        "decoder_embed_dim": 64,
    }
    for n in PARAM_COUNTS
}

NAME = "mae_vit_base_patch16_dec512d8b"
# a small MAE for parity: 64 px, patch 8 -> L = 64 patches, 16 kept at ratio 0.75
SMALL = {
    "img_size": 64,
    "patch_size": 8,
    "embed_dim": 64,
    "depth": 2,
    "num_heads": 4,
    "decoder_embed_dim": 32,
    "decoder_depth": 2,
    "decoder_num_heads": 4,
}

_HF_SIZES = {  # transformers' configs of the three published MAE models
    "mae_vit_base_patch16_dec512d8b": {
        "hidden_size": 768,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
    },
    "mae_vit_large_patch16_dec512d8b": {
        "hidden_size": 1024,
        "num_hidden_layers": 24,
        "num_attention_heads": 16,
        "intermediate_size": 4096,
    },
    "mae_vit_huge_patch14_dec512d8b": {
        "hidden_size": 1280,
        "num_hidden_layers": 32,
        "num_attention_heads": 16,
        "intermediate_size": 5120,
        "patch_size": 14,
    },
}


def hf_config(small: bool = True, norm_pix_loss: bool = False, **kw) -> ViTMAEConfig:
    base = {"layer_norm_eps": 1e-6, "norm_pix_loss": norm_pix_loss, "attn_implementation": "eager"}
    if small:
        base.update(
            image_size=64, patch_size=8, hidden_size=64, num_hidden_layers=2,
            num_attention_heads=4, intermediate_size=256, decoder_hidden_size=32,
            decoder_num_hidden_layers=2, decoder_num_attention_heads=4,
            decoder_intermediate_size=128,
        )  # fmt: skip
    return ViTMAEConfig(**{**base, **kw})


hf_to_mae_layout = from_transformers_layout


def hf_model(norm_pix_loss=False, seed=0):
    torch.manual_seed(seed)
    m = ViTMAEForPreTraining(hf_config(norm_pix_loss=norm_pix_loss))
    randomize_(m, seed)
    with torch.no_grad():  # O(1) tokens so a misplaced token shows
        m.vit.embeddings.cls_token.normal_()
        m.decoder.mask_token.normal_()
        # the fixed tables from transformers' own sin-cos function, rotated into MAE's
        # [w | h] layout as transformers' initialize_weights does
        for param in (m.vit.embeddings.position_embeddings, m.decoder.decoder_pos_embed):
            dim = param.shape[-1]
            t = build_2d_sinusoidal_position_embedding(8, 8, dim, cls_token=True)
            param.copy_(torch.cat([t[:, dim // 2 :], t[:, : dim // 2]], 1)[None])
    return m.eval()


def noise_for(b, n, seed=0):
    return np.random.default_rng(seed).random((b, n)).astype(np.float32)


@pytest.mark.parametrize("name", PARAM_COUNTS)
def test_param_count(name):
    # the scanned twin traces one block per stack: a cheap eval_shape
    assert count_params(init_shapes(name, scan=True)["params"]) == PARAM_COUNTS[name]
    with torch.device("meta"):
        ref = ViTMAEForPreTraining(hf_config(small=False, **_HF_SIZES[name]))
    assert torch_count(ref) == PARAM_COUNTS[name]


def test_model_info_base_count():
    assert jaxbones.model_info(NAME)["num_params"] == 111_907_840


@pytest.mark.parametrize("norm_pix_loss", [False, True])
def test_parity_with_transformers(norm_pix_loss):
    tm = hf_model(norm_pix_loss)
    sd = hf_to_mae_layout(tm.state_dict())
    variables = jaxbones.convert.from_torch(NAME, {"model": sd}, strict=True, **SMALL)
    x = images((3, 64, 64, 3))
    noise = noise_for(3, 64)
    with torch.no_grad():
        ref = tm(to_nchw(x), noise=torch.from_numpy(noise))
        latent_ref = tm.vit(to_nchw(x), noise=torch.from_numpy(noise)).last_hidden_state
    model = jaxbones.create_model(NAME, norm_pix_loss=norm_pix_loss, **SMALL)
    (loss, pred, mask), state = model.apply(
        variables, x, noise=jnp.asarray(noise), mutable=["intermediates"]
    )
    np.testing.assert_array_equal(mask, ref.mask.numpy())
    np.testing.assert_array_equal(state["intermediates"]["ids_restore"][0], ref.ids_restore)
    assert_close(state["intermediates"]["latent"][0], latent_ref, **LATENT)
    assert_close(pred, ref.logits, **PREDICTION)
    assert_close(loss, ref.loss, **LOSS)
    # the fixed tables loaded from transformers equal the float64 MAE formula
    fresh = model.init(jax.random.PRNGKey(0), x)["params"]
    for key in ("pos_embed", "decoder_pos_embed"):
        np.testing.assert_allclose(fresh[key], variables["params"][key], atol=1e-7)


def test_parity_negative_wrong_norm_pix_variance():
    # the biased variance (ddof=0) in norm_pix_loss must fail the loss check
    tm = hf_model(norm_pix_loss=True)
    sd = hf_to_mae_layout(tm.state_dict())
    variables = jaxbones.convert.from_torch(NAME, sd, strict=True, **SMALL)
    x = images((2, 64, 64, 3))
    noise = noise_for(2, 64)
    with torch.no_grad():
        ref = tm(to_nchw(x), noise=torch.from_numpy(noise))
    _, pred, mask = jaxbones.create_model(NAME, norm_pix_loss=True, **SMALL).apply(
        variables, x, noise=jnp.asarray(noise)
    )
    target = patchify(jnp.asarray(x), 8)
    biased = (target - target.mean(-1, keepdims=True)) / jnp.sqrt(
        target.var(-1, keepdims=True) + 1e-6
    )
    wrong = (jnp.square(pred - biased).mean(-1) * mask).sum() / mask.sum()
    assert_not_close(wrong, ref.loss, **LOSS)


def test_masking_keeps_static_count():
    x = images((4, 64, 64, 3))
    # jitted (without LLVM optimisation): eager MAE dispatches hundreds of ops one by one
    variables = fast_jit(jaxbones.create_model(NAME, **SMALL).init)(jax.random.PRNGKey(0), x)
    n = 64
    for ratio in (0.75, 0.6, 0.9):  # 16, 25 (25.6 floored), 6 (6.4 floored) kept
        model = jaxbones.create_model(NAME, mask_ratio=ratio, **SMALL)
        keep = int(n * (1 - ratio))
        assert model.num_keep == keep

        def run(v, x, key, model=model):
            return model.apply(v, x, rngs={"mask": key}, mutable=["intermediates"])

        run = fast_jit(run)
        (_, pred, mask), state = run(variables, x, jax.random.PRNGKey(1))
        assert pred.shape == (4, n, 8 * 8 * 3)
        np.testing.assert_array_equal(np.asarray(mask).sum(1), [n - keep] * 4)
        assert state["intermediates"]["latent"][0].shape == (4, 1 + keep, 64)
        restore = np.asarray(state["intermediates"]["ids_restore"][0])
        assert all(sorted(r) == list(range(n)) for r in restore)
        assert len({tuple(m) for m in np.asarray(mask)}) == 4  # per-sample masks
    # a different key, a different mask
    (_, _, mask2), _ = run(variables, x, jax.random.PRNGKey(2))
    assert not np.array_equal(mask, mask2)


def test_sharded_masking_equals_unsharded_and_fixed_tables_get_no_gradient():
    devices = np.array(jax.devices()[:8])
    assert len(devices) == 8, "conftest sets 8 fake CPU devices"
    mesh = Mesh(devices, ("data",))
    model = jaxbones.create_model(NAME, **SMALL)
    x = images((8, 64, 64, 3))
    variables = fast_jit(model.init)(jax.random.PRNGKey(0), x)
    key = jax.random.PRNGKey(7)

    @fast_jit
    def step(v, x, key):
        def loss_fn(params):
            loss, pred, mask = model.apply(
                {"params": params}, x, train=True, rngs={"mask": key, "dropout": key}
            )
            return loss, (pred, mask)

        (loss, (pred, mask)), grads = jax.value_and_grad(loss_fn, has_aux=True)(v["params"])
        return loss, pred, mask, grads

    loss, pred, mask, grads = step(variables, x, key)
    chex.assert_tree_all_finite(grads)
    # the fixed sin-cos tables get exactly zero gradient; the learned tokens do not
    assert float(jnp.abs(grads["pos_embed"]).max()) == 0.0
    assert float(jnp.abs(grads["decoder_pos_embed"]).max()) == 0.0
    assert float(jnp.abs(grads["cls_token"]).max()) > 0
    assert float(jnp.abs(grads["mask_token"]).max()) > 0
    xs = jax.device_put(x, NamedSharding(mesh, P("data")))
    vr = jax.device_put(variables, NamedSharding(mesh, P()))
    loss_s, pred_s, mask_s, _ = step(vr, xs, key)
    assert len(mask_s.sharding.device_set) == 8
    np.testing.assert_array_equal(np.asarray(mask_s), np.asarray(mask))
    np.testing.assert_allclose(np.asarray(pred_s), np.asarray(pred), atol=1e-6)
    np.testing.assert_allclose(float(loss_s), float(loss), rtol=1e-6)


def test_scan_equals_unrolled_and_converts():
    tm = hf_model()
    sd = hf_to_mae_layout(tm.state_dict())
    unrolled = jaxbones.convert.from_torch(NAME, sd, strict=True, **SMALL)
    scanned = jaxbones.convert.from_torch(NAME, sd, strict=True, scan=True, **SMALL)
    assert scanned["params"]["decoder_blocks"]["attn"]["qkv"]["kernel"].shape == (2, 32, 96)
    x = images((2, 64, 64, 3))
    noise = jnp.asarray(noise_for(2, 64))

    def run(v, **ov):
        m = jaxbones.create_model(NAME, **SMALL, **ov)
        return jax.jit(lambda v, x: m.apply(v, x, noise=noise))(v, x)

    a, b = run(unrolled), run(scanned, scan=True, remat_policy="dots")
    for u, s in zip(a, b):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(s))
    back = jaxbones.convert.to_torch(NAME, scanned, scan=True, **SMALL)
    assert set(back) == set(sd)
    for k in sd:
        np.testing.assert_array_equal(back[k], sd[k].numpy(), err_msg=k)


def test_encoder_only_checkpoint_reports_missing_decoder():
    tm = hf_model()
    sd = hf_to_mae_layout(tm.state_dict())
    encoder = {k: v for k, v in sd.items() if not k.startswith(("decoder_", "mask_token"))}
    del encoder["pos_embed"]  # fixed table: recomputed, not reported
    variables, report = jaxbones.convert.from_torch(
        NAME, {"model": encoder}, return_report=True, **SMALL
    )
    assert report.unexpected == [] and report.missing
    assert all(k.startswith(("decoder_", "mask_token")) for k in report.missing)
    assert "decoder_pos_embed" in report.missing and "pos_embed" not in report.missing
    np.testing.assert_array_equal(
        variables["params"]["blocks_1"]["attn"]["qkv"]["kernel"],
        sd["blocks.1.attn.qkv.weight"].numpy().T,
    )
    np.testing.assert_allclose(variables["params"]["pos_embed"], sd["pos_embed"], atol=1e-7)
    with pytest.raises(ValueError, match="missing"):
        jaxbones.convert.from_torch(NAME, encoder, strict=True, **SMALL)
    # the same file also loads into a ViT encoder (MAE fine-tuning starts there)
    _, rep = jaxbones.convert.from_torch(
        "vit_base_patch16_224",
        encoder | {"pos_embed": sd["pos_embed"]},
        return_report=True,
        img_size=64,
        patch_size=8,
        embed_dim=64,
        depth=2,
        num_heads=4,
        global_pool="avg",
    )
    assert rep.unexpected == ["norm.bias", "norm.weight"]
    assert sorted(rep.missing) == ["fc_norm.bias", "fc_norm.weight", "head.bias", "head.weight"]


def test_patchify_and_reconstruct():
    x = images((2, 64, 64, 3))
    tm = hf_model()
    p = patchify(jnp.asarray(x), 8)
    np.testing.assert_array_equal(p, tm.patchify(to_nchw(x)).numpy())
    np.testing.assert_array_equal(unpatchify(p, 8, 8), x)
    mask = jnp.asarray((noise_for(2, 64) > 0.5).astype(np.float32))
    # a perfect normalised-pixel prediction reconstructs the images exactly
    target = (p - p.mean(-1, keepdims=True)) / jnp.sqrt(p.var(-1, keepdims=True, ddof=1) + 1e-6)
    out = reconstruct(target, mask, x, 8, norm_pix_loss=True)
    np.testing.assert_allclose(out["reconstruction"], x, atol=1e-5)
    np.testing.assert_allclose(out["pasted"], x, atol=1e-5)
    masked_patches = patchify(out["masked"], 8)
    assert float(jnp.abs(masked_patches * mask[..., None]).max()) == 0.0
    np.testing.assert_array_equal(masked_patches * (1 - mask[..., None]), p * (1 - mask[..., None]))
    # without un-normalising, the same prediction is not the image
    raw = reconstruct(target, mask, x, 8, norm_pix_loss=False)["reconstruction"]
    assert float(jnp.abs(raw - x).max()) > 0.1


def test_bf16_and_input_errors():
    model = jaxbones.create_model(NAME, dtype=jnp.bfloat16, **SMALL)
    x = images((2, 64, 64, 3))
    variables = fast_jit(model.init)(jax.random.PRNGKey(0), x)
    assert all(v.dtype == jnp.float32 for v in jax.tree_util.tree_leaves(variables))
    loss, pred, _ = fast_jit(model.apply)(variables, x, rngs={"mask": jax.random.PRNGKey(0)})
    assert loss.dtype == jnp.float32 and pred.dtype == jnp.bfloat16 and jnp.isfinite(loss)
    with pytest.raises(ValueError, match="noise=|rngs"):
        model.apply(variables, x)
    with pytest.raises(ValueError, match="img_size=96"):
        model.apply(variables, images((1, 96, 96, 3)), noise=jnp.zeros((1, 64)))
