"""MAE fine-tuning of ViT-B/16 on ImageNet-1k from an ``mae_pretrain`` checkpoint
(facebookresearch/mae FINETUNE.md): params-only restore of the encoder (the decoder is
dropped, the head and fc_norm are new), global average pooling + fc_norm, layer decay
0.65, drop path 0.1, AdamW lr 5e-4 x bs/256 (the paper's blr), wd 0.05, 5 warm-up of 100
epochs, mixup 0.8, cutmix 1.0, label smoothing 0.1, RandAugment, random erasing 0.25.

Command:   python -m experiments.mae_finetune --config.init_from=/tmp/jaxbones_mae_pretrain
Hardware:  estimated for 8x H200 (global batch 1024 = 128 per chip, bf16).
Fits:      v4-8, the smallest v4 slice (4 chips): 28.87 GiB of 32 GiB per chip at batch 1024
           (256 per chip; measured with scripts/aot.py; README, 'Does a recipe fit a TPU pod?').
Time:      an estimate, not a measured run: ~1.6 h for 100 epochs on 8x H200 =
           100 x 1,281,167 = 128M images / (8 x 2,765 img/s) = 5,800 s. Measured: 2,765 img/s
           on one H200 for the jaxbones vit_base_patch16_224 train step (bf16, batch 256,
           synthetic data; BENCHMARKS.md). Assumed: the same rate with global pooling +
           fc_norm and drop path (35.50 vs 35.68 forward GFLOPs), at batch 128 per chip,
           linear scaling to 8 chips and an input pipeline that keeps up; evaluation and
           checkpoints are not counted.
Result:    ViT-B 83.6% top-1 from the 1600-epoch pretraining (MAE paper Table 3).
Tiny (tests): see tests/test_experiments.py.
"""

from experiments.imagenet_base import deit_regularization, imagenet_config
from jaxbones.launch import main


def get_config():
    c = imagenet_config("vit_base_patch16_224", epochs=100.0, workdir="/tmp/jaxbones_mae_finetune")
    deit_regularization(c)
    c.model_kwargs.global_pool = "avg"
    c.model_kwargs.fc_norm = True
    c.model_kwargs.drop_path_rate = 0.1
    c.init_from = "/tmp/jaxbones_mae_pretrain"
    c.init_fresh = (r"^fc_norm/",)  # new with global pooling (MAE main_finetune.py), as the head
    c.optimizer.lr = 5e-4
    c.optimizer.base_batch_size = 256
    c.optimizer.b1 = 0.9
    c.optimizer.b2 = 0.999
    c.optimizer.layer_decay = 0.65
    c.optimizer.warmup_epochs = 5.0
    c.optimizer.end_lr_factor = 1e-6 / 5e-4
    return c


if __name__ == "__main__":
    main(get_config)
