"""Object detection: target assignment, losses, decoding and COCO mAP.

A detection model (``jaxbones.models.detection``) returns a dict over P locations (FPN
points or ViT tokens): ``cls_logits`` [B, P, C], ``boxes`` [B, P, 4] xyxy in input pixels,
``points`` [P, 2] (x, y) centres in pixels, ``strides`` [P] and, for FCOS, ``centerness``
[B, P] logits. Ground truth is padded to a fixed number of boxes per image: ``boxes``
[B, M, 4] xyxy normalised to [0, 1], ``labels`` [B, M] int, ``box_valid`` [B, M] bool, and
optionally ``box_crowd`` [B, M] bool: COCO's ``iscrowd`` regions (one box around a group of
objects), which are no training target and which evaluation ignores.

Assignment (``assign``): a location is positive for a box when it lies within
``radius x stride`` of the box centre (FCOS's centre sampling, Tian et al. 2019/2020, radius
1.5), inside the box, and, with several FPN levels, when its largest distance to the box
sides is in its level's size range (FCOS: (4s, 8s] for stride s; the finest level from 0, the
coarsest to infinity). Radius 0.5 without the box / range conditions is the token head's
rule: the token whose cell contains the box centre. Ties go to the smallest box. Crowd boxes
are left out of the targets, as detectron2's and torchvision's COCO training data drop them:
locations inside a crowd region count as background.

Loss (``detection_loss``): sigmoid focal loss (``optax.sigmoid_focal_loss``, alpha 0.25,
gamma 2) over all locations and classes, normalised by the number of positives; on the
positives L1 (on boxes normalised by the image size) + GIoU loss; FCOS adds the centre-ness
binary cross-entropy. Everything is jittable with fixed shapes.

Decoding (``decode``): scores sigmoid(class) (x sqrt(sigmoid(centre-ness)) for FCOS), the
``pre_nms_top_k`` best (location, class) pairs, class-wise NMS (``jaxbones.layers.boxes``)
to ``max_detections`` rows with a validity mask, score threshold.

Evaluation (``coco_map``): mAP@[0.5:0.95] and mAP@0.5 by ``pycocotools`` over every valid
image (any order: the detection task gathers them from every process); crowd boxes are
pycocotools' ``iscrowd=1`` ground truth: a detection matched to one is neither a true nor a
false positive. ``save_detections_png`` draws detections next to the ground truth.
"""

from __future__ import annotations

import contextlib
import io

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxbones.layers.boxes import batched_nms, giou_loss


def fcos_size_ranges(strides):
    """[P, 2] (low, high] of the largest box-side distance each location regresses (FCOS:
    (4s, 8s] per stride s, open-ended at the finest and coarsest levels)."""
    strides = jnp.asarray(strides, jnp.float32)
    lo = jnp.where(strides == jnp.min(strides), 0.0, 4.0 * strides)
    hi = jnp.where(strides == jnp.max(strides), jnp.inf, 8.0 * strides)
    return jnp.stack([lo, hi], -1)


def assign(points, strides, boxes, valid, radius: float, size_ranges=None):
    """Matches locations to boxes of one image (module docstring).

    Args: points [P, 2], strides [P], boxes [M, 4] xyxy in pixels, valid [M] bool, radius
      (in strides), size_ranges [P, 2] or None (None: the centre-cell rule only).
    Returns: (index [P] of the matched box, positive [P] bool).
    """
    px, py = points[:, 0:1], points[:, 1:2]  # [P, 1]
    x1, y1, x2, y2 = (boxes[None, :, i] for i in range(4))  # [1, M]
    r = radius * strides[:, None]
    dx, dy = (x1 + x2) / 2 - px, (y1 + y2) / 2 - py
    ok = (dx >= -r) & (dx < r) & (dy >= -r) & (dy < r) & valid[None]
    if size_ranges is not None:
        ltrb = jnp.stack([px - x1, py - y1, x2 - px, y2 - py], -1)  # [P, M, 4]
        far = jnp.max(ltrb, -1)
        ok = ok & (jnp.min(ltrb, -1) > 0)
        ok = ok & (far > size_ranges[:, 0:1]) & (far <= size_ranges[:, 1:2])
    area = (x2 - x1) * (y2 - y1)
    index = jnp.argmin(jnp.where(ok, area, jnp.inf), axis=1)
    return index, jnp.any(ok, axis=1)


def _centerness_target(points, boxes):
    """FCOS's sqrt(min(l, r) / max(l, r) * min(t, b) / max(t, b)); [P, 2], [P, 4] -> [P]."""
    lt = points - boxes[..., :2]
    rb = boxes[..., 2:] - points
    lo, hi = jnp.minimum(lt, rb), jnp.maximum(lt, rb)
    ratio = jnp.clip(lo, 0) / jnp.maximum(hi, 1e-6)
    return jnp.sqrt(ratio[..., 0] * ratio[..., 1])


def detection_loss(
    out,
    gt_boxes,
    gt_labels,
    gt_valid,
    image_size,
    gt_crowd=None,
    radius: float = 1.5,
    focal_alpha: float = 0.25,
    focal_gamma: float = 2.0,
    l1_weight: float = 1.0,
    giou_weight: float = 2.0,
):
    """(total loss, metrics dict) of a model output ``out`` (module docstring) against
    padded ground truth (normalised xyxy); ``image_size`` (H, W) of the input; ``gt_crowd``
    [B, M] bool marks crowd boxes, which are no target (module docstring)."""
    if gt_crowd is not None:
        gt_valid = gt_valid & ~gt_crowd
    h, w = image_size
    scale = jnp.array([w, h, w, h], jnp.float32)
    gt_px = gt_boxes.astype(jnp.float32) * scale
    points, strides = out["points"], out["strides"]
    fcos = "centerness" in out
    ranges = fcos_size_ranges(strides) if fcos else None
    rad = radius if fcos else 0.5
    index, pos = jax.vmap(lambda b, v: assign(points, strides, b, v, rad, ranges))(gt_px, gt_valid)
    tgt_boxes = jnp.take_along_axis(gt_px, index[..., None], axis=1)  # [B, P, 4]
    tgt_labels = jnp.take_along_axis(gt_labels, index, axis=1)  # [B, P]
    logits = out["cls_logits"].astype(jnp.float32)
    num_classes = logits.shape[-1]
    posf = pos.astype(jnp.float32)
    onehot = jax.nn.one_hot(tgt_labels, num_classes) * posf[..., None]
    num_pos = jnp.maximum(jnp.sum(posf), 1.0)
    cls = (
        jnp.sum(optax.sigmoid_focal_loss(logits, onehot, alpha=focal_alpha, gamma=focal_gamma))
        / num_pos
    )
    pred = out["boxes"].astype(jnp.float32)
    l1 = jnp.sum(jnp.abs(pred - tgt_boxes) / scale, -1)
    giou = giou_loss(pred, tgt_boxes)
    l1 = jnp.sum(l1 * posf) / num_pos
    giou = jnp.sum(giou * posf) / num_pos
    loss = cls + l1_weight * l1 + giou_weight * giou
    metrics = {"cls_loss": cls, "l1_loss": l1, "giou_loss": giou, "positives": num_pos}
    if fcos:
        ctr_t = jax.vmap(_centerness_target, (None, 0))(points, tgt_boxes)
        ctr = optax.sigmoid_binary_cross_entropy(out["centerness"].astype(jnp.float32), ctr_t)
        ctr = jnp.sum(ctr * posf) / num_pos
        loss = loss + ctr
        metrics["centerness_loss"] = ctr
    return loss, metrics


def decode(
    out,
    score_threshold: float = 0.05,
    iou_threshold: float = 0.6,
    pre_nms_top_k: int = 1000,
    max_detections: int = 100,
):
    """Detections of a model output: dict of ``boxes`` [B, K, 4] (pixels), ``scores`` [B, K],
    ``classes`` [B, K] int32, ``valid`` [B, K] bool, K = ``max_detections``."""
    scores = jax.nn.sigmoid(out["cls_logits"].astype(jnp.float32))  # [B, P, C]
    if "centerness" in out:
        scores = scores * jnp.sqrt(jax.nn.sigmoid(out["centerness"].astype(jnp.float32)))[..., None]
    b, p, c = scores.shape
    k = min(pre_nms_top_k, p * c)
    top, flat = jax.lax.top_k(scores.reshape(b, p * c), k)  # [B, k]
    loc, cls = flat // c, flat % c
    boxes = jnp.take_along_axis(out["boxes"].astype(jnp.float32), loc[..., None], axis=1)
    cand = jnp.where(top > score_threshold, top, -jnp.inf)
    n_out = min(max_detections, k)

    def one(bx, sc, cl):
        idx, ok = batched_nms(bx, sc, cl, iou_threshold, n_out)
        return bx[idx], sc[idx], cl[idx], ok

    bx, sc, cl, ok = jax.vmap(one)(boxes, cand, cls)
    sc = jnp.where(ok, sc, 0.0)
    return {"boxes": bx, "scores": sc, "classes": cl.astype(jnp.int32), "valid": ok}


def coco_map(det, gt) -> dict:
    """COCO box mAP@[0.5:0.95] ('map') and mAP@0.5 ('map50') by pycocotools (100 detections
    per image, area 'all').

    Args (numpy, one row per image):
      det: {"boxes" [N, K, 4] xyxy, "scores" [N, K], "classes" [N, K], "valid" [N, K]}.
      gt: {"boxes" [N, M, 4] xyxy (same units), "labels" [N, M], "box_valid" [N, M],
        "image_valid" [N], optionally "crowd" [N, M] (pycocotools' iscrowd: detections
        inside a crowd box are ignored, and a crowd box is never a miss)}: images with
        image_valid False (evaluation padding) count nowhere.
    No ground truth at all gives NaN.
    """
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError as e:
        raise ImportError("COCO mAP needs pycocotools: pip install pycocotools") from e
    det = {k: np.asarray(v) for k, v in det.items()}
    gt = {k: np.asarray(v) for k, v in gt.items()}
    crowd = gt.get("crowd", np.zeros_like(gt["box_valid"]))
    images, annotations, results = [], [], []
    classes = set()
    for i in np.flatnonzero(gt["image_valid"]):
        images.append({"id": int(i) + 1})
        ok = gt["box_valid"][i]
        for bx, lb, cr in zip(gt["boxes"][i][ok], gt["labels"][i][ok], crowd[i][ok]):
            x1, y1, x2, y2 = (float(v) for v in bx)
            classes.add(int(lb))
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": int(i) + 1,
                    "category_id": int(lb) + 1,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
                    "iscrowd": int(cr),
                }
            )
        keep = det["valid"][i]
        for bx, sc, cl in zip(
            det["boxes"][i][keep], det["scores"][i][keep], det["classes"][i][keep]
        ):
            x1, y1, x2, y2 = (float(v) for v in bx)
            results.append(
                {
                    "image_id": int(i) + 1,
                    "category_id": int(cl) + 1,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "score": float(sc),
                }
            )
    if not any(a["iscrowd"] == 0 for a in annotations):
        return {"map": float("nan"), "map50": float("nan")}
    if not results:
        return {"map": 0.0, "map50": 0.0}
    cats = sorted(classes | {r["category_id"] - 1 for r in results})
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        coco = COCO()
        coco.dataset = {
            "images": images,
            "annotations": annotations,
            "categories": [{"id": c + 1} for c in cats],
        }
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(results), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {"map": float(ev.stats[0]), "map50": float(ev.stats[1])}


def save_detections_png(images, truth, found, path, mean, std, score_threshold=0.2, n=8):
    """Writes a grid of the first ``n`` images with their ground-truth boxes (green; crowd
    regions dashed) and detections (red, ``class:score``, those scoring at least
    ``score_threshold``); returns ``path``.

    ``images`` [B, H, W, C] normalised with ``mean`` / ``std``; ``truth`` = {"boxes" [B, M, 4]
    xyxy pixels, "labels", "box_valid", optionally "crowd"}; ``found``: ``decode``'s dict.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    images = np.asarray(images[:n], np.float32)
    truth = {k: np.asarray(v) for k, v in truth.items()}
    found = {k: np.asarray(v) for k, v in found.items()}
    crowd = truth.get("crowd", np.zeros_like(truth["box_valid"]))
    n = len(images)
    cols = min(n, 4)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i in range(n):
        ax = axes.ravel()[i]
        img = np.clip(images[i] * np.asarray(std) + np.asarray(mean), 0, 1)
        ax.imshow(img.squeeze(-1) if img.shape[-1] == 1 else img, cmap="gray")
        for b, lb, ok, cr in zip(
            truth["boxes"][i], truth["labels"][i], truth["box_valid"][i], crowd[i]
        ):
            if ok:
                style = "--" if cr else "-"
                ax.add_patch(
                    Rectangle(b[:2], b[2] - b[0], b[3] - b[1], fill=False, ec="lime", ls=style)
                )
                ax.text(b[0], b[3], str(int(lb)), color="lime", fontsize=7, va="top")
        for b, sc, cl, ok in zip(
            found["boxes"][i], found["scores"][i], found["classes"][i], found["valid"][i]
        ):
            if ok and sc >= score_threshold:
                ax.add_patch(Rectangle(b[:2], b[2] - b[0], b[3] - b[1], fill=False, ec="red"))
                ax.text(b[0], b[1], f"{int(cl)}:{sc:.2f}", color="red", fontsize=7, va="bottom")
    fig.suptitle("green: ground truth, red: detections (class:score)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
