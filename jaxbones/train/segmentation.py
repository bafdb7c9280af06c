"""Segmentation losses and metrics (jittable, float32).

Shapes: ``logits`` [B, H, W, K] (any float dtype; computed in float32), ``mask`` [B, H, W]
integer class ids, ``ignore_index`` marks pixels that count nowhere (void / borders).
Losses accept a list of logits (deep supervision heads, UNet++ / UNet3+ with ``train=True``)
and average the per-head losses.

Metrics go through a confusion matrix ``cm`` [K, K] (rows: true class, columns: predicted),
summed over batches with ``+``. Inside a jitted step on a globally sharded batch the matrix
already covers every device and host (it is a reduction over the global array); for host-local
matrices ``allreduce_confusion`` sums them over processes. ``iou``/``mean_iou``/
``pixel_accuracy`` turn it into numbers; a class absent from both prediction and ground truth
has IoU NaN and is left out of the mean (as torchmetrics' / mmseg's mIoU).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

IGNORE_INDEX = 255


def _per_head(fn):
    def wrapped(logits, mask, *args, **kwargs):
        if isinstance(logits, (list, tuple)):
            return sum(fn(x, mask, *args, **kwargs) for x in logits) / len(logits)
        return fn(logits, mask, *args, **kwargs)

    wrapped.__doc__ = fn.__doc__
    wrapped.__name__ = fn.__name__
    return wrapped


@_per_head
def cross_entropy(
    logits,
    mask,
    *,
    ignore_index: int = IGNORE_INDEX,
    class_weights: Sequence[float] | None = None,
    label_smoothing: float = 0.0,
):
    """Pixel-wise softmax cross-entropy, averaged over the non-ignored pixels as
    ``torch.nn.functional.cross_entropy(..., ignore_index=, weight=, label_smoothing=)``
    (with ``class_weights`` the mean is weighted: divided by the sum of the pixels' weights).
    Returns 0 when every pixel is ignored."""
    logits = logits.astype(jnp.float32)
    k = logits.shape[-1]
    valid = mask != ignore_index
    target = jnp.where(valid, mask, 0)
    logp = jax.nn.log_softmax(logits, axis=-1)
    nll = -jnp.take_along_axis(logp, target[..., None], axis=-1)[..., 0]
    if label_smoothing:
        w_cls = 1.0 if class_weights is None else jnp.asarray(class_weights, jnp.float32)
        smooth = -(logp * w_cls).sum(-1) / k
    if class_weights is not None:
        w = jnp.asarray(class_weights, jnp.float32)[target] * valid
    else:
        w = valid.astype(jnp.float32)
    loss = nll * w
    if label_smoothing:
        # torch: (1 - eps) * nll + eps * smooth, both normalised by the summed target weights
        loss = (1.0 - label_smoothing) * loss + label_smoothing * smooth * valid
    return loss.sum() / jnp.maximum(w.sum(), 1e-12)


@_per_head
def dice_loss(
    logits,
    mask,
    *,
    ignore_index: int = IGNORE_INDEX,
    smooth: float = 1.0,
    include_background: bool = True,
):
    """Soft Dice loss (Milletari et al. 2016) on softmax probabilities: ``1 - mean_k
    (2 * sum p_k * y_k + smooth) / (sum p_k + sum y_k + smooth)``, sums over the batch and
    the non-ignored pixels, mean over classes (without class 0 if ``include_background``
    is False)."""
    logits = logits.astype(jnp.float32)
    k = logits.shape[-1]
    valid = (mask != ignore_index)[..., None].astype(jnp.float32)
    probs = jax.nn.softmax(logits, axis=-1) * valid
    onehot = jax.nn.one_hot(jnp.where(mask == ignore_index, 0, mask), k) * valid
    axes = tuple(range(logits.ndim - 1))
    inter = (probs * onehot).sum(axes)
    denom = probs.sum(axes) + onehot.sum(axes)
    dice = (2.0 * inter + smooth) / (denom + smooth)  # [K]
    if not include_background:
        dice = dice[1:]
    return 1.0 - dice.mean()


def confusion_matrix(preds, mask, num_classes: int, *, ignore_index: int = IGNORE_INDEX):
    """[K, K] int32 counts: ``cm[t, p]`` pixels of true class t predicted as p (ignored pixels
    and labels outside [0, K) are skipped). ``preds``: class ids [B, H, W] or logits
    [B, H, W, K] (argmax taken)."""
    if preds.ndim == mask.ndim + 1:
        preds = preds.argmax(-1)
    t = mask.reshape(-1).astype(jnp.int32)
    p = preds.reshape(-1).astype(jnp.int32)
    valid = (t != ignore_index) & (t >= 0) & (t < num_classes)
    idx = jnp.where(valid, t * num_classes + p, 0)
    counts = jnp.bincount(idx, weights=valid.astype(jnp.int32), length=num_classes**2)
    return counts.astype(jnp.int32).reshape(num_classes, num_classes)


def iou(cm):
    """Per-class intersection over union [K] from a confusion matrix; NaN for classes that
    appear in neither the ground truth nor the predictions."""
    cm = jnp.asarray(cm, jnp.float32)
    inter = jnp.diagonal(cm)
    union = cm.sum(0) + cm.sum(1) - inter
    return jnp.where(union > 0, inter / jnp.maximum(union, 1.0), jnp.nan)


def mean_iou(cm):
    """Mean IoU over the classes present in the ground truth or the predictions."""
    return jnp.nanmean(iou(cm))


def pixel_accuracy(cm):
    """Fraction of non-ignored pixels predicted correctly."""
    cm = jnp.asarray(cm, jnp.float32)
    return jnp.trace(cm) / jnp.maximum(cm.sum(), 1.0)


def allreduce_confusion(cm):
    """Sums a host-local confusion matrix over all processes (a no-op on one process)."""
    if jax.process_count() == 1:
        return np.asarray(cm)
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(np.asarray(cm))).sum(0)


def has_foreground(mask, *, background: int = 0, ignore_index: int = IGNORE_INDEX):
    """Image-level targets for UNet3+'s classification-guided module: 1 where the mask has
    any pixel that is neither background nor ignored, else 0 (int32 [B])."""
    fg = (mask != background) & (mask != ignore_index)
    return fg.reshape(fg.shape[0], -1).any(-1).astype(jnp.int32)


def segmentation_loss(
    logits,
    mask,
    *,
    ignore_index: int = IGNORE_INDEX,
    dice_weight: float = 0.0,
    label_smoothing: float = 0.0,
):
    """Cross-entropy plus ``dice_weight`` * Dice (the usual combination); lists of heads are
    averaged. A ``(seg_logits, cls_logits)`` pair (UNet3+ with ``cgm=True``) adds the
    image-level cross-entropy on ``has_foreground(mask)``."""
    cls_logits = None
    if isinstance(logits, tuple) and len(logits) == 2 and getattr(logits[1], "ndim", 0) == 2:
        logits, cls_logits = logits
    loss = cross_entropy(logits, mask, ignore_index=ignore_index, label_smoothing=label_smoothing)
    if dice_weight:
        loss = loss + dice_weight * dice_loss(logits, mask, ignore_index=ignore_index)
    if cls_logits is not None:
        target = has_foreground(mask, ignore_index=ignore_index)
        logp = jax.nn.log_softmax(cls_logits.astype(jnp.float32), -1)
        loss = loss - jnp.take_along_axis(logp, target[:, None], -1).mean()
    return loss


def segmentation_metrics(logits, mask, num_classes: int, *, ignore_index: int = IGNORE_INDEX):
    """Per-batch metrics for a train/eval step: the confusion matrix (to accumulate), loss,
    pixel accuracy and mean IoU of this batch. Deep-supervision lists use the first head;
    ``(seg, cls)`` pairs the segmentation logits."""
    if isinstance(logits, tuple) and len(logits) == 2 and getattr(logits[1], "ndim", 0) == 2:
        logits = logits[0]
    if isinstance(logits, (list, tuple)):
        logits = logits[0]
    cm = confusion_matrix(logits, mask, num_classes, ignore_index=ignore_index)
    return {
        "confusion": cm,
        "loss": cross_entropy(logits, mask, ignore_index=ignore_index),
        "pixel_accuracy": pixel_accuracy(cm),
        "mean_iou": mean_iou(cm),
    }


def save_predictions_png(images, mask, preds, path, num_classes, mean=None, std=None, n=8):
    """Writes a PNG grid with one column per example and three rows: the input image (the
    normalisation undone with ``mean``/``std``), the ground-truth mask and the predicted mask
    (the same colour per class; ignored pixels shown as class 0). Returns ``path``.

    ``images`` [B, H, W, C] float, ``mask`` / ``preds`` [B, H, W] integer class ids."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images = np.asarray(images, np.float32)
    mask, preds = np.asarray(mask), np.asarray(preds)
    n = min(n, len(images))
    c = images.shape[-1]
    if mean is not None and std is not None:
        images = images * np.asarray(std, np.float32)[:c] + np.asarray(mean, np.float32)[:c]
    fig, axes = plt.subplots(3, n, figsize=(1.4 * n, 4.4), squeeze=False)
    cmap = plt.get_cmap("tab20", max(num_classes, 2))
    for i in range(n):
        img = images[i]
        img = (img - img.min()) / (np.ptp(img) + 1e-6)  # display range [0, 1]
        gt = np.where(mask[i] == IGNORE_INDEX, 0, mask[i])
        rows = [
            (img[..., 0] if c == 1 else img, {"cmap": "gray"} if c == 1 else {}),
            (gt, {"cmap": cmap}),
            (preds[i], {"cmap": cmap}),
        ]
        for row, (a, kw) in enumerate(rows):
            if row:
                kw.update(vmin=0, vmax=max(num_classes - 1, 1), interpolation="nearest")
            axes[row, i].imshow(a, **kw)
            axes[row, i].axis("off")
    for row, title in enumerate(["image", "ground truth", "prediction"]):
        axes[row, 0].set_title(title, fontsize=8, loc="left")
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path
