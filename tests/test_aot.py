"""scripts/aot.py: a recipe's real train step compiled ahead of time for a topology.

On the 8 fake CPU devices of the test process (no libtpu needed) the script compiles a tiny
vit_imagenet and its per-device argument memory must be exactly the replicated state plus an
eighth of the batch; the TPU test compiles it for a v4-8 through libtpu's compile-only
topology and is skipped only where the ``libtpu`` package (the ``aot`` extra) is not
importable.
"""

import jax
import numpy as np
import pytest

from scripts import aot

TINY = [
    "--config.model_kwargs.depth=1",
    "--config.model_kwargs.embed_dim=32",
    "--config.model_kwargs.num_heads=2",
    "--config.model_kwargs.patch_size=8",
    "--config.image_size=32",
    "--config.global_batch_size=16",
    "--config.num_classes=10",
]


def test_topology_names():
    assert aot.parse_topology("v4-8")["name"] == "v4:2x2x1"  # 8 TensorCores = 4 chips
    assert aot.parse_topology("v4-64")["name"] == "v4:2x4x4"
    assert aot.parse_topology("v4-256")["name"] == "v4:4x4x8"
    assert aot.parse_topology("v5e-16")["name"] == "v5e:4x4"  # v5e counts chips
    assert aot.parse_topology("v6e-1")["name"] == "v6e:1x1"
    assert aot.parse_topology("v4:2x2x4")["chips"] == 16
    with pytest.raises(ValueError, match="v4-N"):
        aot.parse_topology("v4_8")
    with pytest.raises(ValueError, match="power-of-two"):
        aot.parse_topology("v4-24")


def test_collective_counts_of_hlo_text():
    hlo = (
        "%ag = f32[8,4] all-gather(f32[1,4] %p), dimensions={0}\n"
        "%ars = (f32[4], f32[4]) all-reduce-start(f32[4] %x), to_apply=%add\n"
        "%ard = f32[4] all-reduce-done((f32[4], f32[4]) %ars)\n"
        "%rs = f32[1] reduce-scatter(f32[8] %y), dimensions={0}\n"
    )
    counts = aot.count_collectives(hlo)
    assert counts == {
        "all-gather": 1,
        "reduce-scatter": 1,
        "all-reduce": 1,
        "all-to-all": 0,
        "collective-permute": 0,
    }


def test_script_on_fake_cpu_devices(capsys):
    from jaxbones.train import pretrained, sharding
    from jaxbones.train.loop import abstract_train_step

    r = aot.main(["--recipe", "vit_imagenet", "--topology", "cpu:8", "--markdown", *TINY])
    out = capsys.readouterr().out
    assert "collectives in the optimized HLO" in out and "| vit_imagenet |" in out
    assert r["devices"] == 8 and r["mesh"].startswith("data=8") and r["fits"] is None
    # data parallel: every device holds the whole state and 2 of the 16 images
    config = pretrained.resolve_config(aot.load_config("vit_imagenet", TINY))
    mesh = sharding.make_mesh(config.mesh, jax.devices()[:8])
    _, state = abstract_train_step(config, mesh, 10)
    leaves = jax.tree_util.tree_leaves(state)
    state_bytes = sum(int(np.prod(x.shape)) * x.dtype.itemsize for x in leaves)
    batch_bytes = (16 * 32 * 32 * 3 * 4 + 16 * 4) // 8
    assert r["argument_bytes"] == state_bytes + batch_bytes
    assert r["alias_bytes"] > 0.9 * state_bytes  # the donated state is updated in place
    assert r["collectives"]["all-reduce"] >= 1 and r["collectives"]["all-gather"] == 0
    assert r["flops_per_chip"] > 0
    row = aot.markdown_row(r)
    text = aot.write_row("intro\n", row)
    assert aot.START in text and text.count(row) == 1
    assert aot.write_row(text, row) == text  # the same key replaces its row


def test_fsdp_mesh_over_two_slices_on_fake_cpu_devices():
    # 2 slices of 4 fake devices, FSDP within each: data 2 (the slices) x fsdp 4
    argv = ["--recipe", "vit_imagenet", "--topology", "cpu:4", "--num_slices", "2"]
    # the tiny model's matrices are below the default fsdp_min_size (2**14 elements)
    r = aot.main([*argv, "--mesh", "data=1,fsdp=-1", "--config.fsdp_min_size=1024", *TINY])
    assert r["mesh"] == "data=2,fsdp=4,tensor=1 (dcn_data=2)" and r["devices"] == 8
    assert r["collectives"]["all-gather"] >= 1  # parameters gathered before use


def test_tpu_topology_compile():
    pytest.importorskip("libtpu", reason="TPU topologies need libtpu: pip install -e .[aot]")
    r = aot.compile_recipe("vit_imagenet", "v4-8", TINY)
    assert r["device_kind"] == "TPU v4" and r["devices"] == 4
    assert r["hbm_bytes"] == 32 * 2**30 and r["fits"] is True
    assert 0 < r["total_bytes"] < 2**30 and r["flops_per_chip"] > 0
