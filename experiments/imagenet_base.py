"""Shared ImageNet-1k settings of the recipes (not a recipe itself).

``imagenet_config(model, epochs, workdir)``: the data, schedule and logging settings every
ImageNet recipe has in common (tfds ``imagenet2012``, 224 px, random resized crop
(0.08, 1) + flip, global batch 1024, bf16, checkpoints every 2000 steps).
``deit_regularization(c)``: the DeiT/Swin/MAE-finetune training recipe on top (AdamW,
RandAugment rand-m9-mstd0.5-inc1, random erasing 0.25, mixup 0.8, cutmix 1.0, label
smoothing 0.1); each recipe then sets its own learning rate, warm-up and drop path.
"""

from jaxbones.train.config import default_config


def imagenet_config(model: str, *, epochs: float, workdir: str):
    c = default_config()
    c.model = model
    c.dataset = "imagenet2012"
    c.eval_split = "validation"
    c.image_size = 224
    c.augment.scale = (0.08, 1.0)
    c.augment.hflip = 0.5
    c.global_batch_size = 1024
    c.num_epochs = epochs
    c.dtype = "bfloat16"
    c.log_every = 100
    c.evals.eval.every = 5000
    c.ckpt_every = 2000
    c.workdir = workdir
    return c


def deit_regularization(c):
    c.augment.randaugment = "rand-m9-mstd0.5-inc1"
    c.augment.reprob = 0.25
    c.mixup_alpha = 0.8
    c.cutmix_alpha = 1.0
    c.label_smoothing = 0.1
    c.optimizer.name = "adamw"
    c.optimizer.weight_decay = 0.05
    return c
