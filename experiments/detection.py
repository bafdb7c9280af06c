"""Object detection on ``jaxbones.train`` (task 'detection'): FCOS (FPN + dense head) on any
backbone's ``features_only`` maps, or the per-token head on a ViT / MAE; the offline
``digits_det`` dataset on CPU by default, any tfds detection dataset by override; its
``detection_predictions`` evaluator draws predicted boxes next to the ground truth.

Command:   python -m experiments.detection
           python -m experiments.detection --config.model=vit_small_patch16_224 \\
               --config.image_size=64 --config.model_kwargs.patch_size=8 \\
               --config.init_from=<an MAE / ViT checkpoint>   # the token head
           python -m experiments.detection --config.dataset=coco/2017 \\
               --config.eval_split=validation --config.image_size=512 \\
               --config.detection.num_levels=3 --config.detection.max_boxes=100 \\
               --config.num_steps=90000 \\
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
           inputs should do better). tests/test_detection.py runs 40 steps of batch 8 (lr 2e-3,
           10 warmup steps) with a one-block-per-stage ResNet-18 and a one-conv, 64-wide
           head, evaluated on the first 100 test images (measured mAP@0.5 0.065, mAP 0.021;
           floor 0.04; an untrained head, at the focal prior,
           detects nothing above the 0.05 score threshold and scores 0), then evaluates its
           last checkpoint again on 2 processes: the same mAP.
Outputs:   {workdir}/detections.png at the end (config.evals.detections: per image, ground
           truth in green, crowd regions dashed, detections scoring >= 0.2 in red, labelled),
           plus the loop's metrics.jsonl, tb/, curves.png and checkpoints/.

Data: ``digits_det`` (``jaxbones.data``): 64x64 canvases with 1-4 of scikit-learn's 8x8
digits upscaled to 12-32 px at random positions, a box around each digit's ink and its class
(10 classes); 2000 train / 500 test canvases. Other datasets: any tfds dataset in the
``coco/2017`` layout (``objects`` with ``bbox`` (ymin, xmin, ymax, xmax) normalised and
``label``, optionally ``is_crowd``); the image is resized whole to ``image_size`` (boxes
stay normalised), boxes are padded to ``detection.max_boxes`` with a validity mask (training
drops extra boxes, evaluation needs them all: coco/2017 has up to 93). Crowd boxes are no
training target and pycocotools' ``iscrowd`` regions in evaluation.

Model: resnet18 ``features_only`` (random init) -> FCOS over its stride 4 / 8 / 16 / 32
maps (FPN width 128, two-conv towers), 32 px inputs (the 64 px canvases halved, digits 6-16
px). FCOS's size ranges ((4s, 8s] per stride s) put nearly every box on the stride-4 level;
centre sampling (radius 1.5 strides) gives each digit a few positive locations. Loss:
sigmoid focal (alpha 0.25, gamma 2) + 1 x L1 (normalised boxes) + 2 x GIoU + centre-ness
BCE. AdamW, cosine decay, batch 16, no flips (a mirrored digit is another digit or
none). Eval: class-wise NMS (IoU 0.6), 100 detections per image, COCO mAP by pycocotools over
every test image.
"""

from __future__ import annotations

import ml_collections

from jaxbones.launch import main
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
    # detections.png of the first 8 test images at the end (jaxbones.train.evaluators)
    c.evals.detections = ml_collections.ConfigDict(
        {"type": "detection_predictions", "num_images": 8, "score_threshold": 0.2}
    )
    c.log_every = 50
    c.best_metric = "map50"
    c.workdir = "/tmp/jaxbones_detection"
    return c


if __name__ == "__main__":
    main(get_config)
