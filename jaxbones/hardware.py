"""What the accelerators can do: the one table of peak FLOP/s, and a compiled step's FLOPs.

``peak_flops(device_kind, dtype)``: dense peak per device and compute dtype (vendor data
sheets) or None (CPU); the training loop's MFU and ``scripts/benchmark.py`` both use it.
``hbm_bytes(device_kind)``: memory per TPU chip (Cloud TPU data sheets) or None.
``step_cost(compiled)``: FLOPs of one compiled step from XLA's cost analysis.
``retain_host_memory()``: glibc's malloc keeps freed memory for reuse (the CPU step's
temporaries), and ``tune_xla_cpu(families)``: XLA CPU flags measured faster for those model
families; both called by the entry points that own their process, before JAX starts its
backend.
This module imports nothing, so benchmarks run on hosts without the training extras.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

# Dense peak FLOP/s per device by (device kind, compute dtype), from the vendors' data
# sheets; GPU float32 is the CUDA-core rate (no TF32). TPUs publish bf16 only (float32
# matmuls run as several bf16 passes), so float32 MFU is not reported there. A kind matches
# as a substring of jax's ``device_kind``, the longest first: "TPU v5 lite" (v5e, 197 TFLOP/s)
# before "TPU v5" (v5p, 459).
PEAK_FLOPS = {
    ("TPU v4", "bfloat16"): 275e12,
    ("TPU v5 lite", "bfloat16"): 197e12,
    ("TPU v5e", "bfloat16"): 197e12,
    ("TPU v5", "bfloat16"): 459e12,
    ("TPU v5p", "bfloat16"): 459e12,
    ("TPU v6 lite", "bfloat16"): 918e12,
    ("TPU v6e", "bfloat16"): 918e12,
    ("H100 PCIe", "bfloat16"): 756e12,
    ("H100 PCIe", "float32"): 51e12,
    ("H100", "bfloat16"): 989e12,
    ("H100", "float32"): 67e12,
    ("H200", "bfloat16"): 989e12,
    ("H200", "float32"): 67e12,
    ("A100", "bfloat16"): 312e12,
    ("A100", "float32"): 19.5e12,
}


def peak_flops(device_kind: str, dtype: str) -> float | None:
    """Dense peak FLOP/s of one ``device_kind`` device computing in ``dtype`` ('bfloat16',
    'float16' (the same rate), 'float32'); None when unknown (CPU, float32 on TPU)."""
    dtype = "bfloat16" if dtype == "float16" else dtype
    kind = device_kind.lower()
    for k, dt in sorted(PEAK_FLOPS, key=lambda kd: -len(kd[0])):
        if k.lower() in kind and dt == dtype:
            return PEAK_FLOPS[(k, dt)]
    return None


# High-bandwidth memory per TPU chip in bytes (Cloud TPU data sheets), matched like PEAK_FLOPS. The
# runtime keeps a little of it for itself, so a program needs some margin below this.
HBM_BYTES = {
    "TPU v4": 32 * 2**30,
    "TPU v5 lite": 16 * 2**30,
    "TPU v5e": 16 * 2**30,
    "TPU v5": 95 * 2**30,
    "TPU v5p": 95 * 2**30,
    "TPU v6 lite": 32 * 2**30,
    "TPU v6e": 32 * 2**30,
}


def hbm_bytes(device_kind: str) -> int | None:
    """Memory per chip of ``device_kind`` in bytes; None when unknown (CPU)."""
    kind = device_kind.lower()
    for k in sorted(HBM_BYTES, key=lambda k: -len(k)):
        if k.lower() in kind:
            return HBM_BYTES[k]
    return None


def step_cost(compiled) -> float | None:
    try:
        cost = compiled.cost_analysis()
    except Exception:  # noqa: BLE001 # pragma: no cover - backends without cost analysis
        return None
    if isinstance(cost, list | tuple):
        cost = cost[0] if cost else None
    if not cost:
        return None
    flops = cost.get("flops")
    return float(flops) if flops and flops > 0 else None


# mallopt parameters (glibc <malloc.h>)
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8
RETAIN_ENV = "JAXBONES_RETAIN_HOST_MEMORY"  # "0": leave malloc as the system set it
_retained = False


def host_memory_retained() -> bool:
    """Whether ``retain_host_memory`` took effect in this process."""
    return _retained


def retain_host_memory() -> bool:
    """Makes glibc's malloc keep the memory a process frees and hand it out again, instead
    of returning it to the kernel; True where it took effect.

    XLA's CPU runtime allocates the temporaries of each execution as one block and frees it
    when the execution ends (the ViT-S/16 train step at batch 8: 670 MiB). glibc serves
    blocks that large with a fresh ``mmap`` and unmaps them on ``free``, so every step
    faulted in (and the kernel zeroed) every page again: 190,000 page faults and 0.3-0.7 s
    of system time per step on 2 cores, against 0.07 s for PyTorch's step. With one malloc
    arena, no ``mmap`` and no trimming, the block is reused from step to step (ResNet-50
    train step, batch 8, 224 px, 2 cores: 1.9-2.1 -> 1.4-1.5 s). It helps PyTorch in the
    same process too, so benchmarks compare both with it.

    Process-wide and one-way: the resident memory stays at its peak for the life of the
    process (forked workers inherit it). It must run before JAX starts its backend: XLA's
    threads that have allocated already keep arenas of their own, which still map large
    blocks, so once the backend is up this changes nothing and returns False. Also False
    where the C library is not glibc, or when ``JAXBONES_RETAIN_HOST_MEMORY=0``.
    """
    global _retained
    if _retained:
        return True
    if os.environ.get(RETAIN_ENV, "1") == "0":
        return False
    bridge = sys.modules.get("jax._src.xla_bridge")
    if bridge is not None and bridge.backends_are_initialized():
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS, Windows)
        return False
    # one arena: a thread arena would still mmap blocks larger than its 64 MiB heap
    _retained = all(
        mallopt(param, value) == 1
        for param, value in (
            (_M_ARENA_MAX, 1),
            (_M_MMAP_MAX, 0),
            (_M_TRIM_THRESHOLD, 2**31 - 1),
        )
    )
    return _retained


TUNE_ENV = "JAXBONES_TUNE_XLA_CPU"  # "0": leave XLA_FLAGS as given
# XLA CPU flags by the jaxlib version they were measured on (major, minor), each with the
# model families (``model_info(name)["family"]``) whose steps ran faster with it. A flag XLA
# does not know aborts the process when the backend starts, so other versions get none.
#   -individual_convolution: spatial convolutions run on XLA's Eigen kernels instead of
#   YNNPACK's (the dots stay YNNPACK's). Batch 8, idle 2-core machine, one process with both
#   programs compiled: ResNet-50's 3x3 convolution at 56x56x64 forward 20.7 -> 13.2 ms,
#   gradients 42.5 -> 34.2 ms; ResNet-50 train step 1.05x, inference 1.08x; ResNet-18
#   (batch 128, 32 px) train 1.08x; Inception-v3 inference 1.24x; CSPDarknet-53 inference
#   1.11x. Not for DenseNet-121 (inference 0.87x: its convolutions alone are faster, the
#   program around them is not) or VoVNet's depthwise convolutions (0.82x); the
#   transformers' patch embeddings measured within noise (docs/cpu_profile.md).
XLA_CPU_FLAGS = {
    (0, 10): {
        "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution": (
            "cspnet",
            "inception",
            "resnet",
        ),
    },
}
_tuned: tuple[str, ...] = ()


def xla_cpu_tuned() -> tuple[str, ...]:
    """The flags ``tune_xla_cpu`` added to this process's XLA_FLAGS."""
    return _tuned


def _jaxlib_minor() -> tuple[int, int] | None:
    from importlib import metadata

    try:
        major, minor = metadata.version("jaxlib").split(".")[:2]
        return int(major), int(minor)
    except (metadata.PackageNotFoundError, ValueError):
        return None


def tune_xla_cpu(families) -> tuple[str, ...]:
    """Appends to ``XLA_FLAGS`` each flag of ``XLA_CPU_FLAGS`` (for the installed jaxlib)
    measured faster for every one of the model ``families`` this process will run; returns
    the flags added (empty where none applied).

    XLA reads ``XLA_FLAGS`` once, when JAX starts its backend, and the flags hold for every
    program of the process: so this must run before the backend starts (afterwards it adds
    nothing), and a flag applies only if all the families gain from it. A flag whose name
    ``XLA_FLAGS`` already sets is left to the user's value. Nothing is added on jaxlib
    versions the flags were not measured on, or when ``JAXBONES_TUNE_XLA_CPU=0``. The flags
    change only how XLA's CPU backend runs programs (results within float32 rounding);
    other backends ignore them.
    """
    global _tuned
    families = set(families)
    if _tuned:
        return _tuned
    if not families or os.environ.get(TUNE_ENV, "1") == "0":
        return ()
    bridge = sys.modules.get("jax._src.xla_bridge")
    if bridge is not None and bridge.backends_are_initialized():
        return ()
    current = os.environ.get("XLA_FLAGS", "")
    given = {f.split("=", 1)[0] for f in current.split()}
    added = tuple(
        flag
        for flag, measured in XLA_CPU_FLAGS.get(_jaxlib_minor(), {}).items()
        if families <= set(measured) and flag.split("=", 1)[0] not in given
    )
    if added:
        os.environ["XLA_FLAGS"] = " ".join([current, *added]).strip()
    _tuned = added
    return added
