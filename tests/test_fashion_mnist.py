"""Fashion-MNIST from its IDX files: the reader, the offline build from a few images written
here (no package needed), where the files are looked for, and the error when they are absent."""

import gzip
import os
import struct

import numpy as np
import pytest

from jaxbones import data
from jaxbones.data import datasets

STEMS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def write_idx(path, array):
    """LeCun's IDX layout: two zero bytes, type 0x08 (unsigned byte), ndim, big-endian dims."""
    array = np.asarray(array, np.uint8)
    raw = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    raw += array.tobytes()
    with (gzip.open if path.endswith(".gz") else open)(path, "wb") as f:
        f.write(raw)


def write_split_files(directory, counts, gz=True, seed=0):
    """Random 28x28 images and labels for each split; returns {split: (images, labels)}."""
    rng = np.random.default_rng(seed)
    os.makedirs(directory, exist_ok=True)
    out = {}
    for split, n in counts.items():
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        ext = ".gz" if gz else ""
        write_idx(os.path.join(directory, STEMS[split][0] + ext), images)
        write_idx(os.path.join(directory, STEMS[split][1] + ext), labels)
        out[split] = (images, labels.astype(np.int64))
    return out


@pytest.mark.parametrize("gz", [True, False])
def test_read_idx_shapes_dtype_and_damage(tmp_path, gz):
    written = write_split_files(str(tmp_path), {"train": 4, "test": 3}, gz=gz)
    images, labels = datasets.load_fashion_mnist(str(tmp_path), "test")
    assert images.shape == (3, 28, 28) and images.dtype == np.uint8
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(images, written["test"][0])
    np.testing.assert_array_equal(labels, written["test"][1])

    bad = str(tmp_path / "short-idx3-ubyte")
    write_idx(bad, np.zeros((2, 28, 28)))
    with open(bad, "rb") as f:
        raw = f.read()
    with open(bad, "wb") as f:
        f.write(raw[:-5])
    with pytest.raises(ValueError, match="truncated or damaged"):
        datasets.read_idx(bad)
    with open(bad, "wb") as f:
        f.write(b"\x00\x00\x0d\x01" + struct.pack(">I", 1) + b"\x00" * 4)  # float32 data
    with pytest.raises(ValueError, match="only unsigned bytes"):
        datasets.read_idx(bad)


def test_build_from_manual_dir_records_and_pipeline(tmp_path, monkeypatch):
    monkeypatch.delenv(datasets.FASHION_MNIST_ENV, raising=False)
    d = str(tmp_path / "tfds")
    # tfds's manual-download directory comes before the Debian package's directory
    written = write_split_files(os.path.join(d, "downloads", "manual"), {"train": 6, "test": 3})
    info = data.dataset_info("fashion_mnist", d)
    assert info == {
        "num_classes": 10,
        "splits": {"train": 6, "test": 3},
        "image_shape": (28, 28, 1),
        "task": "classification",
    }
    assert not [f for f in os.listdir(d) if "incomplete" in f]
    for split, (images, labels) in written.items():
        src = data.open_source("fashion_mnist", split, d)
        got = sorted((src[i]["image"].tobytes(), int(src[i]["label"])) for i in range(len(src)))
        assert src[0]["image"].shape == (28, 28, 1) and src[0]["image"].dtype == np.uint8
        want = sorted((im[..., None].tobytes(), int(lb)) for im, lb in zip(images, labels))
        assert got == want
    with pytest.raises(ValueError, match="no split 'validation'"):
        data.open_source("fashion_mnist", "validation", d)
    batch = next(
        data.make_train_iterator(
            "fashion_mnist",
            global_batch_size=4,
            image_size=32,
            data_dir=d,
            mean=(0.286,),
            std=(0.353,),
            process_index=0,
            process_count=1,
        )
    )
    assert batch["image"].shape == (4, 32, 32, 1) and batch["image"].dtype == np.float32
    assert set(batch["label"].tolist()) <= set(written["train"][1].tolist())


def test_missing_files_name_the_package_and_path(tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    write_idx(str(empty / "train-images-idx3-ubyte"), np.zeros((1, 28, 28)))  # 1 of the 4
    monkeypatch.setenv(datasets.FASHION_MNIST_ENV, str(empty))
    d = str(tmp_path / "tfds")
    with pytest.raises(data.DatasetNotPreparedError) as e:
        data.open_source("fashion_mnist", "train", d)
    msg = str(e.value)
    assert "dataset-fashion-mnist" in msg and str(empty) in msg, msg
    assert "t10k-labels-idx1-ubyte" in msg and datasets.FASHION_MNIST_ENV in msg, msg
    assert "train-images-idx3-ubyte," not in msg.split("missing in")[1].split(")")[0], msg
    assert not os.path.exists(os.path.join(d, "fashion_mnist"))


def test_interrupted_build_leaves_nothing(tmp_path, monkeypatch):
    src = str(tmp_path / "idx")
    write_split_files(src, {"train": 2, "test": 2})
    monkeypatch.setenv(datasets.FASHION_MNIST_ENV, src)
    d = str(tmp_path / "tfds")

    def boom(self, *a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(datasets.FashionMnist, "download_and_prepare", boom)
    with pytest.raises(KeyboardInterrupt):
        data.ensure_local_dataset("fashion_mnist", d)
    assert not os.path.exists(os.path.join(d, "fashion_mnist"))
    assert not [f for f in os.listdir(d) if "incomplete" in f]
