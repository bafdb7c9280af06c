"""Test configuration: 8 fake CPU devices (for sharding tests), float32 at highest matmul
precision (PARITY.md: the default may use bf16/TF32 passes), and timm's unfused attention."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("TIMM_FUSED_ATTN", "0")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax

jax.config.update("jax_default_matmul_precision", "highest")
