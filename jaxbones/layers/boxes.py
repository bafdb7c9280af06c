"""Axis-aligned box operations, jittable: format conversion, IoU / generalised IoU, GIoU
loss and class-wise non-maximum suppression with a fixed output size.

Boxes are ``[..., 4]`` arrays ``(x1, y1, x2, y2)`` (``xyxy``) unless a name says ``cxcywh``.
The numerics follow ``torchvision.ops`` (``box_iou``, ``generalized_box_iou_loss`` with its
``eps=1e-7``, ``batched_nms``: a box is suppressed by a higher-scoring kept box of the same
class whose IoU with it is strictly greater than the threshold).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def cxcywh_to_xyxy(b):
    cx, cy, w, h = jnp.split(b, 4, axis=-1)
    return jnp.concatenate([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)


def xyxy_to_cxcywh(b):
    x1, y1, x2, y2 = jnp.split(b, 4, axis=-1)
    return jnp.concatenate([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], -1)


def box_area(b):
    return (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])


def _inter_union(a, b):
    """Intersection and union of broadcastable box arrays."""
    lt = jnp.maximum(a[..., :2], b[..., :2])
    rb = jnp.minimum(a[..., 2:], b[..., 2:])
    wh = jnp.clip(rb - lt, 0)
    inter = wh[..., 0] * wh[..., 1]
    return inter, box_area(a) + box_area(b) - inter


def _enclosing_area(a, b):
    lt = jnp.minimum(a[..., :2], b[..., :2])
    rb = jnp.maximum(a[..., 2:], b[..., 2:])
    wh = jnp.clip(rb - lt, 0)
    return wh[..., 0] * wh[..., 1]


def box_iou(a, b):
    """Pairwise IoU: ``a`` [N, 4], ``b`` [M, 4] -> [N, M] (as ``torchvision.ops.box_iou``)."""
    inter, union = _inter_union(a[:, None], b[None])
    return inter / union


def generalized_box_iou(a, b):
    """Pairwise generalised IoU (Rezatofighi et al. 2019): [N, 4], [M, 4] -> [N, M]."""
    a, b = a[:, None], b[None]
    inter, union = _inter_union(a, b)
    enclosing = _enclosing_area(a, b)
    return inter / union - (enclosing - union) / enclosing


def giou_loss(pred, target, eps: float = 1e-7):
    """Elementwise ``1 - GIoU`` of matching boxes ``[..., 4]`` -> ``[...]``, equal to
    ``torchvision.ops.generalized_box_iou_loss(reduction='none')`` (same ``eps`` placement,
    so degenerate boxes give a finite loss)."""
    inter, union = _inter_union(pred, target)
    enclosing = _enclosing_area(pred, target)
    iou = inter / (union + eps)
    return 1.0 - (iou - (enclosing - union) / (enclosing + eps))


def batched_nms(boxes, scores, classes, iou_threshold: float, max_output: int):
    """Class-wise greedy NMS with a fixed output size (jittable, vmappable).

    Args:
      boxes [N, 4] xyxy, scores [N] (``-inf`` marks candidates that never survive), classes
      [N] int: boxes of different classes never suppress each other.
      iou_threshold: a box is dropped when a kept, higher-scoring box of its class overlaps it
        with IoU > threshold; max_output: the number of rows returned.

    Returns:
      (indices [max_output] into the inputs, kept boxes by decreasing score, then zeros;
      valid [max_output] bool, True for the rows that are kept boxes). Without padding and
      ties the valid indices equal ``torchvision.ops.batched_nms(...)[:max_output]``.
    """
    n = boxes.shape[0]
    order = jnp.argsort(-scores, stable=True)
    b, s, c = boxes[order], scores[order], classes[order]
    suppresses = (box_iou(b, b) > iou_threshold) & (c[:, None] == c[None, :])  # [j, i]
    earlier = jnp.arange(n)[:, None] < jnp.arange(n)[None, :]
    suppresses = suppresses & earlier
    candidate = s > -jnp.inf

    def visit(i, keep):
        # box i (in score order) survives when no kept higher-scoring box suppresses it
        hit = jnp.any(keep & suppresses[:, i])
        return keep.at[i].set(candidate[i] & ~hit)

    keep = jax.lax.fori_loop(0, n, visit, jnp.zeros((n,), bool))
    (pos,) = jnp.nonzero(keep, size=max_output, fill_value=0)
    valid = jnp.arange(max_output) < jnp.sum(keep)
    return jnp.where(valid, order[pos], 0), valid
