"""Dataset access: tfds ArrayRecord data sources, the offline digits datasets, dataset_info.

Every dataset, ImageNet or the local digits, is read the same way: `tfds.data_source(name,
split=..., data_dir=..., download=False)` returns a random-access ArrayRecord source whose
items are dicts of numpy arrays (images decoded by tfds with PIL, no TensorFlow needed).

Offline datasets (built on first use into `data_dir`, atomically, under a file lock):
  digits      scikit-learn's 8x8 digits (1797 images, 10 classes), stored as uint8 RGB
              (gray replicated; 0..16 ink scaled to 0..255), fixed split: 1437 train / 360 test
              (a seed-0 permutation, the first 360 are test).
  digits_seg  the same images with a per-pixel `mask` (uint8 [8, 8]): 0 background and
              1 + digit class where the ink is >= 4/16 (the digit's strokes) -> 11 classes.
  digits_det  detection: 64x64 canvases with 1-4 digits each, upscaled (bilinear) to 12-32
              px and pasted (brightest pixel wins) at random positions, overlapping at most
              IoU 0.2; `objects` = {`bbox` (ymin, xmin, ymax, xmax) normalised, tfds's
              BBoxFeature as coco/2017, around the ink >= 4/16; `label` 0..9}. 2000 train
              canvases from the 1437 train digits, 500 test canvases from the 360 test digits
              (seeds 1 / 2).
  fashion_mnist  Zalando's Fashion-MNIST (60000 train / 10000 test 28x28 grayscale images,
              10 classes, MIT licence), stored as uint8 [28, 28, 1], from its four IDX files
              (``read_idx``; gzipped or not) found in $JAXBONES_FASHION_MNIST_DIR if set, else
              ``<data_dir>/downloads/manual/`` (tfds's manual-download directory), else
              ``/usr/share/datasets/fashion-mnist`` (Debian/Ubuntu package
              ``dataset-fashion-mnist``).
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import os
import shutil
import uuid
from typing import ClassVar

import numpy as np
import tensorflow_datasets as tfds

__all__ = ["DatasetNotPreparedError", "dataset_info", "default_data_dir", "open_source"]

LOCAL_DATASETS = ("digits", "digits_seg", "digits_det", "fashion_mnist")
_LOCAL_VERSION = "1.0.0"  # of every offline dataset's build
_DIGITS_NUM_TEST = 360
_DIGITS_INK_THRESHOLD = 4  # of 16: pixels at least this dark are the digit's strokes

# Class counts for datasets whose label feature cannot be read while mocked (tests) or
# before preparation; everything else comes from the tfds feature spec.
_KNOWN_NUM_CLASSES = {"imagenet2012": 1000, "oxford_iiit_pet": 37}
# Segmentation datasets: mask feature name, number of mask classes, offset added to the stored
# values (oxford_iiit_pet stores 1 pet, 2 background, 3 border: shifted to 0..2).
_SEG_MASKS = {
    "digits_seg": ("mask", 11, 0),
    "oxford_iiit_pet": ("segmentation_mask", 3, -1),
}


class DatasetNotPreparedError(FileNotFoundError):
    """A tfds dataset is not prepared in the given data_dir (the message says how to do it)."""


def default_data_dir() -> str:
    """$TFDS_DATA_DIR, else ~/tensorflow_datasets (tfds's own default)."""
    return os.environ.get("TFDS_DATA_DIR") or os.path.expanduser("~/tensorflow_datasets")


def _load_digits():
    """[N, 8, 8] uint8 images (0..255), [N] labels and the fixed test-index set."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)  # ink 0..16 -> 0..255
    perm = np.random.default_rng(0).permutation(len(images))
    return images, d.images, d.target.astype(np.int64), perm[:_DIGITS_NUM_TEST]


class _OfflineBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """A dataset built from files on this machine: its features (``_feature_spec``), a
    ``DESCRIPTION`` and ``SUPERVISED_KEYS`` (None where there are none)."""

    VERSION = tfds.core.Version(_LOCAL_VERSION)
    DESCRIPTION = ""
    SUPERVISED_KEYS: ClassVar[tuple | None] = ("image", "label")
    # No download checksums file. tfds derives this path from the package resources, which
    # needs importlib_resources under editable installs; None skips the checksum lookup.
    code_path = None

    def _feature_spec(self) -> dict:
        raise NotImplementedError

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            description=self.DESCRIPTION,
            features=tfds.features.FeaturesDict(self._feature_spec()),
            supervised_keys=self.SUPERVISED_KEYS,
        )


class Digits(_OfflineBuilder):
    """scikit-learn's 8x8 digits as a tfds dataset (registered as `digits`)."""

    RELEASE_NOTES: ClassVar[dict] = {
        _LOCAL_VERSION: "sklearn.datasets.load_digits, fixed 1437/360 split."
    }
    DESCRIPTION = "scikit-learn 8x8 digits (UCI optdigits test set), offline."

    def _feature_spec(self):
        return {
            "image": tfds.features.Tensor(shape=(8, 8, 3), dtype=np.uint8),
            "label": tfds.features.ClassLabel(num_classes=10),
        }

    def _split_generators(self, dl_manager):
        del dl_manager  # nothing to download: the data ships with scikit-learn
        return {"train": self._generate_examples(False), "test": self._generate_examples(True)}

    def _example(self, image, raw, label):
        return {"image": np.repeat(image[..., None], 3, axis=-1), "label": int(label)}

    def _generate_examples(self, test: bool):
        images, raw, labels, test_idx = _load_digits()
        is_test = np.zeros(len(images), bool)
        is_test[test_idx] = True
        for i in np.flatnonzero(is_test == test):
            yield int(i), self._example(images[i], raw[i], labels[i])


class DigitsSeg(Digits):
    """Digits with per-pixel masks (registered as `digits_seg`): 0 background, 1 + class ink."""

    def _feature_spec(self):
        feats = super()._feature_spec()
        feats["mask"] = tfds.features.Tensor(shape=(8, 8), dtype=np.uint8)
        return feats

    def _example(self, image, raw, label):
        ex = super()._example(image, raw, label)
        ex["mask"] = np.where(raw >= _DIGITS_INK_THRESHOLD, 1 + int(label), 0).astype(np.uint8)
        return ex


_DET_CANVAS = 64
_DET_SPLITS = {"train": (2000, 1), "test": (500, 2)}  # canvases, seed


def _digits_det_canvas(rng, images, raw, labels):
    """One digits_det example from the pool of 8x8 digits (module docstring)."""
    from PIL import Image

    size = _DET_CANVAS
    canvas = np.zeros((size, size), np.uint8)
    placed, bboxes, classes = [], [], []
    for _ in range(int(rng.integers(1, 5))):
        i = int(rng.integers(len(images)))
        side = int(rng.integers(12, 33))
        for _attempt in range(20):  # a free spot: overlap with earlier digits at most IoU 0.2
            x0, y0 = (int(v) for v in rng.integers(0, size - side + 1, 2))
            sq = np.array([x0, y0, x0 + side, y0 + side], np.float64)
            if all(_iou(sq, p) <= 0.2 for p in placed):
                break
        else:
            continue
        placed.append(sq)
        big = Image.fromarray(images[i]).resize((side, side), Image.BILINEAR)
        region = canvas[y0 : y0 + side, x0 : x0 + side]
        np.maximum(region, np.asarray(big), out=region)
        rows = np.flatnonzero((raw[i] >= _DIGITS_INK_THRESHOLD).any(1))
        cols = np.flatnonzero((raw[i] >= _DIGITS_INK_THRESHOLD).any(0))
        cell = side / 8.0
        box = (
            y0 + rows[0] * cell,
            x0 + cols[0] * cell,
            y0 + (rows[-1] + 1) * cell,
            x0 + (cols[-1] + 1) * cell,
        )
        bboxes.append(np.asarray(box, np.float32) / size)
        classes.append(int(labels[i]))
    return {
        "image": np.repeat(canvas[..., None], 3, axis=-1),
        "objects": {"bbox": np.stack(bboxes), "label": np.asarray(classes, np.int64)},
    }


def _iou(a, b) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(w, 0) * max(h, 0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


class DigitsDet(Digits):
    """Digits pasted on canvases with boxes (registered as `digits_det`; module docstring)."""

    DESCRIPTION = "scikit-learn 8x8 digits pasted on 64x64 canvases, with boxes."
    SUPERVISED_KEYS = None

    def _feature_spec(self):
        return {
            "image": tfds.features.Tensor(shape=(_DET_CANVAS, _DET_CANVAS, 3), dtype=np.uint8),
            "objects": tfds.features.Sequence(
                {
                    "bbox": tfds.features.BBoxFeature(),
                    "label": tfds.features.ClassLabel(num_classes=10),
                }
            ),
        }

    def _generate_examples(self, test: bool):
        images, raw, labels, test_idx = _load_digits()
        is_test = np.zeros(len(images), bool)
        is_test[test_idx] = True
        pool = np.flatnonzero(is_test == test)
        count, seed = _DET_SPLITS["test" if test else "train"]
        rng = np.random.default_rng(seed)
        for k in range(count):
            yield k, _digits_det_canvas(rng, images[pool], raw[pool], labels[pool])


FASHION_MNIST_ENV = "JAXBONES_FASHION_MNIST_DIR"
FASHION_MNIST_SYSTEM_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
# split -> (images file, labels file), as the dataset publishes them (optionally + ".gz")
_FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def read_idx(path: str) -> np.ndarray:
    """An IDX file (LeCun's MNIST format; gzipped if the name ends in .gz) as a numpy array.

    Only unsigned-byte data (type code 0x08) is accepted, the type of every (Fashion-)MNIST
    file. Raises ValueError naming the file when the header or the length is wrong.
    """
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path}: not an IDX file (the first two bytes must be zero)")
    if raw[2] != 0x08:
        raise ValueError(f"{path}: IDX data type 0x{raw[2]:02x}, only unsigned bytes (0x08)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if len(raw) != header + int(np.prod(shape)):
        raise ValueError(
            f"{path}: {len(raw) - header} data bytes for shape {shape} (truncated or damaged)"
        )
    return np.frombuffer(raw, np.uint8, offset=header).reshape(shape)


def _idx_file(directory: str, stem: str) -> str | None:
    for name in (stem, stem + ".gz"):
        if os.path.isfile(os.path.join(directory, name)):
            return os.path.join(directory, name)
    return None


def find_fashion_mnist(data_dir: str | None = None) -> str:
    """The directory holding Fashion-MNIST's four IDX files (module docstring for the order).

    Raises DatasetNotPreparedError naming the package, the directories searched and the
    missing files when none holds all four.
    """
    if os.environ.get(FASHION_MNIST_ENV):
        candidates = [os.path.expanduser(os.environ[FASHION_MNIST_ENV])]
    else:
        data_dir = os.path.abspath(os.path.expanduser(data_dir or default_data_dir()))
        candidates = [os.path.join(data_dir, "downloads", "manual"), FASHION_MNIST_SYSTEM_DIR]
    stems = [f for pair in _FASHION_MNIST_FILES.values() for f in pair]
    for d in candidates:
        if all(_idx_file(d, stem) for stem in stems):
            return d
    missing = [s for s in stems if not _idx_file(candidates[-1], s)]
    raise DatasetNotPreparedError(
        f"Fashion-MNIST IDX files not found in {' or '.join(map(repr, candidates))} "
        f"(missing in {candidates[-1]!r}: {', '.join(missing)}, each optionally .gz). "
        "Install the package `apt-get install dataset-fashion-mnist` (it puts them in "
        f"{FASHION_MNIST_SYSTEM_DIR}), "
        f"or point ${FASHION_MNIST_ENV} at a directory holding {', '.join(stems)} (each may "
        "be gzipped)."
    )


def load_fashion_mnist(directory: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """([N, 28, 28] uint8 images, [N] int64 labels) of `split` ('train' | 'test') from the
    IDX files in `directory`; ValueError naming the files when they disagree."""
    images_stem, labels_stem = _FASHION_MNIST_FILES[split]
    images_path = _idx_file(directory, images_stem) or os.path.join(directory, images_stem)
    labels_path = _idx_file(directory, labels_stem) or os.path.join(directory, labels_stem)
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(
            f"{images_path} {images.shape} and {labels_path} {labels.shape}: expected "
            "[N, H, W] images and [N] labels of the same N"
        )
    if labels.size and labels.max() >= len(FASHION_MNIST_CLASSES):
        raise ValueError(f"{labels_path}: label {labels.max()} outside 0..9")
    return images, labels.astype(np.int64)


class FashionMnist(_OfflineBuilder, skip_registration=True):
    """Fashion-MNIST from its IDX files (module docstring). Not in tfds's registry, which
    has its own ``fashion_mnist`` (a download); read with ``open_source``."""

    name = "fashion_mnist"
    RELEASE_NOTES: ClassVar[dict] = {_LOCAL_VERSION: "The four published IDX files."}
    DESCRIPTION = "Zalando's Fashion-MNIST, read from its IDX files (offline)."
    source_dir = ""  # the IDX directory; set by ensure_local_dataset before preparing

    def _feature_spec(self):
        return {
            "image": tfds.features.Tensor(shape=(28, 28, 1), dtype=np.uint8),
            "label": tfds.features.ClassLabel(names=FASHION_MNIST_CLASSES),
        }

    def _split_generators(self, dl_manager):
        del dl_manager  # nothing to download: the files are local
        return {split: self._generate_examples(split) for split in _FASHION_MNIST_FILES}

    def _generate_examples(self, split: str):
        images, labels = load_fashion_mnist(self.source_dir, split)
        for i in range(len(images)):
            yield i, {"image": images[i][..., None], "label": int(labels[i])}


_LOCAL_BUILDERS = {
    "digits": Digits,
    "digits_seg": DigitsSeg,
    "digits_det": DigitsDet,
    "fashion_mnist": FashionMnist,
}


def _local_dir(name: str, data_dir: str) -> str:
    return os.path.join(data_dir, name, str(_LOCAL_BUILDERS[name].VERSION))


def _is_built(name: str, data_dir: str) -> bool:
    return os.path.exists(os.path.join(_local_dir(name, data_dir), "dataset_info.json"))


def ensure_local_dataset(name: str, data_dir: str | None = None) -> str:
    """Builds an offline dataset (``LOCAL_DATASETS``) into data_dir if missing.

    The build goes into a temporary directory that is renamed into place at the end, under
    an exclusive lock, so an interrupted build never leaves a half dataset that later loads
    and concurrent processes (simulated hosts) build it once. Returns data_dir.
    """
    data_dir = os.path.abspath(os.path.expanduser(data_dir or default_data_dir()))
    if _is_built(name, data_dir):
        return data_dir
    source_dir = find_fashion_mnist(data_dir) if name == "fashion_mnist" else ""
    os.makedirs(data_dir, exist_ok=True)
    with open(os.path.join(data_dir, f".{name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _is_built(name, data_dir):  # another process built it while we waited
            return data_dir
        tmp = os.path.join(data_dir, f".{name}.incomplete-{uuid.uuid4().hex[:8]}")
        try:
            builder = _LOCAL_BUILDERS[name](data_dir=tmp, file_format="array_record")
            builder.source_dir = source_dir
            builder.download_and_prepare()
            final = _local_dir(name, data_dir)
            os.makedirs(os.path.dirname(final), exist_ok=True)
            if os.path.exists(final):  # a stale partial copy (no dataset_info.json)
                shutil.rmtree(final)
            os.replace(_local_dir(name, tmp), final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return data_dir


def _prepare_hint(name: str, data_dir: str) -> str:
    if name == "imagenet2012":
        return (
            "download ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar from "
            "https://image-net.org into <data_dir>/downloads/manual/ and run "
            f"`python -m scripts.prepare_imagenet --data_dir {data_dir}`"
        )
    return f"run `python -m scripts.prepare_imagenet --dataset {name} --data_dir {data_dir}`"


def open_source(name: str, split: str, data_dir: str | None = None, encoded_images=False):
    """The tfds ArrayRecord data source of `name`/`split` (builds offline datasets first).

    With encoded_images=True an encoded `image` feature (JPEG/PNG, e.g. imagenet2012) is
    returned as bytes (tfds SkipDecoding) so the transform decodes it straight into a PIL
    image (~30% faster than tfds's numpy decode); sources that cannot skip decoding (mocked
    datasets, tensor features) still return arrays. Raises DatasetNotPreparedError naming the preparation command when the dataset is not
    prepared in data_dir (tfds would otherwise try to download it), and ValueError for an
    unknown dataset name or split.
    """
    if name in LOCAL_DATASETS:
        data_dir = ensure_local_dataset(name, data_dir)
        # read from the build directory, not by name: tfds registers a `fashion_mnist` of
        # its own (a download) that the name would resolve to
        builder = tfds.builder_from_directory(_local_dir(name, data_dir))
        try:  # a split name or a tfds slice of one ('test[:100]', 'train[10%:]')
            builder.info.splits[split]
        except (KeyError, ValueError) as e:
            raise ValueError(
                f"Dataset {name!r} has no split {split!r}: use {', '.join(builder.info.splits)} "
                "or a slice of one (e.g. 'test[:100]')"
            ) from e
        return builder.as_data_source(split)
    data_dir = os.path.abspath(os.path.expanduser(data_dir or default_data_dir()))
    try:
        src = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
    except tfds.core.registered.DatasetNotFoundError as e:
        local = ", ".join(LOCAL_DATASETS)
        raise ValueError(
            f"Unknown dataset {name!r}: use a tfds name (e.g. imagenet2012, oxford_iiit_pet) "
            f"or an offline dataset ({local})."
        ) from e
    except (KeyError, ValueError) as e:
        if "split" in str(e).lower():
            raise ValueError(f"Dataset {name!r} has no split {split!r}: {e}") from e
        raise
    except Exception as e:  # tfds raises assorted errors (NotImplementedError, AssertionError)
        raise DatasetNotPreparedError(
            f"Dataset {name!r} (split {split!r}) is not prepared in data_dir={data_dir!r} "
            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}). "
            f"Check --data_dir / $TFDS_DATA_DIR, or prepare it: {_prepare_hint(name, data_dir)}."
        ) from e
    feats = src.dataset_info.features
    if encoded_images and "image" in feats and isinstance(feats["image"], tfds.features.Image):
        raw = tfds.data_source(
            name,
            split=split,
            data_dir=data_dir,
            download=False,
            decoders={"image": tfds.decode.SkipDecoding()},
        )
        with contextlib.suppress(Exception):  # mocked sources need TensorFlow to encode
            if isinstance(raw[0]["image"], bytes):
                return raw
    return src


def _features(name: str, data_dir: str | None):
    if name in LOCAL_DATASETS:
        return tfds.features.FeaturesDict(_LOCAL_BUILDERS[name](data_dir=data_dir)._feature_spec())
    with contextlib.suppress(Exception):
        feats = tfds.builder(name, data_dir=data_dir).info.features
        if "image" in feats:
            return feats
    return None


def _objects(feats):
    """The per-object features of a detection dataset (``objects`` with ``bbox`` and
    ``label``, the coco/2017 layout), else None."""
    with contextlib.suppress(Exception):
        objects = feats["objects"]
        if "bbox" in objects.feature and "label" in objects.feature:
            return objects.feature
    return None


def dataset_info(dataset: str, data_dir: str | None = None) -> dict:
    """{"num_classes", "splits": {split: num_examples}, "image_shape": (H, W, C), "task"}.

    image_shape has None for variable sizes (ImageNet: (None, None, 3)). For segmentation
    datasets num_classes counts the mask classes (digits_seg: 11); detection datasets (an
    ``objects`` feature with ``bbox`` and ``label``, as coco/2017) count the object classes.
    """
    splits = {}
    if dataset in LOCAL_DATASETS:
        data_dir = ensure_local_dataset(dataset, data_dir)
        info = tfds.builder_from_directory(_local_dir(dataset, data_dir)).info
        splits = {k: v.num_examples for k, v in info.splits.items()}
    with contextlib.suppress(Exception):
        splits = splits or {
            k: v.num_examples
            for k, v in tfds.builder(dataset, data_dir=data_dir).info.splits.items()
        }
    if not splits:  # not prepared, or mocked by tfds.testing.mock_data: ask the sources
        for split in ("train", "validation", "test"):
            with contextlib.suppress(ValueError, KeyError, DatasetNotPreparedError):
                splits[split] = len(open_source(dataset, split, data_dir))
        if not splits:
            open_source(dataset, "train", data_dir)  # raises the preparation message
    feats = _features(dataset, data_dir)
    task = "segmentation" if dataset in _SEG_MASKS else "classification"
    objects = _objects(feats)
    if objects is not None:
        task = "detection"
    if task == "segmentation":
        num_classes = _SEG_MASKS[dataset][1]
    elif objects is not None:
        num_classes = objects["label"].num_classes
    elif feats is not None and "label" in feats and hasattr(feats["label"], "num_classes"):
        num_classes = feats["label"].num_classes
    else:
        num_classes = _KNOWN_NUM_CLASSES.get(dataset)
    shape = tuple(feats["image"].shape) if feats is not None else (None, None, 3)
    return {"num_classes": num_classes, "splits": splits, "image_shape": shape, "task": task}


def mask_key(dataset: str) -> tuple[str, int]:
    """(feature name, value offset) of the segmentation mask of `dataset` (default mask, 0)."""
    key, _, offset = _SEG_MASKS.get(dataset, ("mask", None, 0))
    return key, offset


def register_segmentation_dataset(
    name: str, mask_feature: str, num_classes: int, offset: int = 0
) -> None:
    """Declares the mask of a tfds segmentation dataset: its feature name, the number of
    classes after adding `offset` to the stored values (e.g. oxford_iiit_pet: 1..3 stored,
    offset -1 -> 3 classes 0..2). Values that are the ignore index (255) after the offset
    count nowhere. `dataset_info(name)` then reports task 'segmentation'."""
    _SEG_MASKS[name] = (mask_feature, int(num_classes), int(offset))


def check_mask_feature(dataset: str, source) -> None:
    """Raises a ValueError naming the fix when `source` has no mask feature for `dataset`."""
    key = mask_key(dataset)[0]
    try:
        names = list(source.dataset_info.features.keys())
    except Exception:  # noqa: BLE001 - sources without feature info: the first record says
        names = list(source[0].keys()) if len(source) else []
    if names and key not in names:
        others = [n for n in names if n != "image"]
        raise ValueError(
            f"dataset {dataset!r} has no segmentation mask feature {key!r} (its features: "
            f"{', '.join(names)}). Declare its mask first: jaxbones.data."
            f"register_segmentation_dataset({dataset!r}, mask_feature=<one of {others}>, "
            f"num_classes=..., offset=...). Known segmentation datasets: {', '.join(_SEG_MASKS)}"
        )
