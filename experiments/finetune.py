"""Transfer learning from a pretrained tag: full fine-tuning, the last stage(s), or a new head.

Command:   python -m experiments.finetune --config.pretrained=resnet50.tv_in1k \\
               --config.dataset=oxford_iiit_pet --config.data_dir=$TFDS_DATA_DIR \\
               --config.mode=full|last_stages|head [--config.train_stages=1]
           Any tag (``jaxbones.list_pretrained()``; ``--config.pretrained_file=ckpt`` for a
           local copy) and any tfds classification dataset: the image size, mean/std,
           interpolation and crop come from the tag unless set, the head is new
           (``new_head``; a different class count re-initialises it anyway).
Modes:     'full' trains everything; 'last_stages' trains the last ``train_stages`` stages
           and what follows them (stem and earlier stages frozen); 'head' trains only a new
           head with the network in inference mode (jaxbones/train/finetune.py has the
           per-family stage names and the BatchNorm behaviour of each mode).
Hardware:  the defaults (ResNet-50, 224 px, batch 64, 10 epochs of the 3,680 pet images)
           fit one GPU; on CPU use a small model and image size (below).
Fits:      v4-8, the smallest v4 slice (4 chips): 1.61 GiB of 32 GiB per chip at batch 64
           (16 per chip; measured with scripts/aot.py; README, 'Does a recipe fit a TPU pod?').
Time:      not measured for the defaults (no GPU and no Oxford pets here); each CPU run
           below took about 2 minutes on 2 cores shared with other jobs (compile ~45 s).
Result:    measured on CPU (1 device, 2 busy cores): a ResNet-18 trained by
           ``python -m experiments.quickstart`` (99.7% on the digits test split), exported
           with ``export_workdir`` (``jaxbones.convert.to_torch``) and registered as a tag,
           fine-tuned on the digits again with a new head: 20 SGD steps of batch 64 at 32 px
           (``DIGITS`` below), test accuracy on the 360 test digits at the recipe's lr 0.01
           (and at lr 0.05):
               head          92.2%  (71.1%; train loss 12.3 (86.9): the fresh head's lr)
               last_stages   95.3%  (95.3%; layer4 + fc)
               full          69.7%  (23.9%; every layer moves at the fresh head's lr: a
                                     head warm-up or a lower backbone lr would be the
                                     next thing to try, not measured here)
               from scratch  10.6%  (11.1%; --config.pretrained= --config.model=resnet18)
           The digits are the only offline image data set, so this checks the machinery
           (weights in, the right parameters frozen), not transfer to a new domain.
           Reproduce (after the quickstart):
               python - <<'EOF'
               import torch, jaxbones
               from experiments import finetune
               torch.save(finetune.export_workdir("/tmp/jaxbones_quickstart", "resnet18"),
                          "/tmp/digits_resnet18.pth")
               jaxbones.register_pretrained("resnet18.digits", url="file:///tmp/x.pth",
                   num_classes=10, input_size=(32, 32, 3), mean=(0.5,) * 3, std=(0.5,) * 3,
                   crop_pct=1.0)
               for mode in ("head", "last_stages", "full"):
                   finetune.main([*finetune.DIGITS, f"--config.mode={mode}"])
               EOF
"""

from jaxbones.launch import main as launch_main
from jaxbones.train.config import default_config
from jaxbones.train.finetune import apply_mode

# The CPU measurement's overrides (docstring): digits at 32 px from the quickstart's weights.
DIGITS = [
    "--config.pretrained=resnet18.digits",
    "--config.pretrained_file=/tmp/digits_resnet18.pth",
    "--config.dataset=digits",
    "--config.image_size=32",
    "--config.augment.rrc=false",
    "--config.augment.hflip=0.0",
    "--config.num_steps=20",
    "--config.optimizer.warmup_steps=2",
    "--config.workdir=",
]


def get_config():
    c = default_config()
    c.model = ""  # the tag's
    c.pretrained = "resnet50.tv_in1k"
    with c.unlocked():  # this recipe's own keys (then locked like every other key)
        c.mode = "full"  # full | last_stages | head
        c.train_stages = 1  # 'last_stages': how many of the last stages train
        c.new_head = True  # a fresh head even when the dataset has the checkpoint's class count
    c.dataset = "oxford_iiit_pet"
    c.eval_split = "test"
    c.image_size = -1  # the tag's input size
    c.global_batch_size = 64
    c.num_epochs = 10.0
    c.optimizer.name = "sgd"  # Nesterov momentum 0.9
    c.optimizer.lr = 0.01
    c.optimizer.weight_decay = 1e-4
    c.optimizer.warmup_epochs = 1.0
    c.label_smoothing = 0.1
    c.log_every = 10
    c.workdir = "/tmp/jaxbones_finetune"
    return c


def main(argv=None):
    return launch_main(get_config, argv, finalize=apply_mode)


def export_workdir(workdir: str, model: str) -> dict:
    """The newest checkpoint of a jaxbones training run as a PyTorch state dict of tensors
    (the format ``load_pretrained`` reads for the model's family), to register it as a tag."""
    import numpy as np
    import torch

    from jaxbones import convert
    from jaxbones.train.checkpoint import restore_variables

    variables, _, _ = restore_variables(workdir)
    state_dict = convert.to_torch(model, variables)
    return {k: torch.from_numpy(np.array(v)) for k, v in state_dict.items()}


if __name__ == "__main__":
    main()
