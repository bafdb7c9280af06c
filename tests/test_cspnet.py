"""CSPNet / Darknet family against timm 1.0.31: exact parameter counts, eval parity for every
model (reduced resolution) and one at the default 256 px, train mode with running statistics,
features_only levels, shapes and values, the avg-down option, and the traps (leaky slope,
activation after the cross-stage expansion conv) failing the same check.

Traps and the feature taps are per-layer properties, so they are checked on one-block-per-stage
versions of the registered models (timm builds the same by overriding its stage config),
which keeps compile time down; every registered model is parity-tested at full depth."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import pytest
import timm
import torch
from helpers import (
    assert_close,
    assert_not_close,
    check_timm_feature_info,
    check_train_mode_and_running_stats,
    convert,
    images,
    randomize_,
    to_nchw,
)
from timm.models._features import FeatureListNet

import jaxbones

# assert_close tolerances, as a fraction of each reference array's largest magnitude
LOGITS = {"rtol": 0, "atol_of_max": 1e-5}
# train mode normalises with the batch statistics of a few small maps: its rounding reaches
# ~3e-5 of max|logit| (resnet50), against ~2e-6 in eval mode
TRAIN_LOGITS = {"rtol": 0, "atol_of_max": 1e-4}
RUNNING_STATS = {"rtol": 0, "atol_of_max": 1e-4}
STEM_FEATURES = {"rtol": 0, "atol_of_max": 1e-5}
LAST_FEATURES = {"rtol": 0, "atol_of_max": 1e-5}

# timm's own counts (1000 classes), asserted on both sides below.
PARAM_COUNTS = {
    "darknet53": 41_609_928,
    "cspdarknet53": 27_642_184,
    "cspresnet50": 21_616_168,
    "cspresnext50": 20_569_896,
}
PARITY_MODELS = list(PARAM_COUNTS)
# forward/backward smoke test at one block per stage (full depth is parity-tested here)
SMOKE_OVERRIDES = {
    n: {"depths": (1,) * len(timm.models.cspnet.model_cfgs[n].stages.depth)} for n in PARAM_COUNTS
}


def _reference(name: str, small: bool = False, timm_name: str | None = None):
    return _cached_reference(name, small, timm_name)  # one cache key however it is called


@functools.cache
def _cached_reference(name, small, timm_name):
    """A randomised timm model (eval mode), its strictly converted Flax variables and the
    jaxbones overrides. ``small``: one block per stage on both sides."""
    torch.manual_seed(0)
    kw, overrides = {}, {}
    if small:
        cfg = timm.models.cspnet.model_cfgs[timm_name or name].stages
        depths = (1,) * len(cfg.depth)
        kw["stages"] = dataclasses.replace(cfg, depth=depths)
        overrides["depths"] = depths
    if timm_name == "darknetaa53":
        overrides["avg_down"] = True
    tm = randomize_(timm.create_model(timm_name or name, pretrained=False, **kw)).eval()
    return tm, convert(name, tm, **overrides), overrides


def _apply(name, variables, x, train=False, **overrides):
    model = jaxbones.create_model(name, **overrides)
    kw = {"mutable": ["batch_stats"]} if train else {}
    fn = functools.partial(model.apply, train=train, **kw)
    return jax.jit(fn)(variables, x)


def _outputs(name, size, batch=2, seed=0, small=False, timm_name=None, **overrides):
    tm, variables, ov = _reference(name, small, timm_name)
    x = images((batch, size, size, 3), seed=seed)
    with torch.no_grad():
        ref = tm(to_nchw(x)).numpy()
    out = _apply(name, variables, x, **ov, **overrides)
    assert out.shape == ref.shape == (batch, 1000)
    return out, ref


@pytest.mark.parametrize("name", PARITY_MODELS)
def test_param_count(name):
    assert jaxbones.model_info(name)["num_params"] == PARAM_COUNTS[name]
    tm, _, _ = _reference(name)
    assert sum(p.numel() for p in tm.parameters()) == PARAM_COUNTS[name]


@pytest.mark.parametrize("name", PARITY_MODELS)
def test_eval_parity_reduced_resolution(name):
    # 96 px: odd map sizes (3x3 at the end) exercise the stride-2 padding on both sides
    assert_close(*_outputs(name, 96), **LOGITS)


def test_eval_parity_full_size_256():
    name = "cspdarknet53"
    assert jaxbones.model_info(name)["input_size"] == (256, 256, 3)
    assert_close(*_outputs(name, 256, batch=1, seed=4), **LOGITS)


def test_wrong_leaky_slope_fails():
    """The original darknet cfgs use LeakyReLU(0.1); timm (the reference) uses torch's
    default slope 0.01. The 0.1 slope must fail the same check the model passes."""
    assert_close(*_outputs("darknet53", 64, small=True), **LOGITS)
    assert_not_close(*_outputs("darknet53", 64, small=True, act="leaky_relu_0.1"), **LOGITS)


def test_activation_after_conv_exp_fails():
    """CSPResNe(X)t's ``conv_exp`` is linear (``cross_linear``); CSPDarknet's is not. Getting
    it wrong either way must fail the same check."""
    for name, wrong in (("cspresnet50", False), ("cspdarknet53", True)):
        assert_close(*_outputs(name, 64, small=True), **LOGITS)
        assert_not_close(*_outputs(name, 64, small=True, cross_linear=wrong), **LOGITS)


def test_avg_down_matches_darknetaa53():
    """``avg_down=True`` (2x2 average pool + 1x1 conv downsampling) is timm's darknetaa53."""
    assert_close(*_outputs("darknet53", 64, small=True, timm_name="darknetaa53"), **LOGITS)


def test_train_mode_and_running_stats():
    check_train_mode_and_running_stats(
        "cspresnet50",
        _reference("cspresnet50")[0],
        images((4, 64, 64, 3), seed=1),
        logits_tol=TRAIN_LOGITS,
        stats_tol=RUNNING_STATS,
    )


@pytest.mark.parametrize("name", PARITY_MODELS)
def test_features_match_timm(name):
    check_timm_feature_info(name, _reference(name)[0])


@pytest.mark.parametrize("name", ["darknet53", "cspresnet50"])
def test_feature_values(name):
    """The stem tap (stride 1 for Darknet, before the stem max pool for CSPResNet) and the
    last stage, against timm's features_only wrapper of the same weights."""
    tm, variables, ov = _reference(name, small=True)
    n_levels = len(jaxbones.create_model(name, features_only=True).feature_info)
    tf = FeatureListNet(tm, out_indices=tuple(range(n_levels)), flatten_sequential=True)
    x = images((1, 64, 64, 3), seed=3)
    with torch.no_grad():
        ref = [r.permute(0, 2, 3, 1).numpy() for r in tf(to_nchw(x))]
    fm = jaxbones.create_model(name, features_only=True, out_indices=(0, -1), **ov)
    out = jax.jit(fm.apply)(variables, x)
    assert len(out) == 2
    assert_close(out[0], ref[0], **STEM_FEATURES)
    assert_close(out[1], ref[-1], **LAST_FEATURES)


def test_round_trip_bit_exact():
    tm, variables, _ = _reference("cspresnext50")
    sd = tm.state_dict()
    back = jaxbones.convert.to_torch("cspresnext50", variables, tensors=True)
    assert set(back) == set(sd)
    for k in sd:
        assert torch.equal(back[k], sd[k]), k


def test_errors_name_the_fix():
    with pytest.raises(ValueError, match="stem_stride must be 1, 2 or 4"):
        m = jaxbones.create_model("darknet53", stem_stride=3)
        jax.eval_shape(m.init, jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 3)))
    with pytest.raises(ValueError, match="in_chans=1"):
        m = jaxbones.create_model("cspresnet50")
        jax.eval_shape(m.init, jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 1)))
    with pytest.raises(ValueError, match="out_indices"):
        _ = jaxbones.create_model("darknet53", features_only=True, out_indices=(6,)).feature_info
