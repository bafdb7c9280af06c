"""ViT-B/16 on ImageNet-1k from scratch, the DeiT recipe (Touvron et al. 2021, Table 9).

Command:   python -m experiments.vit_imagenet --config.data_dir=$TFDS_DATA_DIR
Hardware:  a TPU v4-32 or 16x H100 (global batch 1024, bf16, FSDP optional:
           --config.sharding=fsdp); one 8x H100 host fits with --config.accum_steps=2.
Time:      ~2.5 days for 300 epochs on 8x H100.
Result:    DeiT-B 81.8% top-1 (DeiT paper Table 7), with RandAugment, mixup 0.8, cutmix
           1.0, label smoothing 0.1, random erasing 0.25, drop path 0.1, AdamW 5e-4 x bs/512.
Other data: --config.dataset=<any tfds classification dataset>.
Scanned blocks (faster compile at depth): --config.model_kwargs.scan=True.
Tiny (tests): --config.model_kwargs.depth=2 --config.model_kwargs.embed_dim=32
           --config.model_kwargs.num_heads=2 --config.model_kwargs.patch_size=8
           --config.image_size=32 --config.dataset=digits --config.num_steps=2
"""

from jaxbones.launch import main
from jaxbones.train.config import default_config


def get_config():
    c = default_config()
    c.model = "vit_base_patch16_224"
    c.model_kwargs.drop_path_rate = 0.1
    c.dataset = "imagenet2012"
    c.eval_split = "validation"
    c.image_size = 224
    c.mean = (0.5, 0.5, 0.5)  # timm's vit_*: Inception normalisation
    c.std = (0.5, 0.5, 0.5)
    c.crop_pct = 0.9
    c.augment.scale = (0.08, 1.0)
    c.augment.hflip = 0.5
    c.augment.randaugment = "rand-m9-mstd0.5-inc1"
    c.augment.reprob = 0.25
    c.global_batch_size = 1024
    c.num_epochs = 300.0
    c.dtype = "bfloat16"
    c.optimizer.name = "adamw"
    c.optimizer.lr = 5e-4  # per 512 images (DeiT)
    c.optimizer.base_batch_size = 512
    c.optimizer.weight_decay = 0.05
    c.optimizer.warmup_epochs = 5.0
    c.optimizer.end_lr_factor = 1e-5 / 5e-4
    c.mixup_alpha = 0.8
    c.cutmix_alpha = 1.0
    c.label_smoothing = 0.1
    c.log_every = 100
    c.eval_every = 5000
    c.ckpt_every = 2000
    c.workdir = "/tmp/jaxbones_vit_imagenet"
    return c


if __name__ == "__main__":
    main(get_config)
