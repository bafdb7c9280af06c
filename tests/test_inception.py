"""Inception-v3: exact parameter counts, eval parity with torchvision at 299 px, train mode
with the auxiliary classifier and running statistics, the BN-eps and count_include_pad
traps (negative tests), transform_input, features against timm.

Every test shares one randomised torchvision model and its conversion (``reference``)."""

import functools

import chex
import jax
import jax.numpy as jnp
import pytest
import timm
import torch
import torchvision
from helpers import (
    assert_close,
    assert_not_close,
    convert,
    images,
    jax_forward,
    nhwc,
    randomize_,
    to_nchw,
)

import jaxbones

# CPU compile time dominates these tests; LLVM optimisation level 0 halves it and changes
# no semantics (the outputs are still compared with PyTorch).
fast_jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})
import jaxbones.models.inception as inception_mod
from jaxbones.layers import avg_pool2d

# assert_close tolerances, as a fraction of each reference array's largest magnitude
LOGITS = {"rtol": 0, "atol_of_max": 1e-5}
STEM_FEATURES = {"rtol": 0, "atol_of_max": 1e-5}
# train mode normalises with the batch statistics of a few small maps: its rounding reaches
# ~3e-5 of max|logit| (resnet50), against ~2e-6 in eval mode
TRAIN_LOGITS = {"rtol": 0, "atol_of_max": 1e-4}
AUX_LOGITS = {"rtol": 0, "atol_of_max": 1e-4}
RUNNING_STATS = {"rtol": 0, "atol_of_max": 1e-4}
MIXED_6E = {"rtol": 0, "atol_of_max": 1e-5}

NAME = "inception_v3"
# torchvision's count with its default aux classifier (Inception_V3_Weights meta: 27161264)
PARAM_COUNTS = {NAME: 27_161_264}
NO_AUX_COUNT = 23_834_568  # aux_logits=False
PARITY_MODELS = [NAME]
# the aux head needs 299 px in train mode (test_train_mode_aux_logits_and_running_stats);
# the generic forward/backward test runs at 75 px without it
SMOKE_OVERRIDES = {NAME: {"aux_logits": False}}


def torch_model(seed: int = 0, **kw) -> torch.nn.Module:
    torch.manual_seed(seed)
    # init_weights=False: torch's default init (the truncated-normal init is very slow)
    m = torchvision.models.inception_v3(weights=None, init_weights=False, **kw)
    return randomize_(m, seed).eval()


_CACHE = {}


def reference():
    if "ref" not in _CACHE:
        tm = torch_model()
        _CACHE["ref"] = (tm, convert(NAME, tm))
    return _CACHE["ref"]


def test_param_count():
    assert jaxbones.model_info(NAME)["num_params"] == PARAM_COUNTS[NAME]
    with torch.device("meta"):
        tm = torchvision.models.inception_v3(weights=None, init_weights=False)
        tm_no_aux = torchvision.models.inception_v3(
            weights=None, init_weights=False, aux_logits=False
        )
    assert sum(p.numel() for p in tm.parameters()) == PARAM_COUNTS[NAME]
    assert sum(p.numel() for p in tm_no_aux.parameters()) == NO_AUX_COUNT
    shapes = jaxbones.registry.init_shapes(NAME, aux_logits=False)
    assert jaxbones.registry.count_params(shapes["params"]) == NO_AUX_COUNT
    info = jaxbones.model_info(NAME)
    assert info["input_size"] == (299, 299, 3) and info["min_size"] == 75
    assert info["mean"] == (0.5, 0.5, 0.5) and info["std"] == (0.5, 0.5, 0.5)


def reference_logits_299():
    if "logits" not in _CACHE:
        tm, _ = reference()
        with torch.no_grad():
            _CACHE["logits"] = tm(to_nchw(images((1, 299, 299, 3)))).numpy()
    return _CACHE["logits"]


def _eval_outputs(overrides=None):
    _, variables = reference()
    model = jaxbones.create_model(NAME, **(overrides or {}))
    out = fast_jit(model.apply)(variables, images((1, 299, 299, 3)))
    chex.assert_shape(out, (1, 1000))
    return out, reference_logits_299()


def test_eval_parity_299():
    assert_close(*_eval_outputs(), **LOGITS)


def test_trap_bn_eps():
    # torchvision's BasicConv2d uses eps 1e-3; the PyTorch/Flax default 1e-5 fails the check
    assert_not_close(*_eval_outputs({"bn_eps": 1e-5}), **LOGITS)


def test_trap_count_include_pad(monkeypatch):
    # the branch pools count the padding (PyTorch's default); timm's usual False fails
    monkeypatch.setattr(
        inception_mod, "_branch_pool", lambda y: avg_pool2d(y, 3, 1, 1, count_include_pad=False)
    )
    assert_not_close(*_eval_outputs(), **LOGITS)


def test_transform_input():
    # the re-normalisation happens before Conv2d_1a: compare the first feature level
    tm, variables = reference()
    tm_t = torchvision.models.inception_v3(
        weights=None, init_weights=False, transform_input=True
    ).eval()
    tm_t.load_state_dict(tm.state_dict())
    acts = {}
    tm_t.Conv2d_2b_3x3.register_forward_hook(lambda m, i, o: acts.setdefault("2b", o))
    x = images((1, 75, 75, 3), seed=2)
    with torch.no_grad():
        tm_t(to_nchw(x))
    model = jaxbones.create_model(NAME, transform_input=True, features_only=True, out_indices=(0,))
    (out,) = fast_jit(model.apply)(variables, x)
    assert_close(out, nhwc(acts["2b"]), **STEM_FEATURES)
    plain = jaxbones.create_model(NAME, features_only=True, out_indices=(0,))
    (out_plain,) = fast_jit(plain.apply)(variables, x)
    assert_not_close(out_plain, nhwc(acts["2b"]), **STEM_FEATURES)


def test_train_mode_aux_logits_and_running_stats():
    _, variables = reference()
    tm = torch_model()  # a fresh copy: train mode updates its running stats
    tm.dropout.p = 0.0  # dropout off: torch's masks cannot be reproduced
    tm.train()
    x = images((2, 299, 299, 3), seed=3)  # 299 px: the smallest the aux head accepts
    logits_t, aux_t = tm(to_nchw(x))
    train_fwd = fast_jit(lambda v, x: jax_forward(NAME, v, x, train=True, drop_rate=0.0))
    (logits, aux), updates = train_fwd(variables, x)
    assert_close(logits, logits_t, **TRAIN_LOGITS)
    assert_close(aux, aux_t, **AUX_LOGITS)
    sd = tm.state_dict()
    new = jaxbones.convert.to_torch(NAME, {**variables, **updates})
    stats = [k for k in new if k.endswith(("running_mean", "running_var"))]
    assert len(stats) == 2 * 96  # 94 conv blocks + 2 in AuxLogits, mean and var each
    assert_close({k: new[k] for k in stats}, {k: sd[k] for k in stats}, **RUNNING_STATS)
    with pytest.raises(ValueError, match="aux_logits=False"):
        jax.eval_shape(train_fwd, variables, jnp.zeros((1, 283, 283, 3)))


def test_conversion_without_aux_and_round_trip():
    tm, variables = reference()
    sd = tm.state_dict()
    back = jaxbones.convert.to_torch(NAME, variables, tensors=True)
    assert set(back) == set(sd) and all(torch.equal(back[k], sd[k]) for k in sd)
    # the aux head of a full torchvision checkpoint is dropped for aux_logits=False
    v = jaxbones.convert.from_torch(NAME, sd, strict=True, aux_logits=False)
    assert "AuxLogits" not in v["params"]
    assert jax.tree_util.tree_all(
        jax.tree_util.tree_map(
            lambda a, b: bool(jnp.array_equal(a, b)),
            v["params"]["Mixed_7c"],
            variables["params"]["Mixed_7c"],
        )
    )


def test_features_match_timm():
    fm = jaxbones.create_model(NAME, features_only=True)
    with torch.device("meta"):
        tf = timm.create_model(NAME, pretrained=False, features_only=True)
        ref = tf(torch.zeros(1, 3, 299, 299, device="meta"))
    fi = tf.feature_info
    info = [(d["num_chs"], d["reduction"], d["module"]) for d in fm.feature_info]
    assert info == list(zip(fi.channels(), fi.reduction(), fi.module_name()))
    shapes = jax.eval_shape(
        lambda: fm.init_with_output(jax.random.PRNGKey(0), jnp.zeros((1, 299, 299, 3)))[0]
    )
    assert [s.shape for s in shapes] == [tuple(r.permute(0, 2, 3, 1).shape) for r in ref]
    # the feature values are the backbone's: Mixed_6e of the converted model vs torchvision
    tm, variables = reference()
    x = images((1, 107, 107, 3), seed=4)
    acts = {}
    tm.Mixed_6e.register_forward_hook(lambda m, i, o: acts.setdefault("6e", o))
    with torch.no_grad():
        tm(to_nchw(x))
    fm3 = jaxbones.create_model(NAME, features_only=True, out_indices=(3,))
    (out,) = fm3.apply(variables, x)
    assert_close(out, nhwc(acts["6e"]), **MIXED_6E)
