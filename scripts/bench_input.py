"""Input-pipeline throughput: images/s per host for the ImageNet train and eval transforms.

    python -m scripts.bench_input [--num_images 384] [--workers 0 2] [--batch 32]
        [--image_size 224] [--source_size 500 375] [--repeats 3] [--compare 200]

Builds (once, in a temp dir) a synthetic tfds ArrayRecord dataset of JPEG-encoded RGB images
(``--source_size``, default ImageNet's typical 500x375 and 375x500, quality 90), read
through the same `tfds.data_source` + grain path as imagenet2012, and times after one
warm-up batch:
  train rrc+flip        `make_train_iterator`: random resized crop to image_size + flip,
                        the torchvision-exact decode (full JPEG, crop, resize)
  train rrc+flip draft  the same with ``augment={"jpeg_draft": True}`` (reduced-size DCT
                        decoding where the crop keeps >= image_size pixels per side)
  train +ra+reprob      RandAugment rand-m9-mstd0.5 + random erasing 0.25
  eval R/S              `make_eval_iterator`: resize floor(S / 0.875), centre crop S
The settings run interleaved, ``--repeats`` rounds (exact, draft, ..., exact, draft, ...),
so a change of machine load hits all of them; each row gives the best and the median
round. The 1-minute load average is printed before and after: rows measured while it
exceeded the core count are not results.

``--compare N`` checks the draft option's output on the first N images (seed i for image
i) against the exact path's: the random draws (hence crop boxes and flips) must be the
same, and it reports how many crops were decoded reduced (per DCT scale) and the pixel
difference over those: mean absolute (grey levels 0..255) and PSNR.
"""

from __future__ import annotations

import argparse
import collections
import math
import os
import statistics
import tempfile
import time

import numpy as np

from jaxbones import data
from jaxbones.data.synthetic import SyntheticJpeg


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


def compare_draft(data_dir: str, image_size: int, num: int) -> dict:
    """The draft option against the exact path on the first `num` images (module doc)."""
    from jaxbones.data import pipeline, transforms

    src = data.open_source("synthetic_jpeg", "train", data_dir, encoded_images=True)
    cfg = pipeline._augment_config("classification", None)
    mean, std = (0.0, 0.0, 0.0), (1 / 255, 1 / 255, 1 / 255)  # outputs in grey levels
    exact = pipeline._TrainTransform("classification", image_size, mean, std, cfg)
    fast = pipeline._TrainTransform(
        "classification", image_size, mean, std, {**cfg, "jpeg_draft": True}
    )
    scales, same_draws, sq, ab, n_px, worst = collections.Counter(), 0, 0.0, 0.0, 0, 0.0
    for i in range(min(num, len(src))):
        rec = src[i]
        rngs = [np.random.default_rng(i) for _ in range(3)]
        a = exact.random_map(rec, rngs[0])["image"].astype(np.float64)
        b = fast.random_map(rec, rngs[1])["image"].astype(np.float64)
        same_draws += rngs[0].bit_generator.state == rngs[1].bit_generator.state
        img = transforms.to_pil(rec["image"])
        left, top, w, h = transforms.rrc_box(img.width, img.height, rngs[2], cfg["scale"])
        scale = transforms.draft_scale((left, top, left + w, top + h), image_size)
        scales[scale] += 1
        if scale > 1:
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
    p.add_argument("--compare", type=int, default=0, help="images for the draft check")
    p.add_argument(
        "--settings", default="", help="comma-separated name prefixes to run (default all)"
    )
    p.add_argument("--data_dir", default=None, help="default: a temp dir")
    args = p.parse_args(argv)
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

    def train(augment):
        return lambda w: data.make_train_iterator(
            "synthetic_jpeg", worker_count=w, augment=augment, **one, **common
        )

    settings = {
        "train rrc+flip": train(None),
        "train rrc+flip draft": train({"jpeg_draft": True}),
        "train +ra+reprob": train({"randaugment": "rand-m9-mstd0.5", "reprob": 0.25}),
        f"eval {math.floor(size / 0.875)}/{size}": lambda w: data.make_eval_iterator(
            "synthetic_jpeg", split="train", worker_count=w, **one, **common
        ),
    }
    if args.settings:
        wanted = tuple(s.strip() for s in args.settings.split(","))
        settings = {k: v for k, v in settings.items() if k.startswith(wanted)}
    cores = os.cpu_count()
    load0 = os.getloadavg()[0]
    print(
        f"source {args.source_size[0]}x{args.source_size[1]} JPEGs -> {size} px; load {load0:.2f}"
    )
    rates = collections.defaultdict(list)
    for _ in range(args.repeats):
        for name, make in settings.items():
            for w in args.workers:
                rates[name, w].append(_time(make(w), args.batch, args.num_images))
    load1 = os.getloadavg()[0]
    print(
        f"{'transform':<22} {'workers':>7} {'median':>8} {'images/s':>9}  (best of {args.repeats})"
    )
    for (name, w), r in rates.items():
        print(f"{name:<22} {w:>7} {statistics.median(r):>8.1f} {max(r):>9.1f}")
    loaded = max(load0, load1) > cores
    print(
        f"load average {load0:.2f} -> {load1:.2f} on {cores} cores"
        + (" (LOADED: these rates are not results)" if loaded else "")
    )
    if args.compare:
        print("draft vs exact:", compare_draft(data_dir, size, args.compare))


if __name__ == "__main__":
    main()
