"""Train a UNet to segment digits: the offline "digits_seg" dataset on CPU (or any tfds
segmentation dataset through ``jaxbones.data`` by override), then write a PNG of predicted
masks next to the ground truth.

Command (CPU; 300 steps took 6 minutes on 2 cores shared with ~6 other jobs, about 1-2
minutes of CPU time):

    python -m experiments.unet_digits
    python -m experiments.unet_digits --config.steps=1000 --config.model=unetpp
    python -m experiments.unet_digits --config.model=unet_resnet18 --config.image_size=64 \\
        --config.model_overrides="{}"
    python -m experiments.unet_digits --config.dataset=oxford_iiit_pet --config.num_classes=3 \\
        --config.image_size=128 --config.model=unet_resnet18 --config.model_overrides="{}"

Data: "digits_seg" is built in this file (``digits_seg()``; ``jaxbones.data``'s dataset of
the same name thresholds at 8x8 and upsamples the mask instead): scikit-learn's 8x8 digits
(1797 images) bilinearly upsampled to
``image_size``; the mask is 0 (background) where the upsampled intensity is below
``mask_threshold`` and 1 + digit class on the digit's pixels: 11 classes, so the network must
both find the strokes and recognise the digit. Split: a fixed stratified 75/25 split
(``random_state=0``): 1347 train / 450 test images. Other datasets come from
``jaxbones.data.make_train_iterator(task="segmentation")``.

Model: a plain UNet with widths (16, 32, 64) (stride 4), BatchNorm, up-convolutions; loss
pixel cross-entropy + 0.5 * Dice; AdamW, lr 3e-3 with cosine decay, batch 64.

Expected result (measured on this CPU at the defaults: image_size=16, 300 steps, batch 64):
test mean IoU 0.960 over the 11 classes, pixel accuracy 0.985. ``tests/test_unet.py`` runs
120 steps (measured 0.798 mean IoU, pixel accuracy 0.934) and checks a floor of 0.75.
Outputs: ``{out_dir}/predictions.png`` (rows: image, ground truth, prediction) and the
returned metrics dict.

This recipe runs its own small optax loop (single device, jit) so it trains with the loss of
its choice (cross-entropy + 0.5 * Dice from ``jaxbones.train.segmentation``); the generic
``jaxbones.train`` segmentation task (``--config.task=segmentation``) trains with
cross-entropy only.
"""

from __future__ import annotations

import ast
import os
import sys
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

import jaxbones
from jaxbones.train import segmentation as seg

DIGITS_CLASSES = 11  # background + 10 digits
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.dataset = "digits_seg"
    c.data_dir = ""
    c.num_classes = DIGITS_CLASSES
    c.image_size = 16
    c.mask_threshold = 0.25  # digits_seg: intensity in [0, 1] above which a pixel is "digit"
    c.model = "unet"
    c.model_overrides = {"widths": (16, 32, 64)}
    c.batch_size = 64
    c.steps = 300
    c.lr = 3e-3
    c.weight_decay = 1e-4
    c.dice_weight = 0.5
    c.seed = 0
    c.eval_batch_size = 150
    c.out_dir = "/tmp/unet_digits"
    c.num_png_examples = 8
    c.lock()
    return c


# ----------------------------------------------------------------------------- data


def digits_seg(image_size: int, threshold: float):
    """(train, test) dicts {"image": float32 [N, S, S, 1] in [0, 1], "mask": int32 [N, S, S]}."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[..., None]  # [1797, 8, 8, 1]
    x = np.asarray(jax.image.resize(x, (len(x), image_size, image_size, 1), "bilinear"))
    x = np.clip(x, 0.0, 1.0)
    mask = np.where(x[..., 0] > threshold, 1 + d.target[:, None, None], 0).astype(np.int32)
    idx = np.arange(len(x))
    tr, te = train_test_split(idx, test_size=0.25, random_state=0, stratify=d.target)
    return {"image": x[tr], "mask": mask[tr]}, {"image": x[te], "mask": mask[te]}


def _array_batches(split: dict, batch_size: int, seed: int):
    rng = np.random.default_rng(seed)
    n = len(split["image"])
    while True:
        perm = rng.permutation(n)
        for i in range(0, n - batch_size + 1, batch_size):
            sel = perm[i : i + batch_size]
            yield {"image": split["image"][sel], "mask": split["mask"][sel]}


def make_data(c):
    """(train iterator, eval batches, input channels); digits_seg is built here, any other
    dataset comes from jaxbones.data (tfds) as the data contract describes."""
    if c.dataset == "digits_seg":
        train, test = digits_seg(c.image_size, c.mask_threshold)
        evals = [
            {k: v[i : i + c.eval_batch_size] for k, v in test.items()}
            for i in range(0, len(test["image"]), c.eval_batch_size)
        ]
        return _array_batches(train, c.batch_size, c.seed), evals, 1
    from jaxbones import data

    if not hasattr(data, "make_train_iterator"):
        raise RuntimeError(
            f"dataset {c.dataset!r} needs jaxbones.data (tfds pipelines), which this checkout "
            "does not have yet; use --config.dataset=digits_seg"
        )
    kw = {"image_size": c.image_size, "task": "segmentation", "data_dir": c.data_dir or None}
    train = data.make_train_iterator(
        c.dataset, global_batch_size=c.batch_size, seed=c.seed, augment={"hflip": 0.5}, **kw
    )
    evals = []
    for b in data.make_eval_iterator(c.dataset, global_batch_size=c.eval_batch_size, **kw):
        mask = np.where(b["valid"][:, None, None], b["mask"], seg.IGNORE_INDEX)
        evals.append({"image": b["image"], "mask": mask})
    return train, evals, 3


# ----------------------------------------------------------------------------- train


def run(c) -> dict:
    t0 = time.time()
    train_iter, evals, chans = make_data(c)
    model = jaxbones.create_model(
        c.model, num_classes=c.num_classes, in_chans=chans, **dict(c.model_overrides)
    )
    first = next(train_iter)
    x0 = jnp.asarray(first["image"])
    # init runs once: compiling it with XLA's cheap settings saves most of its (minutes long,
    # RNG-heavy) compile time on CPU
    init = jax.jit(model.init).lower(jax.random.PRNGKey(c.seed), x0).compile(FAST_COMPILE)
    variables = init(jax.random.PRNGKey(c.seed), x0)
    sched = optax.cosine_decay_schedule(c.lr, c.steps)
    tx = optax.adamw(sched, weight_decay=c.weight_decay)
    state = (variables["params"], variables.get("batch_stats", {}), tx.init(variables["params"]))

    @jax.jit
    def train_step(state, batch):
        params, stats, opt = state

        def loss_fn(p):
            out, upd = model.apply(
                {"params": p, "batch_stats": stats},
                batch["image"],
                train=True,
                mutable=["batch_stats"],
            )
            loss = seg.segmentation_loss(out, batch["mask"], dice_weight=c.dice_weight)
            return loss, upd["batch_stats"]

        (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt = tx.update(grads, opt, params)
        return (optax.apply_updates(params, updates), stats, opt), loss

    @jax.jit
    def eval_step(params, stats, images, mask):
        logits = model.apply({"params": params, "batch_stats": stats}, images)
        return seg.confusion_matrix(logits, mask, c.num_classes), logits.argmax(-1)

    batch = first
    for step in range(c.steps):
        state, loss = train_step(state, batch)
        if step % 100 == 0 or step == c.steps - 1:
            print(f"step {step:5d}  loss {float(loss):.4f}  ({time.time() - t0:.0f}s)")
        batch = next(train_iter)

    cm = np.zeros((c.num_classes, c.num_classes), np.int64)
    preds = None
    for b in evals:
        part, p = eval_step(state[0], state[1], jnp.asarray(b["image"]), jnp.asarray(b["mask"]))
        cm += np.asarray(part)
        preds = np.asarray(p) if preds is None else preds
    cm = seg.allreduce_confusion(cm)
    metrics = {
        "mean_iou": float(seg.mean_iou(cm)),
        "pixel_accuracy": float(seg.pixel_accuracy(cm)),
        "per_class_iou": [float(v) for v in np.asarray(seg.iou(cm))],
        "final_loss": float(loss),
        "seconds": time.time() - t0,
    }
    metrics["png"] = save_png(evals[0], preds, c)
    print(
        f"test mean IoU {metrics['mean_iou']:.3f}  pixel accuracy "
        f"{metrics['pixel_accuracy']:.3f}  -> {metrics['png']}"
    )
    return metrics


def save_png(batch, preds, c) -> str:
    """Rows: input image, ground-truth mask, predicted mask (same colours per class)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = min(c.num_png_examples, len(preds))
    fig, axes = plt.subplots(3, n, figsize=(1.4 * n, 4.4), squeeze=False)
    cmap = plt.get_cmap("tab20", c.num_classes)
    for i in range(n):
        img = np.asarray(batch["image"][i])
        img = img[..., 0] if img.shape[-1] == 1 else (img - img.min()) / (np.ptp(img) + 1e-6)
        gt = np.where(batch["mask"][i] == seg.IGNORE_INDEX, 0, batch["mask"][i])
        for row, (a, kw) in enumerate(
            [(img, {"cmap": "gray"}), (gt, {"cmap": cmap}), (preds[i], {"cmap": cmap})]
        ):
            if row:
                kw.update(vmin=0, vmax=c.num_classes - 1, interpolation="nearest")
            axes[row, i].imshow(a, **kw)
            axes[row, i].axis("off")
    for row, title in enumerate(["image", "ground truth", "prediction"]):
        axes[row, 0].set_title(title, fontsize=8, loc="left")
    os.makedirs(c.out_dir, exist_ok=True)
    path = os.path.join(c.out_dir, "predictions.png")
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def parse_overrides(c, argv) -> ml_collections.ConfigDict:
    """Applies ``--config.key=value`` arguments (values parsed as Python literals when they
    look like one); unknown keys fail with ml_collections' suggestion."""
    c = c.copy_and_resolve_references()
    for arg in argv:
        if not arg.startswith("--config."):
            raise ValueError(f"unknown argument {arg!r}; use --config.key=value")
        key, _, value = arg[len("--config.") :].partition("=")
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            pass
        if key == "model_overrides":
            with c.unlocked():
                c.model_overrides = value
            continue
        setattr(c, key, value)
    return c


if __name__ == "__main__":
    run(parse_overrides(get_config(), sys.argv[1:]))
