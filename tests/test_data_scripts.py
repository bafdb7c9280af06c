"""scripts/prepare_imagenet.py argument checking and messages (not the real build),
scripts/bench_input.py on a tiny synthetic JPEG set, and the encoded-image (JPEG) path."""

import importlib.util
import os

import numpy as np
import pytest

from jaxbones import data
from jaxbones.data.synthetic import SyntheticJpeg
from scripts import bench_input, prepare_imagenet

HAS_TF = importlib.util.find_spec("tensorflow") is not None


def _fake_tars(manual, sizes=None):
    os.makedirs(manual, exist_ok=True)
    for name, size in prepare_imagenet.IMAGENET_TARS.items():
        with open(os.path.join(manual, name), "wb") as f:
            f.truncate((sizes or {}).get(name, size))  # sparse: no disk used


def test_missing_tars_message(tmp_path, capsys):
    rc = prepare_imagenet.main(["--data_dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2
    manual = os.path.join(str(tmp_path), "downloads", "manual")
    for name in prepare_imagenet.IMAGENET_TARS:
        assert f"missing {os.path.join(manual, name)}" in err
    assert "image-net.org" in err and f"place them in {manual}" in err


def test_wrong_size_then_ok(tmp_path, capsys):
    manual = str(tmp_path / "m")
    _fake_tars(manual, {"ILSVRC2012_img_val.tar": 1000})
    rc = prepare_imagenet.main(["--data_dir", str(tmp_path), "--manual_dir", manual])
    assert rc == 2 and "has 1,000 bytes, expected 6,744,924,160" in capsys.readouterr().err
    rc = prepare_imagenet.main(
        ["--data_dir", str(tmp_path), "--manual_dir", manual, "--skip_size_check", "--check_only"]
    )
    out = capsys.readouterr().out
    assert rc == 0 and "~150 GB" in out and "hours" in out


@pytest.mark.skipif(HAS_TF, reason="would start a real tfds build")
def test_tensorflow_missing_message(tmp_path, capsys):
    _fake_tars(str(tmp_path / "downloads" / "manual"))
    assert prepare_imagenet.main(["--data_dir", str(tmp_path)]) == 3
    assert "pip install tensorflow" in capsys.readouterr().err
    assert prepare_imagenet.main(["--dataset", "oxford_iiit_pet", "--data_dir", str(tmp_path)]) == 3


def test_digits_need_no_preparation(tmp_path, capsys):
    assert prepare_imagenet.main(["--dataset", "digits", "--data_dir", str(tmp_path)]) == 0
    assert len(data.open_source("digits", "train", str(tmp_path))) == 1437


@pytest.fixture(scope="module")
def jpeg_dir(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("jpeg"))
    old, SyntheticJpeg.NUM_IMAGES = SyntheticJpeg.NUM_IMAGES, 12
    try:
        SyntheticJpeg(data_dir=d, file_format="array_record").download_and_prepare()
    finally:
        SyntheticJpeg.NUM_IMAGES = old
    return d


def test_encoded_jpeg_path(jpeg_dir):
    raw = data.open_source("synthetic_jpeg", "train", jpeg_dir, encoded_images=True)
    dec = data.open_source("synthetic_jpeg", "train", jpeg_dir)
    assert isinstance(raw[0]["image"], bytes) and dec[0]["image"].shape in (
        (375, 500, 3),
        (500, 375, 3),
    )
    kw = {
        "global_batch_size": 4,
        "image_size": 64,
        "data_dir": jpeg_dir,
        "process_index": 0,
        "process_count": 1,
    }
    ev = list(data.make_eval_iterator("synthetic_jpeg", split="train", **kw))
    assert len(ev) == 3 and all(b["valid"].all() for b in ev)
    # PIL decoding of the bytes gives exactly tfds's decoded arrays
    from jaxbones.data import pipeline

    tf = pipeline._EvalTransform(
        "classification", 64, pipeline.IMAGENET_MEAN, pipeline.IMAGENET_STD, 0.875, "bilinear"
    )
    np.testing.assert_array_equal(ev[0]["image"][1], tf.map(dec[1])["image"])
    b = next(data.make_train_iterator("synthetic_jpeg", **kw))
    assert b["image"].shape == (4, 64, 64, 3) and (b["label"] < 1000).all()


def test_bench_input_runs(jpeg_dir, capsys, tmp_path):
    import json

    cores = os.sched_getaffinity(0)
    rows_path = tmp_path / "rows.jsonl"
    try:
        bench_input.main(
            ["--data_dir", jpeg_dir, "--num_images", "8", "--batch", "4", "--workers", "0"]
            + [
                "--image_size",
                "64",
                "--torch",
                "--cores",
                "1",
                "--out",
                str(rows_path),
                "--wait_idle",
                "0",
            ]
        )
        assert len(os.sched_getaffinity(0)) == 1
    finally:  # the rest of this test process keeps its cores
        os.sched_setaffinity(0, cores)
    out = capsys.readouterr().out
    rows = {  # name -> (median, best, ratio to torchvision or nothing)
        line[: bench_input.NAME_WIDTH].strip(): line[bench_input.NAME_WIDTH :].split()[1:]
        for line in out.splitlines()
        if line.startswith(("train", "eval"))
    }
    ours = ["train rrc+flip", "train +ra+reprob", "eval 73/64"]
    extra = [f"train rrc+flip{o}" for o in (" uint8", " draft", " draft uint8", " opencv")]
    extra += ["train rrc+flip opencv uint8", "train rrc+flip draft opencv uint8"]
    assert set(rows) == {*ours, *extra, *(f"{n} {bench_input.TORCH}" for n in ours)}, out
    assert all(float(r[0]) > 0 and float(r[1]) > 0 for r in rows.values()), out
    # every jaxbones row is compared with the torchvision setting doing the same work
    assert all(rows[n][2].endswith("x") for n in ours + extra), out
    saved = [json.loads(line) for line in rows_path.read_text().splitlines()]
    assert len(saved) == len(rows) and all(r["options"] == "workers=0,cores=1" for r in saved)
    assert {r["mode"] for r in saved} == set(rows) and saved[0]["framework"] == "input-pipeline"
    # 500x375 JPEGs cropped to 64 px: most crops keep >= 128 px per side and decode reduced
    got = bench_input.compare_fast_option(jpeg_dir, 64, 6, bench_input.FAST_OPTIONS["draft"])
    assert got["images"] == got["same_random_draws"] == 6, got
    assert sum(n for s, n in got["dct_scales"].items() if s > 1) >= 1, got
    assert 0 < got["mean_abs"] < 8 and got["psnr_db"] > 25, got
    got = bench_input.compare_fast_option(jpeg_dir, 64, 6, bench_input.OPENCV)
    assert got["images"] == got["same_random_draws"] == 6 and got["dct_scales"] == {1: 6}, got
    assert 0 < got["mean_abs"] < 8 and got["psnr_db"] > 25, got
