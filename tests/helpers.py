"""Shared parity harness for the tests: sensitive random init, conversion, comparison."""

from __future__ import annotations

import numpy as np
import torch

import jaxbones

TOL = 1e-4  # docs/parity.md: logits within 1e-4, relative to the logit scale

# Tests are dominated by XLA compile time on 2 CPU cores; the backend's optimisation passes
# change speed, not results, so tests that run a program once skip them.
FAST_COMPILE = jaxbones.registry.FAST_COMPILE


def fast_jit(fn, **kw):
    import jax

    return jax.jit(fn, compiler_options=FAST_COMPILE, **kw)


def randomize_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Makes mistakes visible: BatchNorm running statistics, norm scales/biases and all
    biases are randomised to O(1) (at default init many of them are 0/1 and hide bugs)."""
    g = torch.Generator().manual_seed(seed)

    def u(t, lo, hi):
        t.copy_(torch.rand(t.shape, generator=g) * (hi - lo) + lo)

    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                if m.running_mean is not None:
                    u(m.running_mean, -0.5, 0.5)
                    u(m.running_var, 0.5, 2.0)
                if m.weight is not None:
                    u(m.weight, 0.5, 1.5)
                    u(m.bias, -0.5, 0.5)
            elif isinstance(m, (torch.nn.LayerNorm, torch.nn.GroupNorm)):
                if m.weight is not None:
                    u(m.weight, 0.5, 1.5)
                if m.bias is not None:
                    u(m.bias, -0.5, 0.5)
            elif getattr(m, "bias", None) is not None and isinstance(m.bias, torch.Tensor):
                u(m.bias, -0.5, 0.5)
    return model


def images(shape, seed: int = 0) -> np.ndarray:
    """Random NHWC float32 images, roughly normalised."""
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def to_nchw(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def rel_err(a, b) -> float:
    """Max abs difference relative to the reference's scale (at least 1)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.max(np.abs(a - b)) / max(1.0, float(np.max(np.abs(b)))))


def assert_close(a, b, tol: float = TOL):
    err = rel_err(a, b)
    assert err <= tol, f"relative error {err:.3g} > {tol}"


def torch_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def convert(name: str, torch_model: torch.nn.Module, **overrides):
    """Converts a torch model's state dict strictly (every key used, none missing)."""
    return jaxbones.convert.from_torch(name, torch_model.state_dict(), strict=True, **overrides)


def jax_forward(name: str, variables, x, train: bool = False, **overrides):
    model = jaxbones.create_model(name, **overrides)
    if train:
        return model.apply(variables, x, train=True, mutable=["batch_stats"])
    return model.apply(variables, x, train=False)


def registered_in_tests() -> dict:
    """Union of what every tests/test_*.py declares: ``PARAM_COUNTS`` (exact counts),
    ``PARITY_MODELS`` (parity-tested), ``NO_REFERENCE`` (name -> why no parity test exists)
    and ``SMOKE_OVERRIDES`` (name -> reduced-depth overrides for the forward/backward test;
    the full-depth forward of those models is covered by their parity test)."""
    import importlib
    import pathlib

    counts, parity, smoke = set(), set(), {}
    for path in sorted(pathlib.Path(__file__).parent.glob("test_*.py")):
        mod = importlib.import_module(path.stem)
        counts |= set(getattr(mod, "PARAM_COUNTS", {}))
        parity |= set(getattr(mod, "PARITY_MODELS", ()))
        parity |= set(getattr(mod, "NO_REFERENCE", {}))
        smoke.update(getattr(mod, "SMOKE_OVERRIDES", {}))
    return {"counts": counts, "parity": parity, "smoke": smoke}


def check_train_mode_and_running_stats(name, torch_model, x, **overrides):
    """Train-mode logits (batch statistics) and the updated BatchNorm running statistics of
    ``name`` equal the torch model's after one forward pass on ``x`` (NHWC numpy)."""
    import copy
    import functools

    import jax

    import jaxbones

    tm = copy.deepcopy(torch_model).train()
    variables = convert(name, tm, **overrides)
    ref = tm(to_nchw(x)).detach().numpy()  # batch statistics; updates torch's running stats
    model = jaxbones.create_model(name, **overrides)
    fn = functools.partial(model.apply, train=True, mutable=["batch_stats"])
    out, updates = jax.jit(fn)(variables, x)
    assert_close(out, ref)
    new_torch = jaxbones.convert.to_torch(name, {**variables, **updates}, **overrides)
    sd = tm.state_dict()
    n = 0
    for k, v in new_torch.items():
        if k.endswith(("running_mean", "running_var")):
            assert_close(v, sd[k].numpy())
            n += 1
    assert n == 2 * sum(isinstance(m, torch.nn.BatchNorm2d) for m in tm.modules())


def check_timm_feature_info(name, torch_model, size=(96, 128)):
    """``features_only`` of ``name`` reports timm's feature_info (channels, reductions,
    module names) and produces the shapes timm's FeatureListNet wrapper of ``torch_model``
    produces at a non-square ``size``."""
    import jax
    import jax.numpy as jnp
    import timm
    from timm.models._features import FeatureListNet

    import jaxbones

    # timm's features_only model (on the meta device: only its feature_info is needed)
    tf = timm.create_model(name, pretrained=False, features_only=True, device="meta")
    fm = jaxbones.create_model(name, features_only=True)
    info = [(d["num_chs"], d["reduction"], d["module"]) for d in fm.feature_info]
    fi = tf.feature_info
    assert info == list(zip(fi.channels(), fi.reduction(), fi.module_name()))
    feats = FeatureListNet(torch_model, out_indices=fi.out_indices, flatten_sequential=True)
    with torch.no_grad():
        ref = feats(torch.zeros(1, 3, *size))
    shapes = jax.eval_shape(
        lambda: fm.init_with_output(jax.random.PRNGKey(0), jnp.zeros((1, *size, 3)))[0]
    )
    assert [s.shape for s in shapes] == [tuple(r.permute(0, 2, 3, 1).shape) for r in ref]
    assert jaxbones.model_info(name)["reference"] == f"timm.models.{name}"
