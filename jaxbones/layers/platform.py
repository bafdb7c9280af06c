"""The platform a model is traced for, as the CPU-only formulations of the layers see it.

Some layers trace differently for XLA's CPU backend (a 1x1 convolution as a product, the
kernel gradient of an image convolution over patches, max pooling's phased backward,
BatchNorm's closed-form backward, stored residual streams, products over flattened leading
axes, heads-major attention whose softmax backward reads its output, GELU's derivative
computed in the backward), each measured faster there and never measured elsewhere. Those
written as custom VJPs (the kernel gradient, max pooling, BatchNorm, attention's softmax,
GELU) have no forward-mode derivative (``jax.jvp``) on CPU. ``traced_for_cpu`` is the one
test they use, and ``traced_platform`` the one that attention's kernel choice uses: the
default backend, unless ``compile_target`` names the platform of an ahead-of-time compile
(``scripts/aot.py`` traces TPU programs on a CPU host). jax caches traces by function and
shapes, not by this setting: trace a given function for one platform per process.
"""

from __future__ import annotations

import contextlib
import contextvars

import jax

_TARGET: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "jaxbones_target", default=None
)


def traced_platform() -> str:
    """'cpu', 'gpu' or 'tpu': the platform the program being traced will run on."""
    return _TARGET.get() or jax.default_backend()


def traced_for_cpu() -> bool:
    """Whether the program being traced will run on XLA's CPU backend."""
    return traced_platform() == "cpu"


@contextlib.contextmanager
def compile_target(platform: str):
    """Trace for ``platform`` ('cpu', 'gpu', 'tpu') inside the block, whatever the host's."""
    token = _TARGET.set(platform)
    try:
        yield
    finally:
        _TARGET.reset(token)
