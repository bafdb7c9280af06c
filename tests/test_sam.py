"""SAM (segment-anything 1.0): exact parameter counts against ``sam_model_registry``; parity
of the image encoder (sam_vit_b's encoder at 256 px, and a reduced one at 128 px with window
3 so every windowed block pads), the prompt encoder (points, boxes, masks, combinations, none) and the mask decoder
(full SAM widths; multimask and single) against modules built from
``segment_anything.modeling``; the end-to-end ``Sam.forward``; ``SamPredictor`` on a
non-square uint8 image; rel-pos / pos-embed resampling for another ``img_size``; a round trip
back to torch; negative tests (LayerNorm eps 1e-5, rel-pos cropped instead of interpolated)."""

from functools import partial

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from helpers import FAST_COMPILE, assert_close, assert_not_close, fast_jit, nhwc, randomize_
from segment_anything import SamPredictor as TorchPredictor
from segment_anything import sam_model_registry
from segment_anything.modeling import (
    ImageEncoderViT,
    MaskDecoder,
    PromptEncoder,
    TwoWayTransformer,
)
from segment_anything.modeling import Sam as TorchSam
from segment_anything.modeling.image_encoder import get_rel_pos as torch_get_rel_pos

import jaxbones
from jaxbones.models.sam import Sam, get_rel_pos
from jaxbones.predict import SamPredictor

# assert_close tolerances, as a fraction of each reference array's largest magnitude
EMBEDDING = {"rtol": 0, "atol_of_max": 1e-5}
SPARSE_PROMPTS = {"rtol": 0, "atol_of_max": 1e-5}
DENSE_PROMPTS = {"rtol": 0, "atol_of_max": 1e-5}
MASK_LOGITS = {"rtol": 0, "atol_of_max": 1e-5}
IOU = {"rtol": 0, "atol_of_max": 1e-5}
LOW_RES_LOGITS = {"rtol": 0, "atol_of_max": 1e-5}
PREDICTOR_LOGITS = {"rtol": 0, "atol_of_max": 1e-5}
REL_POS = {"rtol": 0, "atol_of_max": 1e-6}
POS_EMBED = {"rtol": 0, "atol_of_max": 1e-6}
LOW_VARIANCE_EMBEDDING = {"rtol": 0, "atol_of_max": 1e-5}

# segment_anything 1.0 ``sam_model_registry[...]()`` counts (parameters; the prompt
# encoder's Gaussian matrix is a buffer), asserted against the package below.
PARAM_COUNTS = {
    "sam_vit_b": 93_735_472,
    "sam_vit_l": 312_342_832,
    "sam_vit_h": 641_090_608,
}
# parity-tested at reduced encoder width/depth/img_size (full prompt encoder and decoder)
PARITY_MODELS = list(PARAM_COUNTS)
SMOKE_OVERRIDES = {
    n: {
        "encoder_depth": 2,
        "encoder_global_attn_indexes": (1,),
        "img_size": 64,
        "window_size": 3,
        "remat_policy": "full",  # the smoke test's backward pass exercises remat
    }
    for n in PARAM_COUNTS
}

# A small SAM: 128 px -> 8x8 grid; window 3 pads it to 9x9; blocks 1 and 3 global.
IMG = 128
SMALL = {
    "img_size": IMG,
    "encoder_embed_dim": 64,
    "encoder_depth": 4,
    "encoder_num_heads": 4,
    "encoder_global_attn_indexes": (1, 3),
    "window_size": 3,
}


def torch_sam(img_size=IMG, use_abs_pos=True, eps=1e-6, seed=0, **enc) -> TorchSam:
    """A randomly initialised segment_anything ``Sam`` built from its modules (build_sam's
    prompt encoder and decoder widths), with norms/biases randomised and the zero-initialised
    position tables drawn at O(1) so they matter."""
    torch.manual_seed(seed)
    cfg = {**SMALL, **enc}
    sam = TorchSam(
        image_encoder=ImageEncoderViT(
            img_size=img_size,
            depth=cfg["encoder_depth"],
            embed_dim=cfg["encoder_embed_dim"],
            num_heads=cfg["encoder_num_heads"],
            norm_layer=partial(torch.nn.LayerNorm, eps=eps),
            use_abs_pos=use_abs_pos,
            use_rel_pos=True,
            global_attn_indexes=cfg["encoder_global_attn_indexes"],
            window_size=cfg["window_size"],
            out_chans=256,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=256,
            image_embedding_size=(img_size // 16, img_size // 16),
            input_image_size=(img_size, img_size),
            mask_in_chans=16,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8),
            transformer_dim=256,
            iou_head_depth=3,
            iou_head_hidden_dim=256,
        ),
    )
    randomize_(sam, seed)
    with torch.no_grad():
        for n, p in sam.named_parameters():
            if "rel_pos" in n or "pos_embed" in n:
                p.normal_(0.0, 0.5)
    return sam.eval()


@pytest.fixture(scope="module")
def small():
    sam = torch_sam()
    variables = jaxbones.convert.from_torch("sam_vit_b", sam.state_dict(), strict=True, **SMALL)
    return sam, jaxbones.create_model("sam_vit_b", **SMALL), variables


def run(model, variables, method, *args, **kwargs):
    """``model.apply(..., method=method)`` compiled once without XLA's optimisation passes
    (on CPU far cheaper than eager op-by-op dispatch, which compiles every primitive)."""
    static = {k: v for k, v in kwargs.items() if isinstance(v, bool)}
    arrays = {k: v for k, v in kwargs.items() if k not in static}
    fn = fast_jit(lambda v, a, kw: model.apply(v, *a, method=method, **kw, **static))
    return fn(variables, args, arrays)


def nchw(x):
    return torch.from_numpy(np.ascontiguousarray(np.asarray(x).transpose(0, 3, 1, 2)))


def prompts(seed=1, n=3):
    rng = np.random.default_rng(seed)
    return {
        "point_coords": rng.uniform(0, IMG, (n, 2, 2)).astype(np.float32),
        "point_labels": np.array([[1, 0], [0, -1], [1, 1]][:n], np.int32),
        "boxes": np.sort(rng.uniform(0, IMG, (n, 2, 2)), axis=1).reshape(n, 4).astype(np.float32),
        "mask_inputs": rng.standard_normal((n, IMG // 4, IMG // 4, 1)).astype(np.float32),
    }


def test_param_counts_match_segment_anything():
    for name, count in PARAM_COUNTS.items():
        with torch.device("meta"):  # no memory, no init
            ref = sam_model_registry[name.removeprefix("sam_")]()
        assert sum(p.numel() for p in ref.parameters()) == count
        assert jaxbones.model_info(name)["num_params"] == count
    info = jaxbones.model_info("sam_vit_b")
    assert info["input_size"] == (1024, 1024, 3)
    assert info["reference"] == "segment_anything.sam_model_registry.vit_b"


def test_image_encoder_parity(small):
    sam, model, v = small
    x = np.random.default_rng(0).standard_normal((2, IMG, IMG, 3)).astype(np.float32)
    with torch.no_grad():
        ref = nhwc(sam.image_encoder(nchw(x)))
    out = run(model, v, Sam.encode_image, x)
    chex.assert_shape(out, (2, IMG // 16, IMG // 16, 256))
    assert_close(out, ref, **EMBEDDING)


def torch_prompt_encoder(sam, kw):
    with torch.no_grad():
        sparse, dense = sam.prompt_encoder(
            points=(torch.from_numpy(kw["point_coords"]), torch.from_numpy(kw["point_labels"]))
            if "point_coords" in kw
            else None,
            boxes=torch.from_numpy(kw["boxes"]) if "boxes" in kw else None,
            masks=nchw(kw["mask_inputs"]) if "mask_inputs" in kw else None,
        )
    return sparse.detach(), dense.detach()


def test_prompt_encoder_parity(small):
    sam, model, v = small
    p = prompts()
    for kinds in [("point_coords",), ("boxes",), ("mask_inputs",), ("point_coords", "boxes"), ()]:
        kw = {k: p[k] for k in kinds}
        if "point_coords" in kw:
            kw["point_labels"] = p["point_labels"]
        sparse, dense = torch_prompt_encoder(sam, kw)
        js, jd = run(model, v, Sam.encode_prompts, **kw)
        assert js.shape == tuple(sparse.shape), kinds
        if sparse.numel():
            assert_close(js, sparse, **SPARSE_PROMPTS)
        assert_close(jd, nhwc(dense), **DENSE_PROMPTS)


def test_mask_decoder_parity(small):
    """Full SAM decoder widths; one image embedding for 3 prompt sets of points, boxes and
    masks; multimask (tokens 1-3) and single (token 0) outputs."""
    sam, model, v = small
    p = prompts()
    sparse, dense = torch_prompt_encoder(sam, p)
    js, jd = run(model, v, Sam.encode_prompts, **p)
    emb = np.random.default_rng(2).standard_normal((1, IMG // 16, IMG // 16, 256)).astype("f4")
    for multimask in (True, False):
        with torch.no_grad():
            tm, ti = sam.mask_decoder(
                nchw(emb), sam.prompt_encoder.get_dense_pe(), sparse, dense, multimask
            )
        jm, ji = run(model, v, Sam.decode_masks, emb, js, jd, multimask_output=multimask)
        assert jm.shape == (3, IMG // 4, IMG // 4, 3 if multimask else 1)
        assert_close(jm, nhwc(tm), **MASK_LOGITS)
        assert_close(ji, ti, **IOU)


def test_end_to_end_matches_sam_forward(small):
    sam, model, v = small
    rng = np.random.default_rng(3)
    # two images already resized (long side IMG), one prompt set each
    sizes = [(IMG, 96), (80, IMG)]
    imgs = [rng.uniform(0, 255, (h, w, 3)).astype(np.float32) for h, w in sizes]
    p = prompts(n=2)
    batched = [
        {
            "image": torch.from_numpy(im.transpose(2, 0, 1).copy()),
            "original_size": (2 * im.shape[0] // 3, 2 * im.shape[1] // 3),
            "point_coords": torch.from_numpy(p["point_coords"][i : i + 1]),
            "point_labels": torch.from_numpy(p["point_labels"][i : i + 1]),
            "boxes": torch.from_numpy(p["boxes"][i : i + 1]),
        }
        for i, im in enumerate(imgs)
    ]
    ref = sam(batched, multimask_output=True)
    x = np.concatenate(
        [np.asarray(jaxbones.models.sam.preprocess(im[None], IMG)) for im in imgs], 0
    )
    out = run(
        model,
        v,
        Sam.__call__,
        x,
        point_coords=p["point_coords"],
        point_labels=p["point_labels"],
        boxes=p["boxes"],
        multimask_output=True,
    )
    for i, (r, rec) in enumerate(zip(ref, batched)):
        assert_close(out["low_res_logits"][i : i + 1], nhwc(r["low_res_logits"]), **LOW_RES_LOGITS)
        assert_close(out["iou_predictions"][i], r["iou_predictions"][0], **IOU)
        masks = jaxbones.models.sam.postprocess_masks(
            out["low_res_logits"][i : i + 1], IMG, sizes[i], rec["original_size"]
        )
        differ = np.mean(np.asarray(masks > 0) != nhwc(r["masks"]))
        assert differ < 1e-3, f"{differ:.2%} of mask pixels differ"


def test_predictor_matches_segment_anything(small):
    sam, model, v = small
    image = np.random.default_rng(4).integers(0, 256, (75, 100, 3), dtype=np.uint8)
    tp, jp = TorchPredictor(sam), SamPredictor(model, v, compiler_options=FAST_COMPILE)
    tp.set_image(image)
    jp.set_image(image)
    assert jp.input_size == tp.input_size == (96, 128)
    assert_close(jp.get_image_embedding(), nhwc(tp.get_image_embedding()), **EMBEDDING)
    pts, lab = np.array([[30.0, 40.0], [70.5, 20.0]]), np.array([1, 0])
    box = np.array([10.0, 12.0, 80.0, 60.0])
    # points, multimask: thresholded masks at the original size
    tm, ti, tl = tp.predict(point_coords=pts, point_labels=lab)
    jm, ji, jl = jp.predict(point_coords=pts, point_labels=lab)
    assert jm.shape == tm.shape == (3, 75, 100) and jm.dtype == np.bool_
    assert_close(ji, ti, **IOU)
    assert_close(jl, tl, **LOW_RES_LOGITS)
    # bilinear resizes agree to float rounding: only pixels with |logit| ~ 1e-6 could flip
    assert np.mean(jm != tm) < 1e-3
    # points + box + the previous low-res logits as a mask prompt, single mask, logits
    kw = {"point_coords": pts, "point_labels": lab, "box": box, "mask_input": tl[:1]}
    tm, ti, tl = tp.predict(**kw, multimask_output=False, return_logits=True)
    jm, ji, jl = jp.predict(**kw, multimask_output=False, return_logits=True)
    assert jm.shape == tm.shape == (1, 75, 100)
    assert_close(ji, ti, **IOU)
    assert_close(jl, tl, **LOW_RES_LOGITS)
    assert_close(jm, tm, **PREDICTOR_LOGITS)


def test_get_rel_pos_interpolates_like_torch():
    table = np.random.default_rng(5).standard_normal((15, 8)).astype(np.float32)
    for q, k in [(4, 4), (8, 8), (5, 3), (4, 7)]:
        ref = torch_get_rel_pos(q, k, torch.from_numpy(table)).numpy()
        assert_close(get_rel_pos(q, k, table), ref, **REL_POS)


def _encode(variables, x, **ov):
    return run(jaxbones.create_model("sam_vit_b", **ov), variables, Sam.encode_image, x)


def test_checkpoint_for_another_img_size_resamples_rel_pos():
    """Weights for 128 px loaded at 64 px: torch (no abs pos, so it runs at 64) resizes the
    global blocks' rel-pos tables linearly at run time; the converter does it once. Cropping
    the tables instead (the trap) fails the same check."""
    small = {"encoder_depth": 2, "encoder_global_attn_indexes": (1,)}
    sam = torch_sam(use_abs_pos=False, **small)
    x = np.random.default_rng(6).standard_normal((1, 64, 64, 3)).astype(np.float32)
    with torch.no_grad():
        ref = nhwc(sam.image_encoder(nchw(x)))
    ov = {**SMALL, **small, "img_size": 64, "use_abs_pos": False}
    v = jaxbones.convert.from_torch("sam_vit_b", sam.state_dict(), strict=True, **ov)
    assert v["params"]["image_encoder"]["blocks_1"]["attn"]["rel_pos_h"].shape == (7, 16)
    assert_close(_encode(v, x, **ov), ref, **EMBEDDING)
    sd = sam.state_dict()
    bad = {
        k: t[4:11] if k.endswith(("1.attn.rel_pos_h", "1.attn.rel_pos_w")) else t
        for k, t in sd.items()
    }
    v_bad = jaxbones.convert.from_torch("sam_vit_b", bad, strict=True, **ov)
    assert_not_close(_encode(v_bad, x, **ov), ref, **EMBEDDING)


def test_pos_embed_resampled_bicubic():
    sam = torch_sam()
    ov = {**SMALL, "img_size": 64}
    v = jaxbones.convert.from_torch("sam_vit_b", sam.state_dict(), strict=True, **ov)
    pos = sam.image_encoder.pos_embed.detach()  # [1, 8, 8, D]
    ref = torch.nn.functional.interpolate(
        pos.permute(0, 3, 1, 2), size=(4, 4), mode="bicubic", align_corners=False
    ).permute(0, 2, 3, 1)
    assert_close(v["params"]["image_encoder"]["pos_embed"], ref, **POS_EMBED)


def test_layernorm_eps_trap():
    """LayerNorm eps 1e-5 (torch's default) instead of build_sam's 1e-6 shows on low-variance
    tokens: the right eps passes and the wrong one fails the same check."""
    sam = torch_sam(encoder_depth=2, encoder_global_attn_indexes=(1,))
    with torch.no_grad():
        sam.image_encoder.patch_embed.proj.bias.zero_()
        sam.image_encoder.pos_embed.zero_()
    x = 1e-3 * np.random.default_rng(7).standard_normal((1, IMG, IMG, 3)).astype(np.float32)
    with torch.no_grad():
        ref = nhwc(sam.image_encoder(nchw(x)))
    ov = {**SMALL, "encoder_depth": 2, "encoder_global_attn_indexes": (1,)}
    v = jaxbones.convert.from_torch("sam_vit_b", sam.state_dict(), strict=True, **ov)
    assert_close(_encode(v, x, **ov), ref, **LOW_VARIANCE_EMBEDDING)
    assert_not_close(_encode(v, x, **ov, norm_eps=1e-5), ref, **LOW_VARIANCE_EMBEDDING)


def test_round_trip_to_torch(small):
    sam, _, v = small
    sd = jaxbones.convert.to_torch("sam_vit_b", v, tensors=True, **SMALL)
    fresh = torch_sam(seed=1)
    fresh.load_state_dict(sd, strict=True)
    for k, t in sam.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], t), k


def test_errors_name_the_fix():
    model = jaxbones.create_model("sam_vit_b", **SMALL)
    with pytest.raises(ValueError, match="img_size"):
        jax.eval_shape(lambda x: model.init(jax.random.PRNGKey(0), x), jnp.zeros((1, 96, 128, 3)))
    with pytest.raises(RuntimeError, match="set_image"):
        SamPredictor(model, {}).predict(point_coords=np.zeros((1, 2)), point_labels=np.ones(1))
    with pytest.raises(ValueError, match="uint8"):
        SamPredictor(model, {}).set_image(np.zeros((10, 10, 3), np.float32))


def test_vit_b_image_encoder_at_256():
    """The registered sam_vit_b encoder unchanged (768 wide, 12 blocks, window 14, global
    blocks 2/5/8/11) except img_size 256: a 16x16 grid padded to 28x28 for the windows.
    Scanned (runs 0-1, 3-4, 6-7, 9-10 stacked): fewer blocks to compile."""
    vit_b = {
        "encoder_embed_dim": 768,
        "encoder_depth": 12,
        "encoder_num_heads": 12,
        "encoder_global_attn_indexes": (2, 5, 8, 11),
        "window_size": 14,
    }
    sam = torch_sam(img_size=256, **vit_b)
    ov = {"img_size": 256, "scan": True}
    v = jaxbones.convert.from_torch("sam_vit_b", sam.state_dict(), strict=True, **ov)
    x = np.random.default_rng(9).standard_normal((1, 256, 256, 3)).astype(np.float32)
    with torch.no_grad():
        ref = nhwc(sam.image_encoder(nchw(x)))
    assert_close(_encode(v, x, **ov), ref, **EMBEDDING)


def test_scan_over_windowed_runs():
    """scan=True stacks blocks 0-2 (windowed) into ``scan_0`` and keeps global block 3
    unrolled; converted into and out of that layout, with remat, it still matches torch."""
    enc = {"encoder_depth": 4, "encoder_global_attn_indexes": (3,)}
    ov = {**SMALL, **enc, "scan": True, "remat_policy": "full"}
    sam = torch_sam(**enc)
    v = jaxbones.convert.from_torch("sam_vit_b", sam.state_dict(), strict=True, **ov)
    params = v["params"]["image_encoder"]
    assert "scan_0" in params and "blocks_3" in params and "blocks_0" not in params
    assert params["scan_0"]["attn"]["qkv"]["kernel"].shape == (3, 64, 192)
    x = np.random.default_rng(10).standard_normal((1, IMG, IMG, 3)).astype(np.float32)
    with torch.no_grad():
        ref = nhwc(sam.image_encoder(nchw(x)))
    assert_close(_encode(v, x, **ov), ref, **EMBEDDING)
    back = torch_sam(seed=1, **enc)
    back.load_state_dict(jaxbones.convert.to_torch("sam_vit_b", v, tensors=True, **ov))
    assert all(torch.equal(back.state_dict()[k], t) for k, t in sam.state_dict().items())
