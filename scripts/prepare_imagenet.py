"""Prepare tfds datasets in ArrayRecord format for jaxbones' grain input pipeline.

ImageNet (ILSVRC2012) cannot be downloaded automatically: register at https://image-net.org,
download ILSVRC2012_img_train.tar (138 GiB) and ILSVRC2012_img_val.tar (6.3 GiB) and put
both into <data_dir>/downloads/manual/ (or pass --manual_dir). Then:

    python -m scripts.prepare_imagenet --data_dir ~/tensorflow_datasets

needs ~150 GB free besides the tar files and takes roughly 2-5 hours (one pass over the
archives: tfds re-encodes a few CMYK/PNG JPEGs, which needs TensorFlow:
`pip install tensorflow`). Any other tfds dataset that tfds can download:

    python -m scripts.prepare_imagenet --dataset oxford_iiit_pet --data_dir ...

The offline datasets (`digits`, `digits_seg`, `digits_det`, `fashion_mnist`) build themselves
on first use; `--dataset <name>` builds one ahead.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

# byte sizes of the official archives (image-net.org, ILSVRC2012)
IMAGENET_TARS = {
    "ILSVRC2012_img_train.tar": 147_897_477_120,
    "ILSVRC2012_img_val.tar": 6_744_924_160,
}
IMAGENET_OUTPUT_GB = 150  # ArrayRecord shards of the prepared dataset (train + validation)
IMAGENET_HOURS = "2-5"


def check_imagenet_tars(manual_dir: str, check_size: bool = True) -> list[str]:
    """Problems with the ILSVRC2012 archives in manual_dir (empty list: all good)."""
    problems = []
    for name, size in IMAGENET_TARS.items():
        path = os.path.join(manual_dir, name)
        if not os.path.isfile(path):
            problems.append(f"missing {path}")
        elif check_size and os.path.getsize(path) != size:
            problems.append(
                f"{path} has {os.path.getsize(path):,} bytes, expected {size:,} "
                "(incomplete download?)"
            )
    return problems


def _missing_tars_message(manual_dir: str, problems: list[str]) -> str:
    lines = "\n  ".join(problems)
    names = " and ".join(IMAGENET_TARS)
    return (
        f"ImageNet archives not ready:\n  {lines}\n"
        f"Download {names} from https://image-net.org/download-images.php (ILSVRC2012, "
        f"needs a free account) and place them in {manual_dir}\n"
        "(or pass --manual_dir DIR). tfds cannot download ImageNet itself."
    )


def _tensorflow_missing_message(dataset: str) -> str:
    return (
        f"Preparing {dataset} with tfds needs TensorFlow (tfds uses it to decode/re-encode "
        "images while building; reading the prepared ArrayRecord files does not). Install it "
        "for the preparation step: `pip install tensorflow` (CPU is enough), then rerun."
    )


def parse_args(argv=None):
    from jaxbones.data.datasets import default_data_dir

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--dataset", default="imagenet2012", help="tfds name (default imagenet2012)")
    p.add_argument("--data_dir", default=default_data_dir(), help="tfds data_dir")
    p.add_argument("--manual_dir", default=None, help="default: <data_dir>/downloads/manual")
    p.add_argument("--skip_size_check", action="store_true", help="accept other tar sizes")
    p.add_argument("--check_only", action="store_true", help="check the inputs, build nothing")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    data_dir = os.path.abspath(os.path.expanduser(args.data_dir))
    manual_dir = os.path.abspath(
        os.path.expanduser(args.manual_dir or os.path.join(data_dir, "downloads", "manual"))
    )
    from jaxbones.data.datasets import LOCAL_DATASETS

    if args.dataset in LOCAL_DATASETS:  # offline datasets (digits*, fashion_mnist)
        from jaxbones.data import ensure_local_dataset

        ensure_local_dataset(args.dataset, data_dir)
        print(f"{args.dataset} ready in {data_dir}")
        return 0
    if args.dataset == "imagenet2012":
        problems = check_imagenet_tars(manual_dir, check_size=not args.skip_size_check)
        if problems:
            print(_missing_tars_message(manual_dir, problems), file=sys.stderr)
            return 2
        print(
            f"Found the ILSVRC2012 archives in {manual_dir}.\nBuilding imagenet2012 "
            f"(ArrayRecord) into {data_dir}: needs ~{IMAGENET_OUTPUT_GB} GB free disk there, "
            f"expect {IMAGENET_HOURS} hours."
        )
    if args.check_only:
        return 0
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        print(_tensorflow_missing_message(args.dataset), file=sys.stderr)
        return 3
    import tensorflow_datasets as tfds

    start = time.time()
    builder = tfds.builder(args.dataset, data_dir=data_dir, file_format="array_record")
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=manual_dir)
    )
    splits = {k: v.num_examples for k, v in builder.info.splits.items()}
    print(f"{args.dataset} ready in {data_dir} ({time.time() - start:.0f} s): {splits}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
