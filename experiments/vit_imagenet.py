"""ViT-B/16 on ImageNet-1k from scratch, the DeiT recipe (Touvron et al. 2021, Table 9).

Command:   python -m experiments.vit_imagenet --config.data_dir=$TFDS_DATA_DIR
Hardware:  estimated for 8x H200 (global batch 1024 = 128 per chip, bf16; FSDP optional:
           --config.mesh.data=1 --config.mesh.fsdp=-1). Measured: the train step at batch
           256 on one H200 uses 25.6 GB (BENCHMARKS.md), so 128 per chip fits.
Fits:      v4-8, the smallest v4 slice (4 chips): 26.11 GiB of 32 GiB per chip at batch 1024 (256
           per chip), data parallel; v4-32: 7.45 GiB (measured with scripts/aot.py; README, 'Does a
           recipe fit a TPU pod?').
Time:      an estimate, not a measured run: ~4.8 h for 300 epochs on 8x H200 =
           300 x 1,281,167 = 384M images / (8 x 2,765 img/s) = 17,400 s. Measured: 2,765 img/s
           on one H200 for the jaxbones ViT-B/16 train step (bf16, batch 256, synthetic data,
           cuDNN flash attention, the default there; 27.3 TFLOP per step, 29.8% MFU;
           BENCHMARKS.md). Assumed: linear scaling to 8 chips,
           the same per-chip rate at batch 128 and an input pipeline that keeps up (18.6k
           augmented images/s); evaluation and checkpoints are not counted.
Result:    DeiT-B 81.8% top-1 (DeiT paper Table 7), with RandAugment, mixup 0.8, cutmix
           1.0, label smoothing 0.1, random erasing 0.25, drop path 0.1, AdamW 5e-4 x bs/512.
Other data: --config.dataset=<any tfds classification dataset>.
Scanned blocks (faster compile at depth): --config.model_kwargs.scan=True.
Tiny (tests): --config.model_kwargs.depth=2 --config.model_kwargs.embed_dim=32
           --config.model_kwargs.num_heads=2 --config.model_kwargs.patch_size=8
           --config.image_size=32 --config.dataset=digits --config.num_steps=2
"""

from experiments.imagenet_base import deit_regularization, imagenet_config
from jaxbones.launch import main


def get_config():
    c = imagenet_config("vit_base_patch16_224", epochs=300.0, workdir="/tmp/jaxbones_vit_imagenet")
    deit_regularization(c)
    c.model_kwargs.drop_path_rate = 0.1
    # mean/std (Inception's 0.5) and crop_pct 0.9 come from the registry entry, as timm's
    # vit_* configs; the eval resize is bicubic as in DeiT's main.py (interpolation=3)
    c.interpolation = "bicubic"
    c.optimizer.lr = 5e-4  # per 512 images (DeiT)
    c.optimizer.base_batch_size = 512
    c.optimizer.warmup_epochs = 5.0
    c.optimizer.end_lr_factor = 1e-5 / 5e-4
    return c


if __name__ == "__main__":
    main(get_config)
