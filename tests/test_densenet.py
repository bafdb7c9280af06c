"""DenseNet family: exact parameter counts, eval/train parity with torchvision,
memory_efficient (remat) equal to the plain model, the checkpoints' old key names,
multi-scale features against timm."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
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

# assert_close tolerances, as a fraction of each reference array's largest magnitude
LOGITS = {"rtol": 0, "atol_of_max": 1e-5}
# train mode normalises with the batch statistics of a few small maps: its rounding reaches
# ~3e-5 of max|logit| (resnet50), against ~2e-6 in eval mode
TRAIN_LOGITS = {"rtol": 0, "atol_of_max": 1e-4}
RUNNING_STATS = {"rtol": 0, "atol_of_max": 1e-4}
REMAT_OUTPUTS = {"rtol": 0, "atol_of_max": 1e-5}
# gradients: ~1e-5 of each tensor's max, plus an absolute 2e-5 where a tensor's gradient
# cancels to ~5e-4
REMAT_GRADS = {"rtol": 0, "atol": 5e-5, "atol_of_max": 5e-5}
FEATURES = {"rtol": 0, "atol_of_max": 1e-5}

# torchvision's counts (1000 classes); each is also asserted on the torchvision model.
PARAM_COUNTS = {
    "densenet121": 7_978_856,
    "densenet161": 28_681_000,
    "densenet169": 14_149_480,
    "densenet201": 20_013_928,
}
PARITY_MODELS = list(PARAM_COUNTS)
# forward/backward smoke test at reduced depth (full depth is parity-tested)
SMOKE_OVERRIDES = {n: {"block_config": (2, 2, 2, 2)} for n in PARAM_COUNTS}

_CACHE = {}


def reference(name: str):
    """(randomised eval-mode torchvision model, converted variables), cached per name."""
    if name not in _CACHE:
        torch.manual_seed(0)
        tm = randomize_(getattr(torchvision.models, name)(weights=None)).eval()
        _CACHE[name] = (tm, convert(name, tm))
    return _CACHE[name]


@pytest.mark.parametrize("name", PARITY_MODELS)
def test_param_count(name):
    assert jaxbones.model_info(name)["num_params"] == PARAM_COUNTS[name]
    with torch.device("meta"):
        tm = getattr(torchvision.models, name)(weights=None)
    assert torch_count(tm) == PARAM_COUNTS[name]


def test_eval_parity_densenet121_224():
    name = "densenet121"
    tm, variables = reference(name)
    x = images((1, 224, 224, 3))
    with torch.no_grad():
        ref = tm(to_nchw(x)).numpy()
    out = fast_jit(lambda v, x: jax_forward(name, v, x))(variables, x)
    chex.assert_shape(out, (1, 1000))
    assert_close(out, ref, **LOGITS)


@pytest.mark.parametrize("name", ["densenet161", "densenet169", "densenet201"])
def test_eval_parity_reduced_resolution(name):
    # 64 px: every layer runs (2x2 maps in the last block); only the pool sizes shrink
    tm, variables = reference(name)
    x = images((2, 64, 64, 3), seed=1)
    with torch.no_grad():
        ref = tm(to_nchw(x)).numpy()
    assert_close(fast_jit(lambda v, x: jax_forward(name, v, x))(variables, x), ref, **LOGITS)


def test_train_mode_and_running_stats_densenet121():
    name = "densenet121"
    _, variables = reference(name)
    torch.manual_seed(0)
    tm = randomize_(torchvision.models.densenet121(weights=None)).train()
    x = images((2, 64, 64, 3), seed=2)
    ref = tm(to_nchw(x)).detach().numpy()  # updates torch's running stats
    out, updates = fast_jit(lambda v, x: jax_forward(name, v, x, train=True))(variables, x)
    assert_close(out, ref, **TRAIN_LOGITS)
    sd = tm.state_dict()
    new = jaxbones.convert.to_torch(name, {**variables, **updates})
    stats = [k for k in new if k.endswith(("running_mean", "running_var"))]
    assert len(stats) == 2 * (2 * 58 + 3 + 2)  # 58 layers x 2 BN, 3 transitions, norm0/5
    assert_close({k: new[k] for k in stats}, {k: sd[k] for k in stats}, **RUNNING_STATS)


def test_memory_efficient_equals_plain():
    # same variables, same outputs, running stats and gradients; each dense layer is one
    # remat (``remat2``) in the traced forward
    kw = {"block_config": (1, 2, 1, 1)}
    plain = jaxbones.create_model("densenet121", **kw)
    remat = jaxbones.create_model("densenet121", memory_efficient=True, **kw)
    x = jnp.asarray(images((2, 32, 32, 3), seed=3))
    variables = fast_jit(plain.init)(jax.random.PRNGKey(0), x)
    v2 = jax.eval_shape(remat.init, jax.random.PRNGKey(0), x)
    assert jax.tree_util.tree_structure(v2) == jax.tree_util.tree_structure(variables)

    def loss(model):
        def f(params):
            out, upd = model.apply(
                {**variables, "params": params}, x, train=True, mutable=["batch_stats"]
            )
            return jnp.sum(out**2), (out, upd)

        return f

    jaxprs = [str(jax.make_jaxpr(loss(m))(variables["params"])) for m in (plain, remat)]
    assert jaxprs[0].count("remat2[") == 0 and jaxprs[1].count("remat2[") == sum(kw["block_config"])
    results = [
        fast_jit(jax.value_and_grad(loss(m), has_aux=True))(variables["params"])
        for m in (plain, remat)
    ]
    # equal up to float reassociation (XLA fuses the recomputed graph differently)
    (l0, aux0), g0 = results[0]
    (l1, aux1), g1 = results[1]
    chex.assert_tree_all_finite((g0, g1))
    assert_close((l1, aux1), (l0, aux0), **REMAT_OUTPUTS)
    assert_close(g1, g0, **REMAT_GRADS)


def test_old_checkpoint_keys_and_round_trip():
    # torchvision's downloadable weights say ``denselayer1.norm.1.weight`` (LuaTorch era)
    name = "densenet121"
    tm, variables = reference(name)
    sd = tm.state_dict()
    old = {
        k.replace(".norm1.", ".norm.1.").replace(".conv2.", ".conv.2.")
        if ".denselayer" in k
        else k: v
        for k, v in sd.items()
    }
    assert any(".norm.1." in k for k in old)
    v_old = jaxbones.convert.from_torch(name, old, strict=True)
    same = jax.tree_util.tree_map(np.array_equal, v_old, variables)
    assert all(jax.tree_util.tree_leaves(same))
    back = jaxbones.convert.to_torch(name, variables, tensors=True)
    assert set(back) == set(sd) and all(torch.equal(back[k], sd[k]) for k in sd)


@pytest.mark.parametrize("name", PARITY_MODELS)
def test_features_match_timm(name):
    fm = jaxbones.create_model(name, features_only=True)
    with torch.device("meta"):
        tf = timm.create_model(name, pretrained=False, features_only=True)
        ref = tf(torch.zeros(1, 3, 96, 128, device="meta"))
    fi = tf.feature_info
    info = [(d["num_chs"], d["reduction"], d["module"]) for d in fm.feature_info]
    assert info == list(zip(fi.channels(), fi.reduction(), fi.module_name()))
    shapes = jax.eval_shape(
        lambda: fm.init_with_output(jax.random.PRNGKey(0), jnp.zeros((1, 96, 128, 3)))[0]
    )
    assert [s.shape for s in shapes] == [tuple(r.permute(0, 2, 3, 1).shape) for r in ref]


def test_feature_values_densenet121():
    # timm's DenseNet keeps torchvision's ``features.*`` names (FeatureListNet joins the
    # path with ``_``): load the torchvision weights into timm and compare every level.
    name = "densenet121"
    tm, variables = reference(name)
    tf = timm.create_model(name, pretrained=False, features_only=True).eval()
    tkeys = set(tf.state_dict())
    sd = {}
    for k, v in tm.state_dict().items():
        if k.startswith("features."):
            head, rest = k[len("features.") :].split(".", 1)
            sd[f"features_{head}.{rest}"] = v
    sd = {k: v for k, v in sd.items() if k in tkeys}
    tf.load_state_dict(sd, strict=True)
    x = images((1, 64, 64, 3), seed=4)
    with torch.no_grad():
        ref = [nhwc(r) for r in tf(to_nchw(x))]
    fm = jaxbones.create_model(name, features_only=True)
    out = fast_jit(fm.apply)(variables, x)
    assert len(out) == len(ref) == 5
    assert_close(list(out), ref, **FEATURES)
