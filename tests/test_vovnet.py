"""VoVNet / VoVNetV2 (eSE) against timm 1.0.31: exact parameter counts, eval parity for every
model (reduced resolution) and one at the default 224 px, train mode with running statistics,
features_only levels, shapes and values, and the traps (floor-mode stage pools, a sigmoid
instead of hard-sigmoid eSE gate) failing the same check.

Traps and feature taps are per-layer properties, so they are checked on one-block-per-stage
versions of the registered models (timm builds the same from a ``block_per_stage``
override), which keeps compile time down; every registered model is parity-tested at full
depth."""

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
import jaxbones.models.vovnet as vovnet_mod
from jaxbones.layers import max_pool2d

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
    "vovnet39a": 22_600_296,
    "vovnet57a": 36_640_296,
    "ese_vovnet19b_dw": 6_543_080,
    "ese_vovnet39b": 24_568_936,
}
PARITY_MODELS = list(PARAM_COUNTS)
_SMALL = {"block_per_stage": (1, 1, 1, 1)}
# forward/backward smoke test at one block per stage (full depth is parity-tested here)
SMOKE_OVERRIDES = {n: _SMALL for n in ("vovnet39a", "vovnet57a", "ese_vovnet39b")}
SMOKE_OVERRIDES["ese_vovnet19b_dw"] = {"layer_per_block": 1}


def _reference(name: str, small: bool = False):
    return _cached_reference(name, small)  # one cache key however it is called


@functools.cache
def _cached_reference(name, small):
    """A randomised timm model (eval mode), its strictly converted Flax variables and the
    jaxbones overrides. ``small``: one block per stage on both sides."""
    torch.manual_seed(0)
    ov = dict(_SMALL) if small else {}
    tm = randomize_(timm.create_model(name, pretrained=False, **ov)).eval()
    return tm, convert(name, tm, **ov), ov


def _apply(name, variables, x, train=False, **overrides):
    model = jaxbones.create_model(name, **overrides)
    kw = {"mutable": ["batch_stats"]} if train else {}
    return jax.jit(functools.partial(model.apply, train=train, **kw))(variables, x)


def _outputs(name, size, batch=2, seed=0, small=False, **overrides):
    tm, variables, ov = _reference(name, small)
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
    # 96 px: stage maps 24 -> 12 -> 6 -> 3 only with ceil-mode pools (floor: 11, 5, 2)
    assert_close(*_outputs(name, 96), **LOGITS)


def test_eval_parity_full_size_224():
    name = "ese_vovnet39b"
    assert jaxbones.model_info(name)["input_size"] == (224, 224, 3)
    assert_close(*_outputs(name, 224, batch=1, seed=4), **LOGITS)


def test_floor_mode_pools_fail(monkeypatch):
    """timm's stage pools are MaxPool2d(3, 2, ceil_mode=True); floor mode (the usual
    default) must fail the same check."""
    name = "vovnet39a"
    assert_close(*_outputs(name, 96, small=True), **LOGITS)
    monkeypatch.setattr(
        vovnet_mod, "max_pool2d", lambda x, k, s, p, ceil_mode: max_pool2d(x, k, s, p, False)
    )
    assert_not_close(*_outputs(name, 96, small=True), **LOGITS)


def test_sigmoid_gate_fails(monkeypatch):
    """eSE gates with hard_sigmoid = relu6(x + 3) / 6 (torch Hardsigmoid), not sigmoid."""
    name = "ese_vovnet19b_dw"
    assert_close(*_outputs(name, 64), **LOGITS)
    monkeypatch.setattr(
        vovnet_mod, "EffectiveSE", functools.partial(vovnet_mod.EffectiveSE, gate="sigmoid")
    )
    assert_not_close(*_outputs(name, 64), **LOGITS)


def test_train_mode_and_running_stats():
    check_train_mode_and_running_stats(
        "ese_vovnet19b_dw",
        _reference("ese_vovnet19b_dw")[0],
        images((4, 64, 64, 3), seed=1),
        logits_tol=TRAIN_LOGITS,
        stats_tol=RUNNING_STATS,
    )


@pytest.mark.parametrize("name", PARITY_MODELS)
def test_features_match_timm(name):
    check_timm_feature_info(name, _reference(name)[0])


def test_feature_values():
    """The stem tap (``stem.1``: after the separable stem conv, before the stride-2 one) and
    the last stage, against timm's features_only wrapper of the same weights."""
    name = "ese_vovnet19b_dw"
    tm, variables, _ = _reference(name)
    tf = FeatureListNet(tm, out_indices=(0, 1, 2, 3, 4), flatten_sequential=True)
    x = images((1, 64, 64, 3), seed=3)
    with torch.no_grad():
        ref = [r.permute(0, 2, 3, 1).numpy() for r in tf(to_nchw(x))]
    fm = jaxbones.create_model(name, features_only=True, out_indices=(0, -1))
    out = jax.jit(fm.apply)(variables, x)
    assert len(out) == 2
    assert_close(out[0], ref[0], **STEM_FEATURES)
    assert_close(out[1], ref[-1], **LAST_FEATURES)


def test_round_trip_bit_exact():
    tm, variables, _ = _reference("ese_vovnet39b")
    sd = tm.state_dict()
    back = jaxbones.convert.to_torch("ese_vovnet39b", variables, tensors=True)
    assert set(back) == set(sd)
    for k in sd:
        assert torch.equal(back[k], sd[k]), k


def test_errors():
    with pytest.raises(ValueError, match="out_indices"):
        _ = jaxbones.create_model("vovnet39a", features_only=True, out_indices=(5,)).feature_info
    with pytest.raises(ValueError, match="attn must be"):
        m = jaxbones.create_model("vovnet39a", attn="eca")
        jax.eval_shape(m.init, jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)))
