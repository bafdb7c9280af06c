"""Input-pipeline throughput: images/s per host for the ImageNet train and eval transforms.

    python -m scripts.bench_input [--num_images 384] [--workers 0 2] [--batch 32]

Builds (once, in a temp dir) a synthetic tfds ArrayRecord dataset of JPEG-encoded RGB images
of ImageNet's typical size (500x375 and 375x500, quality 90), read through the same
`tfds.data_source` + grain path as imagenet2012, and times `make_train_iterator` (random
resized crop 224, flip; optionally RandAugment rand-m9-mstd0.5 + random erasing 0.25) and
`make_eval_iterator` (resize 256, center crop 224) after one warm-up batch.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

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


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--num_images", type=int, default=384, help="images timed per setting")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    p.add_argument("--data_dir", default=None, help="default: a temp dir")
    args = p.parse_args(argv)
    data_dir = args.data_dir or tempfile.mkdtemp(prefix="bench_input_")
    builder = SyntheticJpeg(data_dir=data_dir, file_format="array_record")
    if not builder.is_prepared():
        t = time.perf_counter()
        builder.download_and_prepare()
        print(f"built {SyntheticJpeg.NUM_IMAGES} JPEGs in {time.perf_counter() - t:.1f} s")
    common = {"global_batch_size": args.batch, "image_size": 224, "data_dir": data_dir}
    settings = {
        "train rrc+flip": lambda w: data.make_train_iterator(
            "synthetic_jpeg", worker_count=w, process_index=0, process_count=1, **common
        ),
        "train +ra+reprob": lambda w: data.make_train_iterator(
            "synthetic_jpeg",
            worker_count=w,
            process_index=0,
            process_count=1,
            augment={"randaugment": "rand-m9-mstd0.5", "reprob": 0.25},
            **common,
        ),
        "eval 256/224": lambda w: data.make_eval_iterator(
            "synthetic_jpeg",
            split="train",
            worker_count=w,
            process_index=0,
            process_count=1,
            **common,
        ),
    }
    print(f"{'transform':<18} {'workers':>7} {'images/s':>9}  (cpus: {os.cpu_count()})")
    for name, make in settings.items():
        for w in args.workers:
            rate = _time(make(w), args.batch, args.num_images)
            print(f"{name:<18} {w:>7} {rate:>9.1f}")


if __name__ == "__main__":
    main()
