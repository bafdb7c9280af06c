"""Top-1 / top-5 accuracy of a pretrained tag on a tfds split, as timm's validate.py.

    python -m scripts.validate --model resnet50.tv_in1k --data_dir ~/tensorflow_datasets
        [--dataset imagenet2012] [--split validation] [--batch_size 256] [--file ckpt.pth]
        [--results results.jsonl] [--img_size N --crop_pct F --interpolation bicubic
         --crop_mode center|squash|border] [--workers N]

The weights come from ``jaxbones.load_pretrained`` (``--file``: a local checkpoint in the tag's
format instead of its download); the eval transform (input size, mean/std, interpolation,
crop_pct, crop_mode) from the tag's pretrained config unless a flag sets it. Every example of
the split is counted exactly once: the eval pipeline pads the last batch with rows marked
invalid, which are dropped. The batch is split over this host's devices. images/s counts the
steady state (the first batch, which compiles, excluded). Results are printed and appended as
one JSON line to ``--results`` (tag, dataset, split, n, top1, top5, images/s, the data
settings, the published top-1, jaxbones version, device).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time

import numpy as np


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m scripts.validate", description=__doc__)
    p.add_argument("--model", required=True, help="pretrained tag or bare model name")
    p.add_argument("--file", default=None, help="local checkpoint in the tag's format")
    p.add_argument("--dataset", default="imagenet2012")
    p.add_argument("--split", default="validation")
    p.add_argument("--data_dir", default=None, help="tfds data dir (default $TFDS_DATA_DIR)")
    p.add_argument("--batch_size", type=int, default=256)
    p.add_argument("--workers", type=int, default=0, help="grain worker processes")
    p.add_argument("--results", default="", help="append the result as a JSON line here")
    p.add_argument("--img_size", type=int, default=-1)
    p.add_argument("--crop_pct", type=float, default=-1.0)
    p.add_argument("--interpolation", default="", choices=["", "bilinear", "bicubic", "nearest"])
    p.add_argument("--crop_mode", default="", choices=["", "center", "squash", "border"])
    return p.parse_args(argv)


def _check_classes(cfg, dataset: str, data_dir) -> None:
    from jaxbones.data import dataset_info

    n = dataset_info(dataset, data_dir)["num_classes"]
    if n is not None and n != cfg.num_classes:
        raise ValueError(
            f"{cfg.tag} predicts {cfg.num_classes} classes but {dataset} has {n}: its labels "
            "do not index the checkpoint's head. Validate on the dataset the tag was trained "
            "for, or fine-tune a new head first (experiments/finetune.py)."
        )


def validate(args, return_predictions: bool = False) -> dict:
    """Runs the evaluation of ``args`` (see ``parse_args``); returns the result dict."""
    import jax
    from jax.sharding import Mesh, NamedSharding
    from jax.sharding import PartitionSpec as P

    import jaxbones
    from jaxbones.data import make_eval_iterator, resolve_data_settings
    from jaxbones.data.settings import format_settings
    from jaxbones.registry import get_pretrained_cfg, model_fields

    cfg = get_pretrained_cfg(args.model)
    s = resolve_data_settings(
        pretrained=cfg.tag,
        image_size=args.img_size,
        crop_pct=args.crop_pct,
        interpolation=args.interpolation,
        crop_mode=args.crop_mode,
    )
    print(format_settings(s), flush=True)
    _check_classes(cfg, args.dataset, args.data_dir)
    overrides = {}
    if s["image_size"] != cfg.input_size[0] and "img_size" in model_fields(cfg.model):
        overrides["img_size"] = s["image_size"]  # position tables resampled at conversion
    t0 = time.perf_counter()
    model, variables = jaxbones.load_pretrained(cfg.tag, file=args.file, **overrides)
    print(f"loaded {cfg.tag} in {time.perf_counter() - t0:.1f}s", flush=True)

    devices = jax.local_devices()
    if args.batch_size % len(devices):
        raise ValueError(
            f"--batch_size {args.batch_size} must be divisible by the {len(devices)} local "
            f"devices; use {args.batch_size - args.batch_size % len(devices) or len(devices)}"
        )
    mesh = Mesh(np.asarray(devices), ("data",))
    rows = NamedSharding(mesh, P("data"))
    variables = jax.device_put(variables, NamedSharding(mesh, P()))
    forward = jax.jit(lambda v, x: model.apply(v, x, train=False), out_shardings=rows)

    ev = make_eval_iterator(
        args.dataset,
        split=args.split,
        global_batch_size=args.batch_size,
        image_size=s["image_size"],
        crop_pct=s["crop_pct"],
        mean=s["mean"],
        std=s["std"],
        interpolation=s["interpolation"],
        crop_mode=s["crop_mode"],
        data_dir=args.data_dir,
        worker_count=args.workers,
        process_index=0,
        process_count=1,
    )
    logits, labels, first = [], [], None
    t_start, n_warm = None, 0
    for i, batch in enumerate(ev):
        out = np.asarray(forward(variables, jax.device_put(batch["image"], rows)), np.float32)
        valid = np.asarray(batch["valid"], bool)
        logits.append(out[valid])
        labels.append(np.asarray(batch["label"])[valid])
        if i == 0:  # compiled on the first batch: the throughput starts after it
            first = batch["image"][valid]
            t_start, n_warm = time.perf_counter(), int(valid.sum())
        if (i + 1) % 50 == 0:
            print(f"batch {i + 1}/{len(ev)}", flush=True)
    elapsed = time.perf_counter() - t_start if t_start is not None else 0.0
    logits_all = np.concatenate(logits) if logits else np.zeros((0, cfg.num_classes))
    labels_all = np.concatenate(labels) if labels else np.zeros((0,), np.int64)
    n = int(labels_all.shape[0])
    k = min(5, logits_all.shape[-1])
    top5_hits = (np.argsort(-logits_all, -1)[:, :k] == labels_all[:, None]).any(-1)
    result = {
        "tag": cfg.tag,
        "file": str(args.file or cfg.source_name),
        "dataset": args.dataset,
        "split": args.split,
        "n": n,
        "top1": float(100 * np.mean(logits_all.argmax(-1) == labels_all)) if n else 0.0,
        "top5": float(100 * np.mean(top5_hits)) if n else 0.0,
        "published_top1": cfg.top1,
        "img_per_sec": round((n - n_warm) / elapsed, 1) if elapsed > 0 else None,
        "img_size": s["image_size"],
        "interpolation": s["interpolation"],
        "crop_pct": s["crop_pct"],
        "crop_mode": s["crop_mode"],
        "mean": list(s["mean"]),
        "std": list(s["std"]),
        "batch_size": args.batch_size,
        "jaxbones_version": jaxbones.__version__,
        "device": f"{len(devices)}x {devices[0].device_kind}",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    print(json.dumps(result), flush=True)
    if args.results:
        os.makedirs(os.path.dirname(os.path.abspath(args.results)), exist_ok=True)
        with open(args.results, "a") as f:
            f.write(json.dumps(result) + "\n")
    if return_predictions:
        result.update(logits=logits_all, labels=labels_all, images=first)
    return result


def main(argv=None, return_predictions: bool = False) -> dict:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    return validate(args, return_predictions)


if __name__ == "__main__":
    main()
