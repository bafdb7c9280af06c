"""UNet / UNet++ / UNet3+ and ESPCN: exact parameter counts, ESPCN parity with an equivalent
PyTorch module, output shapes for sizes divisible and not divisible by the total stride
(error or padding), generic backbone encoders from feature_info, deep supervision / CGM
outputs, a few training steps with decreasing loss for every registered UNet variant, and
the segmentation recipe (jaxbones.train + jaxbones.data) reaching a mean IoU floor."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from helpers import (
    assert_close,
    assert_not_close,
    convert,
    images,
    nhwc,
    randomize_,
    to_nchw,
    torch_count,
)

import jaxbones
from jaxbones.train import segmentation as seg

# assert_close tolerances, as a fraction of each reference array's largest magnitude
ESPCN = {"rtol": 0, "atol_of_max": 1e-5}

# UNet: 31,037,698 is also the count of the widely used PyTorch UNet (milesial/Pytorch-UNet,
# n_channels=3, n_classes=2, bilinear=False), which has the same layers. UNet3+: the paper
# reports 26.97M. The other counts pin our own architectures (no PyTorch reference).
PARAM_COUNTS = {
    "unet": 31_037_698,
    "unetpp": 36_165_314,
    "unet3p": 26_963_650,
    "unet_resnet18": 14_241_298,
    "unet_resnet50": 30_468_114,
    "unetpp_resnet18": 15_551_730,
    "unet3p_resnet18": 20_474_242,
    "unet_swin_tiny": 31_231_260,
    "espcn_x2": 21_284,
    "espcn_x3": 22_729,
    "espcn_x4": 24_752,
}
UNETS = [n for n in PARAM_COUNTS if n.startswith("unet")]
PARITY_MODELS = ["espcn_x2", "espcn_x3", "espcn_x4"]
NO_REFERENCE = {
    n: "UNet-family models have no PyTorch reference in torchvision/timm; their layers "
    "(transposed conv, pixel shuffle, resize, conv-BN) are parity-tested in test_upsample.py "
    "and the backbone encoders in their own families"
    for n in UNETS
}

# small widths / one block per backbone stage: keeps every variant cheap to compile
_SMALL_PLAIN = {"widths": (8, 16, 32, 64, 128)}
_SMALL_BB = {"backbone_kwargs": {"layers": (1, 1, 1, 1)}, "decoder_widths": (32, 16, 16, 8, 8)}
# the forward/backward and training tests use 3 levels (reductions 8, 16, 32 for the backbones,
# so the final full-resolution stage is exercised too): the same code at a third of the graph
_BB3 = {"layers": (1, 1, 1, 1), "out_indices": (2, 3, 4)}
SMOKE_OVERRIDES = {
    "unet": {"widths": (8, 16, 32)},
    "unetpp": {"widths": (8, 16, 32)},
    "unet3p": {"widths": (8, 16, 32), "cat_channels": 8},
    "unet_resnet18": {"backbone_kwargs": _BB3, "decoder_widths": (16, 8, 8)},
    "unet_resnet50": {"backbone_kwargs": _BB3, "decoder_widths": (16, 8, 8)},
    "unetpp_resnet18": {"backbone_kwargs": _BB3, "decoder_widths": (16, 8, 8)},
    "unet3p_resnet18": {"backbone_kwargs": _BB3, "cat_channels": 8},
    "unet_swin_tiny": {
        "backbone_kwargs": {
            "depths": (1, 1, 1, 1),
            "num_heads": (1, 1, 1, 1),
            "embed_dim": 16,
            "img_size": 32,
            "window_size": 4,
        },
        "decoder_widths": (16, 8, 8, 8),
    },
}


# XLA:CPU spends most of its compile time optimising code that runs once or a few times here
# (the RNG-heavy init graph takes minutes); the tests compile with cheap settings instead.
FAST_COMPILE = jaxbones.registry.FAST_COMPILE


def fast_jit(fn, *args):
    """``jax.jit(fn)(*args)`` compiled with ``FAST_COMPILE``; returns (compiled, output)."""
    compiled = jax.jit(fn).lower(*args).compile(FAST_COMPILE)
    return compiled, compiled(*args)


def quick_variables(model, x, seed=0):
    """Variables for ``model`` without compiling ``model.init``: shapes from ``eval_shape``,
    He-normal kernels, unit norm scales / variances, zero biases / means (numpy)."""
    shapes = jax.eval_shape(lambda x: model.init(jax.random.PRNGKey(0), x), x)
    rng = np.random.default_rng(seed)

    def fill(path, s):
        leaf = path[-1].key
        if leaf == "kernel":
            return rng.normal(0, np.sqrt(2.0 / np.prod(s.shape[:-1])), s.shape).astype(s.dtype)
        return (np.ones if leaf in ("scale", "var") else np.zeros)(s.shape, s.dtype)

    return jax.tree_util.tree_map_with_path(fill, shapes)


def shape_of(model, x, **kw):
    """Output shapes without compute (jax.eval_shape of init + apply)."""
    rngs = {"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(1)}
    out = jax.eval_shape(lambda x: model.init_with_output(rngs, x, **kw)[0], x)
    return jax.tree_util.tree_map(lambda a: a.shape, out)


# ----------------------------------------------------------------------------- ESPCN


class TorchESPCN(torch.nn.Module):
    """Shi et al. 2016 from torch layers: conv5x5 64 tanh, conv3x3 32 tanh, conv3x3 r^2*C,
    PixelShuffle(r)."""

    def __init__(self, scale: int, chans: int = 1):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(chans, 64, 5, padding=2)
        self.conv2 = torch.nn.Conv2d(64, 32, 3, padding=1)
        self.conv3 = torch.nn.Conv2d(32, chans * scale * scale, 3, padding=1)
        self.shuffle = torch.nn.PixelShuffle(scale)

    def forward(self, x):
        return self.shuffle(self.conv3(torch.tanh(self.conv2(torch.tanh(self.conv1(x))))))


@pytest.mark.parametrize("name", ["espcn_x2", "espcn_x3", "espcn_x4"])
def test_espcn_count_and_parity(name):
    r = int(name[-1])
    torch.manual_seed(r)
    tm = randomize_(TorchESPCN(r)).eval()
    assert jaxbones.model_info(name)["num_params"] == PARAM_COUNTS[name] == torch_count(tm)
    variables = convert(name, tm)
    x = images((2, 17, 13, 1), seed=r)
    with torch.no_grad():
        ref = nhwc(tm(to_nchw(x)))
    out = jax.jit(jaxbones.create_model(name).apply)(variables, x)
    chex.assert_shape(out, (2, 17 * r, 13 * r, 1))
    assert_close(out, ref, **ESPCN)
    # round trip back to PyTorch
    sd = jaxbones.convert.to_torch(name, variables, tensors=True)
    tm2 = TorchESPCN(r)
    tm2.load_state_dict(sd, strict=True)
    for k, v in tm.state_dict().items():
        np.testing.assert_array_equal(tm2.state_dict()[k].numpy(), v.numpy())


def test_espcn_rgb_parity_and_wrong_activation_fails():
    torch.manual_seed(0)
    tm = randomize_(TorchESPCN(3, chans=3)).eval()
    variables = convert("espcn_x3", tm, in_chans=3)
    x = images((1, 9, 11, 3), seed=5)
    with torch.no_grad():
        ref = nhwc(tm(to_nchw(x)))
    out = jax.jit(jaxbones.create_model("espcn_x3", in_chans=3).apply)(variables, x)
    assert_close(out, ref, **ESPCN)
    wrong = jax.jit(jaxbones.create_model("espcn_x3", in_chans=3, act="relu").apply)(variables, x)
    assert_not_close(wrong, ref, **ESPCN)


# ----------------------------------------------------------------------------- shapes


@pytest.mark.parametrize(
    "name,overrides,stride",
    [("unet", _SMALL_PLAIN, 16), ("unet_resnet18", _SMALL_BB, 32), ("unetpp", _SMALL_PLAIN, 16)],
)
def test_shapes_divisible_error_and_padding(name, overrides, stride):
    model = jaxbones.create_model(name, num_classes=5, **overrides)
    assert model.total_stride == stride
    assert shape_of(model, jnp.zeros((2, 64, 96, 3))) == (2, 64, 96, 5)
    with pytest.raises(
        ValueError, match=rf"multiples of its total stride {stride}.*64.*pad_to_multiple"
    ):
        shape_of(model, jnp.zeros((2, 50, 70, 3)))
    padded = jaxbones.create_model(name, num_classes=5, pad_to_multiple=True, **overrides)
    assert shape_of(padded, jnp.zeros((2, 50, 70, 3))) == (2, 50, 70, 5)
    assert shape_of(padded, jnp.zeros((1, 64, 64, 3))) == (1, 64, 64, 5)


def test_padding_equals_running_on_the_zero_padded_input():
    model = jaxbones.create_model("unet", num_classes=3, pad_to_multiple=True, **_SMALL_PLAIN)
    plain = jaxbones.create_model("unet", num_classes=3, **_SMALL_PLAIN)
    x = jnp.asarray(images((1, 20, 30, 3)))
    variables = quick_variables(plain, jnp.zeros((1, 32, 32, 3)))
    out = fast_jit(model.apply, variables, x)[1]
    ref = fast_jit(plain.apply, variables, jnp.pad(x, ((0, 0), (0, 12), (0, 2), (0, 0))))[1]
    ref = ref[:, :20, :30]
    assert out.shape == (1, 20, 30, 3)
    np.testing.assert_allclose(out, ref, atol=1e-5)


def test_generic_backbone_encoder_from_feature_info():
    # the encoder is create_model(backbone, features_only=True): same parameter tree
    model = jaxbones.create_model("unet", backbone="resnet18", num_classes=4)
    shapes = jax.eval_shape(
        lambda x: model.init(jax.random.PRNGKey(0), x), jnp.zeros((1, 64, 64, 3))
    )
    bb = jaxbones.create_model("resnet18", features_only=True)
    bb_shapes = jax.eval_shape(
        lambda x: bb.init(jax.random.PRNGKey(0), x), jnp.zeros((1, 64, 64, 3))
    )
    assert jax.tree_util.tree_map(lambda a: a.shape, shapes["params"]["encoder"]) == (
        jax.tree_util.tree_map(lambda a: a.shape, bb_shapes["params"])
    )
    # selected levels (reductions 4..32): the final stage upsamples by 4 to full resolution
    m4 = jaxbones.create_model(
        "unet3p", backbone="resnet50", backbone_kwargs={"out_indices": (1, 2, 3, 4)}, num_classes=4
    )
    assert shape_of(m4, jnp.zeros((1, 64, 64, 3))) == (1, 64, 64, 4)
    for arch in ("unet", "unetpp"):
        m = jaxbones.create_model(
            arch,
            backbone="resnet18",
            backbone_kwargs={"out_indices": (2, 3, 4)},
            upsample="pixel_shuffle",
        )
        assert shape_of(m, jnp.zeros((1, 64, 64, 3))) == (1, 64, 64, 2)
    with pytest.raises(ValueError, match="does not expose multi-scale features.*resnet18"):
        shape_of(jaxbones.create_model("unet", backbone="espcn_x2"), jnp.zeros((1, 64, 64, 3)))
    with pytest.raises(ValueError, match="resnet18"):
        shape_of(jaxbones.create_model("unet", backbone="resnet81"), jnp.zeros((1, 64, 64, 3)))
    with pytest.raises(ValueError, match="needs 5 entries"):
        shape_of(
            jaxbones.create_model("unet_resnet18", decoder_widths=(8, 8)), jnp.zeros((1, 64, 64, 3))
        )


@pytest.mark.parametrize("mode", ["transpose", "bilinear", "nearest", "pixel_shuffle"])
def test_every_upsample_mode(mode):
    m = jaxbones.create_model("unet", upsample=mode, **_SMALL_PLAIN)
    assert shape_of(m, jnp.zeros((1, 32, 48, 3))) == (1, 32, 48, 2)


def test_deep_supervision_outputs():
    x = jnp.zeros((2, 32, 32, 3))
    pp = jaxbones.create_model("unetpp", deep_supervision=True, **_SMALL_PLAIN)
    assert shape_of(pp, x, train=True) == [(2, 32, 32, 2)] * 4
    assert shape_of(pp, x) == (2, 32, 32, 2)
    p3 = jaxbones.create_model(
        "unet3p_resnet18", deep_supervision=True, cgm=True, **SMOKE_OVERRIDES["unet3p_resnet18"]
    )
    segs, cls = shape_of(p3, jnp.zeros((2, 64, 64, 3)), train=True)
    assert segs == [(2, 64, 64, 2)] * 3 and cls == (2, 2)


def test_cgm_gates_eval_predictions():
    model = jaxbones.create_model("unet3p", cgm=True, num_classes=3, **SMOKE_OVERRIDES["unet3p"])
    x = jnp.asarray(images((2, 32, 32, 3)))
    variables = quick_variables(model, x)
    plain = jaxbones.create_model("unet3p", num_classes=3, **SMOKE_OVERRIDES["unet3p"])
    params = dict(variables["params"])
    ref = fast_jit(
        plain.apply,
        {**variables, "params": {k: v for k, v in params.items() if k != "cls_head"}},
        x,
    )[1]
    params["cls_head"] = {**params["cls_head"], "bias": jnp.array([-50.0, 50.0])}  # present
    apply, (out, cls) = fast_jit(model.apply, {**variables, "params": params}, x)
    np.testing.assert_allclose(out, ref, atol=1e-6)
    assert (cls.argmax(-1) == 1).all()
    params["cls_head"] = {**params["cls_head"], "bias": jnp.array([50.0, -50.0])}  # absent
    out, _ = apply({**variables, "params": params}, x)
    assert (out.argmax(-1) == 0).all()


# ----------------------------------------------------------------------------- training


def _toy_batch(size, classes=3):
    # learnable: the mask is a function of the image (thresholds of channel 0)
    x = images((4, size, size, 3), seed=7)
    mask = np.digitize(x[..., 0], [-0.4, 0.4]).astype(np.int32)
    return jnp.asarray(x), jnp.asarray(mask)


@pytest.mark.parametrize("name", UNETS)
def test_every_unet_variant_trains(name):
    size = 32
    model = jaxbones.create_model(name, num_classes=3, **SMOKE_OVERRIDES[name])
    x, mask = _toy_batch(size)
    variables = quick_variables(model, x)
    tx = optax.adam(3e-3)
    params, stats = variables["params"], variables["batch_stats"]
    opt = tx.init(params)

    def step(params, stats, opt):
        def loss_fn(p):
            out, upd = model.apply(
                {"params": p, "batch_stats": stats},
                x,
                train=True,
                mutable=["batch_stats"],
                rngs={"dropout": jax.random.PRNGKey(1), "drop_path": jax.random.PRNGKey(2)},
            )
            return seg.segmentation_loss(out, mask, dice_weight=0.5), upd["batch_stats"]

        (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt = tx.update(grads, opt, params)
        return optax.apply_updates(params, updates), stats, opt, loss

    step = jax.jit(step).lower(params, stats, opt).compile(FAST_COMPILE)
    losses = []
    for _ in range(6):
        params, stats, opt, loss = step(params, stats, opt)
        losses.append(float(loss))
    assert np.all(np.isfinite(losses))
    assert losses[-1] < 0.9 * losses[0], losses


# ----------------------------------------------------------------------------- recipe


def test_segmentation_recipe_reaches_mean_iou_floor(tmp_path):
    # experiments/unet_segmentation.py (jaxbones.train + jaxbones.data, digits_seg) states
    # 0.975 test mean IoU at its defaults (300 steps); this shortened schedule (60 steps,
    # cosine over 60) measured 0.722 mean IoU, 0.905 pixel accuracy; the floors sit below.
    from experiments import unet_segmentation
    from jaxbones.launch import main
    from jaxbones.train.logger import plotted_series

    out = main(
        unet_segmentation.get_config,
        [
            "--config.num_steps=60",
            f"--config.workdir={tmp_path}",
            f"--config.data_dir={tmp_path / 'data'}",
            "--config.progress=false",
            "--config.compile_cache=",
        ],
    )
    assert out.metrics["eval_mean_iou"] >= 0.65, out.metrics
    assert out.metrics["eval_pixel_accuracy"] >= 0.85, out.metrics
    assert (tmp_path / "predictions.png").stat().st_size > 1000
    # curves.png has a panel per metric: train loss and lr, the 'eval' evaluator's mean IoU
    series = plotted_series(out.history)
    assert series["mean_iou"] == ["eval"] and series["pixel_accuracy"] == ["train", "eval"]
    assert series["loss"] == series["lr"] == ["train"]
    assert (tmp_path / "curves.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="did you mean"):
        main(unet_segmentation.get_config, ["--config.num_step=3"])
