"""Shared parity harness for the tests: sensitive random init, conversion, comparison."""

from __future__ import annotations

import chex
import jax
import numpy as np
import torch

import jaxbones

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


def nhwc(t: torch.Tensor) -> np.ndarray:
    """A torch NCHW activation in our NHWC layout, as numpy."""
    return t.detach().permute(0, 2, 3, 1).numpy()


def as_numpy(tree):
    """``tree`` with its torch tensors and jax arrays as numpy arrays (a tensor is a leaf)."""

    def leaf(x):
        return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)

    return jax.tree_util.tree_map(leaf, tree)


def assert_close(ours, ref, *, rtol: float, atol: float = 0.0, atol_of_max: float = 0.0) -> None:
    """Parity: ``ours`` and ``ref`` (trees of jax/numpy arrays or torch tensors) have the same
    structure and shapes, and every element of ``ours`` is within ``atol + rtol * |ref|`` of
    ``ref`` (chex's ``assert_trees_all_close``), where ``atol`` grows by ``atol_of_max`` times
    each reference array's largest magnitude.

    ``atol_of_max`` is for outputs whose scale varies by orders of magnitude between the
    models of one test (randomised logits range from ~1 to ~1e8): float32 rounding grows with
    that scale, so a fixed ``atol`` would be loose for some and too tight for others.

    There is no default tolerance and no floor: a bound relative to ``max(1, max|ref|)`` would
    make a 1e-4 tolerance 1e-4 absolute for outputs of scale 0.04 (normalised CLIP features),
    where a 0.25% error passes."""
    if not (atol or atol_of_max or rtol):
        raise TypeError("assert_close needs a tolerance: rtol=, atol= and/or atol_of_max=")
    ours, ref = as_numpy(ours), as_numpy(ref)
    chex.assert_trees_all_equal_shapes(ours, ref)
    if not atol_of_max:
        chex.assert_trees_all_close(ours, ref, rtol=rtol, atol=atol)
        return
    leaves = zip(jax.tree_util.tree_leaves_with_path(ours), jax.tree_util.tree_leaves(ref))
    for (path, a), b in leaves:
        scale = float(np.max(np.abs(b))) if b.size else 0.0
        name = jax.tree_util.keystr(path) or "output"
        tol = atol + atol_of_max * scale
        chex.assert_trees_all_close({name: a}, {name: b}, rtol=rtol, atol=tol)


def assert_not_close(ours, ref, **tolerances) -> None:
    """``assert_close`` with these tolerances fails: the check catches a wrong variant."""
    try:
        assert_close(ours, ref, **tolerances)
    except AssertionError:
        return
    names = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(ours)]
    raise AssertionError(f"outputs {names} agree within {tolerances}; expected a mismatch")


def max_abs_diff(a, b) -> float:
    """The largest elementwise difference, for checks that two outputs differ."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.max(np.abs(a - b)))


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


def check_train_mode_and_running_stats(name, torch_model, x, *, logits_tol, stats_tol, **overrides):
    """Train-mode logits (batch statistics) and the updated BatchNorm running statistics of
    ``name`` equal the torch model's after one forward pass on ``x`` (NHWC numpy), within
    ``logits_tol`` and ``stats_tol`` (dicts of ``assert_close``'s rtol and atol)."""
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
    assert_close(out, ref, **logits_tol)
    new_torch = jaxbones.convert.to_torch(name, {**variables, **updates}, **overrides)
    sd = tm.state_dict()
    stats = [k for k in new_torch if k.endswith(("running_mean", "running_var"))]
    assert_close({k: new_torch[k] for k in stats}, {k: sd[k] for k in stats}, **stats_tol)
    assert len(stats) == 2 * sum(isinstance(m, torch.nn.BatchNorm2d) for m in tm.modules())


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
