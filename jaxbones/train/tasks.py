"""Tasks: what a batch means, how the loss and the eval metrics are computed.

``TASKS`` maps a name to a ``Task``; ``get_task(name)`` looks one up and
``register_task(task)`` adds one (the extension point: a new task subclasses ``Task``).
Built in: 'classification' (softmax cross-entropy; label smoothing; mixup/cutmix soft labels
from ``jaxbones.data.mixup_cutmix``), 'classification_frozen' (the same with the model in
inference mode while training: a new head on a frozen network), 'linprobe' (frozen backbone
features -> BatchNorm without affine (eps 1e-6) -> linear head, as MAE's
``main_linprobe.py``), 'mae' (the model returns its reconstruction loss), 'segmentation'
(per-pixel cross-entropy + optional Dice from ``jaxbones.train.segmentation``, ignore index,
deep-supervision heads; mean IoU from a confusion matrix), 'clip' (the contrastive loss of
``jaxbones.train.contrastive``; in-batch retrieval accuracy), 'detection' (FCOS or
per-token heads, ``jaxbones.train.detection``; COCO mAP by pycocotools).

A ``Task`` has:
  name: the ``config.task`` value it is registered under.
  params_prefix: where a params-only checkpoint of the backbone goes in this task's tree
    (``()``: the root; ``('backbone',)`` for 'linprobe').
  best_mode: 'max' or 'min', the direction in which ``config.best_metric`` improves.
  build_model(config, num_classes, channels=3): the Linen module.
  init(model, config, rng, channels=3): the model's variables, from one zero image of the
    training size (plus the model's own extra init arguments, ``registry.init_kwargs``).
  loss(model, variables, batch, rng, config): (loss f32, metrics dict, new batch_stats).
  eval_sums(model, variables, batch, config): dict of per-batch sums, with 'count'.
  combine(acc, out): accumulates one batch's eval_sums (default: sums; detection: rows).
  finalize(sums): eval metrics from the accumulated sums (the base class divides each sum
    by 'count').
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxbones.layers.linear import Dense
from jaxbones.layers.norm import stats_dtype
from jaxbones.registry import create_model, init_kwargs, model_fields
from jaxbones.train import segmentation

TASKS: dict[str, Task] = {}


def register_task(task: Task) -> Task:
    TASKS[task.name] = task
    return task


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; registered tasks: {sorted(TASKS)}")
    return TASKS[name]


def _rngs(rng):
    k1, k2, k3 = jax.random.split(rng, 3)
    return {"dropout": k1, "drop_path": k2, "mask": k3}


def model_kwargs(config, **extra) -> dict:
    """``config.model_kwargs`` plus the compute dtype and ``extra`` for fields the model has."""
    fields = model_fields(config.model)
    kw = dict(config.model_kwargs.to_dict())
    if "dtype" in fields and "dtype" not in kw and config.dtype != "float32":
        kw["dtype"] = jnp.dtype(config.dtype)
    for k, v in extra.items():
        if k in fields:
            kw.setdefault(k, v)
    return kw


def _apply(model, variables, x, train, rng, **kw):
    """Runs the model; returns (output, new batch_stats or the old ones)."""
    if train and "batch_stats" in variables:
        out, upd = model.apply(
            variables, x, train=True, rngs=_rngs(rng), mutable=["batch_stats"], **kw
        )
        return out, upd["batch_stats"]
    rngs = _rngs(rng) if train else None
    out = model.apply(variables, x, train=train, rngs=rngs, **kw)
    return out, variables.get("batch_stats", {})


class Task:
    """Base class; see the module docstring for the methods."""

    name = "base"
    params_prefix: tuple[str, ...] = ()
    best_mode = "max"

    def build_model(self, config, num_classes, channels=3):
        kw = model_kwargs(
            config, num_classes=num_classes, in_chans=channels, img_size=config.image_size
        )
        return create_model(config.model, **kw)

    def init(self, model, config, rng, channels=3):
        # the training image size, not the registry's default: a ViT's position embedding
        # follows img_size, and a probe's backbone is built at the training size too
        x = jnp.zeros((1, config.image_size, config.image_size, channels), jnp.float32)
        return model.init(_rngs(rng) | {"params": rng}, x, **init_kwargs(model))

    def loss(self, model, variables, batch, rng, config):
        raise NotImplementedError

    def eval_sums(self, model, variables, batch, config):
        raise NotImplementedError

    def finalize(self, sums):
        n = max(float(sums["count"]), 1.0)
        return {k: float(v) / n for k, v in sums.items() if k != "count"}

    def combine(self, acc, out):
        """Accumulates one eval batch's ``eval_sums`` (numpy) into ``acc`` (None at first)."""
        return out if acc is None else jax.tree_util.tree_map(np.add, acc, out)


def _valid(batch, n):
    v = batch.get("valid")
    return jnp.ones((n,), jnp.float32) if v is None else v.astype(jnp.float32)


class Classification(Task):
    name = "classification"

    def soft_labels(self, batch, rng, config, num_classes):
        images, labels = batch["image"], batch["label"]
        if config.mixup_alpha > 0 or config.cutmix_alpha > 0:
            from jaxbones import data  # the data helper's jittable mixup/cutmix

            return data.mixup_cutmix(
                rng,
                images,
                labels,
                num_classes=num_classes,
                mixup_alpha=config.mixup_alpha,
                cutmix_alpha=config.cutmix_alpha,
                label_smoothing=config.label_smoothing,
            )
        eps = config.label_smoothing
        onehot = jax.nn.one_hot(labels, num_classes, dtype=stats_dtype(images.dtype))
        return images, onehot * (1.0 - eps) + eps / num_classes

    def forward(self, model, variables, images, rng, train):
        return _apply(model, variables, images, train, rng)

    def loss(self, model, variables, batch, rng, config):
        mix_rng, rng = jax.random.split(rng)
        num_classes = self.num_classes(model, variables)
        images, soft = self.soft_labels(batch, mix_rng, config, num_classes)
        logits, bs = self.forward(model, variables, images, rng, True)
        logits = logits.astype(stats_dtype(logits.dtype))  # loss in f32 (f64 inputs: f64)
        loss = -jnp.mean(jnp.sum(soft * jax.nn.log_softmax(logits), axis=-1))
        acc = jnp.mean(jnp.argmax(logits, -1) == batch["label"])
        return loss, {"accuracy": acc}, bs

    def num_classes(self, model, variables):
        return model.num_classes

    def eval_sums(self, model, variables, batch, config):
        logits, _ = self.forward(model, variables, batch["image"], None, False)
        logits = logits.astype(jnp.float32)
        labels = batch["label"]
        valid = _valid(batch, labels.shape[0])
        nll = -jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], -1)[:, 0]
        top5 = jnp.any(jax.lax.top_k(logits, min(5, logits.shape[-1]))[1] == labels[:, None], -1)
        return {
            "loss": jnp.sum(nll * valid),
            "accuracy": jnp.sum((jnp.argmax(logits, -1) == labels) * valid),
            "top5": jnp.sum(top5 * valid),
            "count": jnp.sum(valid),
        }


class FrozenClassification(Classification):
    """Classification with the model in inference mode also while training (fine-tuning a
    new head on a frozen network): BatchNorm normalises with its running statistics and
    keeps them, dropout and drop path are off, so only the trainable parameters change what
    the model computes."""

    name = "classification_frozen"

    def forward(self, model, variables, images, rng, train):
        return _apply(model, variables, images, False, None)


class LinearProbe(nn.Module):
    """A frozen backbone (pooled features, eval mode, no gradient) + BatchNorm + linear head.

    Attributes:
      backbone: the feature extractor (built with ``num_classes=0``); num_classes: classes.
    """

    backbone: nn.Module
    num_classes: int

    @nn.compact
    def __call__(self, x, train: bool = False):
        feats = jax.lax.stop_gradient(self.backbone(x, train=False))
        feats = feats.astype(jnp.float32)
        # MAE main_linprobe.py: BatchNorm1d(affine=False, eps=1e-6) before the head.
        feats = nn.BatchNorm(
            use_running_average=not train,
            use_scale=False,
            use_bias=False,
            epsilon=1e-6,
            momentum=0.9,
            name="head_norm",
        )(feats)
        # MAE: head weight trunc_normal(std=0.01), zero bias.
        return Dense(
            self.num_classes, kernel_init=nn.initializers.truncated_normal(0.01), name="head"
        )(feats)


class LinProbe(Classification):
    name = "linprobe"
    params_prefix = ("backbone",)

    def build_model(self, config, num_classes, channels=3):
        kw = model_kwargs(config, in_chans=channels, img_size=config.image_size)
        kw["num_classes"] = 0  # pooled features
        return LinearProbe(create_model(config.model, **kw), num_classes)


class MAE(Task):
    name = "mae"
    best_mode = "min"

    def build_model(self, config, num_classes, channels=3):
        kw = model_kwargs(
            config, mask_ratio=config.mask_ratio, in_chans=channels, img_size=config.image_size
        )
        return create_model(config.model, **kw)

    def loss(self, model, variables, batch, rng, config):
        (loss, _, _), bs = _apply(model, variables, batch["image"], True, rng)
        return loss.astype(jnp.float32), {}, bs

    def eval_sums(self, model, variables, batch, config):
        # A fixed masking noise keeps eval deterministic (the same patches every eval).
        b = batch["image"].shape[0]
        rng = jax.random.PRNGKey(0)
        outs = model.apply(variables, batch["image"], train=False, rngs={"mask": rng})
        valid = _valid(batch, b)
        del b
        return {"loss": outs[0].astype(jnp.float32) * jnp.sum(valid), "count": jnp.sum(valid)}


class Segmentation(Task):
    """Per-pixel classification: ``batch = {"image" [B, H, W, C], "mask" int [B, H, W]}``.

    Loss: cross-entropy (+ ``config.dice_weight`` x soft Dice) over the pixels whose mask is
    not ``config.ignore_index`` (default 255), from ``jaxbones.train.segmentation``.
    Deep-supervision outputs (a list of logits: UNet++ / UNet3+ with ``train=True``) average
    the per-head losses; a ``(seg_logits, cls_logits)`` pair (UNet3+ ``cgm=True``) adds the
    image-level "has foreground" cross-entropy. Eval: a confusion matrix over the valid
    pixels of the real (non-padding) examples -> mean IoU (classes present in the ground
    truth or the predictions) and pixel accuracy.
    """

    name = "segmentation"

    @staticmethod
    def seg_logits(out):
        """The segmentation logits of a model output: the first head of a deep-supervision
        list (the full-resolution one), the first element of a ``(seg, cls)`` pair."""
        if isinstance(out, tuple) and len(out) == 2 and getattr(out[1], "ndim", 0) == 2:
            out = out[0]
        if isinstance(out, list | tuple):
            out = out[0]
        return out

    def loss(self, model, variables, batch, rng, config):
        out, bs = _apply(model, variables, batch["image"], True, rng)
        ignore = config.ignore_index
        loss = segmentation.segmentation_loss(
            out,
            batch["mask"],
            ignore_index=ignore,
            dice_weight=config.dice_weight,
            label_smoothing=config.label_smoothing,
        )
        mask = batch["mask"]
        logits = self.seg_logits(out).astype(jnp.float32)
        valid = mask != ignore
        hits = jnp.sum((jnp.argmax(logits, -1) == mask) & valid)
        acc = hits / jnp.maximum(jnp.sum(valid), 1)
        return loss, {"pixel_accuracy": acc}, bs

    def eval_sums(self, model, variables, batch, config):
        out, _ = _apply(model, variables, batch["image"], False, None)
        logits = self.seg_logits(out)
        k = logits.shape[-1]
        ignore = config.ignore_index
        # padding examples (valid=False) count nowhere: their pixels become ignored
        valid = _valid(batch, logits.shape[0])[:, None, None] > 0
        mask = jnp.where(valid, batch["mask"], ignore)
        conf = segmentation.confusion_matrix(logits, mask, k, ignore_index=ignore)  # [true, pred]
        return {"confusion": conf, "count": jnp.sum(conf)}

    def finalize(self, sums):
        conf = np.asarray(sums["confusion"], np.float64)
        inter = np.diag(conf)
        union = conf.sum(0) + conf.sum(1) - inter
        present = union > 0
        iou = inter[present] / union[present]
        return {
            "mean_iou": float(iou.mean()) if iou.size else 0.0,
            "pixel_accuracy": float(inter.sum() / max(conf.sum(), 1.0)),
        }


for _t in (Classification(), FrozenClassification(), LinProbe(), MAE(), Segmentation()):
    register_task(_t)


class CLIPTask(Task):
    """'clip': contrastive image-text training. Batches are ``{"image": [B, H, W, C] float,
    "text": [B, context_length] int token ids}`` (``jaxbones.text.tokenize``); the loss is
    ``jaxbones.train.contrastive.clip_loss`` over the global batch. Eval sums the loss and
    the in-batch image->text / text->image top-1 retrieval accuracy (padding rows, where
    ``valid`` is 0, are excluded from both the targets and the candidates)."""

    name = "clip"
    best_mode = "min"

    def build_model(self, config, num_classes, channels=3):
        kw = model_kwargs(config, in_chans=channels, img_size=config.image_size)
        return create_model(config.model, **kw)

    def loss(self, model, variables, batch, rng, config):
        from jaxbones.train.contrastive import clip_loss

        (img, txt, scale), bs = _apply(
            model, variables, batch["image"], True, rng, text=batch["text"]
        )
        loss = clip_loss(img, txt, scale)
        return loss, {"logit_scale": scale.astype(jnp.float32)}, bs

    def eval_sums(self, model, variables, batch, config):
        (img, txt, scale), _ = _apply(
            model, variables, batch["image"], False, None, text=batch["text"]
        )
        n = img.shape[0]
        valid = _valid(batch, n)
        logits = scale * img.astype(jnp.float32) @ txt.astype(jnp.float32).T  # [B, B]
        pair_ok = valid[:, None] * valid[None, :] > 0
        logits = jnp.where(pair_ok, logits, -1e9)  # padding never competes
        targets = jnp.arange(n)

        def xent(lg):
            return -jnp.take_along_axis(jax.nn.log_softmax(lg, -1), targets[:, None], -1)[:, 0]

        loss = (xent(logits) + xent(logits.T)) / 2
        return {
            "loss": jnp.sum(loss * valid),
            "i2t_accuracy": jnp.sum((jnp.argmax(logits, -1) == targets) * valid),
            "t2i_accuracy": jnp.sum((jnp.argmax(logits, 0) == targets) * valid),
            "count": jnp.sum(valid),
        }


register_task(CLIPTask())


class Detection(Task):
    """Object detection: ``batch = {"image", "boxes" [B, M, 4] xyxy normalised, "labels"
    [B, M] int, "box_valid" [B, M] bool, "box_crowd" [B, M] bool (optional)}``
    (``jaxbones.data`` pads the boxes to ``config.detection.max_boxes``; crowd boxes are no
    training target and are pycocotools' ``iscrowd`` ground truth in evaluation).

    Model: ``jaxbones.models.detection``'s ``FCOS`` (FPN + dense head) or ``TokenDetector``
    (per-token head for ViT / MAE) over ``create_model(config.model, features_only=True)``;
    ``config.detection.head`` picks one ('auto': the token head when every feature level has
    the same stride, a plain ViT). Loss, assignment and decoding: ``jaxbones.train.detection``.
    Eval: per-image detections and ground truth gathered from every process (padding rows
    flagged), then COCO mAP@[0.5:0.95] ('map') and mAP@0.5 ('map50') by pycocotools.
    """

    name = "detection"
    params_prefix = ("backbone",)

    def build_model(self, config, num_classes, channels=3):
        from jaxbones.models.detection import FCOS, TokenDetector

        if "features_only" not in model_fields(config.model):
            raise ValueError(
                f"task='detection' needs a backbone with features_only; {config.model!r} has "
                "none: use a registered backbone (resnet18, cspdarknet53, vit_*, ...)"
            )
        d = config.detection
        kw = model_kwargs(config, in_chans=channels, img_size=config.image_size)
        kw["features_only"] = True
        backbone = create_model(config.model, **kw)
        head = d.head
        if head == "auto":
            reductions = {i["reduction"] for i in backbone.feature_info}
            head = "token" if len(reductions) == 1 else "fcos"
        dtype = kw.get("dtype")
        if head == "token":
            # the last block's tokens, unless model_kwargs chose the blocks
            if "out_indices" in model_fields(config.model) and "out_indices" not in kw:
                backbone = backbone.clone(out_indices=(-1,))
            return TokenDetector(backbone, num_classes, dtype=dtype)
        if head != "fcos":
            raise ValueError(f"config.detection.head={head!r}: use 'fcos', 'token' or 'auto'")
        return FCOS(
            backbone,
            num_classes,
            num_levels=d.num_levels,
            fpn_dim=d.fpn_dim,
            num_convs=d.num_convs,
            dtype=dtype,
        )

    def loss(self, model, variables, batch, rng, config):
        from jaxbones.train import detection as det

        d = config.detection
        out, bs = _apply(model, variables, batch["image"], True, rng)
        loss, metrics = det.detection_loss(
            out,
            batch["boxes"],
            batch["labels"],
            batch["box_valid"],
            batch["image"].shape[1:3],
            gt_crowd=batch.get("box_crowd"),
            radius=d.center_radius,
            focal_alpha=d.focal_alpha,
            focal_gamma=d.focal_gamma,
            l1_weight=d.l1_weight,
            giou_weight=d.giou_weight,
        )
        return loss, metrics, bs

    def detect(self, model, variables, images, config):
        """``jaxbones.train.detection.decode``'s detections (pixels) of ``images`` with the
        decoding settings of ``config.detection``."""
        from jaxbones.train import detection as det

        d = config.detection
        out, _ = _apply(model, variables, images, False, None)
        return det.decode(
            out,
            score_threshold=d.score_threshold,
            iou_threshold=d.nms_iou,
            pre_nms_top_k=d.pre_nms_top_k,
            max_detections=d.max_detections,
        )

    @staticmethod
    def truth_pixels(batch) -> dict:
        """The batch's ground truth with boxes in input pixels (``coco_map``'s ``gt``)."""
        h, w = batch["image"].shape[1:3]
        scale = jnp.array([w, h, w, h], jnp.float32)
        return {
            "boxes": batch["boxes"].astype(jnp.float32) * scale,
            "labels": batch["labels"],
            "box_valid": batch["box_valid"],
            "crowd": batch.get("box_crowd", jnp.zeros_like(batch["box_valid"])),
        }

    def eval_sums(self, model, variables, batch, config):
        found = self.detect(model, variables, batch["image"], config)
        truth = self.truth_pixels(batch)
        n = batch["image"].shape[0]
        # per-image rows, not sums: mAP ranks every detection of the split together
        return {
            **{f"det_{k}": v for k, v in found.items()},
            **{f"gt_{k}": v for k, v in truth.items()},
            "image_valid": _valid(batch, n) > 0,
        }

    def combine(self, acc, out):
        if acc is None:
            return {k: [v] for k, v in out.items()}
        for k, v in out.items():
            acc[k].append(v)
        return acc

    def finalize(self, sums):
        from jaxbones.train import detection as det

        rows = {k: np.concatenate(v) for k, v in sums.items()}
        found = {k[4:]: v for k, v in rows.items() if k.startswith("det_")}
        truth = {k[3:]: v for k, v in rows.items() if k.startswith("gt_")}
        out = det.coco_map(found, {**truth, "image_valid": rows["image_valid"]})
        out["images"] = int(np.sum(rows["image_valid"]))
        return out


register_task(Detection())
