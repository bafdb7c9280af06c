"""Test configuration: 8 fake CPU devices (for sharding tests), float32 at highest matmul
precision (docs/parity.md: the default may use bf16/TF32 passes), and timm's unfused attention."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("TIMM_FUSED_ATTN", "0")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax
import pytest

jax.config.update("jax_default_matmul_precision", "highest")


# Weights by name: a loopback Hub / download server and temporary pretrained tags.


@pytest.fixture
def server(tmp_path, monkeypatch):
    from tests.hub_server import HubServer

    with HubServer() as s:
        monkeypatch.setenv("HF_ENDPOINT", s.url)
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
        monkeypatch.delenv("HF_HUB_CACHE", raising=False)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.delenv("JAXBONES_OFFLINE", raising=False)
        monkeypatch.setenv("JAXBONES_CACHE", str(tmp_path / "jb"))
        monkeypatch.setenv("JAXBONES_URL_MIRROR", s.url)
        monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
        yield s


@pytest.fixture
def tags():
    """Registers test tags and removes them afterwards."""
    import jaxbones

    added = []

    def register(tag, **cfg):
        c = jaxbones.registry.register_pretrained(tag, **cfg)
        added.append(c)
        return c

    yield register
    for c in added:
        jaxbones.registry._PRETRAINED[c.model].pop(c.tag)
        if not jaxbones.registry._PRETRAINED[c.model]:
            jaxbones.registry._PRETRAINED.pop(c.model)
