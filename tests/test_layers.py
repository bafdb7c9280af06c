"""Layers against their torch counterparts, and the negative tests docs/parity.md asks for:
'SAME' padding, tanh GELU and the wrong epsilon must each fail the parity check."""

import functools

import chex
import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import (
    assert_close,
    assert_not_close,
    convert,
    fast_jit,
    images,
    nhwc,
    randomize_,
    to_nchw,
)
from jax import lax

import jaxbones
from jaxbones.layers import (
    BatchNorm,
    DropPath,
    GroupNorm,
    LayerNorm,
    Mlp,
    avg_pool2d,
    get_act,
    max_pool2d,
)
from jaxbones.models import resnet as resnet_mod

# assert_close tolerances: atol_of_max is a fraction of each reference array's largest
# magnitude; single layers on O(1) inputs keep absolute ones
BATCHNORM = {"rtol": 0, "atol": 1e-5}  # measured 1.4e-6 at |y| <= 8
RUNNING_MEAN = {"rtol": 0, "atol": 1e-6}  # measured 7e-8
RUNNING_VAR = {"rtol": 1e-5, "atol": 0}  # measured 1.8e-7 relative
BATCHNORM_GRAD = {"rtol": 0, "atol": 1e-5}
# inputs at |x| ~ 300: float32 rounds them to ~2e-5, which the normalisation (std ~1)
# passes to the output; measured 8.7e-5 (LayerNorm), the fast variance is off by 5e-2
LARGE_MEAN_NORM = {"rtol": 0, "atol": 2e-4}
MLP_OUT = {"rtol": 0, "atol_of_max": 1e-5}
RESNET18_LOGITS = {"rtol": 0, "atol_of_max": 1e-5}
GELU = {"rtol": 0, "atol": 1e-6}  # measured 4.8e-7 at |x| <= 4


@pytest.mark.parametrize(
    "k,s,p,ceil",
    [(3, 2, 1, False), (3, 2, 0, True), (2, 2, 0, True), (3, 1, 1, False), (5, 3, 2, True)],
)
@pytest.mark.parametrize("size", [(13, 14), (8, 8)])
def test_pooling_matches_torch(k, s, p, ceil, size):
    x = images((2, *size, 3))
    t = to_nchw(x)
    chex.assert_trees_all_equal(
        np.asarray(max_pool2d(jnp.asarray(x), k, s, p, ceil)),
        nhwc(F.max_pool2d(t, k, s, p, ceil_mode=ceil)),
    )
    for inc in (True, False):
        ref = nhwc(F.avg_pool2d(t, k, s, p, ceil_mode=ceil, count_include_pad=inc))
        out = avg_pool2d(jnp.asarray(x), k, s, p, ceil, count_include_pad=inc)
        assert_close(out, ref, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("k,s,p,ceil", [(3, 2, 1, False), (2, 2, 0, True), (5, 3, 2, True)])
@pytest.mark.parametrize("ties", [False, True])
def test_max_pool_gradient_matches_torch(k, s, p, ceil, ties):
    """The gradient (CPU: the phased custom VJP) equals torch's max_pool2d backward exactly,
    including which element of a tied window receives it (the first, row-major): with
    ``ties`` most windows hold several equal maxima, as after a ReLU."""
    x = images((2, 13, 14, 3))
    if ties:
        x = np.maximum(np.round(x * 2), 0).astype(np.float32)
    cot = images((2, *max_pool2d(jnp.asarray(x), k, s, p, ceil).shape[1:3], 3), seed=1)
    t = to_nchw(x).requires_grad_(True)
    (F.max_pool2d(t, k, s, p, ceil_mode=ceil) * to_nchw(cot)).sum().backward()
    grad = jax.grad(lambda v: (max_pool2d(v, k, s, p, ceil) * cot).sum())(jnp.asarray(x))
    ref = nhwc(t.grad)
    np.testing.assert_array_equal(np.asarray(grad) != 0, ref != 0)  # the same elements chosen
    # overlapping windows add into one element in another order: float32 rounding only
    np.testing.assert_allclose(grad, ref, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("stride", [1, 2])
def test_pointwise_conv_is_a_matmul_with_conv_parameters(stride):
    """A 1x1 ``conv2d`` (computed as ``dot_general`` on CPU) keeps ``nn.Conv``'s parameter
    tree and equals ``torch.nn.functional.conv2d`` forward and backward to float32 rounding."""
    from jaxbones.layers import conv2d

    x = images((2, 9, 11, 16))
    conv = conv2d(8, 1, stride, bias=True)
    variables = conv.init(jax.random.PRNGKey(0), x)
    assert jax.tree.map(jnp.shape, variables) == {"params": {"kernel": (1, 1, 16, 8), "bias": (8,)}}
    w, b = variables["params"]["kernel"], variables["params"]["bias"]
    tx = to_nchw(x).requires_grad_(True)
    tw = torch.tensor(np.asarray(w).transpose(3, 2, 0, 1)).requires_grad_(True)
    ty = F.conv2d(tx, tw, torch.tensor(np.asarray(b)), stride)
    (ty**2).sum().backward()
    loss = lambda v, x: (conv.apply(v, x) ** 2).sum()
    grads = jax.grad(loss, argnums=(0, 1))(variables, jnp.asarray(x))
    np.testing.assert_allclose(conv.apply(variables, x), nhwc(ty), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(grads[1], nhwc(tx.grad), rtol=1e-4, atol=1e-4)
    gw = grads[0]["params"]["kernel"]
    np.testing.assert_allclose(gw, tw.grad.numpy().transpose(2, 3, 1, 0), rtol=1e-4, atol=1e-3)


def assert_same_convolution(ours, ref, x, w):
    """``ours(x, w)`` equals ``ref(x, w)``, forward and both gradients, to float32 rounding."""
    np.testing.assert_allclose(ours(x, w), ref(x, w), rtol=1e-5, atol=1e-5)
    loss = lambda f: lambda x, w: (f(x, w) ** 2).sum()
    got = jax.grad(loss(ours), argnums=(0, 1))(x, w)
    want = jax.grad(loss(ref), argnums=(0, 1))(x, w)
    for g, r in zip(got, want, strict=True):
        np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-4 * float(jnp.abs(r).max()))


@pytest.mark.parametrize(
    "x_shape, kernel, stride, padding, dilation",
    [
        ((2, 4, 4, 256), (3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1)),  # >= 256 channels
        ((2, 3, 3, 16), (3, 3), (2, 2), ((1, 1), (1, 1)), (1, 1)),  # 2x2 output pixels
        ((2, 7, 6, 256), (3, 3), (1, 2), ((2, 2), (0, 1)), (2, 2)),  # dilated, asymmetric
        ((1, 5, 4, 8), (5, 3), (1, 1), ((0, 0), (1, 1)), (1, 1)),  # 1x4 output pixels
    ],
)
def test_conv_as_a_product_over_patches_equals_the_convolution(
    x_shape, kernel, stride, padding, dilation
):
    """The CPU's patches product (``_patches_pay`` picks it) equals XLA's convolution,
    forward and both gradients, to float32 rounding, and really replaces it."""
    from jaxbones.layers.conv import conv_general_dilated

    x = jnp.asarray(images(x_shape))
    w = jnp.asarray(images((*kernel, x_shape[-1], 8))) * 0.1
    dims = ("NHWC", "HWIO", "NHWC")
    ours = lambda x, w: conv_general_dilated(
        x, w, stride, padding, rhs_dilation=dilation, dimension_numbers=dims
    )
    ref = lambda x, w: lax.conv_general_dilated(
        x, w, stride, padding, rhs_dilation=dilation, dimension_numbers=dims
    )
    assert "conv_general_dilated" not in str(
        jax.make_jaxpr(jax.grad(lambda x, w: ours(x, w).sum()))(x, w)
    )
    assert_same_convolution(ours, ref, x, w)


@pytest.mark.parametrize(
    "x_shape, kernel, stride, padding",
    [
        ((2, 17, 15, 3), (7, 7), (2, 2), ((3, 3), (3, 3))),  # ResNet's stem
        ((2, 8, 12, 3), (4, 4), (4, 4), "VALID"),  # a patch embedding
        ((1, 9, 9, 1), (3, 3), (1, 1), ((1, 1), (1, 1))),  # a grey image
    ],
)
def test_image_convolution_takes_its_kernel_gradient_over_patches(x_shape, kernel, stride, padding):
    """On CPU a convolution over an image's few channels keeps XLA's convolution forward and
    takes its kernel gradient as a product over patches; forward and both gradients equal
    XLA's convolution's to float32 rounding."""
    from jaxbones.layers.conv import conv_general_dilated

    x = jnp.asarray(images(x_shape))
    w = jnp.asarray(images((*kernel, x_shape[-1], 8))) * 0.1
    dims = ("NHWC", "HWIO", "NHWC")
    ours = lambda x, w: conv_general_dilated(x, w, stride, padding, dimension_numbers=dims)
    ref = lambda x, w: lax.conv_general_dilated(x, w, stride, padding, dimension_numbers=dims)
    kernel_grad = str(jax.make_jaxpr(jax.grad(lambda w: ours(x, w).sum()))(w))
    assert "dot_general" in kernel_grad and "conv_general_dilated" in kernel_grad
    assert_same_convolution(ours, ref, x, w)


def test_cpu_only_formulations_stay_out_of_programs_traced_for_other_platforms():
    """The CPU rewrites (1x1 conv as a product, phased max-pool backward, BatchNorm's VJP,
    stored residual streams) are traced only for CPU programs: an AOT compile for a TPU on
    this host (``compile_target``) gets the plain convolution and select-and-scatter."""
    from jaxbones.layers.platform import compile_target

    model = jaxbones.create_model("resnet18")
    x = jnp.ones((1, 32, 32, 3))
    v = jax.jit(model.init)(jax.random.PRNGKey(0), x)

    def jaxprs():  # the forward (custom VJPs still visible) and the gradient
        def loss(p):  # a new function each time: jax caches traces by function
            out, _ = model.apply({**v, "params": p}, x, train=True, mutable=["batch_stats"])
            return out.sum()

        return str(jax.make_jaxpr(loss)(v["params"])), str(
            jax.make_jaxpr(jax.grad(loss))(v["params"])
        )

    (fwd_cpu, on_cpu) = jaxprs()
    with compile_target("tpu"):
        fwd_tpu, on_tpu = jaxprs()
    assert "select_and_scatter_add" in on_tpu and "select_and_scatter_add" not in on_cpu
    assert "custom_vjp_call" in fwd_cpu and "custom_vjp_call" not in fwd_tpu
    assert on_tpu.count("conv_general_dilated") > on_cpu.count("conv_general_dilated")


def test_batchnorm_train_eval_and_running_stats():
    x = images((6, 5, 5, 4)) * 3 + 2
    tb = torch.nn.BatchNorm2d(4)
    randomize_(tb)
    v = {
        "params": {"scale": tb.weight.detach().numpy(), "bias": tb.bias.detach().numpy()},
        "batch_stats": {
            "mean": tb.running_mean.numpy().copy(),
            "var": tb.running_var.numpy().copy(),
        },
    }
    bn = BatchNorm()
    assert_close(bn.apply(v, x), nhwc(tb.eval()(to_nchw(x))), **BATCHNORM)
    y, upd = bn.apply(v, x, train=True, mutable=["batch_stats"])
    assert_close(y, nhwc(tb.train()(to_nchw(x))), **BATCHNORM)
    assert_close(upd["batch_stats"]["mean"], tb.running_mean, **RUNNING_MEAN)
    # unbiased running variance, as PyTorch
    assert_close(upd["batch_stats"]["var"], tb.running_var, **RUNNING_VAR)


def test_batchnorm_train_gradients_match_torch():
    """Training-mode gradients of x, scale and bias (CPU: ``batch_norm_train``'s closed-form
    backward) equal torch's BatchNorm2d backward to float32 rounding."""
    x = images((6, 5, 5, 4)) * 3 + 2
    cot = images((6, 5, 5, 4), seed=1)
    tb = torch.nn.BatchNorm2d(4)
    randomize_(tb)
    tx = to_nchw(x).requires_grad_(True)
    (tb.train()(tx) * to_nchw(cot)).sum().backward()
    params = {"scale": tb.weight.detach().numpy(), "bias": tb.bias.detach().numpy()}
    stats = {"mean": np.zeros(4, np.float32), "var": np.ones(4, np.float32)}

    def loss(p, x):
        y, _ = BatchNorm().apply(
            {"params": p, "batch_stats": stats}, x, train=True, mutable=["batch_stats"]
        )
        return (y * cot).sum()

    gp, gx = jax.grad(loss, argnums=(0, 1))(params, jnp.asarray(x))
    assert_close(gx, nhwc(tx.grad), **BATCHNORM_GRAD)
    assert_close(gp["scale"], tb.weight.grad, **BATCHNORM_GRAD)
    assert_close(gp["bias"], tb.bias.grad, **BATCHNORM_GRAD)


def test_batch_norm_train_vjp_equals_autodiff_of_its_forward():
    """The closed-form VJP equals autodiff of the two-pass forward for cotangents on all
    three outputs (y, mean, var), so a caller differentiating the statistics is served too."""
    from jaxbones.layers.norm import _batch_stats, _normalize, batch_norm_train

    def reference(x, scale, bias):
        mean, var = _batch_stats(x)
        return _normalize(x, mean, var, 1e-5) * scale + bias, mean, var

    args = (jnp.asarray(images((3, 4, 5, 6)) * 2 + 1), jnp.linspace(0.5, 2, 6), jnp.arange(6.0))
    cts = (jnp.asarray(images((3, 4, 5, 6), seed=2)), jnp.linspace(-1, 1, 6), jnp.ones(6))
    out, vjp = jax.vjp(lambda *a: batch_norm_train(*a, 1e-5), *args)
    ref_out, ref_vjp = jax.vjp(reference, *args)
    chex.assert_trees_all_equal(out, ref_out)  # the same forward computation
    for g, r in zip(vjp(cts), ref_vjp(cts)):
        np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-5)


def test_materialize_is_the_identity_forward_and_backward():
    """The stored identity between stacked blocks: finite values and gradients pass bit for
    bit, non-finite ones stay non-finite (the train step's skip test reads the norm)."""
    from jaxbones.layers.stack import materialize

    x = jnp.asarray(images((2, 3, 4)))
    cot = jnp.asarray(images((2, 3, 4), seed=1))
    f = jax.jit(lambda x, c: jax.vjp(materialize, x)[0])
    vjp = jax.jit(lambda x, c: jax.vjp(materialize, x)[1](c)[0])
    chex.assert_trees_all_equal(f(x, cot), x)
    chex.assert_trees_all_equal(vjp(x, cot), cot)
    for bad in (jnp.inf, jnp.nan):
        assert not bool(jnp.isfinite(jnp.linalg.norm(f(x.at[0, 0, 0].set(bad), cot))))
        assert not bool(jnp.isfinite(jnp.linalg.norm(vjp(x, cot.at[0, 0, 0].set(bad)))))


def test_layernorm_groupnorm_two_pass_at_large_mean():
    x = images((2, 4, 4, 8)) + 300.0  # the fast variance loses ~5.7e-2 here
    ln = torch.nn.LayerNorm(8, eps=1e-6)
    out = LayerNorm(epsilon=1e-6).apply({"params": {"scale": np.ones(8), "bias": np.zeros(8)}}, x)
    ref = ln(torch.from_numpy(x))
    assert_close(out, ref, **LARGE_MEAN_NORM)
    gn = torch.nn.GroupNorm(2, 8, eps=1e-5)
    out = GroupNorm(2, epsilon=1e-5).apply(
        {"params": {"scale": np.ones(8), "bias": np.zeros(8)}}, x
    )
    assert_close(out, nhwc(gn(to_nchw(x))), **LARGE_MEAN_NORM)
    fast = nn.LayerNorm(epsilon=1e-6, use_fast_variance=True).apply(
        {"params": {"scale": np.ones(8), "bias": np.zeros(8)}}, x
    )
    assert_not_close(fast, ref, **LARGE_MEAN_NORM)


def test_norms_keep_float64_inputs_in_float64():
    """Statistics in float32 or wider: float64 runs (train_parity --float64) stay float64."""
    x = images((2, 3, 3, 8)) * 3 + 2
    p = {"scale": np.ones(8), "bias": np.zeros(8)}
    v = {"params": p, "batch_stats": {"mean": np.zeros(8), "var": np.ones(8)}}
    ref = torch.nn.functional.layer_norm(torch.from_numpy(x).double(), (8,), eps=1e-6)
    with jax.enable_x64(True):
        x64 = jnp.asarray(x, jnp.float64)
        out = LayerNorm(epsilon=1e-6).apply({"params": p}, x64)
        assert out.dtype == jnp.float64
        np.testing.assert_allclose(out, ref.numpy(), rtol=1e-12, atol=1e-12)
        y, upd = BatchNorm().apply(v, x64, train=True, mutable=["batch_stats"])
        assert y.dtype == jnp.float64 and upd["batch_stats"]["var"].dtype == jnp.float64
        assert GroupNorm(2, epsilon=1e-5).apply({"params": p}, x64).dtype == jnp.float64


def torch_mlp():
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.GELU(), torch.nn.Linear(64, 16))
    return randomize_(m)


def mlp_vars(m):
    return {
        "params": {
            "fc1": {"kernel": m[0].weight.detach().numpy().T, "bias": m[0].bias.detach().numpy()},
            "fc2": {"kernel": m[2].weight.detach().numpy().T, "bias": m[2].bias.detach().numpy()},
        }
    }


def test_mlp_exact_gelu_and_negative_tanh():
    m = torch_mlp()
    x = images((4, 16)) * 3
    ref = m(torch.from_numpy(x)).detach().numpy()
    assert_close(Mlp(64).apply(mlp_vars(m), x), ref, **MLP_OUT)
    assert_not_close(Mlp(64, act="gelu_tanh").apply(mlp_vars(m), x), ref, **MLP_OUT)


def test_negative_wrong_eps_fails(monkeypatch):
    # a BatchNorm eps of 1e-3 instead of PyTorch's 1e-5 must break ResNet parity
    torch.manual_seed(0)
    import torchvision

    tm = randomize_(torchvision.models.resnet18(weights=None)).eval()
    with torch.no_grad():
        tm.bn1.running_var.uniform_(0.001, 0.005)  # small variances, where eps matters
    variables = convert("resnet18", tm)
    x = images((1, 64, 64, 3))
    with torch.no_grad():
        ref = tm(to_nchw(x)).numpy()
    model = jaxbones.create_model("resnet18")
    assert_close(model.apply(variables, x), ref, **RESNET18_LOGITS)
    monkeypatch.setattr(resnet_mod, "BatchNorm", functools.partial(BatchNorm, epsilon=1e-3))
    assert_not_close(jaxbones.create_model("resnet18").apply(variables, x), ref, **RESNET18_LOGITS)


def test_negative_same_padding_fails(monkeypatch):
    torch.manual_seed(0)
    import torchvision

    tm = randomize_(torchvision.models.resnet18(weights=None)).eval()
    variables = convert("resnet18", tm)
    x = images((1, 64, 64, 3))
    with torch.no_grad():
        ref = tm(to_nchw(x)).numpy()

    def same_conv(features, k, stride=1, padding=None, groups=1, name=None, **kw):
        return nn.Conv(
            features,
            (k, k),
            stride,
            padding="SAME",
            feature_group_count=groups,
            use_bias=False,
            name=name,
        )

    monkeypatch.setattr(resnet_mod, "conv2d", same_conv)
    assert_not_close(jaxbones.create_model("resnet18").apply(variables, x), ref, **RESNET18_LOGITS)


def test_drop_path_rng_stream_and_scaling():
    x = jnp.ones((1000, 4))
    dp = DropPath(0.25)
    assert dp.apply({}, x) is x
    y = dp.apply({}, x, deterministic=False, rngs={"drop_path": jax.random.PRNGKey(0)})
    kept = np.asarray(y[:, 0] > 0)
    assert 0.65 < kept.mean() < 0.85
    np.testing.assert_allclose(np.asarray(y)[kept], 1 / 0.75)
    with pytest.raises(flax.errors.InvalidRngError, match='PRNG for "drop_path"'):
        dp.apply({}, x, deterministic=False, rngs={"dropout": jax.random.PRNGKey(0)})


def test_drop_path_at_rate_one_gives_zero_output_and_finite_gradients():
    x = jnp.linspace(1.0, 2.0, 8).reshape(4, 2)
    rngs = {"drop_path": jax.random.PRNGKey(0)}

    def loss(x, rate):
        return jnp.sum(DropPath(rate).apply({}, x, deterministic=False, rngs=rngs))

    for rate in (1.0, jnp.float32(1.0)):  # static, and traced as under nn.scan
        value, grad = jax.value_and_grad(loss)(x, rate)
        assert float(value) == 0.0
        np.testing.assert_array_equal(grad, np.zeros_like(grad))


# tiny models with more than one block per scanned stack; the linear schedule reaches
# drop_path_rate at the last block, so 1.0 drops it always
_STACKS = {
    "vit": ("vit_tiny_patch16_224", {"depth": 3, "img_size": 32}, (2, 32, 32, 3)),
    "resnet": ("resnet18", {"layers": (3,)}, (2, 32, 32, 3)),  # one stage
}


@pytest.mark.parametrize("family", list(_STACKS))
@pytest.mark.parametrize("rate", [0.0, 0.5, 1.0])
def test_drop_path_scanned_equals_unrolled_in_training(family, rate):
    name, kw, shape = _STACKS[family]
    x = images(shape)
    unrolled = jaxbones.create_model(name, drop_path_rate=rate, **kw)
    scanned = jaxbones.create_model(name, drop_path_rate=rate, scan=True, **kw)
    variables = fast_jit(unrolled.init)(jax.random.PRNGKey(0), x)
    to_scanned = jaxbones.convert.get_converter(family).to_scanned
    rngs = {"drop_path": jax.random.PRNGKey(1), "dropout": jax.random.PRNGKey(2)}

    def value_and_grad(model, variables):
        def loss(params):
            out = model.apply(
                {**variables, "params": params}, x, train=True, rngs=rngs, mutable=["batch_stats"]
            )[0]
            return jnp.sum(jnp.square(out))

        return fast_jit(jax.value_and_grad(loss))(variables["params"])

    value_u, grads_u = value_and_grad(unrolled, variables)
    value_s, grads_s = value_and_grad(scanned, to_scanned(variables, scanned))
    chex.assert_tree_all_finite((value_u, grads_u, value_s, grads_s))
    np.testing.assert_allclose(value_s, value_u, rtol=1e-5)
    chex.assert_trees_all_close(
        grads_s, to_scanned({"params": grads_u}, scanned)["params"], rtol=1e-4, atol=1e-6
    )


def test_activations():
    x = jnp.linspace(-4, 4, 101)
    assert_close(get_act("gelu")(x), F.gelu(torch.from_numpy(np.asarray(x))), **GELU)
    # on CPU the gradient is gelu_recomputed's (derivative computed in the backward): the
    # autodiff gradient of the same formula, and torch's GeluBackward
    from jaxbones.layers.activations import _gelu_erf

    w = jnp.linspace(1.0, 2.0, 101)
    ours = jax.grad(lambda x: (get_act("gelu")(x) * w).sum())(x)
    np.testing.assert_allclose(ours, jax.grad(lambda x: (_gelu_erf(x) * w).sum())(x), atol=1e-6)
    xt = torch.from_numpy(np.asarray(x)).requires_grad_()
    (F.gelu(xt) * torch.from_numpy(np.asarray(w))).sum().backward()
    np.testing.assert_allclose(ours, xt.grad.numpy(), atol=1e-6)
    with pytest.raises(ValueError, match="valid"):
        get_act("gelu2")


def test_bf16_compute_keeps_f32_params():
    m = jaxbones.create_model("resnet18", dtype=jnp.bfloat16)
    x = jnp.ones((1, 32, 32, 3))
    v = fast_jit(m.init)(jax.random.PRNGKey(0), x)
    assert all(p.dtype == jnp.float32 for p in jax.tree_util.tree_leaves(v))
    assert fast_jit(m.apply)(v, x).dtype == jnp.bfloat16


def test_bf16_dense_backward_products_are_bf16_and_equal_autodiff():
    """The bf16 Dense's backward runs bf16 x bf16 products (a float32 x bf16 product is a
    float32 matmul on GPUs) and equals autodiff of the float32-accumulated forward."""
    from jax import lax

    from jaxbones.layers.linear import Dense

    m = Dense(24, dtype=jnp.bfloat16)
    x = jax.random.normal(jax.random.PRNGKey(1), (3, 5, 16))
    w = jax.random.normal(jax.random.PRNGKey(2), (3, 5, 24))
    v = jax.tree.map(lambda a: a + 0.1, m.init(jax.random.PRNGKey(0), x))

    def autodiff_dense(p, x):
        y = lax.dot_general(
            x.astype(jnp.bfloat16),
            p["params"]["kernel"].astype(jnp.bfloat16),
            (((2,), (0,)), ((), ())),
            preferred_element_type=jnp.float32,
        )
        return (y + p["params"]["bias"]).astype(jnp.bfloat16)

    def loss(f):
        return lambda p, x: (f(p, x).astype(jnp.float32) * w).sum()

    ours = jax.grad(loss(m.apply), argnums=(0, 1))(v, x)
    ref = jax.grad(loss(autodiff_dense), argnums=(0, 1))(v, x)
    chex.assert_trees_all_equal(ours, ref)

    def dot_operand_dtypes(f):  # top-level products of the gradient's jaxpr
        closed = jax.make_jaxpr(jax.grad(loss(f)))(v, x)
        dots = [e for e in closed.eqns if e.primitive.name == "dot_general"]
        return [tuple(str(i.aval.dtype) for i in e.invars) for e in dots]

    # ours: the forward product sits inside the custom VJP; both backward products are bf16
    assert dot_operand_dtypes(m.apply) == [("bfloat16", "bfloat16")] * 2
    assert ("float32", "bfloat16") in dot_operand_dtypes(autodiff_dense)


@pytest.mark.parametrize("case", ["plain", "bias+mask", "causal"])
def test_heads_major_attention_equals_xla_attention_with_gradients(case):
    """The CPU attention (heads moved first, the softmax normalised after the product) gives
    ``jax.nn.dot_product_attention``'s "xla" result and gradients in q, k, v and bias."""
    from jaxbones.layers import attention

    rng = np.random.default_rng(0)
    b, lq, h, d = 2, 9, 3, 8
    q, k, v = (jnp.asarray(rng.standard_normal((b, lq, h, d)), jnp.float32) for _ in range(3))
    bias = jnp.asarray(rng.standard_normal((1, h, lq, lq)), jnp.float32)
    mask = jnp.asarray(rng.random((b, 1, lq, lq)) > 0.3).at[..., 0].set(True)
    w = jnp.asarray(rng.standard_normal((b, lq, h, d)), jnp.float32)
    kw = {"plain": {}, "bias+mask": {"bias": bias, "mask": mask}, "causal": {"is_causal": True}}[
        case
    ]

    def loss(f):
        return lambda q, k, v, bias: (f(q, k, v, bias) * w).sum()

    def case_kwargs(bias):  # the bias is an argument so that it gets a gradient
        return {**kw, "bias": bias} if "bias" in kw else kw

    def ours(q, k, v, bias):
        kb = case_kwargs(bias)
        return attention.heads_major_attention(
            q, k, v, kb.get("bias"), kb.get("mask"), None, kb.get("is_causal", False)
        )

    def xla(q, k, v, bias):
        return jax.nn.dot_product_attention(q, k, v, **case_kwargs(bias), implementation="xla")

    np.testing.assert_allclose(ours(q, k, v, bias), xla(q, k, v, bias), atol=1e-6)
    got = jax.grad(loss(ours), argnums=(0, 1, 2, 3))(q, k, v, bias)
    want = jax.grad(loss(xla), argnums=(0, 1, 2, 3))(q, k, v, bias)
    for g, r in zip(got, want, strict=True):
        np.testing.assert_allclose(g, r, atol=2e-5, rtol=1e-5)
    if "bias" in kw:
        assert float(jnp.abs(got[3]).max()) > 0  # the bias gradient is really compared


def test_softmax_product_equals_softmax_then_product_with_gradients():
    """Normalising after the product gives ``softmax(logits) @ v`` and its gradients, for a
    row of equal (fully masked) logits too, and keeps bf16 values bf16."""
    from jaxbones.layers.attention import softmax_product

    rng = np.random.default_rng(0)
    logits = jnp.asarray(rng.standard_normal((2, 3, 5, 7)) * 4, jnp.float32)
    logits = logits.at[0, 0, 1].set(-0.7 * float(jnp.finfo(jnp.float32).max))
    v = jnp.asarray(rng.standard_normal((2, 3, 7, 4)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((2, 3, 5, 4)), jnp.float32)

    def reference(logits, v):
        return jax.nn.softmax(logits, axis=-1) @ v

    np.testing.assert_allclose(softmax_product(logits, v), reference(logits, v), atol=1e-6)
    np.testing.assert_allclose(softmax_product(logits, v)[0, 0, 1], v[0, 0].mean(0), atol=1e-6)
    got = jax.grad(lambda a, b: (softmax_product(a, b) * w).sum(), argnums=(0, 1))(logits, v)
    want = jax.grad(lambda a, b: (reference(a, b) * w).sum(), argnums=(0, 1))(logits, v)
    for g, r in zip(got, want, strict=True):
        np.testing.assert_allclose(g, r, atol=1e-5, rtol=1e-5)
    v16 = v.astype(jnp.bfloat16)
    out16 = softmax_product(logits, v16)
    assert out16.dtype == jnp.bfloat16
    np.testing.assert_allclose(out16.astype(jnp.float32), reference(logits, v), atol=3e-2)
    dv16 = jax.grad(lambda b: (softmax_product(logits, b).astype(jnp.float32) * w).sum())(v16)
    assert dv16.dtype == jnp.bfloat16


@pytest.mark.parametrize("with_bias", [False, True])
def test_attention_padded_to_even_lengths_equals_unpadded(with_bias):
    """cuDNN training needs even sequence lengths: the padded path (run here with XLA) gives
    the unpadded result and gradients."""
    from jaxbones.layers.attention import padded_to_even

    ks = jax.random.split(jax.random.PRNGKey(0), 4)
    q = jax.random.normal(ks[0], (2, 7, 3, 8))
    k = jax.random.normal(ks[1], (2, 9, 3, 8))
    v = jax.random.normal(ks[2], (2, 9, 3, 8))
    bias = jax.random.normal(ks[3], (1, 3, 7, 9)) if with_bias else None

    def ref(q, k, v):
        return jax.nn.dot_product_attention(q, k, v, bias=bias, implementation="xla")

    def padded(q, k, v):
        return padded_to_even(q, k, v, bias, None, None, False, "xla")

    chex.assert_trees_all_close(padded(q, k, v), ref(q, k, v), rtol=1e-6, atol=1e-6)
    grads = [jax.grad(lambda *a, f=f: (f(*a) ** 2).sum(), argnums=(0, 1, 2)) for f in (padded, ref)]
    chex.assert_trees_all_close(grads[0](q, k, v), grads[1](q, k, v), rtol=1e-5, atol=1e-6)


def test_bf16_mlp_keeps_no_float32_activation_for_backward():
    """The float32 GELU of a bf16 Mlp saves only its bf16 input for the backward (autodiff
    kept three float32 copies of the hidden activation) and its gradient is unchanged."""
    from jax._src.ad_checkpoint import saved_residuals

    from jaxbones.layers.activations import gelu, in_float32
    from jaxbones.layers.mlp import Mlp

    m = Mlp(48, dtype=jnp.bfloat16)
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 5, 16), jnp.bfloat16)
    v = m.init(jax.random.PRNGKey(1), x)
    saved = saved_residuals(lambda v, x: m.apply(v, x).astype(jnp.float32).sum(), v, x)
    hidden = [aval for aval, _ in saved if aval.shape == (2, 5, 48)]
    assert hidden and all(a.dtype == jnp.bfloat16 for a in hidden), saved

    h = (jax.random.normal(jax.random.PRNGKey(2), (4, 48)) * 3).astype(jnp.bfloat16)
    w = jax.random.normal(jax.random.PRNGKey(3), (4, 48))

    def autodiff_gelu(h):
        return gelu(h.astype(jnp.float32)).astype(h.dtype)

    def loss(f):
        return lambda h: (f(h).astype(jnp.float32) * w).sum()

    chex.assert_trees_all_equal(in_float32(gelu)(h), autodiff_gelu(h))
    chex.assert_trees_all_equal(
        jax.grad(loss(in_float32(gelu)))(h), jax.grad(loss(autodiff_gelu))(h)
    )


def test_default_attention_is_cudnn_only_for_plain_low_precision_attention_on_nvidia(
    monkeypatch,
):
    from jaxbones.layers import attention

    q16 = jnp.zeros((1, 197, 12, 64), jnp.bfloat16)
    assert attention.resolve_implementation(None, q16) == "xla"  # this CPU
    assert attention.resolve_implementation("cudnn", q16) == "cudnn"
    monkeypatch.setattr(attention, "_on_nvidia_gpu", lambda: True)
    assert attention.resolve_implementation(None, q16) == "cudnn"
    assert attention.resolve_implementation(None, q16.astype(jnp.float32)) == "xla"
    assert attention.resolve_implementation(None, q16, bias=jnp.zeros((1, 12, 197, 197))) == "xla"
    assert attention.resolve_implementation(None, q16, is_causal=True) == "xla"
    assert attention.resolve_implementation(None, jnp.zeros((1, 9, 2, 12), jnp.bfloat16)) == "xla"


def test_traced_platform_follows_compile_target():
    from jaxbones.layers import attention
    from jaxbones.layers.platform import compile_target, traced_platform

    assert traced_platform() == "cpu"
    q16 = jnp.zeros((1, 197, 12, 64), jnp.bfloat16)
    with compile_target("gpu"):
        assert traced_platform() == "gpu"
    with compile_target("tpu"):  # an AOT compile for a TPU never picks cuDNN
        assert attention.resolve_implementation(None, q16) == "xla"
