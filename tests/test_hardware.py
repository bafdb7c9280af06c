"""``jaxbones.hardware``: glibc keeps freed memory for the next step (``retain_host_memory``);
XLA CPU flags go into XLA_FLAGS before the backend starts (``tune_xla_cpu``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Allocates, touches and frees a 256 MiB block twice through malloc (as XLA's CPU runtime
# does with a step's temporaries) and counts the page faults of the second round; with
# BACKEND_FIRST, JAX's backend starts before retain_host_memory is called.
_PROBE = """
import ctypes, ctypes.util, json, os, resource
if os.environ.get("BACKEND_FIRST"):
    import jax.numpy as jnp
    jnp.zeros(1).block_until_ready()
from jaxbones.hardware import retain_host_memory
applied = retain_host_memory()
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
size = 256 * 2**20
def touch():
    p = libc.malloc(size)
    ctypes.memset(p, 1, size)
    libc.free(p)
touch()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
touch()
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(json.dumps({"applied": applied, "faults": faults, "pages": size // resource.getpagesize()}))
"""


def _probe(code: str = _PROBE, **env_extra) -> dict:
    """Runs ``code`` in a fresh interpreter (XLA_FLAGS only as ``env_extra`` gives them);
    returns the JSON object on its last line."""
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env.update(JAX_PLATFORMS="cpu", PYTHONPATH=ROOT, **env_extra)
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc")
def test_retained_block_is_reused_without_page_faults():
    on = _probe()
    assert on["applied"] is True
    # the second round gets the first round's pages back: next to no faults
    assert on["faults"] < 0.05 * on["pages"], on
    # once XLA's threads run, their own arenas would still map large blocks: refused
    assert _probe(BACKEND_FIRST="1")["applied"] is False
    off = _probe(JAXBONES_RETAIN_HOST_MEMORY="0")
    assert off["applied"] is False
    if off["faults"] > 0.5 * off["pages"]:  # glibc's default maps the block afresh
        assert on["faults"] < 0.1 * off["faults"], (on, off)


# Compiles a 3x3 convolution at the shape of ResNet-50's third stage and reports whether
# XLA handed it to YNNPACK, with its output for a fixed input.
_CONV_PROBE = """
import json, os
if os.environ.get("BACKEND_FIRST"):
    import jax.numpy as jnp
    jnp.zeros(1).block_until_ready()
from jaxbones.hardware import tune_xla_cpu
added = tune_xla_cpu(os.environ.get("FAMILIES", "resnet").split(","))
import jax, jax.numpy as jnp
x = jnp.sin(jnp.arange(2 * 28 * 28 * 64, dtype=jnp.float32)).reshape(2, 28, 28, 64)
w = jnp.cos(jnp.arange(3 * 3 * 64 * 64, dtype=jnp.float32)).reshape(3, 3, 64, 64) / 24
conv = jax.jit(lambda x, w: jax.lax.conv_general_dilated(
    x, w, (1, 1), [(1, 1), (1, 1)], dimension_numbers=("NHWC", "HWIO", "NHWC")))
text = conv.lower(x, w).compile().as_text()
print(json.dumps({"added": list(added), "ynn": "__ynn_fusion" in text,
                  "out": conv(x, w)[:, ::7, ::7, ::8].ravel().tolist()}))
"""


def test_tune_xla_cpu_moves_a_resnets_convolutions_off_ynnpack_with_the_same_results():
    from jaxbones.hardware import XLA_CPU_FLAGS, _jaxlib_minor

    flags = [
        f for f, families in XLA_CPU_FLAGS.get(_jaxlib_minor(), {}).items() if "resnet" in families
    ]
    if not flags:
        pytest.skip("no XLA CPU flags measured for ResNets on this jaxlib")
    tuned = _probe(_CONV_PROBE)
    assert tuned["added"] == flags
    assert tuned["ynn"] is False  # XLA's own convolution
    untuned = _probe(_CONV_PROBE, JAXBONES_TUNE_XLA_CPU="0")
    assert untuned["added"] == [] and untuned["ynn"] is True
    np.testing.assert_allclose(tuned["out"], untuned["out"], rtol=1e-5, atol=1e-5)
    # only where every family of the process gains: not with a DenseNet in it
    mixed = _probe(_CONV_PROBE, FAMILIES="resnet,densenet")
    assert mixed["added"] == [] and mixed["ynn"] is True
    # too late once the backend has read XLA_FLAGS; a flag the user set is theirs
    assert _probe(_CONV_PROBE, BACKEND_FIRST="1")["added"] == []
    name = flags[0].split("=", 1)[0]
    kept = _probe(_CONV_PROBE, XLA_FLAGS=f"{name}=-individual_dot")
    assert kept["added"] == [] and kept["ynn"] is True
