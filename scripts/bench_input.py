"""Input-pipeline throughput: images/s per host for the ImageNet train and eval transforms.

    python -m scripts.bench_input [--num_images 384] [--workers 0 2] [--batch 32]
        [--image_size 224] [--source_size 500 375] [--repeats 3] [--compare 200] [--torch]

Builds (once, in a temp dir) a synthetic tfds ArrayRecord dataset of JPEG-encoded RGB images
(``--source_size``, default ImageNet's typical 500x375 and 375x500, quality 90), read
through the same `tfds.data_source` + grain path as imagenet2012, and times after one
warm-up batch:
  train rrc+flip        `make_train_iterator`: random resized crop to image_size + flip,
                        the torchvision-exact decode (full JPEG, crop, resize)
  train rrc+flip draft  the same with ``augment={"jpeg_draft": True}`` (reduced-size DCT
                        decoding where the crop keeps >= image_size pixels per side)
  ... opencv            the same with ``augment={"resize_backend": "opencv"}`` (the crop
                        resized by OpenCV, averaged over blocks where it shrinks)
  ... uint8             the same with ``image_dtype='uint8'``: pixels, normalised later by
                        the train step on the device (not timed here)
  ... draft opencv uint8
                        draft and opencv together, uint8 pixels (for large JPEGs, where
                        reduced decoding applies)
  train +ra+reprob      RandAugment rand-m9-mstd0.5 + random erasing 0.25
  eval R/S              `make_eval_iterator`: resize floor(S / 0.875), centre crop S
``--torch`` adds the same work in torchvision, read from the same JPEG bytes written once
as an ``ImageFolder`` tree and loaded by a ``DataLoader`` with the same batch and number of
workers: RandomResizedCrop + RandomHorizontalFlip (bilinear), timm's ``create_transform``
with the same RandAugment and random erasing, and Resize + CenterCrop for eval, each
followed by ToTensor + Normalize (float32 batches, as jaxbones yields).
The settings run interleaved, ``--repeats`` rounds (exact, torch, draft, ..., exact, torch,
draft, ...), so a change of machine load hits all of them; each row gives the median and
the best round, and a jaxbones row the median over rounds of its rate over that of the
torchvision setting doing the same work in the same round (``torch_counterpart``: the
draft, opencv and uint8 options against plain torchvision), as ``scripts.benchmark`` pairs
its rounds: a burst of load on the machine then spoils one pair, not the whole comparison.
Rows are appended to ``--out`` (default benchmarks.jsonl; BENCHMARKS.md renders them with
``python -m scripts.benchmark --render``). The run first waits (``--wait_idle`` seconds at
most) for the 1-minute load average to fall below the core count; rows that start above it
are not results (marked ``under_load``). The pipelines' own threads raise the load while
they run, so the load at the end is printed and recorded (``load_max``) but is not the
test. ``--cores N`` pins the benchmark and its worker processes to N cores (per-core rates:
grain's read threads would otherwise use every core).

``--compare N`` checks each fast option's output (draft, opencv) on the first N images
(seed i for image i) against the exact path's: the random draws (hence crop boxes and
flips) must be the same, and it reports how many crops were decoded reduced (per DCT
scale) and the pixel difference over the crops the option changed (for draft, those
decoded reduced; for opencv, every crop): mean absolute (grey levels 0..255), PSNR and the
largest difference.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import json
import math
import os
import statistics
import tempfile
import time

import numpy as np

from jaxbones import data
from jaxbones.data.synthetic import SyntheticJpeg
from scripts.benchmark import host_info, versions, wait_for_idle

TORCH = "(torchvision)"
OPENCV = {"resize_backend": "opencv"}
FAST_OPTIONS = {"draft": {"jpeg_draft": True}, "opencv": OPENCV}  # --compare
INPUT_FRAMEWORK = "input-pipeline"  # the rows' `framework` in benchmarks.jsonl
NAME_WIDTH = 36  # the printed table's first column: the longest setting name fits


def torch_counterpart(name: str) -> str | None:
    """The torchvision setting doing the same work as jaxbones setting `name` (the draft and
    uint8 options are other ways to the same crops), None for a torchvision setting."""
    if name.endswith(TORCH):
        return None
    base = name.removesuffix(" uint8").removesuffix(" opencv").removesuffix(" draft")
    return f"{base} {TORCH}"


def _time(it, batch: int, num_images: int) -> float:
    it = iter(it)
    for _ in range(2):  # warm-up: worker start, first reads, prefetch buffers filled
        next(it)
    n, start = 0, time.perf_counter()
    while n < num_images:
        try:
            next(it)
        except StopIteration:
            break
        n += batch
    return n / (time.perf_counter() - start)


def write_image_folder(data_dir: str, root: str) -> str:
    """The synthetic JPEGs as torchvision's ImageFolder tree (root/<label>/<index>.jpg),
    written once: into a temporary directory renamed to `root` when complete, so an
    interrupted run leaves no partial tree behind."""
    if os.path.isdir(root):
        return root
    src = data.open_source("synthetic_jpeg", "train", data_dir, encoded_images=True)
    tmp = tempfile.mkdtemp(prefix=".image_folder_", dir=os.path.dirname(root))
    for i in range(len(src)):
        rec = src[i]
        folder = os.path.join(tmp, f"{int(rec['label']):04d}")
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, f"{i:06d}.jpg"), "wb") as f:
            f.write(rec["image"])
    os.replace(tmp, root)
    return root


def torch_loaders(root: str, size: int, batch: int) -> dict:
    """Setting name -> (workers -> DataLoader iterable) for the torchvision counterparts."""
    import timm.data
    import torch
    import torchvision
    from torchvision import transforms as T

    from jaxbones.constants import IMAGENET_MEAN, IMAGENET_STD

    # one thread, as in each DataLoader worker: with workers=0 the transforms run in this
    # process, where torch's default thread pool only contends with the timing loop
    torch.set_num_threads(1)
    tail = [T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    bilinear = T.InterpolationMode.BILINEAR
    pipelines = {
        "train rrc+flip": T.Compose(
            [T.RandomResizedCrop(size, interpolation=bilinear), T.RandomHorizontalFlip(), *tail]
        ),
        "train +ra+reprob": timm.data.create_transform(
            size,
            is_training=True,
            interpolation="bilinear",
            auto_augment="rand-m9-mstd0.5",
            re_prob=0.25,
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
        ),
        f"eval {math.floor(size / 0.875)}/{size}": T.Compose(
            [T.Resize(math.floor(size / 0.875), interpolation=bilinear), T.CenterCrop(size), *tail]
        ),
    }

    def loader(transform):
        dataset = torchvision.datasets.ImageFolder(root, transform=transform)
        return lambda w: torch.utils.data.DataLoader(
            dataset, batch_size=batch, shuffle=True, num_workers=w, drop_last=True
        )

    return {name: loader(t) for name, t in pipelines.items()}


def compare_fast_option(data_dir: str, image_size: int, num: int, option: dict) -> dict:
    """A fast `option` (augment keys) against the exact path on the first `num` images
    (module doc)."""
    from jaxbones.data import pipeline, transforms

    src = data.open_source("synthetic_jpeg", "train", data_dir, encoded_images=True)
    cfg = pipeline._augment_config("classification", None)
    mean, std = (0.0, 0.0, 0.0), (1 / 255, 1 / 255, 1 / 255)  # outputs in grey levels
    exact = pipeline._TrainTransform("classification", image_size, mean, std, cfg)
    fast = pipeline._TrainTransform("classification", image_size, mean, std, {**cfg, **option})
    scales, same_draws, sq, ab, n_px, worst = collections.Counter(), 0, 0.0, 0.0, 0, 0.0
    for i in range(min(num, len(src))):
        rec = src[i]
        rngs = [np.random.default_rng(i) for _ in range(3)]
        a = exact.random_map(rec, rngs[0])["image"].astype(np.float64)
        b = fast.random_map(rec, rngs[1])["image"].astype(np.float64)
        same_draws += rngs[0].bit_generator.state == rngs[1].bit_generator.state
        width, height = transforms.image_size(rec["image"])
        left, top, w, h = transforms.rrc_box(width, height, rngs[2], cfg["scale"])
        scale = transforms.draft_scale((left, top, left + w, top + h), image_size)
        scale = scale if option.get("jpeg_draft") else 1
        scales[scale] += 1
        if scale > 1 or option.get("resize_backend", "pil") != "pil":
            d = np.abs(a - b)
            sq, ab, n_px, worst = (
                sq + (d**2).sum(),
                ab + d.sum(),
                n_px + d.size,
                max(worst, d.max()),
            )
    out = {
        "images": sum(scales.values()),
        "same_random_draws": same_draws,
        "dct_scales": dict(sorted(scales.items())),
    }
    if n_px:
        out.update(
            mean_abs=round(float(ab / n_px), 3),
            psnr_db=round(10 * math.log10(255**2 / (sq / n_px)), 2),
            max_abs=float(worst),
        )
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--num_images", type=int, default=384, help="images timed per setting")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    p.add_argument("--image_size", type=int, default=224)
    p.add_argument("--source_size", type=int, nargs=2, default=[500, 375], help="W H of JPEGs")
    p.add_argument("--repeats", type=int, default=1, help="interleaved rounds")
    p.add_argument("--compare", type=int, default=0, help="images for the fast options check")
    p.add_argument(
        "--settings", default="", help="comma-separated name prefixes to run (default all)"
    )
    p.add_argument("--data_dir", default=None, help="default: a temp dir")
    p.add_argument("--torch", action="store_true", help="also time torchvision's DataLoader")
    p.add_argument(
        "--cores", type=int, default=0, help="run on this many cores only (0: all; Linux)"
    )
    p.add_argument("--out", default="benchmarks.jsonl", help="JSON lines to append rows to")
    p.add_argument(
        "--wait_idle", type=float, default=180, help="seconds to wait for load < cores at most"
    )
    args = p.parse_args(argv)
    host = host_info()  # the machine's cores, before pinning
    if args.cores:  # inherited by worker processes: both pipelines get the same cores
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[: args.cores])
    data_dir = args.data_dir or tempfile.mkdtemp(prefix="bench_input_")
    SyntheticJpeg.SIZE = tuple(args.source_size)
    builder = SyntheticJpeg(data_dir=data_dir, file_format="array_record")
    if not builder.is_prepared():
        t = time.perf_counter()
        builder.download_and_prepare()
        print(f"built {SyntheticJpeg.NUM_IMAGES} JPEGs in {time.perf_counter() - t:.1f} s")
    size = args.image_size
    common = {"global_batch_size": args.batch, "image_size": size, "data_dir": data_dir}
    one = {"process_index": 0, "process_count": 1}

    def train(augment, image_dtype="float32"):
        return lambda w: data.make_train_iterator(
            "synthetic_jpeg",
            worker_count=w,
            augment=augment,
            image_dtype=image_dtype,
            **one,
            **common,
        )

    settings = {
        "train rrc+flip": train(None),
        "train rrc+flip uint8": train(None, "uint8"),
        "train rrc+flip draft": train({"jpeg_draft": True}),
        "train rrc+flip draft uint8": train({"jpeg_draft": True}, "uint8"),
        "train rrc+flip opencv": train(OPENCV),
        "train rrc+flip opencv uint8": train(OPENCV, "uint8"),
        "train rrc+flip draft opencv uint8": train({**OPENCV, "jpeg_draft": True}, "uint8"),
        "train +ra+reprob": train({"randaugment": "rand-m9-mstd0.5", "reprob": 0.25}),
        f"eval {math.floor(size / 0.875)}/{size}": lambda w: data.make_eval_iterator(
            "synthetic_jpeg", split="train", worker_count=w, **one, **common
        ),
    }
    if args.torch:
        root = write_image_folder(data_dir, os.path.join(data_dir, "image_folder"))
        loaders = torch_loaders(root, size, args.batch)
        settings = {  # each jaxbones setting followed by its torchvision counterpart
            key: make
            for name, jax_make in settings.items()
            for key, make in [(name, jax_make)]
            + ([(f"{name} {TORCH}", loaders[name])] if name in loaders else [])
        }
    if args.settings:
        wanted = tuple(s.strip() for s in args.settings.split(","))
        settings = {k: v for k, v in settings.items() if k.startswith(wanted)}
    cores = os.cpu_count()  # the load average counts the whole machine
    waited = wait_for_idle(cores, args.wait_idle)
    load0 = os.getloadavg()[0]
    print(
        f"source {args.source_size[0]}x{args.source_size[1]} JPEGs -> {size} px; load {load0:.2f};"
        f" on {len(os.sched_getaffinity(0))} of {cores} cores"
    )
    rates = collections.defaultdict(list)
    for _ in range(args.repeats):
        for name, make in settings.items():
            for w in args.workers:
                rates[name, w].append(_time(make(w), args.batch, args.num_images))
    load1 = os.getloadavg()[0]
    print(
        f"{'transform':<{NAME_WIDTH}} {'workers':>7} {'median':>8} {'best':>8} {'vs torch':>9}"
        f"  (images/s, {args.repeats} rounds)"
    )
    # The pipelines' own threads (grain's read threads, the workers) raise the load average
    # while they run, so the load at the start is the test for other jobs; the highest
    # sample is recorded as well.
    loaded = load0 > cores
    rows, pinned = [], len(os.sched_getaffinity(0))
    libraries = versions("grain", "pillow", "numpy", "torch", "torchvision")
    for (name, w), r in rates.items():
        theirs = rates.get((torch_counterpart(name), w))
        ratio = statistics.median(a / b for a, b in zip(r, theirs)) if theirs else None
        shown = f"{ratio:.2f}x" if ratio else ""
        print(f"{name:<{NAME_WIDTH}} {w:>7} {statistics.median(r):>8.1f} {max(r):>8.1f} {shown:>9}")
        rows.append(
            {
                "date": datetime.date.today().isoformat(),
                "device": "cpu:cpu",
                "framework": INPUT_FRAMEWORK,
                "model": f"synthetic_jpeg {args.source_size[0]}x{args.source_size[1]}",
                "mode": name,
                "dtype": None,
                "batch": args.batch,
                "img_size": size,
                "options": f"workers={w},cores={pinned}",
                "images_per_s": statistics.median(r),
                "best_images_per_s": max(r),
                "vs_torch": ratio,
                "rounds": args.repeats,
                "loadavg": [load0],
                "load_max": round(max(load0, load1), 2),
                "under_load": loaded,
                "host": host,
                "versions": libraries,
            }
        )
    print(
        f"load average {load0:.2f} at the start (after {waited:.0f} s waiting for it to fall "
        f"below the cores), {load1:.2f} at the end, on {cores} cores"
        + (" (LOADED: these rates are not results)" if loaded else "")
    )
    if args.out:
        with open(args.out, "a") as f:
            f.writelines(json.dumps(row) + "\n" for row in rows)
        print(f"appended {len(rows)} rows to {args.out}; BENCHMARKS.md: scripts.benchmark --render")
    if args.compare:
        for name, option in FAST_OPTIONS.items():
            print(f"{name} vs exact:", compare_fast_option(data_dir, size, args.compare, option))


if __name__ == "__main__":
    main()
