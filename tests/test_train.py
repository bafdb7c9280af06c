"""Unit tests of the training step and optimiser on tiny Linen models (cheap to compile):
sharding equivalence (1 device vs 8, data parallel and FSDP), single trace, gradient
accumulation, the non-finite guard, weight-decay masks, layer-wise lr decay, frozen groups,
config overrides."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from jaxbones.registry import get_entry
from jaxbones.train import config as config_lib
from jaxbones.train import optim, sharding
from jaxbones.train.step import create_state, make_train_step
from jaxbones.train.tasks import get_task


class TinyNet(nn.Module):
    """A BatchNorm-free MLP (gradient accumulation must equal a big batch exactly)."""

    num_classes: int = 10

    @nn.compact
    def __call__(self, x, train=False):
        x = x.reshape(x.shape[0], -1)
        x = nn.gelu(nn.Dense(64, name="fc1")(x))
        x = nn.LayerNorm(name="norm")(x)
        return nn.Dense(self.num_classes, name="head")(x)


def _cfg(**kw):
    c = config_lib.default_config()
    c.optimizer.name = "adamw"
    c.optimizer.lr = 1e-2
    c.optimizer.warmup_steps = 1
    for k, v in kw.items():
        c[k] = v
    return c


def _batches(n, b=32, s=8, seed=0):
    rng = np.random.default_rng(seed)
    return [
        {
            "image": rng.standard_normal((b, s, s, 3)).astype(np.float32),
            "label": rng.integers(0, 10, (b,)).astype(np.int32),
        }
        for _ in range(n)
    ]


def _train(cfg, devices, batches, model=None):
    chex.clear_trace_counter()  # each call builds a fresh step function
    model = model or TinyNet()
    mesh = sharding.make_mesh(cfg.mesh, devices)
    task = get_task("classification")
    init = lambda r: model.init(r, jnp.zeros((1, 8, 8, 3)))
    abstract = jax.eval_shape(init, jax.random.PRNGKey(0))
    tx, sched, _ = optim.make_optimizer(cfg.optimizer, abstract["params"], 10, 10, 32)

    def init_state(r):
        return create_state(init(r), tx, jax.random.PRNGKey(1), cfg.ema_decay > 0)

    sh = sharding.state_shardings(
        jax.eval_shape(init_state, jax.random.PRNGKey(0)), mesh, (), cfg.fsdp_min_size
    )
    state = jax.jit(init_state, out_shardings=sh)(jax.random.PRNGKey(0))
    fn = chex.assert_max_traces(make_train_step(task, model, tx, sched, cfg, mesh), n=1)
    step = jax.jit(
        fn,
        in_shardings=(sh, sharding.batch_sharding(mesh)),
        out_shardings=(sh, None),
        donate_argnums=0,
    )
    losses = []
    for b in batches:
        state, m = step(state, sharding.global_batch(b, mesh))
        losses.append(float(m["loss"]))
    return state, losses, sh


def test_one_vs_eight_devices_data_parallel_and_fsdp():
    batches = _batches(1) * 3  # the same batch: the loss must fall
    s1, l1, _ = _train(_cfg(), jax.devices()[:1], batches)
    _s8, l8, _ = _train(_cfg(), jax.devices(), batches)
    fsdp = _cfg(fsdp_min_size=0)
    fsdp.mesh.update(data=1, fsdp=-1)
    sf, lf, shf = _train(fsdp, jax.devices(), batches)
    # FSDP really shards: fc1 kernel [192, 64] is split over 8 devices on its larger axis.
    assert shf.params["fc1"]["kernel"].spec == jax.sharding.PartitionSpec("fsdp", None)
    assert len(sf.params["fc1"]["kernel"].addressable_shards[0].data) == 192 // 8
    np.testing.assert_allclose(l1, l8, rtol=1e-5)
    np.testing.assert_allclose(l1, lf, rtol=1e-5)
    chex.assert_tree_all_finite(sf.params)
    chex.assert_trees_all_close(s1.params, sf.params, rtol=0, atol=1e-5)
    assert l1[-1] < l1[0]


def test_uint8_images_train_as_their_host_normalised_floats():
    # config.image_dtype='uint8': the step normalises with the config's mean and std, so the
    # run equals one fed the host's float32 normalisation of the same pixels
    from jaxbones.data import transforms

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (2, 32, 8, 8, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, (2, 32)).astype(np.int32)
    cfg = _cfg(mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))
    floats = [
        {"image": transforms.normalize(p, cfg.mean, cfg.std), "label": y}
        for p, y in zip(pixels, labels, strict=True)
    ]
    ints = [{"image": p, "label": y} for p, y in zip(pixels, labels, strict=True)]
    sf, lf, _ = _train(cfg, jax.devices()[:1], floats)
    si, li, _ = _train(cfg, jax.devices()[:1], ints)
    assert lf == li
    chex.assert_trees_all_equal(sf.params, si.params)
    with pytest.raises(ValueError, match="resolve_config"):
        _train(_cfg(), jax.devices()[:1], ints[:1])
    # what an AOT compile lowers with: uint8 for a tfds dataset, float32 for in-memory data
    from jaxbones.train.inputs import batch_shapes

    tfds_cfg = _cfg(dataset="digits", image_dtype="uint8")
    assert batch_shapes(tfds_cfg)["image"].dtype == np.uint8
    assert batch_shapes(_cfg(dataset="synthetic", image_dtype="uint8"))["image"].dtype == np.float32


def test_step_retrace_detected():
    # every _train call runs its steps under chex.assert_max_traces(n=1); a different batch
    # shape would re-trace the step, which the wrapper reports
    with pytest.raises(AssertionError, match="traced > 1 times"):
        _train(_cfg(), jax.devices(), _batches(1) + _batches(1, b=16))


def test_gradient_accumulation_equals_big_batch():
    batches = _batches(2)
    cfg = _cfg()
    cfg.optimizer.name = "sgd"
    s1, l1, _ = _train(cfg, jax.devices(), batches)
    s4, l4, _ = _train(_cfg(accum_steps=4, optimizer=cfg.optimizer), jax.devices(), batches)
    np.testing.assert_allclose(l1, l4, rtol=1e-5)
    chex.assert_tree_all_finite(s4.params)
    chex.assert_trees_all_close(s1.params, s4.params, rtol=0, atol=1e-6)


def test_non_finite_step_is_skipped_and_counted():
    bad = _batches(1)
    bad[0]["image"][0, 0, 0, 0] = np.nan
    s, losses, _ = _train(_cfg(), jax.devices(), bad * 2)
    assert np.isnan(losses[0]) and int(s.bad_steps) == 2 and int(s.step) == 2
    # both steps were skipped: parameters and optimiser state are the initial ones
    init = TinyNet().init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 3)))["params"]
    chex.assert_trees_all_equal(s.params, init)


def _vit_params(scan=False, depth=3):
    d = 8
    p = {
        "cls_token": np.zeros((1, 1, d)),
        "pos_embed": np.zeros((1, 5, d)),
        "patch_embed": {"proj": {"kernel": np.zeros((2, 2, 3, d)), "bias": np.zeros(d)}},
        "norm": {"scale": np.zeros(d), "bias": np.zeros(d)},
        "head": {"kernel": np.zeros((d, 10)), "bias": np.zeros(10)},
    }
    blk = {
        "attn": {"qkv": {"kernel": np.zeros((d, 3 * d)), "bias": np.zeros(3 * d)}},
        "norm1": {"scale": np.zeros(d), "bias": np.zeros(d)},
    }
    if scan:
        p["blocks"] = jax.tree_util.tree_map(lambda x: np.zeros((depth,) + x.shape), blk)
    else:
        for i in range(depth):
            p[f"blocks_{i}"] = blk
    return p


VIT = get_entry("vit_base_patch16_224").param_groups


def test_weight_decay_mask():
    flat = traverse_util.flatten_dict(optim.decay_mask(_vit_params(), VIT), sep="/")
    assert flat["blocks_0/attn/qkv/kernel"] and flat["head/kernel"]
    assert flat["patch_embed/proj/kernel"]
    for k in ("cls_token", "pos_embed", "head/bias", "norm/scale", "blocks_1/norm1/bias"):
        assert not flat[k], k
    # scanned stacks: the leading [depth] axis does not make a bias a matrix
    flat = traverse_util.flatten_dict(optim.decay_mask(_vit_params(scan=True), VIT), sep="/")
    assert flat["blocks/attn/qkv/kernel"] and not flat["blocks/attn/qkv/bias"]
    assert not flat["blocks/norm1/scale"]


def test_layer_decay_scales_vit_unrolled_scanned_and_swin():
    d = 0.5
    s = optim.layer_scales(_vit_params(depth=3), d, VIT)  # 4 layers: emb 0, blocks 1..3, head 4
    assert s["cls_token"] == s["patch_embed/proj/kernel"] == d**4
    assert s["blocks_0/attn/qkv/kernel"] == d**3 and s["blocks_2/norm1/bias"] == d**1
    assert s["head/kernel"] == s["norm/scale"] == 1.0
    sc = optim.layer_scales(_vit_params(scan=True, depth=3), d, VIT)
    assert sc["blocks/attn/qkv/kernel"] == (d**3, d**2, d**1)
    swin = {
        "patch_embed": {"proj": {"kernel": np.zeros((4, 4, 3, 8))}},
        "layers_0_blocks_0": {"w": np.zeros((8, 8))},
        "layers_0_blocks_1": {"w": np.zeros((8, 8))},
        "layers_1_downsample": {"w": np.zeros((32, 16))},  # stage 1's merging, at its start
        "layers_1_blocks": {"w": np.zeros((2, 16, 16))},
        "norm": {"scale": np.zeros(16)},
        "head": {"kernel": np.zeros((16, 10))},
    }
    ss = optim.layer_scales(
        swin, d, get_entry("swin_tiny_patch4_window7_224").param_groups
    )  # 4 blocks -> ids 1..4, head 5 (SimMIM numbering)
    assert ss["patch_embed/proj/kernel"] == d**5
    assert ss["layers_0_blocks_0/w"] == d**4 and ss["layers_0_blocks_1/w"] == d**3
    assert ss["layers_1_downsample/w"] == d**3  # with stage 0's last block (SimMIM)
    assert ss["layers_1_blocks/w"] == (d**2, d**1) and ss["head/kernel"] == 1.0
    with pytest.raises(ValueError, match="layer_decay=1.0"):
        optim.layer_scales({"conv1": {"kernel": np.zeros((3, 3, 3, 8))}}, 0.75, None)


@pytest.mark.parametrize("scan", [False, True])
def test_optimizer_applies_lr_scale_decay_and_freezing(scan):
    """Plain SGD, constant lr: update = -lr * scale * (grad + wd * p * mask); frozen: 0."""
    c = config_lib.default_config().optimizer
    c.name, c.momentum, c.lr, c.schedule, c.warmup_steps = "sgd", 0.0, 0.1, "constant", 0
    c.weight_decay, c.layer_decay, c.frozen = 0.01, 0.5, (r"^patch_embed/",)
    params = jax.tree_util.tree_map(lambda x: jnp.ones(x.shape), _vit_params(scan=scan))
    tx, _, groups = optim.make_optimizer(c, params, 10, 10, 32, VIT)
    grads = jax.tree_util.tree_map(jnp.ones_like, params)
    upd, _ = tx.update(grads, tx.init(params), params)
    flat_u = traverse_util.flatten_dict(upd, sep="/")
    for path, g in groups.items():
        if g.frozen:
            expected = 0.0
        else:
            scale = (
                np.asarray(g.lr_scale).reshape((-1,) + (1,) * (len(g.shape) - 1))
                if isinstance(g.lr_scale, tuple)
                else g.lr_scale
            )
            expected = -0.1 * scale * (1.0 + (0.01 if g.decay else 0.0))
        np.testing.assert_allclose(
            np.broadcast_to(np.asarray(flat_u[path]), g.shape),
            np.broadcast_to(expected, g.shape),
            rtol=1e-6,
            err_msg=path,
        )
    assert groups["patch_embed/proj/kernel"].frozen
    table = optim.format_groups(groups, 0.1)
    assert "frozen" in table and "trainable" in table


def test_frozen_params_do_not_change_in_training():
    cfg = _cfg()
    cfg.optimizer.frozen = (r"^fc1/",)
    model = TinyNet()
    s, _, _ = _train(cfg, jax.devices(), _batches(2), model)
    init = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 3)))["params"]
    np.testing.assert_array_equal(
        np.asarray(s.params["fc1"]["kernel"]), np.asarray(init["fc1"]["kernel"])
    )
    assert not np.allclose(
        np.asarray(s.params["head"]["kernel"]), np.asarray(init["head"]["kernel"])
    )


def test_schedules():
    c = config_lib.default_config().optimizer
    c.lr, c.warmup_steps = 1.0, 10
    for name in ("cosine", "linear", "step", "constant"):
        c.schedule = name
        f = optim.make_schedule(c, 100, 10, 256)
        assert float(f(0)) == 0.0 and abs(float(f(10)) - 1.0) < 1e-6, name
        assert float(f(99)) <= 1.0
    c.schedule = "cosine"
    assert float(optim.make_schedule(c, 100, 10, 256)(99)) < 1e-2
    c.schedule, c.base_batch_size = "constant", 256
    assert float(optim.make_schedule(c, 100, 10, 512)(50)) == 2.0  # linear scaling rule


def test_config_overrides_and_typos():
    c = config_lib.default_config()
    c.lock()
    config_lib.apply_overrides(
        c,
        [
            "--config.global_batch_size=128",
            "--config.optimizer.lr=0.5",
            "--config.optimizer.frozen=('^a',)",
            "--config.plot=false",
            "--config.model",
            "vit_tiny_patch16_224",
        ],
    )
    assert c.global_batch_size == 128 and c.optimizer.lr == 0.5 and not c.plot
    assert c.optimizer.frozen == ("^a",) and c.model == "vit_tiny_patch16_224"
    with pytest.raises(ValueError, match="did you mean global_batch_size"):
        config_lib.apply_overrides(c, ["--config.global_bach_size=3"])
    with pytest.raises(ValueError, match="did you mean weight_decay"):
        config_lib.apply_overrides(c, ["--config.optimizer.weight_decy=3"])


def test_batch_not_divisible_by_devices_names_the_fix():
    with pytest.raises(ValueError, match="global_batch_size=96"):
        sharding.check_batch_size(100)
    with pytest.raises(ValueError, match="accum_steps=16"):
        sharding.check_batch_size(64, accum_steps=16)
    sharding.check_batch_size(96, accum_steps=2)


def test_multiprocess_preemption_check_gathers_only_every_n_steps(monkeypatch):
    """With several processes the SIGTERM flag is agreed on by an all-gather; it must not run
    (and block the host) after every step, and a flag raised on any process must stop all."""
    import os
    import signal

    from jaxbones.train import loop

    calls = []

    def fake_allgather(x):
        calls.append(int(x[0]))
        return np.stack([x, np.array([0], np.int32)])  # this process and a quiet peer

    monkeypatch.setattr(loop.jax, "process_count", lambda: 2)
    monkeypatch.setattr(loop.multihost_utils, "process_allgather", fake_allgather)
    p = loop._Preemption(every=5)
    try:
        assert [p.requested(s) for s in range(1, 11)] == [False] * 10
        assert len(calls) == 2  # steps 5 and 10 only
        os.kill(os.getpid(), signal.SIGTERM)
        assert not p.requested(11) and p.requested(15)
        assert calls[-1] == 1
    finally:
        p.restore()


def test_peak_flops_by_device_kind_and_dtype():
    from jaxbones.hardware import peak_flops

    assert peak_flops("TPU v5 lite", "bfloat16") == 197e12  # v5e: not v5p's 459
    assert peak_flops("TPU v5", "bfloat16") == 459e12  # v5p reports plain "TPU v5"
    assert peak_flops("TPU v4", "float32") is None  # no published f32 peak: no f32 MFU
    assert peak_flops("NVIDIA H100 80GB HBM3", "float32") == 67e12
    assert peak_flops("NVIDIA H100 PCIe", "bfloat16") == 756e12
    assert peak_flops("NVIDIA A100-SXM4-40GB", "float16") == 312e12
    assert peak_flops("cpu", "bfloat16") is None


def test_evaluators_are_declared_in_the_config():
    import ml_collections

    from jaxbones.train import evaluators

    c = config_lib.default_config()
    c.evals.eval.every = 5
    c.evals.recon = ml_collections.ConfigDict({"type": "mae_reconstruction", "num_images": 2})
    ctx = evaluators.Context(c, None, None, None, None, lambda split: None, True)
    evs = evaluators.make_evaluators(ctx)
    assert [e.name for e in evs] == ["eval", "recon"]
    assert evs[0].due(10) and not evs[0].due(7) and not evs[1].due(10)  # recon: at the end
    assert evs[1].options == {"num_images": 2}
    c.evals.recon.num_imgs = 3
    with pytest.raises(ValueError, match=r"evals.recon .* no option\(s\) \['num_imgs'\]"):
        evaluators.make_evaluators(ctx)
    del c.evals["recon"]
    c.evals.bad = ml_collections.ConfigDict({"type": "accuracy"})
    with pytest.raises(
        ValueError,
        match="registered: clip_zero_shot, detection_predictions, mae_reconstruction, metrics",
    ):
        evaluators.make_evaluators(ctx)


def test_curves_plot_every_evaluator_metric_and_the_lr():
    from jaxbones.train.logger import plotted_series

    history = [
        {"step": 0, "split": "compile", "compile_seconds": 3.0},
        {"step": 1, "split": "train", "loss": 2.0, "lr": 0.1, "mfu": 0.3, "bad_steps": 0},
        {"step": 1, "split": "eval", "loss": 2.1, "accuracy": 0.5},
        {"step": 1, "split": "zero_shot", "accuracy": 0.4},
    ]
    assert plotted_series(history) == {
        "loss": ["train", "eval"],
        "lr": ["train"],
        "accuracy": ["eval", "zero_shot"],
    }
