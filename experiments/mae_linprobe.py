"""MAE linear probing of a pretrained ViT-B/16 encoder on ImageNet-1k
(facebookresearch/mae LINPROBE.md): frozen encoder (cls token, eval mode), BatchNorm
without affine (eps 1e-6) + linear head, LARS lr 0.1 x bs/256, wd 0, 10 warm-up of 90
epochs, batch 16384, random-resized-crop + flip only.

Command:   python -m experiments.mae_linprobe --config.init_from=/tmp/jaxbones_mae_pretrain
Hardware:  estimated for 8x H200 (global batch 16384 = 2048 per chip; the encoder only runs
           forwards; bf16).
Fits:      v4-8, the smallest v4 slice (4 chips): 28.23 GiB of 32 GiB per chip at batch 16384
           (4096 per chip; measured with scripts/aot.py; README, 'Does a recipe fit a TPU pod?').
Time:      an estimate, not a measured run: ~40 min for 90 epochs on 8x H200 =
           90 x 1,281,167 = 115M images / (8 x 6,400 img/s) = 2,250 s. Measured: 6,400 img/s
           on one H200 for the jaxbones ViT-B/16 forward (inference, bf16, batch 256, synthetic
           data; 23.1% MFU; BENCHMARKS.md). Assumed: the BatchNorm + linear head and its LARS
           update cost little next to the encoder, the same rate at 2048 per chip, linear
           scaling and an input pipeline that keeps up (51k images/s); evaluation and
           checkpoints are not counted.
Result:    ViT-B 68.0% top-1 (MAE paper Table 9 / LINPROBE.md, 1600-epoch pretraining).
Tiny (tests): see tests/test_experiments.py.
"""

from jaxbones.launch import main
from jaxbones.train.config import default_config


def get_config():
    c = default_config()
    c.model = "vit_base_patch16_224"
    c.model_kwargs.global_pool = "token"
    c.task = "linprobe"
    c.init_from = "/tmp/jaxbones_mae_pretrain"
    c.optimizer.trainable = (r"^head",)  # backbone frozen: only head_norm stats + head move
    c.dataset = "imagenet2012"
    c.eval_split = "validation"
    c.image_size = 224
    c.augment.scale = (0.08, 1.0)
    c.augment.hflip = 0.5
    c.global_batch_size = 16384
    c.num_epochs = 90.0
    c.dtype = "bfloat16"
    c.optimizer.name = "lars"
    c.optimizer.lr = 0.1
    c.optimizer.base_batch_size = 256
    c.optimizer.weight_decay = 0.0
    c.optimizer.momentum = 0.9
    c.optimizer.warmup_epochs = 10.0
    c.log_every = 100
    c.evals.eval.every = 2000
    c.ckpt_every = 2000
    c.workdir = "/tmp/jaxbones_mae_linprobe"
    return c


if __name__ == "__main__":
    main(get_config)
