"""grain pipelines over tfds data sources: training (sharded, shuffled, checkpointable) and
exact evaluation (padded, masked, every example once on any number of hosts).

Training: `jaxbones.data.stream.TrainStream`: global batch s is a function of (seed, s)
alone (one permutation of the records per epoch; process p reads its contiguous share of
each global batch), random transforms seeded by (seed, global stream position), batches of
global_batch_size // process_count, optional worker processes. Its state (the next global
step) is saved with the training checkpoint and resumes on any number of processes.

Evaluation: process p reads `even_split(n, p)` (no drop), every process yields the same
number of batches (ceil(ceil(n / P) / b)), padded with zero images and `valid=False`.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any

import grain
import jax
import numpy as np

from jaxbones.constants import IMAGENET_MEAN, IMAGENET_STD
from jaxbones.data import datasets, transforms
from jaxbones.data.stream import TrainStream

__all__ = [
    "IMAGE_DTYPES",
    "make_eval_iterator",
    "make_train_iterator",
    "normalize_pixels",
    "per_process_batch_size",
]

# what the train iterator yields as "image": 'float32' normalised on the host (the default),
# or 'uint8' pixels that the train step normalises on the device with `normalize_pixels`
# (a quarter of the bytes from the workers and to the device, and no float pass per image
# on the host; timm's PrefetchLoader does the same on the GPU)
IMAGE_DTYPES = ("float32", "uint8")


def normalize_pixels(images, mean, std):
    """uint8 pixels [..., C] -> float32 (x / 255 - mean) / std, traceable: the device's half
    of ``image_dtype='uint8'``; equal bit for bit to the host's ``transforms.normalize``."""
    offset, scale = transforms.pixel_affine(mean, std)
    return (images.astype(np.float32) - offset) * scale


# augment defaults per task; `rrc=False` replaces the random resized crop by a plain resize
# of the whole image (small datasets such as digits). Two options trade torchvision's exact
# pixels for speed, with the same crop boxes and random draws: `jpeg_draft=True` decodes a
# JPEG at a reduced DCT scale when the crop keeps >= image_size pixels per side
# (transforms.draft_crop_resize), faster on photos much larger than the crop's output;
# `resize_backend="opencv"` resizes the crop with OpenCV, averaging blocks where it shrinks
# (transforms.opencv_crop_resize), faster at every size; both together suit large JPEGs.
_AUGMENT_DEFAULTS = {
    "classification": {
        "rrc": True,
        "scale": (0.08, 1.0),
        "ratio": (3 / 4, 4 / 3),
        "hflip": 0.5,
        "interpolation": "bilinear",
        "randaugment": None,
        "reprob": 0.0,
        "jpeg_draft": False,
        "resize_backend": "pil",
    },
    # MAE (facebookresearch/mae main_pretrain.py): RandomResizedCrop(scale=(0.2, 1.0),
    # interpolation=3 (bicubic)), RandomHorizontalFlip.
    "mae": {
        "rrc": True,
        "scale": (0.2, 1.0),
        "ratio": (3 / 4, 4 / 3),
        "hflip": 0.5,
        "interpolation": "bicubic",
        "jpeg_draft": False,
        "resize_backend": "pil",
    },
    "segmentation": {
        "rrc": True,
        "scale": (0.5, 1.0),
        "ratio": (3 / 4, 4 / 3),
        "hflip": 0.5,
        "interpolation": "bilinear",
    },
    # detection: the whole image resized (boxes are normalised, so they stay as they are)
    "detection": {"hflip": 0.0, "interpolation": "bilinear"},
}
TASKS = tuple(_AUGMENT_DEFAULTS)


def _augment_config(task: str, augment: dict | None) -> dict:
    if task not in _AUGMENT_DEFAULTS:
        raise ValueError(f"task {task!r}: use one of {TASKS}")
    cfg = dict(_AUGMENT_DEFAULTS[task])
    for key, val in (augment or {}).items():
        if key not in cfg:
            raise ValueError(f"augment key {key!r} is not valid for task {task!r}: use {list(cfg)}")
        cfg[key] = val
    if cfg.get("resize_backend", "pil") not in transforms.RESIZE_BACKENDS:
        raise ValueError(
            f"augment resize_backend {cfg['resize_backend']!r}: use one of "
            f"{transforms.RESIZE_BACKENDS} ('pil' is torchvision's pixels)"
        )
    if cfg.get("resize_backend") == "opencv":
        transforms.import_opencv()  # now, not in the first batch's worker threads
    return cfg


def _processes(process_index, process_count):
    if process_count is None:
        process_count = jax.process_count()
    if process_index is None:
        process_index = jax.process_index()
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} not in [0, {process_count})")
    return process_index, process_count


def _absl_flags_ready():
    """grain's worker processes read absl flags; outside absl.app they were never parsed."""
    from absl import flags

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


def _usable_cores() -> int:
    if hasattr(os, "sched_getaffinity"):  # Linux: the cores this process may run on
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _read_options(buffer: int):
    """Read-ahead of `buffer` records in one thread per usable core, at most grain's default
    16. The threads decode and augment; more threads than cores only switch between them
    (one core: 388 img/s with one thread, 339 with 2 or 16, the same transform run in a
    plain loop 409)."""
    threads = min(16, buffer, _usable_cores())
    return grain.ReadOptions(num_threads=threads, prefetch_buffer_size=buffer)


def per_process_batch_size(global_batch_size: int, process_count: int) -> int:
    if global_batch_size % process_count:
        raise ValueError(
            f"global_batch_size {global_batch_size} must be divisible by the number of "
            f"processes {process_count}"
        )
    return global_batch_size // process_count


def _mask_image(mask) -> Any:
    m = np.asarray(mask)
    if m.ndim == 3:  # [H, W, 1] (tfds Image masks)
        m = m[..., 0]
    return transforms.Image.fromarray(m.astype(np.uint8))


def _detection_targets(element, max_boxes: int, flip: bool, exact: bool = False) -> dict:
    """Padded ground truth of a detection record (the coco/2017 layout: ``objects`` with
    ``bbox`` (ymin, xmin, ymax, xmax) normalised, ``label`` and optionally ``is_crowd``):
    ``boxes`` [max_boxes, 4] xyxy normalised, ``labels`` [max_boxes] int32, ``box_valid`` and
    ``box_crowd`` [max_boxes] bool. Training drops boxes beyond max_boxes; evaluation
    (``exact``) refuses to, since a dropped box would change the mAP."""
    objects = element["objects"]
    yxyx = np.asarray(objects["bbox"], np.float32).reshape(-1, 4)
    if exact and len(yxyx) > max_boxes:
        raise ValueError(
            f"an evaluation image has {len(yxyx)} boxes, more than max_boxes={max_boxes}: "
            "raise config.detection.max_boxes"
        )
    yxyx = yxyx[:max_boxes]
    labels = np.asarray(objects["label"], np.int32).reshape(-1)[:max_boxes]
    crowd = np.asarray(objects.get("is_crowd", np.zeros(len(yxyx))), bool).reshape(-1)
    xyxy = yxyx[:, [1, 0, 3, 2]]
    if flip:
        xyxy = np.stack([1 - xyxy[:, 2], xyxy[:, 1], 1 - xyxy[:, 0], xyxy[:, 3]], -1)
    n = len(xyxy)
    out = _empty_detection_targets(max_boxes)
    out["boxes"][:n], out["labels"][:n], out["box_valid"][:n] = xyxy, labels, True
    out["box_crowd"][:n] = crowd[:n]
    return out


def _empty_detection_targets(max_boxes: int) -> dict:
    return {
        "boxes": np.zeros((max_boxes, 4), np.float32),
        "labels": np.zeros((max_boxes,), np.int32),
        "box_valid": np.zeros((max_boxes,), bool),
        "box_crowd": np.zeros((max_boxes,), bool),
    }


@dataclasses.dataclass
class _TrainTransform(grain.transforms.RandomMap):
    """Record -> augmented, normalised example (picklable for grain worker processes)."""

    task: str
    image_size: int
    mean: tuple
    std: tuple
    cfg: dict
    mask_key: tuple = ("mask", 0)  # feature name, offset added to the mask values
    max_boxes: int = 100  # detection: ground-truth rows per example
    image_dtype: str = "float32"  # IMAGE_DTYPES

    def __post_init__(self):
        ra = self.cfg.get("randaugment")
        fill = tuple(round(255 * m) for m in self.mean) if len(self.mean) == 3 else (128,) * 3
        interp = self.cfg["interpolation"]
        self._ra = (
            transforms.RandAugment(ra, fill, None if interp == "random" else interp) if ra else None
        )

    def random_map(self, element, rng: np.random.Generator):
        cfg, size = self.cfg, self.image_size
        image = element["image"]  # encoded bytes are decoded by the crop, once the box is known
        width, height = transforms.image_size(image)
        mask = _mask_image(element[self.mask_key[0]]) if self.task == "segmentation" else None
        if cfg.get("rrc", False):
            box = transforms.rrc_box(width, height, rng, cfg["scale"], cfg["ratio"])
            box = (box[0], box[1], box[0] + box[2], box[1] + box[3])
        else:
            box = (0, 0, width, height)
        interp = transforms.interpolation(cfg["interpolation"], rng)
        if cfg.get("resize_backend") == "opencv":
            img = transforms.opencv_crop_resize(image, box, size, interp, cfg["jpeg_draft"])
        elif cfg.get("jpeg_draft"):
            img = transforms.draft_crop_resize(image, box, size, interp)
        else:
            img = transforms.crop_resize(image, box, size, interp)
        if mask is not None:  # same crop, nearest neighbour so labels stay labels
            mask = transforms.crop_resize(mask, box, size, transforms.INTERPOLATIONS["nearest"])
        flip = cfg["hflip"] > 0 and rng.random() < cfg["hflip"]
        if flip:
            img = transforms.hflip(img)
            mask = transforms.hflip(mask) if mask is not None else None
        if self._ra is not None:
            img = self._ra(transforms.to_pil(img), rng)
        if len(self.mean) == 1:  # grayscale model input: 1 channel
            img = transforms.to_pil(img).convert("L")
        if self.image_dtype == "uint8":
            x = transforms.pixels(img)
        else:
            x = transforms.normalize(img, self.mean, self.std)
            if cfg.get("reprob", 0) > 0:
                x = transforms.random_erasing(x, rng, cfg["reprob"])
        out = {"image": x}
        if self.task == "classification":
            out["label"] = np.int32(element["label"])
        elif self.task == "segmentation":
            out["mask"] = np.asarray(mask, np.int32) + self.mask_key[1]
        elif self.task == "detection":
            out.update(_detection_targets(element, self.max_boxes, flip))
        return out


@dataclasses.dataclass
class _EvalTransform(grain.transforms.Map):
    """Record (or _PAD) -> deterministic eval example with a `valid` flag."""

    task: str
    image_size: int
    mean: tuple
    std: tuple
    crop_pct: float
    interpolation: str
    mask_key: tuple = ("mask", 0)  # feature name, offset added to the mask values
    crop_mode: str = "center"
    max_boxes: int = 100  # detection: ground-truth rows per example

    def map(self, element):
        size = self.image_size
        if "_pad" in element:  # padding example: counted nowhere
            out = {"image": np.zeros((size, size, len(self.mean)), np.float32)}
            if self.task == "classification":
                out["label"] = np.int32(0)
            elif self.task == "segmentation":
                out["mask"] = np.zeros((size, size), np.int32)
            elif self.task == "detection":
                out.update(_empty_detection_targets(self.max_boxes))
            out["valid"] = np.bool_(False)
            return out
        img = transforms.to_pil(element["image"])
        if self.task == "detection":  # the whole image, as in training: boxes stay valid
            img = transforms.crop_resize(
                img,
                (0, 0, img.width, img.height),
                size,
                transforms.interpolation(self.interpolation),
            )
            if len(self.mean) == 1:
                img = img.convert("L")
            out = {"image": transforms.normalize(img, self.mean, self.std)}
            out.update(_detection_targets(element, self.max_boxes, False, exact=True))
            out["valid"] = np.bool_(True)
            return out
        fill = tuple(round(255 * m) for m in self.mean) if len(self.mean) == 3 else 0
        img = transforms.resize_center_crop(
            img, size, self.crop_pct, self.interpolation, self.crop_mode, fill
        )
        if len(self.mean) == 1:  # grayscale model input: 1 channel
            img = img.convert("L")
        out = {"image": transforms.normalize(img, self.mean, self.std)}
        if self.task == "classification":
            out["label"] = np.int32(element["label"])
        elif self.task == "segmentation":
            mask = _mask_image(element[self.mask_key[0]])
            mask = transforms.resize_center_crop(mask, size, self.crop_pct, "nearest")
            mask = np.asarray(mask, np.int32)
            out["mask"] = mask + self.mask_key[1]
        out["valid"] = np.bool_(True)
        return out


def make_train_iterator(
    dataset: str,
    *,
    split: str = "train",
    global_batch_size: int,
    image_size: int,
    task: str = "classification",
    seed: int = 0,
    data_dir: str | None = None,
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    augment: dict | None = None,
    num_epochs: int | None = None,
    worker_count: int = 0,
    prefetch: int = 2,
    process_index: int | None = None,
    process_count: int | None = None,
    max_boxes: int = 100,
    image_dtype: str = "float32",
):
    """Iterator over this process's part of each global training batch (see module doc).

    Yields classification {"image" f32 [b,H,W,C], "label" i32 [b]}, mae {"image"},
    segmentation {"image", "mask" i32 [b,H,W]}, detection {"image", "boxes" f32 [b,M,4]
    xyxy normalised, "labels" i32 [b,M], "box_valid" and "box_crowd" (COCO's is_crowd) bool
    [b,M]} (M = max_boxes, extra boxes dropped; the image resized whole, optional hflip) with
    b = global_batch_size // process_count.
    `augment` overrides the task's defaults (keys: rrc, scale, ratio, hflip, interpolation,
    for classification randaugment ('rand-m9-mstd0.5') and reprob, for classification and
    mae jpeg_draft: reduced-size JPEG decoding, and resize_backend: 'pil' or 'opencv', see
    ``_AUGMENT_DEFAULTS``).
    ``image_dtype='uint8'`` yields "image" as uint8 pixels for the consumer to normalise
    with ``normalize_pixels(images, mean, std)`` (see ``IMAGE_DTYPES``).
    """
    cfg = _augment_config(task, augment)
    if image_dtype not in IMAGE_DTYPES:
        raise ValueError(f"image_dtype {image_dtype!r}: use one of {IMAGE_DTYPES}")
    if image_dtype == "uint8" and cfg.get("reprob", 0) > 0:
        raise ValueError(
            "random erasing (augment reprob) fills with N(0, 1) noise in normalised units, "
            "which uint8 pixels cannot hold: use image_dtype='float32' or reprob=0"
        )
    pi, pc = _processes(process_index, process_count)
    batch = per_process_batch_size(global_batch_size, pc)
    source = datasets.open_source(dataset, split, data_dir, encoded_images=True)
    if task == "segmentation":
        datasets.check_mask_feature(dataset, source)
    if worker_count > 0:
        _absl_flags_ready()
    return TrainStream(
        source,
        _TrainTransform(
            task,
            image_size,
            tuple(mean),
            tuple(std),
            cfg,
            datasets.mask_key(dataset),
            max_boxes,
            image_dtype,
        ),
        global_batch_size=global_batch_size,
        seed=seed,
        process_index=pi,
        process_count=pc,
        num_epochs=num_epochs,
        # record reads and augmentation run ahead in threads: `prefetch` batches, not grain's
        # default 500 records (sized for remote storage), to bound memory with large images
        read_options=_read_options(max(1, prefetch) * batch),
        worker_count=worker_count,
        prefetch=prefetch,
    )


_PAD = {"_pad": True}  # padding record (grain treats None as "filtered out")


class _Padded:
    """Source view: positions [0, num) map to records [start, end), the rest to _PAD."""

    def __init__(self, source, start, end, num):
        self.source, self.start, self.end, self.num = source, start, end, num

    def __len__(self):
        return self.num

    def __getitem__(self, i):
        j = self.start + i
        return self.source[j] if j < self.end else _PAD


class EvalIterable:
    """Re-iterable exact evaluation pipeline; len() is the number of batches per process."""

    def __init__(self, source, transform, batch, process_index, process_count, worker_count):
        n = len(source)
        per, extra = divmod(n, process_count)  # grain's even_split: the first `extra` get one more
        start = process_index * per + min(process_index, extra)
        end = start + per + (process_index < extra)
        self.num_batches = math.ceil(math.ceil(n / process_count) / batch)
        self.num_examples = end - start
        self._source = _Padded(source, start, end, self.num_batches * batch)
        self._transform, self._batch, self._workers = transform, batch, worker_count

    def __len__(self):
        return self.num_batches

    def __iter__(self):
        ds = grain.MapDataset.source(self._source).map(self._transform)
        # the eval transform runs in the read threads (PIL releases the GIL), 2 batches ahead
        ds = ds.to_iter_dataset(_read_options(2 * self._batch))
        it = ds.batch(self._batch)
        if self._workers > 0:
            _absl_flags_ready()
            it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=self._workers))
        return iter(it)


def make_eval_iterator(
    dataset: str,
    *,
    split: str = "test",
    global_batch_size: int,
    image_size: int,
    task: str = "classification",
    crop_pct: float | None = None,
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    data_dir: str | None = None,
    interpolation: str = "bilinear",
    crop_mode: str = "center",
    worker_count: int = 0,
    process_index: int | None = None,
    process_count: int | None = None,
    max_boxes: int = 100,
) -> EvalIterable:
    """Exact evaluation batches: every example of the split once over all processes.

    Each batch has global_batch_size // process_count rows and a bool "valid" [b]; padding
    rows are zeros with valid=False. The resize follows timm's eval transform:
    ``interpolation``, ``crop_pct`` (default 0.875 for classification/mae and 1.0, resize
    only, for segmentation) and ``crop_mode`` ('center' | 'squash' | 'border', see
    ``transforms.resize_center_crop``); ``jaxbones.data.settings.resolve_data_settings``
    gives them for a model or pretrained tag. Detection always
    resizes the whole image (padding rows have no boxes); an image with more than
    ``max_boxes`` boxes is an error, as dropping one would change the mAP.
    """
    if task not in TASKS:
        raise ValueError(f"task {task!r}: use one of {TASKS}")
    if crop_mode not in transforms.CROP_MODES:
        raise ValueError(f"crop_mode {crop_mode!r}: use one of {transforms.CROP_MODES}")
    if task == "segmentation" and crop_mode != "center":
        raise ValueError(f"crop_mode {crop_mode!r}: segmentation masks support only 'center'")
    transforms.interpolation(interpolation)  # an unknown name fails here, not in a worker
    if crop_pct is None:
        crop_pct = 1.0 if task == "segmentation" else 0.875
    pi, pc = _processes(process_index, process_count)
    batch = per_process_batch_size(global_batch_size, pc)
    source = datasets.open_source(dataset, split, data_dir, encoded_images=True)
    if task == "segmentation":
        datasets.check_mask_feature(dataset, source)
    tf = _EvalTransform(
        task,
        image_size,
        tuple(mean),
        tuple(std),
        crop_pct,
        interpolation,
        datasets.mask_key(dataset),
        crop_mode,
        max_boxes,
    )
    return EvalIterable(source, tf, batch, pi, pc, worker_count)
