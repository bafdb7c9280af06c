"""Pretrained tags in use: the data settings they imply (eval transform vs timm's),
``scripts.validate`` end to end, and the three modes of ``experiments/finetune.py``.

Tags are registered for the test and point at checkpoints written here from randomly
initialised torchvision models (ResNet-18 with one block per stage, ``layers=(1,1,1,1)``, so
every compile stays short); the digits dataset is built offline into a temporary dir.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torchvision

from jaxbones import registry
from jaxbones.data import settings as settings_lib
from jaxbones.data import transforms
from jaxbones.train import config as config_lib
from jaxbones.train import inputs
from jaxbones.train import pretrained as pretrained_lib
from tests.helpers import randomize_

VIT = "vit_base_patch16_224"


@pytest.fixture
def tags():
    """Registers test tags and removes them afterwards."""
    added = []

    def register(tag, **cfg):
        c = registry.register_pretrained(tag, **cfg)
        added.append(c)
        return c

    yield register
    for c in added:
        registry._PRETRAINED[c.model].pop(c.tag)
        if not registry._PRETRAINED[c.model]:
            registry._PRETRAINED.pop(c.model)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    from jaxbones.data import ensure_local_dataset

    return ensure_local_dataset("digits", str(tmp_path_factory.mktemp("data")))


def _vit_tag(tags):
    return tags(
        f"{VIT}.test_settings",
        url="https://example.org/vit.pth",
        interpolation="bicubic",
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        crop_pct=0.95,
        crop_mode="squash",
        input_size=(256, 256, 3),
    )


def test_tag_settings_drive_the_eval_transform_and_explicit_values_win(tags, data_dir):
    cfg = _vit_tag(tags)
    s = settings_lib.resolve_data_settings(pretrained=cfg.tag)
    assert (s["interpolation"], s["crop_pct"], s["crop_mode"]) == ("bicubic", 0.95, "squash")
    assert s["mean"] == (0.5, 0.5, 0.5) and s["image_size"] == 256 and s["model"] == VIT
    entry = settings_lib.resolve_data_settings(VIT)  # no tag: the registry entry
    assert entry["interpolation"] == "bilinear" and entry["crop_pct"] == 0.9
    with pytest.raises(ValueError, match="set the model to 'vit_base_patch16_224'"):
        settings_lib.resolve_data_settings("resnet18", cfg.tag)

    c = config_lib.default_config()
    c.model, c.pretrained, c.dataset, c.data_dir = "", cfg.tag, "digits", data_dir
    c.image_size, c.crop_pct = 32, 0.5  # the run's values win over the tag's
    c.lock()
    resolved = pretrained_lib.resolve_config(c)
    assert resolved.model == VIT and resolved.interpolation == "bicubic"
    assert resolved.image_size == 32 and resolved.crop_pct == 0.5
    assert pretrained_lib.resolve_config(resolved).to_dict() == resolved.to_dict()
    _, ev, _ = inputs.make_iterators(c)
    tf = ev._transform
    assert (tf.interpolation, tf.crop_pct, tf.crop_mode) == ("bicubic", 0.5, "squash")
    assert tf.mean == (0.5, 0.5, 0.5) and tf.image_size == 32
    first = next(iter(ev))["image"][0]
    raw = transforms.to_pil(ev._source[0]["image"])
    want = transforms.resize_center_crop(raw, 32, 0.5, "bicubic", "squash")
    np.testing.assert_allclose(first, transforms.normalize(want, (0.5,) * 3, (0.5,) * 3))


@pytest.mark.parametrize("mode", ["center", "squash", "border"])
def test_crop_modes_match_timm(mode):
    from PIL import Image
    from timm.data import create_transform

    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (37, 61, 3), dtype=np.uint8))
    mean, std = (0.3, 0.4, 0.5), (0.2, 0.25, 0.3)
    ref = create_transform(
        input_size=(3, 32, 32),
        crop_pct=0.8,
        crop_mode=mode,
        interpolation="bicubic",
        mean=mean,
        std=std,
    )(img)
    fill = tuple(round(255 * m) for m in mean)
    ours = transforms.resize_center_crop(img, 32, 0.8, "bicubic", mode, fill)
    np.testing.assert_allclose(
        transforms.normalize(ours, mean, std), ref.permute(1, 2, 0).numpy(), atol=1e-5
    )


def tiny_resnet18(num_classes: int, seed: int = 0) -> torch.nn.Module:
    """torchvision's ResNet-18 layout with one block per stage (jaxbones ``layers=(1,1,1,1)``)."""
    torch.manual_seed(seed)
    m = torchvision.models.resnet.ResNet(
        torchvision.models.resnet.BasicBlock, [1, 1, 1, 1], num_classes=num_classes
    )
    return randomize_(m, seed).eval()


def _tiny_tag(tags, tmp_path, name="resnet18.test_tiny", num_classes=10):
    path = tmp_path / f"{name}.pth"
    torch.save(tiny_resnet18(num_classes).state_dict(), path)
    cfg = tags(
        name,
        url=f"https://example.org/{name}.pth",
        model_kwargs={"layers": (1, 1, 1, 1)},
        num_classes=num_classes,
        input_size=(32, 32, 3),
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        crop_pct=1.0,
    )
    return cfg, path


def test_validate_counts_every_example_once(tags, tmp_path, data_dir, monkeypatch):
    from scripts import validate

    monkeypatch.setenv("JAXBONES_CACHE", str(tmp_path / "cache"))
    cfg, path = _tiny_tag(tags, tmp_path)
    results = tmp_path / "results.jsonl"
    results.write_text('{"tag": "an earlier run"}\n')  # results are appended
    argv = [
        f"--model={cfg.tag}",
        f"--file={path}",
        "--dataset=digits",
        "--split=test",
        f"--data_dir={data_dir}",
        "--batch_size=64",  # 360 test digits: 5 full batches and one padded
        f"--results={results}",
    ]
    out = validate.main(argv, return_predictions=True)
    assert out["n"] == 360 and out["logits"].shape == (360, 10)
    from jaxbones.data import open_source

    src = open_source("digits", "test", data_dir)
    labels = np.array([src[i]["label"] for i in range(len(src))])
    np.testing.assert_array_equal(out["labels"], labels)  # each example once, in order
    top1 = 100 * np.mean(out["logits"].argmax(-1) == labels)
    top5 = 100 * np.mean((np.argsort(-out["logits"], -1)[:, :5] == labels[:, None]).any(-1))
    assert out["top1"] == pytest.approx(top1) and out["top5"] == pytest.approx(top5)
    # the same logits as the reference model on the same preprocessed images
    ref = tiny_resnet18(10)
    x = out["images"][:8]
    with torch.no_grad():
        want = ref(torch.from_numpy(x).permute(0, 3, 1, 2)).numpy()
    np.testing.assert_allclose(out["logits"][:8], want, rtol=1e-4, atol=1e-4)
    lines = [json.loads(line) for line in results.read_text().splitlines()]
    assert len(lines) == 2 and lines[1]["top1"] == pytest.approx(top1)
    for key in ("tag", "dataset", "split", "n", "top5", "img_per_sec", "interpolation", "device"):
        assert key in lines[1], key
    assert lines[1]["tag"] == cfg.tag and lines[1]["crop_pct"] == 1.0 and lines[1]["img_size"] == 32


@pytest.mark.parametrize(
    "model, n, expected",
    [
        ("resnet18", 2, ["fc", "layer3_0", "layer3_1", "layer4_0", "layer4_1"]),
        ("vit_base_patch16_224", 1, ["blocks_11", "head", "norm"]),
        (
            "swin_tiny_patch4_window7_224",
            1,
            ["head", "layers_3_blocks_0", "layers_3_blocks_1", "layers_3_downsample", "norm"],
        ),
        ("densenet121", 1, ["classifier", "denseblock4", "norm5", "transition3"]),
        (
            "vgg11",
            1,
            ["classifier_0", "classifier_3", "classifier_6", "features_16", "features_18"],
        ),
        ("inception_v3", 1, ["AuxLogits", "Mixed_7a", "Mixed_7b", "Mixed_7c", "fc"]),
        ("cspdarknet53", 1, ["head_fc", "stages_4"]),
    ],
)
def test_last_stages_per_family(model, n, expected):
    from jaxbones.train.finetune import trainable_patterns

    params = registry.init_shapes(model)["params"]
    got = trainable_patterns("last_stages", model, params, n)
    assert got == tuple(f"^{name}/" for name in expected)


def test_modes_fail_clearly_where_stages_are_unknown():
    from jaxbones.train.finetune import head_paths, trainable_patterns

    assert head_paths("vit_base_patch16_224") == ["head/bias", "head/kernel"]
    assert trainable_patterns("head", "resnet18", None) == ("^fc/bias$", "^fc/kernel$")
    with pytest.raises(ValueError, match="stages of unet .* are not known; use mode 'full'"):
        trainable_patterns("last_stages", "unet", registry.init_shapes("unet")["params"])
    scanned = registry.init_shapes("vit_base_patch16_224", scan=True)["params"]
    with pytest.raises(ValueError, match="scan=False"):
        trainable_patterns("last_stages", "vit_base_patch16_224", scanned)
    with pytest.raises(ValueError, match="resnet18 has 4 stages"):
        trainable_patterns("last_stages", "resnet18", registry.init_shapes("resnet18")["params"], 5)
    with pytest.raises(ValueError, match="use one of"):
        trainable_patterns("linear", "resnet18", None)


def _flat(tree):
    import jax
    from flax import traverse_util

    flat = traverse_util.flatten_dict(jax.device_get(tree), sep="/")
    return {k: np.asarray(v) for k, v in flat.items()}


TINY_TAG = {
    "url": "https://example.org/resnet18_tiny.pth",
    "model_kwargs": {"layers": (1, 1, 1, 1)},
    "num_classes": 10,
    "input_size": (32, 32, 3),
    "mean": (0.5, 0.5, 0.5),
    "std": (0.5, 0.5, 0.5),
    "crop_pct": 1.0,
}


def finetune_modes(path: str, data_dir: str, modes) -> list[dict]:
    """Runs experiments/finetune.py for each mode (2 steps) from the tiny ResNet-18 at
    ``path``; per mode: the top-level parameter groups that moved away from the pretrained
    values, whether the head is not the checkpoint's and whether the BatchNorm statistics
    kept their pretrained values."""
    import jaxbones
    from experiments import finetune

    tag = "resnet18.test_finetune"
    registry.register_pretrained(tag, **TINY_TAG)
    _, pre = jaxbones.load_pretrained(tag, file=path)
    pre_params, pre_stats = _flat(pre["params"]), _flat(pre["batch_stats"])
    base = [
        f"--config.pretrained={tag}",
        f"--config.pretrained_file={path}",
        "--config.dataset=digits",
        f"--config.data_dir={data_dir}",
        "--config.num_steps=2",
        "--config.global_batch_size=16",
        "--config.eval_split=",
        "--config.workdir=",
        "--config.progress=false",
        "--config.plot=false",
        "--config.compile_cache=",
        "--config.augment.rrc=false",
        "--config.optimizer.warmup_epochs=0",
        "--config.optimizer.lr=0.1",
    ]
    rows = []
    for mode in modes:
        out = finetune.main([*base, f"--config.mode={mode}"])
        params, stats = _flat(out.state.params), _flat(out.state.batch_stats)
        moved = {k.split("/")[0] for k, v in params.items() if not np.array_equal(v, pre_params[k])}
        rows.append(
            {
                "mode": mode,
                "model": out.config.model,
                "step": out.metrics["step"],
                "moved": sorted(moved),
                "groups": sorted({k.split("/")[0] for k in params}),
                "new_head": not np.array_equal(params["fc/kernel"], pre_params["fc/kernel"]),
                "stats_kept": all(np.array_equal(v, pre_stats[k]) for k, v in stats.items()),
            }
        )
    return rows


def test_finetune_modes_train_what_they_say(tmp_path, data_dir):
    """experiments/finetune.py end to end in its own process on one CPU device, with XLA's
    backend optimisations off (compile time dominates 2 steps; values do not change):
    frozen parameters keep their pretrained values, trained ones move; 'head' also keeps the
    BatchNorm statistics."""
    import os
    import subprocess
    import sys

    path = tmp_path / "tiny.pth"
    torch.save(tiny_resnet18(10).state_dict(), path)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=1 "
        "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true",
        "JAXBONES_CACHE": str(tmp_path / "cache"),
        "PYTHONPATH": root,
    }
    code = (
        "import json, sys; from tests.test_transfer import finetune_modes; "
        "print('ROWS ' + json.dumps(finetune_modes(*sys.argv[1:3], sys.argv[3].split(','))))"
    )
    cmd = [sys.executable, "-c", code, str(path), data_dir, "head,last_stages,full"]
    p = subprocess.run(
        cmd, check=False, cwd=root, env=env, capture_output=True, text=True, timeout=900
    )
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    rows = json.loads(next(x for x in p.stdout.splitlines() if x.startswith("ROWS "))[5:])
    expected = {"head": ["fc"], "last_stages": ["fc", "layer4_0"]}
    for row in rows:
        assert row["step"] == 2 and row["model"] == "resnet18" and row["new_head"], row
        assert row["moved"] == expected.get(row["mode"], row["groups"]), row
        assert row["stats_kept"] == (row["mode"] == "head"), row
