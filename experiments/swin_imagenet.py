"""Swin-T on ImageNet-1k (Liu et al. 2021, Section 4.1 / microsoft/Swin-Transformer config).

Command:   python -m experiments.swin_imagenet --config.data_dir=$TFDS_DATA_DIR
Hardware:  estimated for 8x H200 (global batch 1024 = 128 per chip, bf16).
Fits:      v4-8, the smallest v4 slice (4 chips): 27.37 GiB of 32 GiB per chip at batch 1024
           (256 per chip; measured with scripts/aot.py; README, 'Does a recipe fit a TPU pod?').
Time:      an estimate from FLOPs, nothing of Swin measured: ~1.5 h for 300 epochs on 8x H200 =
           3 x 9.42 GFLOP per image (forward FLOPs from the README model table; a train step
           ~3x the forward) x 300 x 1,281,167 images = 1.09e19 FLOP / (8 chips x 989 TFLOP/s
           bf16 peak x 25% MFU) = 5,500 s. Assumed: the 25% MFU (the measured ViT-B/16 train
           step reaches 29.8% on one H200 and MAE ViT-L 20.5%; Swin's window partitions and
           shifts may reach less), linear scaling and an input pipeline that keeps up; evaluation and
           checkpoints are not counted.
Result:    Swin-T 81.3% top-1 (paper Table 1a): AdamW 1e-3 x bs/1024, wd 0.05, 20 warm-up
           epochs, cosine, gradient clipping 5.0, drop path 0.2, RandAugment, mixup 0.8,
           cutmix 1.0, label smoothing 0.1, random erasing 0.25.
Other data: --config.dataset=<any tfds classification dataset>.
Tiny (tests): --config.model_kwargs.embed_dim=16 --config.model_kwargs.depths=(1,1)
           --config.model_kwargs.num_heads=(1,2) --config.image_size=32 --config.num_steps=2
           (Swin's field names: jaxbones.models.swin.SwinTransformer)
"""

from experiments.imagenet_base import deit_regularization, imagenet_config
from jaxbones.launch import main


def get_config():
    c = imagenet_config(
        "swin_tiny_patch4_window7_224", epochs=300.0, workdir="/tmp/jaxbones_swin_imagenet"
    )
    deit_regularization(c)
    c.model_kwargs.drop_path_rate = 0.2
    # crop_pct 0.9 comes from the registry entry (timm's swin config); the eval resize is
    # bicubic as microsoft/Swin-Transformer's config (DATA.INTERPOLATION)
    c.interpolation = "bicubic"
    c.optimizer.lr = 1e-3
    c.optimizer.base_batch_size = 1024
    c.optimizer.warmup_epochs = 20.0
    c.optimizer.end_lr_factor = 1e-5 / 1e-3
    c.optimizer.clip_norm = 5.0
    return c


if __name__ == "__main__":
    main(get_config)
