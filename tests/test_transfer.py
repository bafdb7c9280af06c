"""Pretrained tags in use: the data settings they imply (eval transform vs timm's)."""

from __future__ import annotations

import numpy as np
import pytest

from jaxbones import registry
from jaxbones.data import settings as settings_lib
from jaxbones.data import transforms
from jaxbones.train import config as config_lib
from jaxbones.train import inputs
from jaxbones.train import pretrained as pretrained_lib

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
