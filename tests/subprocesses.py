"""Entry points (``python -m jaxbones.launch``, ``python -m experiments.<recipe>``) in
subprocesses on CPU: one run with ``devices`` fake devices, or one run over ``n`` local
processes joined by ``jax.distributed`` (``jaxbones.launch`` picks gloo collectives)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def start(module: str, args, devices: int, env_extra=None) -> subprocess.Popen:
    """``python -m module *args`` from the repository root; stdout and stderr together."""
    env = dict(os.environ)
    env.update(
        XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
        JAX_PLATFORMS="cpu",
        PYTHONPATH=ROOT,
    )
    env.update(env_extra or {})
    return subprocess.Popen(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def run_processes(module: str, args, n: int, devices: int, timeout: int = 900) -> list[str]:
    """``n`` local processes of one run, ``devices`` each; their outputs (all must succeed)."""
    port = free_port()
    procs = [
        start(
            module,
            [f"--coordinator=localhost:{port}", f"--num_processes={n}", f"--process_id={i}", *args],
            devices,
        )
        for i in range(n)
    ]
    outs = [p.communicate(timeout=timeout)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    return outs
