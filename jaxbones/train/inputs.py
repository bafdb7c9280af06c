"""Input iterators for the loop: ``jaxbones.data`` pipelines or in-memory arrays.

``ArrayIterator(arrays, global_batch_size, seed, process_index, process_count)`` yields this
process's part of each global batch from in-memory numpy arrays, reshuffled every epoch
with a seed-derived permutation, and has ``get_state`` / ``set_state`` (a dict with the
position), so a resumed run sees the same batches. ``ArrayEvalIterable`` is the single-pass
eval counterpart (padded last batch, ``valid`` mask). ``synthetic(...)``: random images
whose labels come from a fixed random linear map (learnable; for tests and benchmarks).
``make_iterators(config)``: (train_iter, eval_iterable, info) for a config; image size,
normalisation and the eval resize come from ``jaxbones.train.pretrained.data_settings``
(the run's values, else the pretrained tag's, else the registry entry's);
``register_in_memory_dataset(name, make)`` lets a recipe provide a dataset of its own under
``config.dataset`` (``make(config)`` returns the same triple). ``batch_shapes(config)``: the
shapes and dtypes of one global train batch of the config's task, without reading data.
"""

from __future__ import annotations

import jax
import numpy as np


class ArrayIterator:
    def __init__(
        self,
        arrays: dict,
        global_batch_size: int,
        seed: int = 0,
        process_index: int | None = None,
        process_count: int | None = None,
    ):
        self.arrays = {k: np.asarray(v) for k, v in arrays.items()}
        self.n = len(next(iter(self.arrays.values())))
        self.gbs = global_batch_size
        self.seed = seed
        self.pi = jax.process_index() if process_index is None else process_index
        self.pc = jax.process_count() if process_count is None else process_count
        self.local = global_batch_size // self.pc
        self.pos = 0  # global batches yielded so far

    def get_state(self):
        return {"pos": self.pos, "seed": self.seed}

    def set_state(self, state):
        self.pos = int(state["pos"])

    def __iter__(self):
        return self

    def __next__(self):
        per_epoch = self.n // self.gbs
        epoch, i = divmod(self.pos, per_epoch)
        perm = np.random.default_rng([self.seed, epoch]).permutation(self.n)
        idx = perm[i * self.gbs : (i + 1) * self.gbs]
        idx = idx[self.pi * self.local : (self.pi + 1) * self.local]
        self.pos += 1
        return {k: v[idx] for k, v in self.arrays.items()}


class ArrayEvalIterable:
    def __init__(self, arrays, global_batch_size, process_index=None, process_count=None):
        self.arrays = {k: np.asarray(v) for k, v in arrays.items()}
        self.n = len(next(iter(self.arrays.values())))
        self.gbs = global_batch_size
        self.pi = jax.process_index() if process_index is None else process_index
        self.pc = jax.process_count() if process_count is None else process_count

    def __iter__(self):
        local = self.gbs // self.pc
        for start in range(0, self.n, self.gbs):
            idx = np.arange(start, start + self.gbs)
            idx = idx[self.pi * local : (self.pi + 1) * local]
            valid = idx < self.n
            idx = np.where(valid, idx, 0)
            batch = {k: v[idx] for k, v in self.arrays.items()}
            batch["valid"] = valid
            yield batch


def synthetic(
    n: int,
    image_size: int,
    num_classes: int,
    seed: int = 0,
    channels: int = 3,
    smooth: bool = False,
):
    """Random images and labels = argmax of a fixed random linear map of the 2x2-pooled image.

    ``smooth`` (used for MAE): 4x4 noise bilinearly upsampled + a little pixel noise + a
    dataset mean of 1, so masked patches are predictable and the loss can fall.
    """
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, image_size, image_size, channels)).astype(np.float32)
    if smooth:
        low = rng.standard_normal((n, 4, 4, channels)).astype(np.float32)
        x = np.asarray(jax.image.resize(low, (n, image_size, image_size, channels), "bilinear"))
        x = (x + 1.0 + 0.1 * rng.standard_normal(x.shape)).astype(np.float32)
    w = np.random.default_rng(1234).standard_normal((channels * 4, num_classes))
    pooled = x.reshape(n, 2, image_size // 2, 2, image_size // 2, channels).mean((2, 4))
    y = np.argmax(pooled.reshape(n, -1) @ w, -1).astype(np.int32)
    return {"image": x, "label": y}


IN_MEMORY_DATASETS: dict = {}


def batch_shapes(config, channels: int = 3) -> dict:
    """``{key: jax.ShapeDtypeStruct}`` of one global train batch of ``config`` (resolved:
    ``image_size`` set), as ``jaxbones.data.make_train_iterator`` and the in-memory datasets
    yield it for the task: image [B, S, S, C] float32 (uint8 with ``image_dtype='uint8'``
    and a tfds dataset); classification (and its variants) label int32 [B]; segmentation
    mask int32 [B, S, S]; detection boxes float32 [B, M, 4], labels int32 [B, M], box_valid
    bool [B, M] (M = ``detection.max_boxes``); clip text int32 [B, context_length]."""
    from jaxbones.train.tasks import Classification, get_task

    b, s = config.global_batch_size, config.image_size
    in_memory = config.dataset.startswith("synthetic") or config.dataset in IN_MEMORY_DATASETS
    pixels = config.image_dtype == "uint8" and not in_memory
    out = {"image": ((b, s, s, channels), np.uint8 if pixels else np.float32)}
    if isinstance(get_task(config.task), Classification):
        out["label"] = ((b,), np.int32)
    elif config.task == "segmentation":
        out["mask"] = ((b, s, s), np.int32)
    elif config.task == "detection":
        m = config.detection.max_boxes
        out.update(boxes=((b, m, 4), np.float32), labels=((b, m), np.int32))
        out["box_valid"] = ((b, m), np.bool_)
    elif config.task == "clip":
        from jaxbones.text.tokenizer import CONTEXT_LENGTH

        out["text"] = ((b, CONTEXT_LENGTH), np.int32)
    elif config.task != "mae":
        raise ValueError(f"no batch layout known for task {config.task!r}")
    return {k: jax.ShapeDtypeStruct(shape, dtype) for k, (shape, dtype) in out.items()}


def register_in_memory_dataset(name: str, make) -> None:
    """``config.dataset=name`` reads ``make(config) -> (train_iter, eval_iterable, info)``
    (info: ``num_classes``, ``splits`` {split: examples}); for recipes whose data is built in
    memory (CLIP's captioned digits)."""
    IN_MEMORY_DATASETS[name] = make


def make_iterators(config, num_classes_hint: int = 10):
    """(train_iter, eval_iterable, info) for ``config`` (see the module docstring)."""
    if config.dataset in IN_MEMORY_DATASETS:
        return IN_MEMORY_DATASETS[config.dataset](config)
    from jaxbones.train.pretrained import data_settings

    settings = data_settings(config)
    size = settings["image_size"]
    gbs = config.global_batch_size
    ebs = config.eval_batch_size if config.eval_batch_size > 0 else gbs
    if config.dataset.startswith("synthetic"):
        k = config.num_classes if config.num_classes > 0 else num_classes_hint
        n = config.synthetic_size
        smooth = config.task == "mae"
        tr = synthetic(n, size, k, seed=config.seed, smooth=smooth)
        te = synthetic(max(n // 4, ebs), size, k, seed=config.seed + 1, smooth=smooth)
        if config.task == "mae":
            tr.pop("label"), te.pop("label")
        info = {"num_classes": k, "splits": {"train": n, "test": len(te["image"])}}
        return ArrayIterator(tr, gbs, seed=config.seed), ArrayEvalIterable(te, ebs), info
    from jaxbones import data

    data_dir = config.data_dir or None
    info = data.dataset_info(config.dataset, data_dir=data_dir)
    from jaxbones.train.tasks import Classification, get_task

    # classification variants (linprobe, classification_frozen) read classification batches
    is_cls = isinstance(get_task(config.task), Classification)
    task = "classification" if is_cls else config.task
    common = {
        "image_size": size,
        "task": task,
        "data_dir": data_dir,
        "mean": settings["mean"],
        "std": settings["std"],
    }
    if task == "detection":
        common["max_boxes"] = config.detection.max_boxes
    train_iter = data.make_train_iterator(
        config.dataset,
        split=config.train_split,
        global_batch_size=gbs,
        seed=config.seed,
        augment=config.augment.to_dict() or None,
        worker_count=config.worker_count,
        image_dtype=config.image_dtype,
        **common,
    )
    eval_iter = make_eval_iterable(config, config.eval_split) if config.eval_split else None
    return train_iter, eval_iter, info


def make_eval_iterable(config, split: str):
    """The exact eval pipeline of ``split`` of ``config.dataset`` (evaluators reading another
    split than ``config.eval_split``)."""
    if config.dataset.startswith("synthetic"):
        raise ValueError(
            f"the synthetic dataset has one eval split (config.eval_split), not {split!r}"
        )
    from jaxbones import data
    from jaxbones.train.pretrained import data_settings
    from jaxbones.train.tasks import Classification, get_task

    settings = data_settings(config)
    is_cls = isinstance(get_task(config.task), Classification)
    ebs = config.eval_batch_size if config.eval_batch_size > 0 else config.global_batch_size
    extra = {"max_boxes": config.detection.max_boxes} if config.task == "detection" else {}
    return data.make_eval_iterator(
        config.dataset,
        split=split,
        global_batch_size=ebs,
        image_size=settings["image_size"],
        task="classification" if is_cls else config.task,
        data_dir=config.data_dir or None,
        mean=settings["mean"],
        std=settings["std"],
        crop_pct=settings["crop_pct"],
        interpolation=settings["interpolation"],
        crop_mode=settings["crop_mode"],
        **extra,
    )
