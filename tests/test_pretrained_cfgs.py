"""Pretrained tags: every registered fact against the library it was copied from (timm's
pretrained configs, torchvision's weights enums, open_clip's table), a default tag for every
model those libraries publish weights for, and, for each (family, file format), a randomly
initialised reference model saved in the published layout converting strictly with the tag's
config, as ``jaxbones`` loads it."""

import re

import numpy as np
import open_clip
import pytest
import timm
import torch
import torchvision
from timm.models._registry import _model_default_cfgs
from timm.models._registry import get_pretrained_cfg as timm_cfg

import jaxbones
from jaxbones.models._pretrained import TIMM_HUB_FILENAME, sha256_prefix_in_name
from jaxbones.registry import get_entry, get_pretrained_cfg, list_pretrained, model_fields

TAGS = list_pretrained()
CFGS = [get_pretrained_cfg(t) for t in TAGS]

# Registered models without published weights, and why.
NO_WEIGHTS = {
    "vit_large_patch14_224": "timm has no weights for it",
    "vit_base_patch16_gap_224": "timm has no weights for it",
    "vit_huge_patch14_gap_224": "timm's I-JEPA weights exist only as the original I-JEPA files",
    "vovnet39a": "timm has no weights for it",
    "vovnet57a": "timm has no weights for it",
    **{n: "trained from scratch in this repo" for n in jaxbones.list_models("unet*")},
    **{n: "trained from scratch in this repo" for n in jaxbones.list_models("espcn*")},
}


def _by_source(source):
    return [c for c in CFGS if c.source == source]


def _hwc(chw):
    return (chw[1], chw[2], chw[0])


def test_every_tag_has_a_known_source_and_valid_model_kwargs():
    sources = {
        "timm",
        "torchvision",
        "open_clip",
        "facebookresearch/mae",
        "microsoft/Swin-Transformer",
        "facebookresearch/segment-anything",
    }
    for c in CFGS:
        assert c.source in sources, c.tag
        fields = model_fields(c.model)
        assert set(c.model_kwargs) <= set(fields), (c.tag, c.model_kwargs)
        if "num_classes" not in fields:
            assert c.num_classes == 0, c.tag


@pytest.mark.parametrize("cfg", _by_source("timm"), ids=lambda c: c.tag)
def test_timm_tags_match_timm(cfg):
    t = timm_cfg(cfg.tag)
    assert (cfg.hf_hub_id, cfg.hf_hub_filename) == (t.hf_hub_id, TIMM_HUB_FILENAME)
    assert cfg.input_size == _hwc(t.input_size)
    assert cfg.num_classes == t.num_classes
    np.testing.assert_allclose(cfg.mean, t.mean)
    np.testing.assert_allclose(cfg.std, t.std)
    assert (cfg.interpolation, cfg.crop_mode) == (t.interpolation, t.crop_mode)
    assert cfg.crop_pct == pytest.approx(t.crop_pct)
    assert cfg.license == (t.license or "")


@pytest.mark.parametrize(
    "cfg",
    [c for c in CFGS if c.tag.endswith("_orig") and c.source != "timm"],
    ids=lambda c: c.tag,
)
def test_original_release_tags(cfg):
    """``<timm tag>_orig``: the original repository's file of timm's tag (timm records its
    URL); ``mae_ft_in1k_orig`` has no timm twin."""
    assert cfg.state_dict_key == "model"
    twin = cfg.tag.removesuffix("_orig")
    if cfg.source == "facebookresearch/mae" and "_ft_" in cfg.tag:
        size = cfg.model.split("_")[1]  # vit_base_patch16_224 -> base
        assert (
            cfg.url == f"https://dl.fbaipublicfiles.com/mae/finetune/mae_finetuned_vit_{size}.pth"
        )
        assert cfg.model_kwargs == {"global_pool": "avg"} and cfg.num_classes == 1000
        return
    t = timm_cfg(twin)
    assert cfg.url == t.url
    ours = get_pretrained_cfg(twin)
    assert (cfg.num_classes, cfg.input_size, cfg.mean, cfg.std) == (
        ours.num_classes,
        ours.input_size,
        ours.mean,
        ours.std,
    )
    assert cfg.source != "microsoft/Swin-Transformer" or (
        (cfg.interpolation, cfg.crop_pct, cfg.top1)
        == (ours.interpolation, ours.crop_pct, ours.top1)
    )


@pytest.mark.parametrize("cfg", _by_source("torchvision"), ids=lambda c: c.tag)
def test_torchvision_tags_match_weights_enum(cfg):
    version = {"tv_in1k": "IMAGENET1K_V1", "tv2_in1k": "IMAGENET1K_V2"}[cfg.tag.split(".")[1]]
    w = torchvision.models.get_model_weights(cfg.model)[version]
    assert cfg.url == w.url
    # torch.hub's check_hash reads the same prefix out of the file name
    assert cfg.sha256 == re.search(r"-([a-f0-9]+)\.", w.url.rsplit("/", 1)[-1]).group(1)
    assert sha256_prefix_in_name(w.url) == cfg.sha256
    metrics = w.meta["_metrics"]["ImageNet-1K"]
    assert (cfg.top1, cfg.top5) == (metrics["acc@1"], metrics["acc@5"])
    tf = w.transforms()
    crop, resize = tf.crop_size[0], tf.resize_size[0]
    assert cfg.input_size == (crop, crop, 3) and cfg.num_classes == len(w.meta["categories"])
    assert cfg.crop_pct == pytest.approx(crop / resize, abs=1e-4)
    assert cfg.interpolation == tf.interpolation.value
    np.testing.assert_allclose(cfg.mean, tf.mean)
    np.testing.assert_allclose(cfg.std, tf.std)


@pytest.mark.parametrize("cfg", _by_source("open_clip"), ids=lambda c: c.tag)
def test_open_clip_tags_match_table(cfg):
    arch = get_entry(cfg.model).reference.removeprefix("open_clip.")
    t = open_clip.pretrained.get_pretrained_cfg(arch, cfg.tag.split(".", 1)[1])
    hub = t["hf_hub"]  # 'org/repo/' means open_clip's default file name, else 'org/repo/file'
    if hub.endswith("/"):
        repo_id, fname = hub[:-1], open_clip.constants.HF_WEIGHTS_NAME
    else:
        repo_id, fname = hub.rsplit("/", 1)
    assert (cfg.hf_hub_id, cfg.hf_hub_filename) == (repo_id, fname)
    np.testing.assert_allclose(cfg.mean, t["mean"])
    np.testing.assert_allclose(cfg.std, t["std"])
    assert cfg.interpolation == t["interpolation"] and cfg.crop_pct == 1.0
    assert cfg.model_kwargs.get("quick_gelu", False) == t.get("quick_gelu", False)


def test_every_model_with_published_weights_has_its_default_tag():
    for name in jaxbones.list_models():
        tv_weights = []
        try:
            tv_weights = list(torchvision.models.get_model_weights(name))
        except ValueError:
            pass
        timm_tags = [
            t
            for t in (_model_default_cfgs[name].tags if name in _model_default_cfgs else [])
            if timm_cfg(f"{name}.{t}").hf_hub_id
        ]
        if name in NO_WEIGHTS:
            assert not timm_tags and not tv_weights, name
            with pytest.raises(ValueError, match="no published weights"):
                get_pretrained_cfg(name)
            continue
        default = get_pretrained_cfg(name).tag
        if timm_tags:  # timm's default, served from torchvision where timm mirrors it
            assert default == f"{name}.{timm_tags[0]}"
        elif tv_weights:
            assert default == f"{name}.tv_in1k"
        for t in timm_tags:
            assert f"{name}.{t}" in TAGS
        if any(w.name == "IMAGENET1K_V2" for w in tv_weights):
            assert f"{name}.tv2_in1k" in TAGS


# ---------------------------------------------------------------------------------------------
# Published file layouts convert strictly


def _timm_sd(name, **kw):
    torch.manual_seed(0)
    return timm.create_model(name, pretrained=False, **kw).state_dict()


def _tv_sd(name, **kw):
    torch.manual_seed(0)
    return getattr(torchvision.models, name)(weights=None, **kw).state_dict()


def _densenet_old_keys():
    # torchvision's densenet files predate the ``norm1`` names: ``denselayer1.norm.1.weight``
    sd = _tv_sd("densenet121")
    old = {
        re.sub(r"(denselayer\d+\.(?:norm|relu|conv))([12])\.", r"\1.\2.", k): v
        for k, v in sd.items()
    }
    assert "features.denseblock1.denselayer1.norm.1.weight" in old
    return old, {}


def _mae_visualize():
    from test_mae import SMALL, hf_model, hf_to_mae_layout

    return {"model": hf_to_mae_layout(hf_model().state_dict())}, SMALL


def _swin_official():
    from test_swin import OfficialSwin

    tm = timm.create_model("swin_tiny_patch4_window7_224", depths=(2, 2, 2, 2))
    return {"model": OfficialSwin(tm.eval()).state_dict()}, {"depths": (2, 2, 2, 2)}


def _clip(resnet):
    from test_clip import _tiny_overrides, _tiny_torch

    return _tiny_torch(resnet=resnet, quick_gelu=True).state_dict(), _tiny_overrides(resnet)[1]


def _sam():
    from test_sam import SMALL, torch_sam

    return torch_sam().state_dict(), SMALL


_VIT1 = {"depth": 1}
# tag -> () -> (the checkpoint object as published, reduced-size overrides for both sides)
FORMATS = {
    "resnet18.tv_in1k": lambda: (_tv_sd("resnet18"), {}),
    "resnet18.a1_in1k": lambda: (_timm_sd("resnet18"), {}),
    "resnet50.bamboo": lambda: (_timm_sd("resnet50", num_classes=0), {}),
    "resnetv2_50.a1h_in1k": lambda: (_timm_sd("resnetv2_50"), {}),
    "densenet121.tv_in1k": _densenet_old_keys,
    "densenet121.ra_in1k": lambda: (_timm_sd("densenet121"), {}),
    "inception_v3.tv_in1k": lambda: (
        _tv_sd("inception_v3", aux_logits=True, transform_input=True, init_weights=False),
        {},
    ),
    "inception_v3.tf_in1k": lambda: (_timm_sd("inception_v3"), {}),
    "cspresnet50.ra_in1k": lambda: (_timm_sd("cspresnet50"), {}),
    "ese_vovnet19b_dw.ra_in1k": lambda: (_timm_sd("ese_vovnet19b_dw"), {}),
    "vit_tiny_patch16_224.augreg_in21k": lambda: (
        _timm_sd("vit_tiny_patch16_224", num_classes=21843, **_VIT1),
        _VIT1,
    ),
    "vit_base_patch16_224.mae": lambda: (
        _timm_sd("vit_base_patch16_224", num_classes=0, **_VIT1),
        _VIT1,
    ),
    "vit_base_patch16_224.mae_orig": lambda: (
        {"model": _timm_sd("vit_base_patch16_224", num_classes=0, **_VIT1)},
        _VIT1,
    ),
    "vit_base_patch16_224.mae_ft_in1k_orig": lambda: (
        {"model": _timm_sd("vit_base_patch16_224", global_pool="avg", **_VIT1)},
        _VIT1,
    ),
    "mae_vit_base_patch16_dec512d8b.visualize_in1k": _mae_visualize,
    "swin_tiny_patch4_window7_224.ms_in1k": lambda: (
        _timm_sd("swin_tiny_patch4_window7_224", depths=(2, 2, 2, 2)),
        {"depths": (2, 2, 2, 2)},
    ),
    "swin_tiny_patch4_window7_224.ms_in1k_orig": _swin_official,
    "clip_vit_b32.openai": lambda: _clip(resnet=False),
    "clip_rn50.openai": lambda: _clip(resnet=True),
    "sam_vit_b.sa1b": _sam,
}


# torchvision's VGG files are the model's state dict, which tests/test_vgg.py's parity test
# converts strictly (a second 133M-parameter conversion here would cost ~15 s of CI).
FORMATS_CHECKED_ELSEWHERE = {("vgg", ("torchvision", "", False)): "tests/test_vgg.py"}


@pytest.mark.parametrize("tag", list(FORMATS))
def test_published_layout_converts_strictly(tag):
    cfg = get_pretrained_cfg(tag)
    checkpoint, reduced = FORMATS[tag]()
    sd = checkpoint[cfg.state_dict_key] if cfg.state_dict_key else checkpoint
    kw = {**cfg.model_kwargs, **reduced}
    if "num_classes" in model_fields(cfg.model):
        kw["num_classes"] = cfg.num_classes
    variables = jaxbones.convert.from_torch(cfg.model, sd, strict=True, **kw)
    assert variables["params"]


def test_every_family_and_source_has_a_format_check():
    checked = {(get_entry(t.split(".")[0]).family, _source_kind(t)) for t in FORMATS}
    checked |= set(FORMATS_CHECKED_ELSEWHERE)
    for c in CFGS:
        key = (get_entry(c.model).family, _source_kind(c.tag))
        assert key in checked, f"{c.tag}: no strict-conversion check for {key}"


def _source_kind(tag):
    c = get_pretrained_cfg(tag)
    return c.source, c.state_dict_key, c.num_classes == 0
