"""Object detection on ``jaxbones.train`` (task 'detection'): FCOS (FPN + dense head) on any
backbone's ``features_only`` maps, or the per-token head on a ViT / MAE; the offline
``digits_det`` dataset on CPU by default, any tfds detection dataset by override; writes a
PNG of predicted boxes next to the ground truth at the end.

Command:   python -m experiments.detection
           python -m experiments.detection --config.model=vit_small_patch16_224 \\
               --config.image_size=64 --config.model_kwargs.patch_size=8 \\
               --config.init_from=<an MAE / ViT checkpoint>   # the token head
           python -m experiments.detection --config.dataset=coco/2017 \\
               --config.eval_split=validation --config.image_size=512 \\
               --config.detection.num_levels=3 --config.num_steps=90000 \\
               --config.mean="(0.485,0.456,0.406)" --config.std="(0.229,0.224,0.225)" \\
               --config.data_dir=$TFDS_DATA_DIR
Hardware:  digits_det: any CPU (measured on 2 cores shared with other jobs); no download
           (the digits ship with scikit-learn; the tfds dataset is built on first use).
Fits:      v4-8, the smallest v4 slice (4 chips): 0.19 GiB of 32 GiB per chip at batch 16
           (measured with scripts/aot.py; README, 'Does a recipe fit a TPU pod?').
Time:      digits_det at the defaults (300 steps): 23 min wall, 5.1 min of CPU time, on 2
           cores shared with other jobs (load average ~11; train step compile 177 s wall,
           7.4 GFLOPs/step).
Result:    digits_det at the defaults: test mAP@0.5 0.392, mAP@[0.5:0.95] 0.227 over the 500
           test images (measured; the loss was still falling: a longer schedule or 64 px
           inputs should do better). tests/test_detection.py runs 60 steps of batch 8 with a
           one-block-per-stage ResNet-18, evaluated on the first 200 test images (measured
           mAP@0.5 0.080, mAP 0.028; floor 0.04;
           an untrained head, at the focal prior, detects nothing above the 0.05 score
           threshold and scores 0).
Outputs:   {workdir}/detections.png (per image: ground truth in green, detections with score
           >= png_score_threshold (0.2) in red, labelled), plus the loop's metrics.jsonl, tb/, curves.png and
           checkpoints/.

Data: ``digits_det`` (``jaxbones.data``): 64x64 canvases with 1-4 of scikit-learn's 8x8
digits upscaled to 12-32 px at random positions, a box around each digit's ink and its class
(10 classes); 2000 train / 500 test canvases. Other datasets: any tfds dataset in the
``coco/2017`` layout (``objects`` with ``bbox`` (ymin, xmin, ymax, xmax) normalised and
``label``); the image is resized whole to ``image_size`` (boxes stay normalised), boxes are
padded to ``detection.max_boxes`` with a validity mask.

Model: resnet18 ``features_only`` (random init) -> FCOS over its stride 4 / 8 / 16 / 32
maps (FPN width 128, two-conv towers), 32 px inputs (the 64 px canvases halved, digits 6-16
px). FCOS's size ranges ((4s, 8s] per stride s) put nearly every box on the stride-4 level;
centre sampling (radius 1.5 strides) gives each digit a few positive locations. Loss: sigmoid focal (alpha 0.25, gamma 2) + 1 x L1 (normalised boxes) + 2 x GIoU +
centre-ness BCE. AdamW, cosine decay, batch 32, no flips (a mirrored digit is another digit or
none). Eval: class-wise NMS (IoU 0.6), 100 detections per image, COCO mAP by pycocotools over
every test image.
"""

from __future__ import annotations

import functools
import os

import jax
import numpy as np

from jaxbones.launch import main as launch_main
from jaxbones.train.config import default_config


def get_config():
    c = default_config()
    c.task = "detection"
    c.model = "resnet18"
    c.dataset = "digits_det"
    c.image_size = 32  # the 64 px canvases halved: 4x fewer FLOPs on a CPU
    c.augment.hflip = 0.0
    c.mean = (0.5, 0.5, 0.5)
    c.std = (0.5, 0.5, 0.5)
    c.global_batch_size = 16
    c.num_steps = 300
    c.optimizer.name = "adamw"
    c.optimizer.lr = 1e-3
    c.optimizer.weight_decay = 1e-4
    c.optimizer.schedule = "cosine"
    c.optimizer.warmup_steps = 50
    c.optimizer.clip_norm = 1.0
    c.detection.max_boxes = 8  # digits_det has at most 4 per canvas
    c.detection.num_levels = 4  # strides 4, 8, 16, 32
    with c.unlocked():  # this recipe's own keys
        c.num_png_examples = 8
        c.png_score_threshold = 0.2  # focal-loss scores run low: 0.3 hides most hits
    c.log_every = 50
    c.best_metric = "map50"
    c.workdir = "/tmp/jaxbones_detection"
    return c


def save_detections_png(images, truth, found, path, mean, std, score_threshold=0.2, n=8):
    """A grid of images with ground-truth boxes (green) and detections (red, class:score);
    ``truth`` = {"boxes" [B, M, 4] xyxy pixels, "labels", "box_valid"}, ``found`` =
    ``jaxbones.train.detection.decode``'s dict."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    images = np.asarray(images[:n], np.float32)
    n = len(images)
    cols = min(n, 4)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i in range(n):
        ax = axes.ravel()[i]
        img = np.clip(images[i] * np.asarray(std) + np.asarray(mean), 0, 1)
        ax.imshow(img.squeeze(-1) if img.shape[-1] == 1 else img, cmap="gray")
        for b, lb, ok in zip(truth["boxes"][i], truth["labels"][i], truth["box_valid"][i]):
            if ok:
                ax.add_patch(Rectangle(b[:2], b[2] - b[0], b[3] - b[1], fill=False, ec="lime"))
                ax.text(b[0], b[3], str(int(lb)), color="lime", fontsize=7, va="top")
        for b, sc, cl, ok in zip(
            found["boxes"][i], found["scores"][i], found["classes"][i], found["valid"][i]
        ):
            if ok and sc >= score_threshold:
                ax.add_patch(Rectangle(b[:2], b[2] - b[0], b[3] - b[1], fill=False, ec="red"))
                ax.text(b[0], b[1], f"{int(cl)}:{sc:.2f}", color="red", fontsize=7, va="bottom")
    fig.suptitle("green: ground truth, red: detections (class:score)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def save_detections(result) -> str | None:
    """Detects on the first ``num_png_examples`` eval images with the final state and writes
    ``detections.png`` into the workdir; returns its path (None without a workdir)."""
    from jaxbones import data
    from jaxbones.train import detection as det

    config = result.config
    if not config.workdir or jax.process_index() != 0:
        return None
    ev = data.make_eval_iterator(
        config.dataset,
        split=config.eval_split,
        global_batch_size=config.num_png_examples,
        image_size=config.image_size,
        task="detection",
        mean=tuple(config.mean),
        std=tuple(config.std),
        data_dir=config.data_dir or None,
        process_index=0,
        process_count=1,
        max_boxes=config.detection.max_boxes,
    )
    batch = next(iter(ev))
    variables = jax.device_get(result.state.variables(ema=config.eval_ema))
    out = result.model.apply(variables, batch["image"], train=False)
    d = config.detection
    decode = jax.jit(
        functools.partial(
            det.decode,
            score_threshold=d.score_threshold,
            iou_threshold=d.nms_iou,
            pre_nms_top_k=d.pre_nms_top_k,
            max_detections=d.max_detections,
        )
    )
    found = jax.device_get(decode(out))
    size = config.image_size
    truth = {
        "boxes": np.asarray(batch["boxes"]) * size,
        "labels": np.asarray(batch["labels"]),
        "box_valid": np.asarray(batch["box_valid"]),
    }
    path = os.path.join(os.path.expanduser(config.workdir), "detections.png")
    return save_detections_png(
        batch["image"],
        truth,
        found,
        path,
        config.mean,
        config.std,
        score_threshold=config.png_score_threshold,
        n=config.num_png_examples,
    )


def main(argv=None):
    result = launch_main(get_config, argv)
    path = save_detections(result)
    if path:
        print(f"detections: {path}", flush=True)
        result.metrics["detections_png"] = path
    return result


if __name__ == "__main__":
    main()
