"""The recipes in experiments/ at tiny size: every recipe's config builds and takes
overrides; quickstart reaches >= 95% on digits; MAE pretraining lowers its loss and writes a
reconstruction PNG, fine-tuning, linear probing and the detection token head start from its
checkpoint."""

import importlib
import os

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from jaxbones.data import DatasetNotPreparedError
from jaxbones.train.config import apply_overrides

RECIPES = [
    "quickstart",
    "resnet_imagenet",
    "vit_imagenet",
    "swin_imagenet",
    "mae_pretrain",
    "mae_finetune",
    "mae_linprobe",
    "unet_segmentation",
    "detection",
    "clip_pretrain",
    "finetune",
    "fashion_mnist",
]


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_configs_build_lock_and_document(name):
    mod = importlib.import_module(f"experiments.{name}")
    doc = mod.__doc__
    for word in ("Command:", "Hardware:", "Fits:", "Time:", "Result:"):
        assert word in doc, (name, word)
    c = mod.get_config()
    with pytest.raises(AttributeError, match='Did you mean "num_steps" instead of "num_step"'):
        c.num_step = 3  # a typo inside a recipe fails (default_config() is locked)
    c.lock()
    apply_overrides(c, ["--config.global_batch_size=16", "--config.dataset=cifar10"])
    assert c.global_batch_size == 16 and c.dataset == "cifar10"
    with pytest.raises(ValueError, match="did you mean"):
        apply_overrides(c, ["--config.num_step=3"])


def test_missing_dataset_names_the_fix(tmp_path):
    from experiments import quickstart

    with pytest.raises(DatasetNotPreparedError, match="imagenet2012") as e:
        from jaxbones.launch import main

        main(
            quickstart.get_config,
            [
                "--config.dataset=imagenet2012",
                f"--config.workdir={tmp_path}",
                f"--config.data_dir={tmp_path}",
            ],
        )
    msg = str(e.value).lower()
    assert "prepare" in msg and "data_dir" in msg, msg  # names the preparation command


def test_fashion_mnist_recipe_is_the_torch_scripts():
    """The jaxbones recipe and scripts/torch_fashion_mnist.py train the same thing: a
    1-channel ResNet-18 of the same size, the same lr at every step, the same data keys."""
    import timm

    from experiments import fashion_mnist
    from jaxbones import create_model
    from jaxbones.train.optim import make_schedule
    from scripts import torch_fashion_mnist

    c, r = fashion_mnist.get_config(), fashion_mnist.RECIPE
    assert c.dataset == "fashion_mnist" and len(c.mean) == len(c.std) == 1
    assert (c.image_size, c.global_batch_size, c.num_epochs) == (
        r["image_size"],
        r["batch_size"],
        r["epochs"],
    )
    assert (c.augment.scale, c.augment.ratio, c.augment.hflip) == (
        r["rrc_scale"],
        r["rrc_ratio"],
        r["hflip"],
    )
    assert c.evals.eval.every == fashion_mnist.TRAIN_EXAMPLES // c.global_batch_size

    spe = fashion_mnist.TRAIN_EXAMPLES // c.global_batch_size
    total = int(c.num_epochs * spe)
    sched = make_schedule(c.optimizer, total, spe, c.global_batch_size)
    warm = round(c.optimizer.warmup_epochs * spe)
    steps = [0, 1, warm // 2, warm - 1, warm, warm + 1, total // 2, total - 2, total - 1]
    got = [torch_fashion_mnist.lr_at(s, r["lr"], warm, total) for s in steps]
    np.testing.assert_allclose(got, [float(sched(s)) for s in steps], rtol=1e-5, atol=1e-9)

    model = create_model(c.model, num_classes=10, in_chans=1)
    x = jax.ShapeDtypeStruct((1, 32, 32, 1), np.float32)
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)
    ours = sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(shapes["params"]))
    ref = timm.create_model("resnet18", in_chans=1, num_classes=10)
    assert ours == sum(p.numel() for p in ref.parameters())
    assert tuple(ref.conv1.weight.shape) == (64, 1, 7, 7)


@pytest.mark.slow  # 66 ResNet-18 steps at 32 px: ~2 min on 2 busy CPU cores
def test_quickstart_reaches_95_percent(tmp_path):
    # README's first command as a user runs it: its own process on one CPU device (this
    # session's 8 fake devices would only add cross-device overhead on 2 cores), with the
    # schedule shortened from 4 to 3 epochs (66 steps, cosine to the end): measured 97.8%,
    # 98.3% and 98.6% test accuracy at seeds 0, 1, 2 (4 epochs: 98.9%), above the 95% floor
    import json
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
    cmd = [
        sys.executable,
        "-m",
        "experiments.quickstart",
        f"--config.workdir={tmp_path}",
        f"--config.data_dir={tmp_path / 'data'}",
        "--config.progress=false",
        "--config.num_epochs=3",
    ]
    p = subprocess.run(
        cmd, check=False, cwd=root, env=env, capture_output=True, text=True, timeout=1500
    )
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    final = [line for line in p.stdout.splitlines() if line.startswith("final: {")]
    assert final, p.stdout[-3000:]
    out = json.loads(final[-1][len("final: ") :])
    assert out["eval_accuracy"] >= 0.95, out["eval_accuracy"]
    assert os.path.exists(tmp_path / "curves.png")
    assert os.path.exists(tmp_path / "metrics.jsonl") and os.path.isdir(tmp_path / "tb")


TINY_VIT = [
    "--config.model_kwargs.embed_dim=32",
    "--config.model_kwargs.depth=2",
    "--config.model_kwargs.num_heads=2",
    "--config.model_kwargs.patch_size=8",
]
TINY = [
    "--config.dataset=synthetic",
    "--config.image_size=32",
    "--config.synthetic_size=64",
    "--config.global_batch_size=16",
    "--config.progress=false",
    "--config.dtype=float32",
    "--config.num_classes=10",
    "--config.optimizer.base_batch_size=0",
    "--config.optimizer.warmup_steps=1",
    "--config.mixup_alpha=0.0",
    "--config.cutmix_alpha=0.0",
    "--config.compile_cache=",
    "--config.log_every=1",
]


def test_mae_pretrain_then_finetune_and_linprobe(tmp_path):
    from experiments import mae_finetune, mae_linprobe, mae_pretrain
    from jaxbones.launch import main

    pre = str(tmp_path / "pre")
    out = main(
        mae_pretrain.get_config,
        [
            *TINY,
            *TINY_VIT,
            f"--config.workdir={pre}",
            "--config.num_steps=30",
            "--config.optimizer.lr=1e-2",
            "--config.model_kwargs.decoder_embed_dim=32",
            "--config.model_kwargs.decoder_depth=1",
            "--config.model_kwargs.decoder_num_heads=2",
            "--config.model_kwargs.norm_pix_loss=false",
        ],
    )
    rows = [r for r in out.history if r["split"] == "train"]
    first, last = np.mean([r["loss"] for r in rows[:3]]), np.mean([r["loss"] for r in rows[-3:]])
    assert last < 0.8 * first, (first, last)
    assert os.path.getsize(os.path.join(pre, "reconstruction.png")) > 1000

    ft = main(
        mae_finetune.get_config,
        [
            *TINY,
            *TINY_VIT,
            f"--config.init_from={pre}",
            f"--config.workdir={tmp_path / 'ft'}",
            "--config.num_steps=2",
            "--config.model_kwargs.drop_path_rate=0.0",
        ],
    )
    rep = ft.init_from
    # exactly MAE main_finetune.py's missing keys stay fresh: the head and (config.init_fresh)
    # the global-pool fc_norm
    assert rep["step"] == 30 and rep["fresh"] == [
        "fc_norm/bias",
        "fc_norm/scale",
        "head/bias",
        "head/kernel",
    ]

    lp = main(
        mae_linprobe.get_config,
        [
            *TINY,
            *TINY_VIT,
            f"--config.init_from={pre}",
            f"--config.workdir={tmp_path / 'lp'}",
            "--config.num_steps=2",
        ],
    )
    mngr = ocp.CheckpointManager(
        os.path.join(pre, "checkpoints"), options=ocp.CheckpointManagerOptions(read_only=True)
    )
    src = mngr.restore(30, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
    mngr.close()
    enc = src["state"]["params"]["blocks_0"]
    got = jax.device_get(lp.state.params["backbone"]["blocks_0"])
    for a, b in zip(jax.tree_util.tree_leaves(enc), jax.tree_util.tree_leaves(got), strict=True):
        np.testing.assert_array_equal(a, b)  # frozen backbone == the pretrained encoder

    # the detection token head on the same encoder (task 'detection', init_from): every
    # backbone parameter comes from the MAE checkpoint, only the head's stay fresh
    from experiments import detection
    from jaxbones.train.checkpoint import load_params
    from jaxbones.train.tasks import get_task

    c = detection.get_config()
    vit = ["--config.model=vit_base_patch16_224", "--config.image_size=32", *TINY_VIT]
    apply_overrides(c, [*vit, "--config.model_kwargs.out_indices=(-1,)"])  # depth 2
    task = get_task("detection")
    model = task.build_model(c, num_classes=10)
    shapes = jax.eval_shape(lambda: task.init(model, c, jax.random.PRNGKey(0)))["params"]
    fresh = jax.tree_util.tree_map(lambda x: np.zeros(x.shape, x.dtype), shapes)
    params, rep = load_params(pre, fresh, c.model, task.params_prefix)
    assert {p.split("/")[0] for p in rep["fresh"]} == {"box_fc1", "box_fc2", "box_fc3", "cls_head"}
    got = params["backbone"]["blocks_0"]
    for a, b in zip(jax.tree_util.tree_leaves(enc), jax.tree_util.tree_leaves(got), strict=True):
        np.testing.assert_array_equal(a, b)
