"""VGG family: exact parameter counts, eval/train parity with torchvision, torch-exact
adaptive average pooling, multi-scale features against timm, conversion round trip."""

import copy
import functools
import re

import chex
import jax
import jax.numpy as jnp
import pytest
import timm
import torch
import torchvision
from helpers import (
    assert_close,
    convert,
    images,
    jax_forward,
    nhwc,
    randomize_,
    to_nchw,
    torch_count,
)

import jaxbones

# CPU compile time dominates these tests; LLVM optimisation level 0 halves it and changes
# no semantics (the outputs are still compared with PyTorch).
fast_jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})
from jaxbones.layers import adaptive_avg_pool2d

# assert_close tolerances, as a fraction of each reference array's largest magnitude
LOGITS = {"rtol": 0, "atol_of_max": 1e-5}
LOGITS_224 = {"rtol": 0, "atol_of_max": 1e-5}
# train mode normalises with the batch statistics of a few small maps: its rounding reaches
# ~3e-5 of max|logit| (resnet50), against ~2e-6 in eval mode
TRAIN_LOGITS = {"rtol": 0, "atol_of_max": 1e-4}
RUNNING_STATS = {"rtol": 0, "atol_of_max": 1e-4}
FEATURES = {"rtol": 0, "atol_of_max": 1e-5}
PRE_LOGITS = {"rtol": 0, "atol_of_max": 1e-5}

# torchvision's counts (1000 classes); each is also asserted on the torchvision model.
PARAM_COUNTS = {
    "vgg11": 132_863_336,
    "vgg11_bn": 132_868_840,
    "vgg13": 133_047_848,
    "vgg13_bn": 133_053_736,
    "vgg16": 138_357_544,
    "vgg16_bn": 138_365_992,
    "vgg19": 143_667_240,
    "vgg19_bn": 143_678_248,
}
PARITY_MODELS = list(PARAM_COUNTS)
# the generic forward/backward test runs the deeper configs with VGG-11's layers
SMOKE_OVERRIDES = {n: {"cfg": "A"} for n in PARAM_COUNTS if not n.startswith("vgg11")}


def torch_model(name: str, seed: int = 0, **kw) -> torch.nn.Module:
    torch.manual_seed(seed)
    return randomize_(getattr(torchvision.models, name)(weights=None, **kw), seed).eval()


_CACHE = {}


def reference(name: str):
    """(torch model, converted variables); vgg11_bn is cached for the tests that share it
    (a 133M-parameter init plus conversion is the bulk of each test's time)."""
    if name in _CACHE:
        return _CACHE[name]
    tm = torch_model(name)
    out = (tm, convert(name, tm))
    if name == "vgg11_bn":
        _CACHE[name] = out
    return out


@pytest.mark.parametrize("name", PARITY_MODELS)
def test_param_count(name):
    assert jaxbones.model_info(name)["num_params"] == PARAM_COUNTS[name]
    with torch.device("meta"):  # shapes only: no 130M-parameter initialisation
        tm = getattr(torchvision.models, name)(weights=None)
    assert torch_count(tm) == PARAM_COUNTS[name]


@pytest.mark.parametrize("name", [n for n in PARITY_MODELS if n != "vgg16"])
def test_eval_parity_reduced_resolution(name):
    # 64x80 px leaves a 2x2 map: the adaptive pool replicates it to 7x7 with overlapping
    # windows, so the classifier runs as at 224 px and every layer is exercised.
    tm, variables = reference(name)
    x = images((2, 64, 80, 3))
    with torch.no_grad():
        ref = tm(to_nchw(x)).numpy()
    out = fast_jit(lambda v, x: jax_forward(name, v, x))(variables, x)
    chex.assert_shape(out, (2, 1000))
    assert_close(out, ref, **LOGITS)


def test_eval_parity_vgg16_224():
    name = "vgg16"
    tm, variables = reference(name)
    x = images((1, 224, 224, 3), seed=1)
    with torch.no_grad():
        ref = tm(to_nchw(x)).numpy()
    assert_close(fast_jit(lambda v, x: jax_forward(name, v, x))(variables, x), ref, **LOGITS_224)


def test_train_mode_and_running_stats_vgg11_bn():
    name = "vgg11_bn"
    tm, variables = reference(name)
    tm = copy.deepcopy(tm).train()
    for i in (2, 5):  # dropout off: torch's masks cannot be reproduced
        tm.classifier[i].p = 0.0
    x = images((4, 48, 48, 3), seed=2)
    ref = tm(to_nchw(x)).detach().numpy()  # updates torch's running stats
    out, updates = jax_forward(name, variables, x, train=True, drop_rate=0.0)
    assert_close(out, ref, **TRAIN_LOGITS)
    sd = tm.state_dict()
    new = jaxbones.convert.to_torch(name, {**variables, **updates})
    stats = [k for k in new if k.endswith(("running_mean", "running_var"))]
    assert len(stats) == 16
    assert_close({k: new[k] for k in stats}, {k: sd[k] for k in stats}, **RUNNING_STATS)


@pytest.mark.parametrize(
    "hw,out", [((7, 7), 7), ((2, 3), 7), ((13, 9), 7), ((10, 15), (4, 6)), ((5, 5), 1)]
)
def test_adaptive_avg_pool2d_matches_torch(hw, out):
    x = images((2, *hw, 3), seed=3)
    ref = nhwc(torch.nn.functional.adaptive_avg_pool2d(to_nchw(x), out))
    assert_close(adaptive_avg_pool2d(jnp.asarray(x), out), ref, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", ["vgg11", "vgg11_bn", "vgg16_bn", "vgg19"])
def test_features_match_timm(name):
    fm = jaxbones.create_model(name, features_only=True)
    with torch.device("meta"):  # shapes only
        tf = timm.create_model(name, pretrained=False, features_only=True)
        ref = tf(torch.zeros(1, 3, 96, 128, device="meta"))
    info = [(d["num_chs"], d["reduction"], d["module"]) for d in fm.feature_info]
    fi = tf.feature_info
    assert info == list(zip(fi.channels(), fi.reduction(), fi.module_name()))
    shapes = jax.eval_shape(
        lambda: fm.init_with_output(jax.random.PRNGKey(0), jnp.zeros((1, 96, 128, 3)))[0]
    )
    assert [s.shape for s in shapes] == [tuple(r.permute(0, 2, 3, 1).shape) for r in ref]


def test_feature_values_vgg11_bn():
    # timm's features_only VGG holds only the convs/BNs, as ``features_N`` (FeatureListNet
    # flattens module names): rename to ``features.N`` and convert just those, strictly.
    name = "vgg11_bn"
    torch.manual_seed(0)
    tf = randomize_(timm.create_model(name, pretrained=False, features_only=True)).eval()
    sd = {re.sub(r"^features_(\d+)", r"features.\1", k): v for k, v in tf.state_dict().items()}
    assert all(k.startswith("features.") for k in sd)
    fm = jaxbones.create_model(name, features_only=True, out_indices=(0, 3, 5))
    variables = jaxbones.convert.from_torch(
        name, sd, strict=True, features_only=True, out_indices=(0, 3, 5)
    )
    x = images((1, 64, 64, 3), seed=5)
    with torch.no_grad():
        ref = [nhwc(r) for r in tf(to_nchw(x))]
    out = fm.apply(variables, x)
    assert_close(list(out), [ref[0], ref[3], ref[5]], **FEATURES)


def test_pre_logits():
    # (the conversion round trip is covered by the train test's to_torch of running stats
    # and, bit-exact, by the DenseNet/Inception tests: VGG's converter is a pure rename)
    name = "vgg11_bn"
    tm, variables = reference(name)
    # num_classes=0 returns the 4096-d pre-logits (the input of classifier.6)
    x = images((1, 32, 32, 3), seed=6)
    params = {k: v for k, v in variables["params"].items() if k != "classifier_6"}
    pre = jaxbones.create_model(name, num_classes=0).apply(
        {"params": params, "batch_stats": variables["batch_stats"]}, x
    )
    with torch.no_grad():
        ref = tm.classifier[:6](torch.flatten(tm.avgpool(tm.features(to_nchw(x))), 1)).numpy()
    chex.assert_shape(pre, (1, 4096))
    assert_close(pre, ref, **PRE_LOGITS)
