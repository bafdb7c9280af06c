"""ResNet family: exact parameter counts, eval/train parity with torchvision and timm,
running statistics, one SGD step, multi-scale features, conversion round trips."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import timm
import torch
import torchvision
from helpers import (
    assert_close,
    convert,
    fast_jit,
    images,
    jax_forward,
    nhwc,
    randomize_,
    to_nchw,
    torch_count,
)

import jaxbones

# assert_close tolerances (atol absolute; atol_of_max a fraction of the reference's max |value|)
LOGITS = {"rtol": 0, "atol_of_max": 1e-5}
# train mode normalises with the batch statistics of a few small maps: its rounding reaches
# ~3e-5 of max|logit| (resnet50), against ~2e-6 in eval mode
TRAIN_LOGITS = {"rtol": 0, "atol_of_max": 1e-4}
RUNNING_STATS = {"rtol": 0, "atol_of_max": 1e-4}
FEATURES = {"rtol": 0, "atol_of_max": 1e-5}
GRADS = {"rtol": 0, "atol_of_max": 5e-5}
# parameters after one step with lr 0.1 inherit 0.1x the gradient error: measured 1.2e-6
SGD_PARAMS = {"rtol": 0, "atol": 5e-6}

# torchvision's own counts (1000 classes); resnetv2 from timm.
PARAM_COUNTS = {
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
    "resnext50_32x4d": 25_028_904,
    "resnext101_32x8d": 88_791_336,
    "wide_resnet50_2": 68_883_240,
    "resnetv2_50": 25_549_352,
    "resnetv2_101": 44_541_480,
}
PARITY_MODELS = list(PARAM_COUNTS)
# forward/backward smoke test at reduced depth (full depth is parity-tested above)
SMOKE_OVERRIDES = {
    n: {"layers": (1, 1, 1, 1)} for n in PARAM_COUNTS if n not in ("resnet18", "resnet50")
}


def torch_model(name: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    if name.startswith("resnetv2"):
        m = timm.create_model(name, pretrained=False)
    else:
        m = getattr(torchvision.models, name)(weights=None)
    return randomize_(m, seed).eval()


@pytest.mark.parametrize("name", PARITY_MODELS)
def test_param_count(name):
    assert jaxbones.model_info(name)["num_params"] == PARAM_COUNTS[name]
    assert torch_count(torch_model(name)) == PARAM_COUNTS[name]


@pytest.mark.parametrize("name", PARITY_MODELS)
def test_eval_parity_224(name):
    tm = torch_model(name)
    variables = convert(name, tm)
    x = images((1, 224, 224, 3))
    with torch.no_grad():
        ref = tm(to_nchw(x)).numpy()
    out = fast_jit(lambda v, x: jax_forward(name, v, x))(variables, x)
    chex.assert_shape(out, (1, 1000))
    assert_close(out, ref, **LOGITS)


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "resnext50_32x4d", "resnetv2_50"])
def test_train_mode_and_running_stats(name):
    tm = torch_model(name).train()
    variables = convert(name, tm)
    x = images((4, 96, 96, 3), seed=1)
    ref = tm(to_nchw(x)).detach().numpy()  # updates torch's running stats
    out, updates = jax_forward(name, variables, x, train=True)
    assert_close(out, ref, **TRAIN_LOGITS)
    new_torch = jaxbones.convert.to_torch(name, {**variables, **updates})
    sd = tm.state_dict()
    stats = [k for k in new_torch if k.endswith(("running_mean", "running_var"))]
    assert stats
    assert_close({k: new_torch[k] for k in stats}, {k: sd[k] for k in stats}, **RUNNING_STATS)


def test_sgd_step_resnet18():
    name = "resnet18"
    tm = torch_model(name).train()
    variables = convert(name, tm)
    x = images((4, 64, 64, 3), seed=2)
    labels = np.array([1, 5, 7, 999])

    loss_t = torch.nn.functional.cross_entropy(tm(to_nchw(x)), torch.from_numpy(labels))
    loss_t.backward()
    loss_t = loss_t.item()
    model = jaxbones.create_model(name)

    def loss_fn(params):
        logits, _ = model.apply(
            {"params": params, "batch_stats": variables["batch_stats"]},
            x,
            train=True,
            mutable=["batch_stats"],
        )
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    loss_j, grads = fast_jit(jax.value_and_grad(loss_fn))(variables["params"])
    chex.assert_tree_all_finite(grads)
    chex.assert_trees_all_close(float(loss_j), loss_t, rtol=1e-5)

    tgrads = jaxbones.convert.to_torch(name, {"params": grads})
    tparams = dict(tm.named_parameters())
    assert set(tgrads) == set(tparams)
    assert_close(tgrads, {k: tparams[k].grad for k in tgrads}, **GRADS)

    # one SGD step on both sides gives the same parameters
    lr = 0.1
    with torch.no_grad():
        for p in tm.parameters():
            p -= lr * p.grad
    new = jax.tree_util.tree_map(lambda p, g: p - lr * g, variables["params"], grads)
    sd = tm.state_dict()
    assert_close(
        jaxbones.convert.to_torch(name, {"params": new}), {k: sd[k] for k in tparams}, **SGD_PARAMS
    )


@pytest.mark.parametrize("name", PARITY_MODELS)
def test_features_match_timm(name):
    fm = jaxbones.create_model(name, features_only=True)
    tf = timm.create_model(name, pretrained=False, features_only=True)
    info = [(d["num_chs"], d["reduction"]) for d in fm.feature_info]
    assert info == [(c, r) for c, r in zip(tf.feature_info.channels(), tf.feature_info.reduction())]
    shapes = jax.eval_shape(
        lambda: fm.init_with_output(jax.random.PRNGKey(0), jnp.zeros((1, 128, 160, 3)))[0]
    )
    with torch.no_grad():
        ref = tf(torch.zeros(1, 3, 128, 160))
    assert [s.shape for s in shapes] == [tuple(r.permute(0, 2, 3, 1).shape) for r in ref]


def test_feature_values_resnet50():
    name = "resnet50"
    tm = torch_model(name)
    variables = convert(name, tm)
    tf = timm.create_model(name, pretrained=False, features_only=True).eval()
    missing = tf.load_state_dict({k: v for k, v in tm.state_dict().items()}, strict=False)
    assert set(missing.unexpected_keys) == {"fc.weight", "fc.bias"}
    x = images((1, 64, 64, 3), seed=3)
    with torch.no_grad():
        ref = [nhwc(r) for r in tf(to_nchw(x))]
    fm = jaxbones.create_model(name, features_only=True, out_indices=(1, 4))
    out = fm.apply({"params": variables["params"], "batch_stats": variables["batch_stats"]}, x)
    assert len(out) == 2
    assert_close(list(out), [ref[1], ref[4]], **FEATURES)


@pytest.mark.parametrize("name", ["resnet50", "resnetv2_50"])
def test_round_trip_bit_exact(name, tmp_path):
    tm = torch_model(name)
    sd = tm.state_dict()
    back = jaxbones.convert.to_torch(name, convert(name, tm), tensors=True)
    assert set(back) == set(sd)
    for k in sd:
        assert torch.equal(back[k], sd[k]), k
    tm.load_state_dict(back, strict=True)
    # and from files: .pth and .safetensors, wrapped like real checkpoints
    from safetensors.torch import save_file

    torch.save({"model": sd, "epoch": 3}, tmp_path / "ckpt.pth")
    save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp_path / "w.safetensors"))
    for path in (tmp_path / "ckpt.pth", tmp_path / "w.safetensors"):
        v = jaxbones.convert.from_torch(name, str(path), strict=True)
        chex_equal = jax.tree_util.tree_map(np.array_equal, v, convert(name, tm))
        assert all(jax.tree_util.tree_leaves(chex_equal))


def test_conversion_reports_keys_by_name():
    tm = torch_model("resnet18")
    sd = dict(tm.state_dict())
    sd.pop("layer1.0.conv1.weight")
    sd["extra.weight"] = torch.zeros(3)
    v, report = jaxbones.convert.from_torch("resnet18", sd, return_report=True)
    assert report.missing == ["layer1.0.conv1.weight"]
    assert report.unexpected == ["extra.weight"]
    assert v["params"]["layer1_0"]["conv1"]["kernel"].shape == (3, 3, 64, 64)
    with pytest.raises(ValueError, match="layer1.0.conv1.weight"):
        jaxbones.convert.from_torch("resnet18", sd, strict=True)


def test_new_head_for_transfer_learning():
    sd = torch_model("resnet18").state_dict()
    with pytest.raises(ValueError, match="skip_mismatched=True"):
        jaxbones.convert.from_torch("resnet18", sd, num_classes=10)
    v, report = jaxbones.convert.from_torch(
        "resnet18", sd, num_classes=10, skip_mismatched=True, return_report=True
    )
    assert v["params"]["fc"]["kernel"].shape == (512, 10)
    assert sorted(k for k, _, _ in report.mismatched) == ["fc.bias", "fc.weight"]


def test_zero_init_last_and_drop_path():
    m = jaxbones.create_model("resnet50", drop_path_rate=0.2)
    x = jnp.ones((2, 32, 32, 3))
    v = fast_jit(m.init)(jax.random.PRNGKey(0), x)
    assert not np.any(v["params"]["layer1_0"]["bn3"]["scale"])
    rngs = {"drop_path": jax.random.PRNGKey(1), "dropout": jax.random.PRNGKey(2)}
    a, _ = fast_jit(lambda v: m.apply(v, x, train=True, rngs=rngs, mutable=["batch_stats"]))(v)
    assert np.isfinite(a).all()
    m2 = jaxbones.create_model("resnet50", zero_init_last=False)
    v2 = fast_jit(m2.init)(jax.random.PRNGKey(0), x)
    assert np.all(v2["params"]["layer1_0"]["bn3"]["scale"] == 1)


def test_scan_equals_unrolled_and_converts():
    """``scan=True`` stacks blocks 1..n-1 of each stage (params and batch_stats): torchvision
    weights load strictly, eval logits and features match torch, train-mode logits and
    running-stat updates match the unrolled model (with remat on the scanned side), and the
    scanned variables convert back to the exact state dict."""
    name = "resnet50"
    tm = torch_model(name)
    variables = convert(name, tm)
    scanned = convert(name, tm, scan=True)
    assert scanned["params"]["layer3_rest"]["conv2"]["kernel"].shape == (5, 3, 3, 256, 256)
    assert scanned["batch_stats"]["layer3_rest"]["bn1"]["var"].shape == (5, 256)
    assert "layer3_1" not in scanned["params"] and "layer3_0" in scanned["params"]
    model = jaxbones.create_model(name, scan=True)
    stacked = jaxbones.convert.get_converter("resnet").to_scanned(variables, model)
    chex.assert_trees_all_equal(stacked, scanned)

    x = images((2, 64, 64, 3), seed=4)
    with torch.no_grad():
        ref = tm(to_nchw(x)).numpy()
    out = fast_jit(lambda v, x: jax_forward(name, v, x, scan=True))(scanned, x)
    assert_close(out, ref, **LOGITS)

    fm = jaxbones.create_model(name, scan=True, features_only=True, out_indices=(1, 4))
    feats = fast_jit(fm.apply)(scanned, x)
    tf = timm.create_model(name, pretrained=False, features_only=True).eval()
    tf.load_state_dict({k: v for k, v in tm.state_dict().items() if not k.startswith("fc.")})
    with torch.no_grad():
        tref = [nhwc(r) for r in tf(to_nchw(x))]
    assert_close(list(feats), [tref[1], tref[4]], **FEATURES)

    def train(v, x, **ov):
        return jax_forward(name, v, x, train=True, **ov)

    out_u, upd_u = fast_jit(train)(variables, x)
    out_s, upd_s = fast_jit(functools.partial(train, scan=True, remat_policy="dots"))(scanned, x)
    chex.assert_trees_all_close(out_s, out_u, rtol=0, atol=1e-5)
    upd_s = jaxbones.convert.get_converter("resnet").to_unrolled(upd_s, model)
    chex.assert_trees_all_close(upd_s, upd_u, rtol=1e-5, atol=1e-6)

    back = jaxbones.convert.to_torch(name, scanned, scan=True)
    sd = tm.state_dict()
    assert set(back) == set(sd)
    for k, v in back.items():
        np.testing.assert_array_equal(v, sd[k].numpy(), err_msg=k)


def test_scan_resnetv2_and_drop_path_trains():
    """ResNetV2 scans the same way (``stages_{s}_blocks_rest``); scanned + remat training with
    per-block drop-path rates (a scanned input) differentiates to every parameter (shapes
    only, via eval_shape, to keep CI time down); depth-1 stages have nothing to scan."""
    name, ov = "resnetv2_50", {"layers": (1, 2, 3, 1)}
    x = images((2, 32, 32, 3), seed=5)
    unrolled = jaxbones.create_model(name, **ov)
    rng = np.random.default_rng(0)

    def random_leaf(a):  # non-trivial BN statistics and no zero-init convs
        if a.ndim >= 2:  # kernels: signed and fan-in scaled, so the logits stay finite
            return (rng.uniform(-1, 1, a.shape) / np.sqrt(np.prod(a.shape[:-1]))).astype("f4")
        return rng.uniform(0.5, 1.5, a.shape).astype(np.float32)

    v = jax.tree_util.tree_map(random_leaf, jax.eval_shape(unrolled.init, jax.random.PRNGKey(0), x))
    model = jaxbones.create_model(name, scan=True, **ov)
    conv = jaxbones.convert.get_converter("resnetv2")
    vs = conv.to_scanned(v, model)
    assert vs["params"]["stages_2_blocks_rest"]["conv1"]["kernel"].shape[0] == 2
    assert "stages_3_blocks_rest" not in vs["params"]
    chex.assert_trees_all_equal(conv.to_unrolled(vs, model), v)
    out_u = fast_jit(unrolled.apply)(v, x)
    out_s = fast_jit(model.apply)(vs, x)
    chex.assert_tree_all_finite(out_u)
    assert_close(out_s, out_u, rtol=0, atol_of_max=1e-6)

    dp = jaxbones.create_model(
        "resnet50", scan=True, remat_policy="full", drop_path_rate=0.2, layers=(2, 3, 1, 1)
    )
    dv = jax.eval_shape(dp.init, jax.random.PRNGKey(0), x)
    rngs = {"drop_path": jax.random.PRNGKey(2)}

    def loss(params, stats):
        out, _ = dp.apply(
            {"params": params, "batch_stats": stats},
            x,
            train=True,
            rngs=rngs,
            mutable=["batch_stats"],
        )
        return jnp.mean(out**2)

    grads = jax.eval_shape(jax.grad(loss), dv["params"], dv["batch_stats"])
    assert jax.tree_util.tree_structure(grads) == jax.tree_util.tree_structure(dv["params"])
