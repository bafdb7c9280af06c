"""Contrastive image-text pretraining of a tiny CLIP on scikit-learn's digits with captions,
then zero-shot classification of the held-out digits from class-name prompts.

Command:   python -m experiments.clip_pretrain
           python -m experiments.clip_pretrain --config.num_steps=600 --config.global_batch_size=128
Hardware:  any CPU (2 cores); no download: the 1797 8x8 digits ship with scikit-learn and the
           BPE vocabulary with open_clip_torch.
Fits:      v4-8, the smallest v4 slice (4 chips): 0.16 GiB of 32 GiB per chip at batch 64
           (measured with scripts/aot.py; README, 'Does a recipe fit a TPU pod?').
Time:      measured at --config.num_steps=120 on 2 CPU cores shared with other jobs (load ~10):
           42 s compile + ~3.3 s/step, about 8 minutes in all; the default 300 steps was
           not timed to the end.
Result:    measured at 120 steps (8 fake CPU devices, global batch 64): train loss 4.16
           (log 64) -> 1.95 at step 120; the floor is about log(6.4) = 1.86 because each
           batch holds ~6.4 images of every digit with near-identical captions, which also
           caps in-batch retrieval (eval i2t/t2i accuracy 0.156 = 1/6.4); zero-shot accuracy
           with the prompt "a photo of the digit {name}." over the 10 names: 0.993 (chance
           0.1), measured on all 450 test digits before the 'zero_shot' evaluator, which
           reads the 7 full eval batches (448 digits), existed. ``tests/test_clip.py``
           checks the config and data only.
Outputs:   the final metrics (train/eval contrastive loss, in-batch retrieval accuracy,
           ``zero_shot_accuracy`` from the 'zero_shot' evaluator); with
           ``--config.workdir`` also metrics.jsonl, curves.png and checkpoints.

Data: each 8x8 digit is upsampled to ``image_size`` (nearest, ``np.kron``), scaled to [-1, 1]
and repeated over 3 channels; its caption is a random template from ``TRAIN_TEMPLATES``
filled with the digit's name ("seven") or numeral ("7"). Split: a stratified 75/25 split
(``random_state=0``): 1347 train / 450 test images, registered as the in-memory dataset
'digits_captions'. Training goes through ``jaxbones.launch.main`` with ``task='clip'`` (the
global batch sharded over all devices; the loss's similarity matrix covers the global batch).
"""

from __future__ import annotations

import ml_collections
import numpy as np

from jaxbones.launch import main
from jaxbones.train.config import default_config
from jaxbones.train.inputs import register_in_memory_dataset

NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
TRAIN_TEMPLATES = [
    "a photo of the digit {}.",
    "a handwritten {}.",
    "the number {}",
    "a blurry image of a {}.",
]
ZERO_SHOT_TEMPLATES = ["a photo of the digit {}."]


def get_config():
    c = default_config()
    c.task = "clip"
    c.model = "clip_rn50"
    # a tiny CLIP: ModifiedResNet with one block per stage and a 32-wide stem (attention pool
    # over the 1x1 map at 32 px), text 2 x 128, a 64-d joint space. A tiny ViT tower with
    # timm's 0.02 init is almost input-independent at init here (feature std across images
    # 6e-4) and the loss collapses to log(batch); the conv tower separates images from step 0.
    c.model_kwargs.update(
        embed_dim=64,
        vision_layers=(1, 1, 1, 1),
        vision_width=32,
        vision_head_width=32,
        text_width=128,
        text_heads=2,
        text_layers=2,
    )
    c.dataset = "digits_captions"  # built here (see the module docstring)
    c.evals.zero_shot = ml_collections.ConfigDict(
        {
            "type": "clip_zero_shot",
            "class_names": tuple(NAMES),
            "templates": tuple(ZERO_SHOT_TEMPLATES),
        }
    )
    c.image_size = 32
    c.global_batch_size = 64
    c.eval_batch_size = 64
    c.num_steps = 300
    c.optimizer.name = "adamw"
    c.optimizer.lr = 1e-3
    c.optimizer.weight_decay = 0.05
    c.optimizer.warmup_steps = 20
    c.log_every = 20
    c.best_metric = "loss"
    c.workdir = ""
    c.plot = False
    return c


def digits_split(image_size: int):
    """(train_x, train_y, test_x, test_y): NHWC float32 images in [-1, 1], int labels."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    scale = image_size // 8
    x = np.kron(d.images / 16.0, np.ones((1, scale, scale)))  # [N, S, S] nearest upsampling
    x = np.repeat((x * 2 - 1)[..., None], 3, axis=-1).astype(np.float32)
    tr_x, te_x, tr_y, te_y = train_test_split(
        x, d.target, test_size=0.25, stratify=d.target, random_state=0
    )
    return tr_x, tr_y.astype(np.int32), te_x, te_y.astype(np.int32)


def caption_batches(x, y, batch_size: int, seed: int, tokenizer):
    """Endless {'image', 'text'} batches (a fresh permutation each epoch, random captions)."""
    rng = np.random.default_rng(seed)
    while True:
        order = rng.permutation(len(x))
        for i in range(0, len(order) - batch_size + 1, batch_size):
            idx = order[i : i + batch_size]
            words = [NAMES[t] if rng.random() < 0.5 else str(t) for t in y[idx]]
            texts = [TRAIN_TEMPLATES[rng.integers(len(TRAIN_TEMPLATES))].format(w) for w in words]
            yield {"image": x[idx], "text": tokenizer(texts)}


def eval_batches(x, y, batch_size: int, tokenizer) -> list[dict]:
    """Fixed eval batches (the first template, digit names, the labels for zero-shot); a
    remainder is dropped (in-batch retrieval compares full batches)."""
    out = []
    for i in range(0, len(x) - batch_size + 1, batch_size):
        texts = [TRAIN_TEMPLATES[0].format(NAMES[t]) for t in y[i : i + batch_size]]
        out.append(
            {
                "image": x[i : i + batch_size],
                "text": tokenizer(texts),
                "label": y[i : i + batch_size],
            }
        )
    return out


def digits_captions(config):
    """The 'digits_captions' dataset: (train batches, eval batches, info)."""
    from jaxbones.text import get_tokenizer

    tok = get_tokenizer()
    tr_x, tr_y, te_x, te_y = digits_split(config.image_size)
    ebs = config.eval_batch_size if config.eval_batch_size > 0 else config.global_batch_size
    info = {"num_classes": len(NAMES), "splits": {"train": len(tr_x), "test": len(te_x)}}
    train = caption_batches(tr_x, tr_y, config.global_batch_size, config.seed, tok)
    return train, eval_batches(te_x, te_y, ebs, tok), info


register_in_memory_dataset("digits_captions", digits_captions)

if __name__ == "__main__":
    main(get_config)
