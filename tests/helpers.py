"""Shared parity harness for the tests: sensitive random init, conversion, comparison."""

from __future__ import annotations

import numpy as np
import torch

import jaxbones

TOL = 1e-4  # PARITY.md: logits within 1e-4, relative to the logit scale

# Tests are dominated by XLA compile time on 2 CPU cores; the backend's optimisation passes
# change speed, not results, so tests that run a program once skip them.
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


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
