"""Weights by name: download (Hub and URL), conversion cache, head / stem adaptation, faults.

Everything goes through a loopback server (tests/hub_server.py) serving checkpoints written
here from randomly initialised reference models in the published formats; the real
``huggingface_hub`` client talks to it through ``HF_ENDPOINT``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import textwrap
import time

import jax
import numpy as np
import pytest
import torch
import torchvision

import jaxbones
from jaxbones import hub
from tests.helpers import assert_close, fast_jit, randomize_
from tests.hub_server import pth_bytes, safetensors_bytes

# assert_close tolerances (|ours - ref| <= atol + rtol * |ref|) for resnet18's logits
LOGITS = {"rtol": 0, "atol_of_max": 1e-5}
TV_URL = "https://download.pytorch.org/models/resnet18-{}.pth"


@pytest.fixture(scope="module")
def tv_resnet18():
    torch.manual_seed(0)
    return randomize_(torchvision.models.resnet18()).eval()


def _url_tag(server, tags, sd, name="resnet18.test_url", sha=None, **kw):
    data = pth_bytes(sd)
    digest = hashlib.sha256(data).hexdigest()
    url = TV_URL.format(digest[:8])
    path = server.add_url(url, data)
    cfg = tags(name, url=url, sha256=digest[:8] if sha is None else sha, **kw)
    return cfg, path


def _logits(model, variables, x):
    return np.asarray(fast_jit(lambda v, x: model.apply(v, x, train=False))(variables, x))


def _torch_logits(ref, x):
    with torch.no_grad():
        return ref(torch.from_numpy(x).permute(0, 3, 1, 2)).numpy()


X64 = np.random.default_rng(0).normal(size=(2, 64, 64, 3)).astype(np.float32)


def test_url_tag_downloads_converts_and_caches(server, tags, tv_resnet18, caplog):
    cfg, path = _url_tag(server, tags, tv_resnet18.state_dict())
    t0 = time.perf_counter()
    model, variables, report = jaxbones.load_pretrained(cfg.tag, return_report=True)
    first = time.perf_counter() - t0
    assert not report.from_cache and server.count(path) == 1
    assert_close(_logits(model, variables, X64), _torch_logits(tv_resnet18, X64), **LOGITS)
    t0 = time.perf_counter()
    _, again, report = jaxbones.load_pretrained(cfg.tag, return_report=True)
    second = time.perf_counter() - t0
    print(f"resnet18 load: first {first:.2f} s, second (converted cache) {second:.2f} s")
    assert report.from_cache and server.count(path) == 1  # neither downloaded nor converted
    jax_eq = [np.array_equal(a, b) for a, b in zip(*map(_leaves, (variables, again)))]
    assert all(jax_eq)
    # The cache is only complete files: no temporaries left behind.
    files = [p.name for p in (hub.cache_dir()).rglob("*") if p.is_file()]
    assert not [f for f in files if f.endswith(".part")], files


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]


def test_hub_tag_matches_timm_and_works_offline_once_cached(server, tags, monkeypatch):
    import timm

    ref = randomize_(timm.create_model("resnet18", num_classes=1000)).eval()
    repo = "timm/resnet18.test_hub"
    server.add_hub_file(repo, "model.safetensors", safetensors_bytes(ref.state_dict()))
    server.add_hub_file(repo, "config.json", json.dumps({"architecture": "resnet18"}).encode())
    cfg = tags("resnet18.test_hub", hf_hub_id=repo, hf_hub_filename="model.safetensors")
    model, variables = jaxbones.load_pretrained(cfg.tag)
    expected = _torch_logits(ref, X64)
    assert_close(_logits(model, variables, X64), expected, **LOGITS)
    # Offline with the Hub file cached but no converted cache: converts from the Hub cache.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _, again, report = jaxbones.load_pretrained(cfg.tag, cache=False, return_report=True)
    assert not report.from_cache
    assert all(np.array_equal(a, b) for a, b in zip(_leaves(variables), _leaves(again)))


def test_new_head_stem_adaptation_and_features(server, tags, tv_resnet18, caplog):
    cfg, _ = _url_tag(server, tags, tv_resnet18.state_dict())
    _, base = jaxbones.load_pretrained(cfg.tag)
    with caplog.at_level(logging.WARNING, logger="jaxbones.weights"):
        _, v, report = jaxbones.load_pretrained(cfg.tag, num_classes=10, return_report=True)
    assert sorted(report.reinitialized) == ["params/fc/bias", "params/fc/kernel"]
    assert "new head for num_classes=10" in caplog.text and "fc/kernel" in caplog.text
    assert v["params"]["fc"]["kernel"].shape == (512, 10)
    np.testing.assert_array_equal(v["params"]["conv1"]["kernel"], base["params"]["conv1"]["kernel"])

    k3 = np.asarray(base["params"]["conv1"]["kernel"])  # [7, 7, 3, 64]
    _, v1 = jaxbones.load_pretrained(cfg.tag, in_chans=1)
    np.testing.assert_allclose(v1["params"]["conv1"]["kernel"], k3.sum(2, keepdims=True), rtol=1e-6)
    model5, v5, report = jaxbones.load_pretrained(cfg.tag, in_chans=5, return_report=True)
    assert report.adapted == ["params/conv1/kernel"]
    k5 = np.asarray(v5["params"]["conv1"]["kernel"])
    np.testing.assert_allclose(k5[:, :, :3], k3 * 3 / 5, rtol=1e-6)
    np.testing.assert_allclose(k5[:, :, 3:], k3[:, :, :2] * 3 / 5, rtol=1e-6)
    x5 = jax.ShapeDtypeStruct((1, 64, 64, 5), np.float32)
    assert jax.eval_shape(lambda v, x: model5.apply(v, x, train=False), v5, x5).shape == (1, 1000)

    feats, fv, report = jaxbones.load_pretrained(cfg.tag, features_only=True, return_report=True)
    assert "params/fc/kernel" in report.dropped
    outs = jax.eval_shape(lambda v, x: feats.apply(v, x, train=False), fv, X64)
    assert [o.shape[-1] for o in outs] == [i["num_chs"] for i in feats.feature_info]


def test_scanned_layout_and_local_file(server, tags, tv_resnet18, tmp_path):
    cfg, _ = _url_tag(server, tags, tv_resnet18.state_dict())
    model, v = jaxbones.load_pretrained(cfg.tag, scan=True)
    assert_close(_logits(model, v, X64), _torch_logits(tv_resnet18, X64), **LOGITS)
    local = tmp_path / "mine.pth"
    torch.save(tv_resnet18.state_dict(), local)
    before = len(server.requests)
    model, v, report = jaxbones.load_pretrained(cfg.tag, file=local, return_report=True)
    assert report.file == str(local) and len(server.requests) == before
    with pytest.raises(FileNotFoundError, match="no checkpoint file"):
        jaxbones.load_pretrained(cfg.tag, file=tmp_path / "missing.pth")


def test_unknown_tags_name_the_options(tags):
    tags("resnet18.test_a", url="https://example.org/a.pth")
    tags("resnet18.test_b", url="https://example.org/b.pth")
    with pytest.raises(ValueError, match=r"resnet18 has: .*resnet18\.test_a.*Close matches"):
        jaxbones.load_pretrained("resnet18.test_c")
    with pytest.raises(ValueError, match="unknown model 'resnet181'"):
        jaxbones.load_pretrained("resnet181.test_a")
    with pytest.raises(ValueError, match="no published weights"):
        jaxbones.get_pretrained_cfg("unet")
    assert "resnet18.test_a" in jaxbones.list_pretrained("resnet18*")
    info = jaxbones.model_info("resnet18.test_b")
    assert info["pretrained_cfg"]["url"] == "https://example.org/b.pth"


def test_offline_and_unreachable_sources_say_what_to_do(server, tags, tv_resnet18, monkeypatch):
    cfg, _ = _url_tag(server, tags, tv_resnet18.state_dict())
    hub_cfg = tags(
        "resnet18.test_hub_missing",
        hf_hub_id="timm/resnet18.nowhere",
        hf_hub_filename="model.safetensors",
    )
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for c in (cfg, hub_cfg):
        with pytest.raises(hub.WeightsUnavailableError) as e:
            jaxbones.load_pretrained(c.tag)
        msg = str(e.value)
        assert c.tag in msg and c.file_name in msg and "offline" in msg and "file=" in msg
        assert (c.url or c.hf_hub_id) in msg
    assert server.requests == []
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("JAXBONES_URL_MIRROR", "http://127.0.0.1:9")  # nothing listens there
    # (The Hub client retries an unreachable endpoint for ~25 s before it fails the same way
    # as offline; the URL path is the one that needs its own check.)
    with pytest.raises(hub.WeightsUnavailableError, match=f"{cfg.file_name}.*Connection refused"):
        jaxbones.load_pretrained(cfg.tag)


def test_checksum_mismatch_and_truncation_cache_nothing(server, tags, tv_resnet18):
    cfg, path = _url_tag(server, tags, tv_resnet18.state_dict(), sha="deadbeef")
    downloads = hub.cache_dir() / "downloads"
    for attempt in (1, 2):  # nothing is cached, so the next call downloads again
        with pytest.raises(hub.ChecksumError, match=f"{cfg.file_name}.*expected deadbeef"):
            jaxbones.load_pretrained(cfg.tag)
        assert server.count(path) == attempt
        assert [p.name for p in downloads.iterdir() if not p.name.endswith(".lock")] == []

    good, path = _url_tag(server, tags, tv_resnet18.state_dict(), name="resnet18.test_trunc")
    served = server.count(path)
    server.faults[path] = "truncate"
    with pytest.raises(hub.ChecksumError, match="truncated"):
        jaxbones.load_pretrained(good.tag)
    assert not (downloads / good.file_name).exists()
    server.faults.pop(path)
    jaxbones.load_pretrained(good.tag)
    assert server.count(path) == served + 2

    # A cached file damaged afterwards fails its published hash before it is used.
    (hub.cache_dir() / "converted").rename(hub.cache_dir() / "old")
    (downloads / good.file_name).write_bytes(b"not a checkpoint")
    with pytest.raises(hub.ChecksumError, match="delete the file"):
        jaxbones.load_pretrained(good.tag)


_LOAD_SCRIPT = """
import sys, numpy as np, jax, jaxbones
from jaxbones import registry
registry.register_pretrained("resnet18.test_proc", url=sys.argv[1], sha256=sys.argv[2])
_, v = jaxbones.load_pretrained("resnet18.test_proc")
print("SUM", float(sum(np.abs(np.asarray(x)).sum() for x in jax.tree_util.tree_leaves(v))))
"""


def _spawn(url, sha):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_LOAD_SCRIPT), url, sha],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_killed_download_recovers_and_concurrent_loads_agree(server, tv_resnet18):
    data = safetensors_bytes(tv_resnet18.state_dict())
    sha = hashlib.sha256(data).hexdigest()
    url = "https://example.org/weights/resnet18-test.safetensors"
    path = server.add_url(url, data)
    downloads = hub.cache_dir() / "downloads"

    server.faults[path] = "stall"  # the first process hangs mid-download and is killed
    p = _spawn(url, sha)
    deadline = time.time() + 120

    def receiving():  # the .part file is created before the request is sent: wait for bytes
        return any(f.stat().st_size > 0 for f in downloads.glob("*.part"))

    while not receiving() and time.time() < deadline:
        time.sleep(0.2)
    p.kill()
    p.wait()
    assert receiving(), "the killed process never started downloading"
    assert server.count(path) == 1
    assert not (downloads / "resnet18-test.safetensors").exists()
    server.faults.pop(path)

    procs = [_spawn(url, sha) for _ in range(2)]  # two hosts on one shared file system
    outs = [q.communicate(timeout=300)[0] for q in procs]
    assert all(q.returncode == 0 for q in procs), outs
    sums = {line for out in outs for line in out.splitlines() if line.startswith("SUM")}
    assert len(sums) == 1, outs
    assert server.count(path) == 2  # the killed one and one of the two: the lock held the other
    assert hub.sha256_file(downloads / "resnet18-test.safetensors") == sha
