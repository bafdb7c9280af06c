"""Detection heads on any backbone's ``features_only`` maps.

``FCOS``: a dense one-stage detector (Tian et al., "FCOS: Fully Convolutional One-Stage Object
Detection", 2019): an FPN neck over the backbone's coarsest ``num_levels`` maps (lateral 1x1
convolutions, nearest-neighbour top-down sum, 3x3 output convolutions), then one head shared
by every level: a classification tower and a box tower (``num_convs`` x conv3x3-GroupNorm-
ReLU), per-location class logits, the four distances to the box sides (``exp(scale_l x) x
stride``, a learned scale per level) and a centre-ness logit on the box tower (FCOS v2).

``TokenDetector``: the design documents' head on ViT / MAE tokens: the last block's patch
tokens -> per-token class logits [B, L, C] (a Linear layer) and a box [B, L, 4] (a 3-layer
MLP -> sigmoid -> normalised (cx, cy, w, h)), fine-tuned from a ViT / MAE checkpoint (its
backbone parameters live under ``backbone``, as the ViT's own).

Both return the dict ``jaxbones.train.detection`` documents: ``cls_logits`` [B, P, C],
``boxes`` [B, P, 4] xyxy in input pixels, ``points`` [P, 2], ``strides`` [P] (+
``centerness`` [B, P] for FCOS). Classification biases start at the focal-loss prior
``-log((1 - 0.01) / 0.01)`` (RetinaNet), so early training is not swamped by background.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxbones.layers.linear import Dense

_PRIOR_PROB = 0.01


def _prior_bias(key, shape, dtype=jnp.float32):
    return jnp.full(shape, -math.log((1 - _PRIOR_PROB) / _PRIOR_PROB), dtype)


def grid_points(height: int, width: int, stride: float):
    """[h * w, 2] (x, y) pixel centres of a stride-``stride`` map's cells, row-major."""
    ys, xs = np.mgrid[0:height, 0:width]
    pts = np.stack([xs.ravel(), ys.ravel()], -1).astype(np.float32)
    return (pts + 0.5) * stride


def _features(backbone, x, train):
    feats = backbone(x, train=train)
    return list(feats) if isinstance(feats, list | tuple) else [feats]


class FCOS(nn.Module):
    """FCOS detector over a ``features_only`` backbone (module docstring).

    Attributes:
      backbone: a ``features_only`` module with ``feature_info`` (channels, reduction).
      num_classes: object classes (sigmoid per class; no background class).
      num_levels: the coarsest maps used by the FPN (all when larger than the backbone has).
      fpn_dim: FPN and head width; num_convs: tower depth; num_groups: GroupNorm groups.
      dtype, param_dtype: compute and parameter dtypes.
    """

    backbone: nn.Module
    num_classes: int
    num_levels: int = 3
    fpn_dim: int = 128
    num_convs: int = 2
    num_groups: int = 16
    dtype: Any = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        info = self.backbone.feature_info
        feats = _features(self.backbone, x, train)[-self.num_levels :]
        strides = [float(i["reduction"]) for i in info][-self.num_levels :]
        conv = {"dtype": self.dtype, "param_dtype": self.param_dtype}
        lat = [
            nn.Conv(self.fpn_dim, (1, 1), name=f"fpn_lateral{i}", **conv)(f)
            for i, f in enumerate(feats)
        ]
        for i in range(len(lat) - 2, -1, -1):  # top-down: coarse to fine
            up = jax.image.resize(lat[i + 1], lat[i].shape[:3] + lat[i + 1].shape[3:], "nearest")
            lat[i] = lat[i] + up
        pyramid = [
            nn.Conv(self.fpn_dim, (3, 3), padding=1, name=f"fpn_output{i}", **conv)(f)
            for i, f in enumerate(lat)
        ]

        def tower(prefix):
            layers = []
            for j in range(self.num_convs):
                layers.append(nn.Conv(self.fpn_dim, (3, 3), padding=1, name=f"{prefix}{j}", **conv))
                layers.append(
                    nn.GroupNorm(self.num_groups, name=f"{prefix}{j}_norm", **conv, epsilon=1e-5)
                )
            return layers

        def run(layers, h):
            for j in range(0, len(layers), 2):
                h = nn.relu(layers[j + 1](layers[j](h)))
            return h

        cls_tower, box_tower = tower("cls_conv"), tower("box_conv")
        cls_out = nn.Conv(
            self.num_classes, (3, 3), padding=1, bias_init=_prior_bias, name="cls_logits", **conv
        )
        box_out = nn.Conv(4, (3, 3), padding=1, name="box_ltrb", **conv)
        ctr_out = nn.Conv(1, (3, 3), padding=1, name="centerness", **conv)
        logits, boxes, ctr, points, point_strides = [], [], [], [], []
        for lvl, (p, s) in enumerate(zip(pyramid, strides, strict=True)):
            b, h, w, _ = p.shape
            pts = jnp.asarray(grid_points(h, w, s))
            ct, bt = run(cls_tower, p), run(box_tower, p)
            scale = self.param(f"scale{lvl}", nn.initializers.ones, (), self.param_dtype)
            raw = box_out(bt).astype(jnp.float32) * scale
            ltrb = jnp.exp(jnp.clip(raw, -10.0, 10.0)).reshape(b, h * w, 4) * s
            boxes.append(jnp.concatenate([pts - ltrb[..., :2], pts + ltrb[..., 2:]], -1))
            logits.append(cls_out(ct).reshape(b, h * w, self.num_classes))
            ctr.append(ctr_out(bt).reshape(b, h * w))
            points.append(pts)
            point_strides.append(jnp.full((h * w,), s, jnp.float32))
        return {
            "cls_logits": jnp.concatenate(logits, 1),
            "boxes": jnp.concatenate(boxes, 1),
            "centerness": jnp.concatenate(ctr, 1),
            "points": jnp.concatenate(points, 0),
            "strides": jnp.concatenate(point_strides, 0),
        }


class TokenDetector(nn.Module):
    """Per-token detection head on a ViT / MAE encoder (module docstring).

    Attributes:
      backbone: a ``features_only`` ViT (its last returned map is used: [B, h, w, D]).
      num_classes: object classes; hidden: the box MLP width (0: the embedding width).
      dtype, param_dtype: compute and parameter dtypes.
    """

    backbone: nn.Module
    num_classes: int
    hidden: int = 0
    dtype: Any = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        f = _features(self.backbone, x, train)[-1]  # [B, h, w, D]
        b, gh, gw, d = f.shape
        stride = float(self.backbone.feature_info[-1]["reduction"])
        tokens = f.reshape(b, gh * gw, d)  # [B, L, D]
        kw = {"dtype": self.dtype, "param_dtype": self.param_dtype}
        logits = Dense(self.num_classes, bias_init=_prior_bias, name="cls_head", **kw)(tokens)
        hidden = self.hidden or d
        h = nn.relu(Dense(hidden, name="box_fc1", **kw)(tokens))
        h = nn.relu(Dense(hidden, name="box_fc2", **kw)(h))
        cxcywh = jax.nn.sigmoid(Dense(4, name="box_fc3", **kw)(h).astype(jnp.float32))
        height, width = x.shape[1], x.shape[2]
        size = jnp.array([width, height], jnp.float32)
        centre, wh = cxcywh[..., :2] * size, cxcywh[..., 2:] * size
        return {
            "cls_logits": logits,
            "boxes": jnp.concatenate([centre - wh / 2, centre + wh / 2], -1),
            "points": jnp.asarray(grid_points(gh, gw, stride)),
            "strides": jnp.full((gh * gw,), stride, jnp.float32),
        }
