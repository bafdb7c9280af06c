"""MAE pretraining of ViT-B/16 on ImageNet-1k (He et al. 2022; facebookresearch/mae
PRETRAIN.md): mask ratio 0.75, normalised-pixel loss, AdamW (0.9, 0.95), wd 0.05,
lr 1.5e-4 x bs/256, 40 warm-up epochs, cosine, random-resized-crop (0.2, 1) + flip only.

Command:   python -m experiments.mae_pretrain --config.data_dir=$TFDS_DATA_DIR
Hardware:  estimated for 8x H200 (the paper's global batch 4096 = 512 per chip, bf16; the
           memory at that batch is not measured: --config.accum_steps=k keeps the same
           effective batch in k smaller steps).
Fits:      v4-8, the smallest v4 slice (4 chips): MAE-B at batch 4096 (1024 per chip), data
           parallel, 29.34 GiB of 32 GiB per chip (the TPU compiler's usable 30.75 GiB leaves little
           margin). Larger encoders (--config.model_kwargs.scan=True): MAE-L fits v4-64 (29.67 GiB)
           and v4-256 (10.95 GiB); MAE-H fits v4-256 (20.76 GiB) but not v4-64 (the compiler asks
           for 54.7 GiB of temporaries); MAE-H with --config.mesh.tensor=4 on v4-256: 23.20 GiB.
           All measured with scripts/aot.py (README, 'Does a recipe fit a TPU pod?').
Time:      an estimate from FLOPs and the MAE-L step: ~10.8 h for the configured 800
           epochs on 8x H200 (~5.4 h per 400; the paper trains 800 (1600) epochs) =
           3 x 19.96 GFLOP per image (forward FLOPs at mask ratio 0.75 from the README model
           table; a train step ~3x the forward) x 800 x 1,281,167 images = 6.14e19 FLOP /
           (8 chips x 989 TFLOP/s bf16 peak x 20% MFU) = 38,800 s. Assumed: the 20% MFU (the
           measured MAE ViT-L pretraining step reaches 20.5% on one H200, 1,616 img/s at batch
           256 with scanned blocks and cuDNN attention; BENCHMARKS.md), linear scaling and an
           input pipeline that keeps up; evaluation and checkpoints are not counted.
Result:    fine-tuned ViT-B 83.6% top-1 after 1600 epochs (paper Table 3); the pretraining
           loss itself has no reference number. Writes ``reconstruction.png`` (original |
           masked | reconstruction | pasted, of evaluation images) into the workdir at the
           end (the 'reconstruction' evaluator).
Tiny (tests): --config.model_kwargs.embed_dim=32 --config.model_kwargs.depth=2 ... (see
           tests/test_experiments.py) --config.image_size=32 --config.dataset=digits
"""

import ml_collections

from jaxbones.launch import main
from jaxbones.train.config import default_config


def get_config():
    c = default_config()
    c.model = "mae_vit_base_patch16_dec512d8b"
    c.task = "mae"
    c.model_kwargs.norm_pix_loss = True
    c.mask_ratio = 0.75
    c.dataset = "imagenet2012"
    c.eval_split = "validation"
    c.image_size = 224
    c.augment.scale = (0.2, 1.0)
    c.augment.hflip = 0.5
    c.global_batch_size = 4096
    c.num_epochs = 800.0
    c.dtype = "bfloat16"
    c.optimizer.name = "adamw"
    c.optimizer.lr = 1.5e-4
    c.optimizer.base_batch_size = 256
    c.optimizer.b1 = 0.9
    c.optimizer.b2 = 0.95
    c.optimizer.weight_decay = 0.05
    c.optimizer.warmup_epochs = 40.0
    c.best_metric = "loss"
    # reconstructions of evaluation images (jaxbones.train.evaluators) at the end
    c.evals.reconstruction = ml_collections.ConfigDict({"type": "mae_reconstruction"})
    c.log_every = 100
    c.ckpt_every = 2000
    c.workdir = "/tmp/jaxbones_mae_pretrain"
    return c


if __name__ == "__main__":
    main(get_config)
