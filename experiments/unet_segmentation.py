"""UNet semantic segmentation on ``jaxbones.train`` (task 'segmentation') + ``jaxbones.data``:
the offline ``digits_seg`` dataset on CPU by default, any tfds segmentation dataset by
override; writes a PNG of predicted masks next to the ground truth at the end.

Command:   python -m experiments.unet_segmentation
           python -m experiments.unet_segmentation --config.model=unetpp \\
               --config.model_kwargs.deep_supervision=true
           python -m experiments.unet_segmentation --config.dataset=oxford_iiit_pet \\
               --config.model=unet_resnet18 --config.image_size=128 --config.num_steps=5000 \\
               --config.augment.rrc=true --config.augment.hflip=0.5 \\
               --config.mean="(0.485,0.456,0.406)" --config.std="(0.229,0.224,0.225)" \\
               --config.data_dir=$TFDS_DATA_DIR
Hardware:  digits_seg: any CPU (measured on 2 cores shared with other jobs); no download
           (the digits ship with scikit-learn; the tfds dataset is built on first use).
Fits:      v4-8, the smallest v4 slice (4 chips): 0.02 GiB of 32 GiB per chip at batch 64
           (measured with scripts/aot.py; README, 'Does a recipe fit a TPU pod?').
Time:      digits_seg at the defaults (300 steps): 6 min wall, 3 min of CPU time, on 2 cores
           shared with other jobs (train step compile 25 s, 8.4 GFLOPs/step).
Result:    digits_seg at the defaults: test mean IoU 0.975 over the 11 classes (background
           + 10 digits), pixel accuracy 0.991 (measured). tests/test_unet.py runs 60 steps
           (measured 0.722 mean IoU, 0.905 pixel accuracy) and checks floors of 0.65 / 0.85.
Outputs:   {workdir}/predictions.png (rows: image, ground truth, prediction; the
           'predictions' evaluator), plus the loop's metrics.jsonl, tb/, curves.png (train
           loss, lr, eval mean IoU ...) and checkpoints/.

Data: ``digits_seg`` (``jaxbones.data``): scikit-learn's 8x8 digits, mask 0 (background) or
1 + digit class where the ink is >= 4/16, 11 classes, so the network must both find the
strokes and recognise the digit; 1437 train / 360 test. Images are resized (bilinear) and
masks (nearest) to ``image_size``. Other datasets: any tfds dataset whose mask feature
``jaxbones.data`` knows (``oxford_iiit_pet``: ``segmentation_mask`` 1..3 -> 3 classes 0..2);
declare others with ``jaxbones.data.register_segmentation_dataset(name, mask_feature,
num_classes, offset)`` (an undeclared one fails naming this call).

Model: a plain UNet with widths (32, 64, 128) (total stride 4), BatchNorm, up-convolutions
(at widths (16, 32, 64) the result depends on the initial draw: seed 0's stalls at a loss
plateau with a digit class unrecognised, 0.81-0.82 mean IoU after 300 steps, while seeds 1
and 2 train fast; at (32, 64, 128) seed 0 reaches loss 0.16 by step 100);
loss pixel cross-entropy + ``dice_weight`` x soft Dice, pixels equal to ``ignore_index`` count
nowhere; deep-supervision heads (UNet++ / UNet3+) average their losses, UNet3+'s CGM adds its
image-level loss. AdamW, cosine decay, batch 64.
"""

from __future__ import annotations

import ml_collections

from jaxbones.launch import main
from jaxbones.train.config import default_config


def get_config():
    c = default_config()
    c.task = "segmentation"
    c.model = "unet"
    c.model_kwargs.widths = (32, 64, 128)
    c.dataset = "digits_seg"
    c.image_size = 16  # 8x8 digits upsampled 2x (bilinear image, nearest mask)
    # no random crops / flips: on 8x8 digits a mirrored digit is another digit (or none) and a
    # crop of a few pixels distorts the strokes (measured at widths (16, 32, 64), 300 steps:
    # 0.60 mean IoU with crops + flips, cross-entropy only, eval crop 0.875; 0.82 without)
    c.augment.rrc = False
    c.augment.hflip = 0.0
    c.crop_pct = 1.0  # eval: the whole image resized, as in training
    c.mean = (0.5, 0.5, 0.5)
    c.std = (0.5, 0.5, 0.5)
    c.global_batch_size = 64
    c.num_steps = 300
    c.optimizer.name = "adamw"
    c.optimizer.lr = 3e-3
    c.optimizer.weight_decay = 1e-4
    c.optimizer.schedule = "cosine"
    c.dice_weight = 0.5  # loss = cross-entropy + dice_weight * soft Dice
    c.ignore_index = 255  # mask value that counts nowhere (void / borders)
    # predictions.png of the first 8 test images at the end (jaxbones.train.evaluators)
    c.evals.predictions = ml_collections.ConfigDict(
        {"type": "segmentation_predictions", "num_images": 8}
    )
    c.log_every = 50
    c.best_metric = "mean_iou"
    c.workdir = "/tmp/jaxbones_unet_segmentation"
    return c


if __name__ == "__main__":
    main(get_config)
