"""Every family's registered tags load through the loopback Hub / URL server in the format the
publisher uses, and give the reference model's outputs.

Checkpoints are written here from randomly initialised reference models (torchvision, timm,
open_clip, segment_anything; MAE's original layout from transformers' ViTMAE with the key
renaming of test_mae.py) exactly as published: torchvision ``.pth`` files with the hash in the
name (densenet with its old ``norm.1`` keys), timm Hub repos (``model.safetensors`` +
``config.json``), open_clip's ``open_clip_pytorch_model.bin``, MAE / Swin releases wrapped in
``{'model': ...}``, SAM's bare ``.pth``. A URL tag's published hash cannot match random
weights, so such a tag is cloned under a test name with the served file's hash (all other
fields, ``model_kwargs`` and ``state_dict_key`` included, are the registered tag's).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re

import jax
import numpy as np
import pytest
import torch

import jaxbones
from tests.helpers import assert_close, fast_jit, randomize_
from tests.hub_server import pth_bytes, safetensors_bytes

# assert_close tolerances, as a fraction of each reference array's largest magnitude
LOGITS = {"rtol": 0, "atol_of_max": 1e-5}
CLIP_IMAGE_FEATURES = {"rtol": 0, "atol_of_max": 1e-5}


def _serve(server, tags, tag: str, data: bytes) -> str:
    """Serves ``data`` as ``tag``'s file; returns the tag to load (a clone for hashed URLs)."""
    cfg = jaxbones.get_pretrained_cfg(tag)
    if cfg.hf_hub_id:
        server.add_hub_file(cfg.hf_hub_id, cfg.hf_hub_filename, data)
        server.add_hub_file(cfg.hf_hub_id, "config.json", json.dumps({"tag": tag}).encode())
        return tag
    if not cfg.sha256:
        server.add_url(cfg.url, data)
        return tag
    digest = hashlib.sha256(data).hexdigest()
    url = re.sub(r"-[0-9a-f]{8,}\.pth$", f"-{digest[:8]}.pth", cfg.url)
    server.add_url(url, data)
    fields = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
    fields.update(url=url, sha256=digest[:8], filename="")
    fields.pop("model")
    clone = f"{cfg.model}.test_{fields.pop('tag').split('.', 1)[1]}"
    return tags(clone, **fields).tag


def _nchw(x):
    return torch.from_numpy(np.asarray(x)).permute(0, 3, 1, 2)


def _check_logits(tag, ref, size):
    x = np.random.default_rng(0).normal(size=(2, size, size, 3)).astype(np.float32)
    model, variables = jaxbones.load_pretrained(tag)
    ours = fast_jit(lambda v, x: model.apply(v, x, train=False))(variables, x)
    with torch.no_grad():
        want = ref(_nchw(x))
    assert_close(ours, want, **LOGITS)


def _check_variables(tag, state_dict, **kwargs):
    """The loaded variables are the converter's output on the reference state dict (whose
    parity with the reference model the family's own tests check)."""
    model, variables = jaxbones.load_pretrained(tag)
    want = jaxbones.convert.from_torch(model_name(tag), state_dict, strict=True, **kwargs)
    got_flat = jax.tree_util.tree_leaves_with_path(variables)
    want_flat = dict(jax.tree_util.tree_leaves_with_path(want))
    assert len(got_flat) == len(want_flat)
    for path, leaf in got_flat:
        np.testing.assert_array_equal(np.asarray(leaf), np.asarray(want_flat[path]), str(path))
    return model, variables


def model_name(tag):
    return jaxbones.get_pretrained_cfg(tag).model


def _old_densenet_keys(sd):
    # torchvision's published densenet files predate its module renaming: 'norm.1' for
    # 'norm1' (its loader renames them with a regex; so must ours).
    pat = re.compile(
        r"^(.*denselayer\d+\.(?:norm|relu|conv))(\d)\.((?:weight|bias|running_mean|running_var))$"
    )
    return {pat.sub(r"\1.\2.\3", k): v for k, v in sd.items()}


def test_torchvision_files(server, tags):
    import torchvision

    torch.manual_seed(0)
    dn = randomize_(torchvision.models.densenet121()).eval()
    sd = _old_densenet_keys(dn.state_dict())
    assert any(".norm.1." in k for k in sd)
    _check_logits(_serve(server, tags, "densenet121.tv_in1k", pth_bytes(sd)), dn, 64)

    inc = randomize_(torchvision.models.inception_v3(init_weights=False, aux_logits=True))
    inc.transform_input = True  # what torchvision sets when it loads these weights
    tag = _serve(server, tags, "inception_v3.tv_in1k", pth_bytes(inc.state_dict()))
    _check_logits(tag, inc.eval(), 96)  # model_kwargs transform_input=True comes from the tag


@pytest.mark.parametrize(
    ("tag", "timm_name", "size"),
    [
        ("vit_tiny_patch16_224.augreg_in21k_ft_in1k", "vit_tiny_patch16_224", 224),
        ("ese_vovnet19b_dw.ra_in1k", "ese_vovnet19b_dw", 64),
        ("cspresnet50.ra_in1k", "cspresnet50", 64),
        ("resnetv2_50.a1h_in1k", "resnetv2_50", 64),
    ],
)
def test_timm_hub_repos(server, tags, tag, timm_name, size):
    import timm

    torch.manual_seed(0)
    ref = randomize_(timm.create_model(timm_name)).eval()
    _check_logits(_serve(server, tags, tag, safetensors_bytes(ref.state_dict())), ref, size)


def test_swin_hub_and_original_release(server, tags):
    import timm

    torch.manual_seed(0)
    ref = randomize_(timm.create_model("swin_tiny_patch4_window7_224")).eval()
    hub_tag = _serve(
        server, tags, "swin_tiny_patch4_window7_224.ms_in1k", safetensors_bytes(ref.state_dict())
    )
    _check_logits(hub_tag, ref, 224)

    # The original release: microsoft/Swin-Transformer's layout inside {'model': ...}.
    # PatchMerging at the end of stage N (timm: start of N + 1) and a bare 'head'.
    def official(k):
        k = re.sub(r"^layers\.(\d+)\.downsample", lambda m: f"layers.{int(m[1]) - 1}.downsample", k)
        return k.replace("head.fc.", "head.")

    orig = {"model": {official(k): v for k, v in ref.state_dict().items()}, "epoch": 300}
    assert "layers.0.downsample.reduction.weight" in orig["model"]
    orig_tag = _serve(server, tags, "swin_tiny_patch4_window7_224.ms_in1k_orig", pth_bytes(orig))
    _, a = jaxbones.load_pretrained(hub_tag)
    _, b = jaxbones.load_pretrained(orig_tag)
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_mae_releases(server, tags):
    from transformers import ViTMAEForPreTraining

    from tests.test_mae import hf_config, hf_to_mae_layout

    torch.manual_seed(0)
    ref = ViTMAEForPreTraining(hf_config(small=False)).eval()
    full = hf_to_mae_layout(ref.state_dict())
    tag = _serve(
        server, tags, "mae_vit_base_patch16_dec512d8b.visualize_in1k", pth_bytes({"model": full})
    )
    _check_variables(tag, full)
    # Encoder-only pretraining release into the ViT (no head).
    enc = {k: v for k, v in full.items() if not k.startswith(("decoder", "mask_token"))}
    _check_variables(
        _serve(server, tags, "vit_base_patch16_224.mae_orig", pth_bytes({"model": enc})),
        enc,
        num_classes=0,
    )


def test_open_clip_hub_file(server, tags):
    import open_clip

    torch.manual_seed(0)
    ref = open_clip.create_model("ViT-B-32-quickgelu").eval()
    tag = _serve(server, tags, "clip_vit_b32.openai", pth_bytes(ref.state_dict()))
    model, variables = _check_variables(tag, ref.state_dict(), quick_gelu=True)
    x = np.random.default_rng(0).normal(size=(1, 224, 224, 3)).astype(np.float32)
    ours = fast_jit(lambda v, x: model.apply(v, x, method="encode_image"))(variables, x)
    with torch.no_grad():
        want = ref.encode_image(_nchw(x))
    assert_close(ours, want, **CLIP_IMAGE_FEATURES)


def test_sam_release(server, tags):
    from segment_anything import sam_model_registry

    torch.manual_seed(0)
    ref = sam_model_registry["vit_b"]()
    _check_variables(
        _serve(server, tags, "sam_vit_b.sa1b", pth_bytes(ref.state_dict())), ref.state_dict()
    )
