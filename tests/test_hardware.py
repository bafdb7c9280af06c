"""``jaxbones.hardware.retain_host_memory``: glibc keeps freed memory for the next step."""

from __future__ import annotations

import json
import os
import subprocess
import sys

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


def _probe(**env_extra) -> dict:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": ROOT, **env_extra}
    out = subprocess.run(
        [sys.executable, "-c", _PROBE],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
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
