"""CLIP parity against open_clip 3.3.0 (random weights, ``randomize_``), the BPE tokenizer
against ``open_clip.tokenize``, zero-shot classifier weights against
``open_clip.build_zero_shot_classifier``, the contrastive loss against ``open_clip.ClipLoss``
(one device, the global batch sharded over 8 devices, and the shard_map local-loss layout),
and a tiny CLIP trained by ``jaxbones.train`` (task 'clip') on 8 fake devices."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import open_clip
import pytest
import torch
from helpers import assert_close, fast_jit, randomize_, to_nchw
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import jaxbones
from jaxbones.convert import from_torch, to_torch
from jaxbones.text import Tokenizer, tokenize
from jaxbones.text import tokenizer as tok_mod

# assert_close tolerances, as a fraction of each reference array's largest magnitude (no
# floor: a normalised 512-d feature is ~0.04 per element). The logits are cosine similarities
# of nearly orthogonal random features: the sums cancel, so their rounding is larger relative
# to max|logit| than the features'.
OUTPUTS = ("image features", "text features", "logits", "raw image", "raw text")
OUTPUT_TOLS = {k: {"rtol": 0, "atol_of_max": 3e-5 if k == "logits" else 1e-5} for k in OUTPUTS}
# jax against jax (scanned / unrolled); numpy against torch (normalisation and logits of the
# same features: measured 1.7e-7 on logits of 0.2, 1.4e-6 on logits of 6, and 1.8e-7 on a
# logit of 0.049 whose row's largest is 0.22: the logits' rounding follows the row's scale)
SCANNED_TOLS = {k: {"rtol": 0, "atol_of_max": 1e-6} for k in OUTPUTS}
NORMALISE_TOLS = {
    k: {"rtol": 1e-6, "atol_of_max": 2e-6} if k == "logits" else {"rtol": 1e-6, "atol": 1e-7}
    for k in OUTPUTS
}
CLASSIFIER = {"rtol": 0, "atol_of_max": 1e-5}
ZERO_SHOT_LOGITS = {"rtol": 0, "atol_of_max": 1e-5}

# open_clip 3.3.0: sum(p.numel() for p in open_clip.create_model(cfg).parameters())
PARAM_COUNTS = {
    "clip_vit_b32": 151_277_313,
    "clip_vit_b16": 149_620_737,
    "clip_vit_l14": 427_616_513,
    "clip_rn50": 102_007_137,
}
_CONFIGS = {
    "clip_vit_b32": "ViT-B-32",
    "clip_vit_b16": "ViT-B-16",
    "clip_vit_l14": "ViT-L-14",
    "clip_rn50": "RN50",
}
PARITY_MODELS = ["clip_vit_b32", "clip_rn50", "clip_vit_b16", "clip_vit_l14"]
NO_REFERENCE = {}
_SMALL_TEXT = {"text_layers": 1, "vocab_size": 1024}
SMOKE_OVERRIDES = {
    "clip_vit_b32": {"vision_layers": 1, "img_size": 64, **_SMALL_TEXT},
    "clip_vit_b16": {"vision_layers": 1, "img_size": 64, **_SMALL_TEXT},
    "clip_vit_l14": {"vision_layers": 1, "img_size": 56, **_SMALL_TEXT},
    "clip_rn50": {"vision_layers": (1, 1, 1, 1), "img_size": 64, **_SMALL_TEXT},
}

TEXTS = [
    "a photo of a cat",
    "Héllo wörld! Ça va? naïve café, ÅNGSTRÖM",
    "emoji 🐶🚀🎉 and 中文字符 and العربية and ﬁ ligature ⅷ ²",
    "HTML &amp;amp; &lt;b&gt;bold&lt;/b&gt; &quot;quoted&quot; &#39;x&#39;",
    "  multiple   spaces\n\ttabs and NEWLINES  ",
    "it's they're we've I'm you'll he'd IT'S",
    "numbers 12345 3.14 1,000,000",
    "mojibake: Ã©tÃ© â€™quoteâ€\x9d",
    "",
    "supercalifragilisticexpialidocious antidisestablishmentarianism " * 20,  # > 77 tokens
]


def _tiny_torch(resnet: bool = False, quick_gelu: bool = False, image_size: int = 32):
    """A reduced open_clip CLIP (same code paths, small widths/depths)."""
    if resnet:
        vision = {"layers": (1, 1, 1, 1), "width": 16, "image_size": image_size, "head_width": 8}
    else:
        vision = {"layers": 2, "width": 64, "patch_size": 16, "image_size": image_size}
    text = {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2}
    torch.manual_seed(0)
    m = open_clip.model.CLIP(32, vision, text, quick_gelu=quick_gelu).eval()
    return randomize_(m)


def _tiny_overrides(resnet: bool = False, image_size: int = 32, **kw):
    """The jaxbones overrides matching ``_tiny_torch``; ``kw`` overrides them."""
    common = {"embed_dim": 32, "img_size": image_size, "text_width": 64, "text_heads": 2}
    common["text_layers"] = 2
    if resnet:
        vision = {"vision_layers": (1, 1, 1, 1), "vision_width": 16, "vision_head_width": 8}
        return "clip_rn50", {**common, **vision, **kw}
    vision = {"vision_layers": 2, "vision_width": 64, "vision_patch_size": 16}
    return "clip_vit_b32", {**common, **vision, **kw}


def _normalized_outputs(raw_img, raw_txt, scale):
    img = raw_img / np.linalg.norm(raw_img, axis=-1, keepdims=True)
    txt = raw_txt / np.linalg.norm(raw_txt, axis=-1, keepdims=True)
    return [img, txt, scale * img @ txt.T, raw_img, raw_txt]


def _torch_outputs(m, x, tokens):
    """open_clip's forward (normalised features, scale) plus the raw tower outputs."""
    with torch.no_grad():
        raw_img = m.encode_image(to_nchw(x)).numpy()
        raw_txt = m.encode_text(torch.from_numpy(tokens).long()).numpy()
        scale = float(m.logit_scale.exp())
    return _normalized_outputs(raw_img, raw_txt, scale)


def _jax_outputs(name, variables, x, tokens, **ov):
    """Our raw tower outputs (``encode_image`` / ``encode_text``, one compiled program); the
    normalisation and logits are checked separately against ``CLIP.__call__``."""
    model = jaxbones.create_model(name, **ov)

    def f(v, x, t):
        return model.apply(v, x, method="encode_image"), model.apply(v, t, method="encode_text")

    raw_img, raw_txt = (np.asarray(a) for a in fast_jit(f)(variables, x, jnp.asarray(tokens)))
    scale = float(jnp.exp(variables["params"]["logit_scale"]))
    return _normalized_outputs(raw_img, raw_txt, scale)


def _assert_all_close(ours, ref, tols=OUTPUT_TOLS):
    """Each of the five outputs (``OUTPUTS``) within its own tolerances."""
    assert len(ours) == len(ref)
    for name, a, b in zip(OUTPUTS, ours, ref):
        assert_close({name: a}, {name: b}, **tols[name])


# ----------------------------------------------------------------------- registry facts


@pytest.mark.parametrize("name", list(PARAM_COUNTS))
def test_param_counts_equal_open_clip(name):
    cfg = open_clip.get_model_config(_CONFIGS[name])
    with torch.device("meta"):  # shapes only: no memory, no init
        ref = open_clip.model.CLIP(**cfg)
    assert sum(p.numel() for p in ref.parameters()) == PARAM_COUNTS[name]
    info = jaxbones.model_info(name)
    assert info["num_params"] == PARAM_COUNTS[name]
    assert info["reference"] == f"open_clip.{_CONFIGS[name]}"


# ----------------------------------------------------------------------- full-size parity


def test_vit_b32_full_size_parity_image_text_logits():
    """ViT-B/32 at 224 with the full 12-layer text tower: normalised image/text features,
    logits and the unnormalised ``encode_image`` / ``encode_text`` outputs within 1e-4."""
    torch.manual_seed(0)
    m = randomize_(open_clip.create_model("ViT-B-32", pretrained=None).eval())
    variables = from_torch("clip_vit_b32", m.state_dict(), strict=True)
    x = np.random.default_rng(0).standard_normal((2, 224, 224, 3)).astype(np.float32)
    tokens = tokenize(["a diagram of a transformer", TEXTS[2], TEXTS[-1]])
    ref = _torch_outputs(m, x, tokens)
    ours = _jax_outputs("clip_vit_b32", variables, x, tokens)
    _assert_all_close(ours, ref)
    with torch.no_grad():  # open_clip's forward: normalised features and exp(logit_scale)
        t_img, t_txt, t_scale = m(to_nchw(x), torch.from_numpy(tokens).long())
    _assert_all_close(ref[:3], [t_img, t_txt, t_scale * t_img @ t_txt.T], NORMALISE_TOLS)


def test_call_and_logits_methods():
    """``CLIP.__call__`` (normalised features, exp(logit_scale)), ``method='logits'`` and
    ``normalize=True`` agree with the tower outputs; image-only and text-only calls work."""
    name, ov = _tiny_overrides()
    model = jaxbones.create_model(name, **ov)
    x = np.random.default_rng(6).standard_normal((3, 32, 32, 3)).astype(np.float32)
    tokens = tokenize(TEXTS[:2])
    variables = fast_jit(model.init)(jax.random.PRNGKey(0), x)  # image only: text tower too
    assert "text" in variables["params"]

    def f(v):
        raw_img = model.apply(v, x, method="encode_image")
        raw_txt = model.apply(v, tokens, method="encode_text")
        img, txt, scale = model.apply(v, x, tokens)
        per_image, per_text = model.apply(v, x, tokens, method="logits")
        img_only = model.apply(v, x)
        txt_only = model.apply(v, None, tokens)
        normed = model.apply(v, x, normalize=True, method="encode_image")
        return raw_img, raw_txt, img, txt, scale, per_image, per_text, img_only, txt_only, normed

    raw_img, raw_txt, img, txt, scale, per_image, per_text, img_only, txt_only, normed = fast_jit(
        f
    )(variables)
    ref = _normalized_outputs(np.asarray(raw_img), np.asarray(raw_txt), float(scale))
    np.testing.assert_allclose(float(scale), 1 / 0.07, rtol=1e-6)
    _assert_all_close([img, txt, per_image], ref[:3], NORMALISE_TOLS)
    assert_close(per_text, ref[2].T, **NORMALISE_TOLS["logits"])
    assert img_only[1] is None and txt_only[0] is None
    chex.assert_trees_all_equal((img_only[0], txt_only[1], normed), (img, txt, img))


def test_rn50_parity_full_depth_at_64px():
    """RN50 image tower at full depth and width (3, 4, 6, 3) at 64 px (open_clip
    ``force_image_size=64``: a 2x2 attention pool) with a 1-layer text tower."""
    cfg = open_clip.get_model_config("RN50")
    vision = {**cfg["vision_cfg"], "image_size": 64}
    text = {**cfg["text_cfg"], "layers": 1}
    torch.manual_seed(0)
    m = randomize_(open_clip.model.CLIP(cfg["embed_dim"], vision, text).eval())
    ov = {"img_size": 64, "text_layers": 1}
    variables = from_torch("clip_rn50", m.state_dict(), strict=True, **ov)
    x = np.random.default_rng(1).standard_normal((2, 64, 64, 3)).astype(np.float32)
    tokens = tokenize(TEXTS[:3])
    ref = _torch_outputs(m, x, tokens)
    _assert_all_close(_jax_outputs("clip_rn50", variables, x, tokens, **ov), ref)


@pytest.mark.parametrize("name", ["clip_vit_b16", "clip_vit_l14"])
def test_vit_b16_l14_parity_reduced_depth(name):
    """B/16 and L/14 widths, heads and patch sizes at depth 1 (vision) / 1 (text), 2 images
    at the patch grid of 4x4 (the B/32 test covers full depth)."""
    cfg = open_clip.get_model_config(_CONFIGS[name])
    patch = cfg["vision_cfg"]["patch_size"]
    vision = {**cfg["vision_cfg"], "layers": 1, "image_size": 4 * patch}
    text = {**cfg["text_cfg"], "layers": 1}
    torch.manual_seed(0)
    m = randomize_(open_clip.model.CLIP(cfg["embed_dim"], vision, text).eval())
    ov = {"img_size": 4 * patch, "vision_layers": 1, "text_layers": 1}
    variables = from_torch(name, m.state_dict(), strict=True, **ov)
    x = np.random.default_rng(2).standard_normal((2, 4 * patch, 4 * patch, 3)).astype(np.float32)
    tokens = tokenize(TEXTS[:2])
    _assert_all_close(_jax_outputs(name, variables, x, tokens, **ov), _torch_outputs(m, x, tokens))


# ----------------------------------------------------------------------- traps (negative)


def test_quick_gelu_models_and_the_gelu_trap():
    """OpenAI checkpoints need QuickGELU: parity with ``quick_gelu=True``; the same weights
    with exact GELU (or without the causal mask) fail the same check."""
    m = _tiny_torch(quick_gelu=True)
    name, ov = _tiny_overrides(quick_gelu=True)
    variables = from_torch(name, m.state_dict(), strict=True, **ov)
    x = np.random.default_rng(3).standard_normal((2, 32, 32, 3)).astype(np.float32)
    tokens = tokenize(TEXTS[:4])
    ref = _torch_outputs(m, x, tokens)
    _assert_all_close(_jax_outputs(name, variables, x, tokens, **ov), ref)
    with pytest.raises(AssertionError, match="Not equal to tolerance"):
        _assert_all_close(
            _jax_outputs(name, variables, x, tokens, **{**ov, "quick_gelu": False}), ref
        )
    with pytest.raises(AssertionError, match="Not equal to tolerance"):
        _assert_all_close(
            _jax_outputs(name, variables, x, tokens, **{**ov, "text_causal": False}), ref
        )


# ----------------------------------------------------------------------- conversion


@pytest.mark.parametrize("resnet", [False, True], ids=["vit", "resnet"])
def test_to_torch_round_trip_loads_strictly(resnet):
    m = _tiny_torch(resnet=resnet)
    name, ov = _tiny_overrides(resnet=resnet)
    variables = from_torch(name, m.state_dict(), strict=True, **ov)
    sd = to_torch(name, variables, tensors=True, **ov)
    fresh = open_clip.model.CLIP(
        32,
        *[
            {"layers": (1, 1, 1, 1), "width": 16, "image_size": 32, "head_width": 8}
            if resnet
            else {"layers": 2, "width": 64, "patch_size": 16, "image_size": 32},
            {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
        ],
    )
    fresh.load_state_dict(sd, strict=True)
    for k, v in m.state_dict().items():
        torch.testing.assert_close(fresh.state_dict()[k], v, rtol=0, atol=0)


def test_scanned_model_converts_and_matches_unrolled():
    m = _tiny_torch()
    name, ov = _tiny_overrides()
    x = np.random.default_rng(4).standard_normal((2, 32, 32, 3)).astype(np.float32)
    tokens = tokenize(TEXTS[:2])
    unrolled = _jax_outputs(
        name, from_torch(name, m.state_dict(), strict=True, **ov), x, tokens, **ov
    )
    scanned_vars = from_torch(name, m.state_dict(), strict=True, scan=True, **ov)
    assert scanned_vars["params"]["text"]["blocks"]["attn"]["qkv"]["kernel"].shape == (2, 64, 192)
    scanned = _jax_outputs(name, scanned_vars, x, tokens, scan=True, **ov)
    _assert_all_close(scanned, unrolled, SCANNED_TOLS)
    back = to_torch(name, scanned_vars, scan=True, **ov)
    np.testing.assert_array_equal(
        back["transformer.resblocks.1.attn.in_proj_weight"],
        m.state_dict()["transformer.resblocks.1.attn.in_proj_weight"].numpy(),
    )


def test_strict_conversion_names_missing_and_unexpected_keys():
    m = _tiny_torch()
    name, ov = _tiny_overrides()
    sd = dict(m.state_dict())
    del sd["transformer.resblocks.0.attn.in_proj_weight"]
    sd["visual.extra_head.weight"] = torch.zeros(2)
    with pytest.raises(ValueError) as e:
        from_torch(name, sd, strict=True, **ov)
    msg = str(e.value)
    assert "missing (1): transformer.resblocks.0.attn.in_proj_weight" in msg
    assert "unexpected (1): visual.extra_head.weight" in msg


def test_wrong_input_sizes_name_the_fix():
    def init(name, ov, *args):  # traced only (eval_shape): the errors are raised while tracing
        model = jaxbones.create_model(name, **ov)
        return jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), *args))

    name, ov = _tiny_overrides()
    with pytest.raises(ValueError, match="img_size=64"):
        init(name, ov, jnp.zeros((1, 64, 64, 3)))
    with pytest.raises(ValueError, match="context_length=77"):
        init(name, ov, jnp.zeros((1, 32, 32, 3)), jnp.zeros((1, 10), jnp.int32))
    with pytest.raises(ValueError, match="img_size=64"):
        init(*_tiny_overrides(resnet=True), jnp.zeros((1, 64, 64, 3)))


# ----------------------------------------------------------------------- tokenizer


def test_tokenizer_equals_open_clip():
    ours = tokenize(TEXTS)
    assert ours.shape == (len(TEXTS), 77) and ours.dtype == np.int32
    np.testing.assert_array_equal(ours, open_clip.tokenize(TEXTS).numpy())
    np.testing.assert_array_equal(ours, open_clip.get_tokenizer("ViT-B-32")(TEXTS).numpy())
    # truncation keeps EOT last; other context lengths as open_clip
    assert ours[-1, -1] == 49407 and ours[0, 0] == 49406
    np.testing.assert_array_equal(
        tokenize(TEXTS, context_length=16), open_clip.tokenize(TEXTS, context_length=16).numpy()
    )
    tk = Tokenizer()
    assert tk.vocab_size == 49408
    assert tk.decode(tk.encode("Hello, World!")) == "hello , world ! "


def test_tokenizer_vocab_errors_name_the_fix(monkeypatch, tmp_path):
    with pytest.raises(FileNotFoundError, match="bpe_simple_vocab_16e6"):
        Tokenizer(vocab_path=str(tmp_path / "missing.txt.gz"))
    monkeypatch.setattr(tok_mod.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install open_clip_torch"):
        tok_mod.default_vocab_path()


# ----------------------------------------------------------------------- zero-shot


def test_zero_shot_classifier_equals_open_clip():
    from open_clip.zero_shot_classifier import build_zero_shot_classifier

    from jaxbones.zero_shot import build_zero_shot_classifier as ours_build
    from jaxbones.zero_shot import zero_shot_logits

    m = _tiny_torch()
    name, ov = _tiny_overrides()
    model = jaxbones.create_model(name, **ov)
    variables = from_torch(name, m.state_dict(), strict=True, **ov)
    classes = ["cat", "dog", "airplane", "crème brûlée"]
    templates = ["a photo of a {}.", "a blurry photo of the {}", "itap of a {}!"]
    ref = build_zero_shot_classifier(
        m, open_clip.get_tokenizer("ViT-B-32"), classes, templates, num_classes_per_batch=2
    ).numpy()
    # two batches of 2 classes x 3 templates (one compiled shape)
    ours = ours_build(model, variables, classes, templates, num_classes_per_batch=2)
    chex.assert_shape(ours, (32, 4))
    assert_close(ours, ref, **CLASSIFIER)
    x = np.random.default_rng(5).standard_normal((3, 32, 32, 3)).astype(np.float32)
    with torch.no_grad():
        ref_logits = 100.0 * m.encode_image(to_nchw(x), normalize=True) @ torch.from_numpy(ref)
    logits = fast_jit(lambda v, x, w: zero_shot_logits(model, v, x, w))(variables, x, ours)
    assert_close(logits, ref_logits, **ZERO_SHOT_LOGITS)


# ----------------------------------------------------------------------- contrastive loss


def _features(n=32, d=16, seed=0):
    rng = np.random.default_rng(seed)
    f = rng.standard_normal((2, n, d)).astype(np.float32)
    return f / np.linalg.norm(f, axis=-1, keepdims=True)


def test_clip_loss_equals_open_clip_and_is_the_same_sharded_over_8_devices():
    from open_clip.loss import ClipLoss

    from jaxbones.train.contrastive import clip_loss, clip_loss_local
    from jaxbones.train.sharding import make_mesh

    img, txt = _features()
    scale = 14.3
    ref = ClipLoss()(torch.from_numpy(img), torch.from_numpy(txt), torch.tensor(scale)).item()
    one = float(clip_loss(img, txt, scale))
    np.testing.assert_allclose(one, ref, rtol=1e-6)

    mesh = make_mesh()
    assert mesh.devices.size == 8
    sh = NamedSharding(mesh, P("data"))
    gi, gt = jax.device_put(img, sh), jax.device_put(txt, sh)
    assert len(gi.sharding.device_set) == 8
    glob = jax.jit(clip_loss)(gi, gt, scale)
    local_loss = clip_loss_local(mesh)
    loc = jax.jit(local_loss)(gi, gt, scale)
    np.testing.assert_allclose([float(glob), float(loc)], [one, one], rtol=1e-6)
    # the local (shard_map) layout has the same gradients as the global loss on one device
    g_one = jax.grad(clip_loss, argnums=(0, 1, 2))(img, txt, jnp.float32(scale))
    g_loc = jax.jit(jax.grad(local_loss, argnums=(0, 1, 2)))(gi, gt, jnp.float32(scale))
    for a, b in zip(g_one, g_loc):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), atol=1e-6)
    # a per-device loss (each device's own similarity block) is a different number
    per_dev = np.mean(
        [float(clip_loss(img[i : i + 4], txt[i : i + 4], scale)) for i in range(0, 32, 4)]
    )
    assert abs(per_dev - one) > 0.1
    # on a data x fsdp x tensor mesh the batch splits over data x fsdp and 'tensor' repeats it
    mesh3 = make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    sh3 = NamedSharding(mesh3, P(("data", "fsdp")))
    loc3 = jax.jit(clip_loss_local(mesh3))(
        jax.device_put(img, sh3), jax.device_put(txt, sh3), scale
    )
    np.testing.assert_allclose(float(loc3), one, rtol=1e-6)


def test_tiny_clip_trains_with_the_training_system_on_8_devices():
    """task='clip' through ``jaxbones.train.loop.run``: the global batch of 16 pairs sharded
    over 8 fake devices; synthetic pairs (16 noisy random prototype images, captions naming a
    colour and a shape) must be learned: the contrastive loss falls, in-batch retrieval beats
    chance (1/16) by far, and so does the 'clip_zero_shot' evaluator's accuracy (the 16
    colour-shape names in the caption template)."""
    import ml_collections

    from jaxbones.train import loop
    from jaxbones.train.config import default_config

    name, ov = _tiny_overrides(text_layers=1)
    ov.pop("img_size")
    colors = ["red", "green", "blue", "yellow", "purple", "orange", "white", "black"]
    names = [f"{c} {s}" for s in ("square", "circle") for c in colors]
    captions = tokenize([f"a photo of a {n}" for n in names])
    protos = np.random.default_rng(0).standard_normal((16, 32, 32, 3)).astype(np.float32)

    def batches(seed):
        rng = np.random.default_rng(seed)
        while True:
            cls = rng.permutation(16)  # 16 distinct classes per batch
            x = protos[cls] + 0.3 * rng.standard_normal((16, 32, 32, 3)).astype(np.float32)
            yield {"image": x, "text": captions[cls], "label": cls.astype(np.int32)}

    c = default_config()
    c.model = name
    c.model_kwargs.update(ov)
    c.task = "clip"
    c.image_size = 32
    c.global_batch_size = 16
    c.num_steps = 30
    c.log_every = 1
    c.optimizer.lr = 2e-3
    c.optimizer.warmup_steps = 3
    c.optimizer.weight_decay = 0.0
    c.compile_cache = ""
    c.plot = False
    c.progress = False
    c.best_metric = "loss"
    c.evals.zero_shot = ml_collections.ConfigDict(
        {"type": "clip_zero_shot", "class_names": tuple(names), "templates": ("a photo of a {}",)}
    )

    def eval_iter():
        it = batches(1)
        return [next(it)]

    out = loop.run(c, train_iter=batches(0), eval_iter=eval_iter())
    losses = [h["loss"] for h in out.history if h["split"] == "train"]
    assert len(losses) == 30
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:3]), losses
    assert out.metrics["zero_shot_accuracy"] > 0.5, out.metrics
    assert out.metrics["eval_i2t_accuracy"] > 0.5 and out.metrics["eval_t2i_accuracy"] > 0.5, (
        out.metrics
    )


def test_clip_pretrain_recipe_config_and_data():
    """The recipe's config locks and takes overrides, its model builds, and its captions name
    each image's digit (the full run's numbers are in the recipe's docstring)."""
    from experiments import clip_pretrain
    from jaxbones.train.config import apply_overrides

    for word in ("Command:", "Hardware:", "Time:", "Result:"):
        assert word in clip_pretrain.__doc__
    c = clip_pretrain.get_config()
    c.lock()
    apply_overrides(c, ["--config.num_steps=5"])
    assert c.num_steps == 5 and c.task == "clip"
    with pytest.raises(ValueError, match="did you mean"):
        apply_overrides(c, ["--config.num_step=3"])
    model = jaxbones.create_model(c.model, img_size=c.image_size, **c.model_kwargs)
    tr_x, tr_y, te_x, _ = clip_pretrain.digits_split(c.image_size)
    assert tr_x.shape == (1347, 32, 32, 3) and te_x.shape == (450, 32, 32, 3)
    assert tr_x.min() == -1.0 and tr_x.max() == 1.0
    tk = Tokenizer()
    batch = next(clip_pretrain.caption_batches(tr_x, tr_y, 64, 0, tk))
    assert batch["image"].shape == (64, 32, 32, 3) and batch["text"].shape == (64, 77)
    images = {x.tobytes(): y for x, y in zip(tr_x, tr_y)}
    for x, ids in zip(batch["image"], batch["text"]):
        label = images[x.tobytes()]
        words = tk.decode(ids[1 : list(ids).index(tk.eot_token_id)]).split()
        assert clip_pretrain.NAMES[label] in words or str(label) in words
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), batch["image"], batch["text"])
    assert shapes["params"]["visual"]["attnpool"]["positional_embedding"].shape == (2, 1024)
