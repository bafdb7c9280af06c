"""Optimiser recipes: schedules, weight-decay masks, layer-wise lr decay, frozen groups.

``make_optimizer(config.optimizer, params, num_steps, global_batch_size)`` returns
``(tx, schedule, groups)``: an optax transformation (SGD+Nesterov, AdamW, LARS or LAMB with
global-norm clipping, a weight-decay mask, layer-wise lr scales and frozen groups through
``optax.multi_transform`` + ``set_to_zero``), the learning-rate schedule (for logging) and a
per-parameter table ``{path: ParamGroup}`` that ``format_groups`` prints.

Rules (from MAE ``util/lr_decay.py``, SimMIM ``optimizer.py``, timm ``param_groups_weight_decay``):
  * no weight decay on params with ndim <= 1 (biases, norm scales; for a scanned stack the
    leading [depth] axis does not count) and on ``NO_DECAY_NAMES``;
  * ViT/MAE layer ids: cls_token / pos_embed / patch_embed 0, ``blocks_i`` i+1, the rest
    (norm, fc_norm, head) depth+1; scale = decay ** (depth + 1 - id);
  * Swin: patch_embed 0, ``layers_s_blocks_b`` sum(depths[:s]) + b + 1,
    ``layers_s_downsample`` sum(depths[:s+1]), the rest sum(depths) + 1.
"""

from __future__ import annotations

import dataclasses
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import traverse_util

NO_DECAY_NAMES = frozenset(
    {"pos_embed", "cls_token", "mask_token", "relative_position_bias_table", "decoder_pos_embed"}
)
# A path component naming an nn.scan stack of identical blocks (leading [depth] axis).
_STACK = re.compile(r"^(blocks|decoder_blocks|layers_\d+_blocks)$")


@dataclasses.dataclass(frozen=True)
class ParamGroup:
    """What the optimiser does to one parameter.

    Attributes:
      shape: the array shape; decay: whether weight decay applies; frozen: never updated;
      lr_scale: a float, or a tuple over the leading axis of a scanned stack.
    """

    shape: tuple
    decay: bool
    frozen: bool
    lr_scale: float | tuple


def _paths(params) -> dict[str, np.ndarray]:
    flat = traverse_util.flatten_dict(params, sep="/")
    return dict(flat)


def _stacked(path: str) -> bool:
    return any(_STACK.match(p) for p in path.split("/")[:-1])


def decay_mask(params):
    """True where weight decay applies (same tree structure as ``params``)."""

    def rule(path, x):
        names = [getattr(k, "key", str(k)) for k in path]
        ndim = x.ndim - (1 if any(_STACK.match(n) for n in names[:-1]) else 0)
        return ndim > 1 and not any(n in NO_DECAY_NAMES for n in names)

    return jax.tree_util.tree_map_with_path(rule, params)


def _family(top: list[str]) -> str | None:
    if any(re.match(r"^layers_\d+", k) for k in top):
        return "swin"
    if any(re.match(r"^blocks(_\d+)?$", k) for k in top):
        return "vit"
    return None


def layer_scales(params, decay: float):
    """Per-parameter lr scale (float, or an array over a scanned stack's leading axis)."""
    flat = _paths(params)
    top = sorted({p.split("/")[0] for p in flat})
    fam = _family(top)
    if decay == 1.0:
        return {p: 1.0 for p in flat}
    if fam is None:
        raise ValueError(
            f"layer_decay={decay} needs ViT/MAE/Swin parameter names (blocks_i or layers_s_blocks_b)"
            f"; this model has top-level modules {top[:8]}...; set config.optimizer.layer_decay=1.0"
        )
    out = {}
    if fam == "vit":
        depth = 0
        for p, x in flat.items():
            m = re.match(r"^blocks_(\d+)/", p)
            if m:
                depth = max(depth, int(m.group(1)) + 1)
            elif p.startswith("blocks/"):
                depth = max(depth, x.shape[0])
        n = depth + 1
        for p, x in flat.items():
            head = p.split("/")[0]
            if head.startswith("decoder_"):
                lid = n  # MAE decoder (pretraining has no layer decay; keep full lr)
            elif head in ("cls_token", "pos_embed", "patch_embed", "dist_token", "reg_token"):
                lid = 0
            elif re.match(r"^blocks_\d+$", head):
                lid = int(head.split("_")[1]) + 1
            elif head == "blocks":  # scanned: one scale per layer along the leading axis
                out[p] = tuple(float(decay ** (n - (i + 1))) for i in range(x.shape[0]))
                continue
            else:
                lid = n
            out[p] = float(decay ** (n - lid))
        return out
    # Swin
    depths: dict[int, int] = {}
    for p, x in flat.items():
        m = re.match(r"^layers_(\d+)_blocks_(\d+)/", p)
        if m:
            s, b = int(m.group(1)), int(m.group(2))
            depths[s] = max(depths.get(s, 0), b + 1)
        m = re.match(r"^layers_(\d+)_blocks/", p)
        if m:
            depths[int(m.group(1))] = x.shape[0]
    starts = np.cumsum([0] + [depths[s] for s in sorted(depths)])
    total = int(starts[-1])
    for p, x in flat.items():
        head = p.split("/")[0]
        if head == "patch_embed" or head in NO_DECAY_NAMES:
            lid = 0
        elif m := re.match(r"^layers_(\d+)_blocks_(\d+)$", head):
            lid = int(starts[int(m.group(1))]) + int(m.group(2)) + 1
        elif m := re.match(r"^layers_(\d+)_blocks$", head):
            s0 = int(starts[int(m.group(1))])
            out[p] = tuple(float(decay ** (total + 1 - (s0 + b + 1))) for b in range(x.shape[0]))
            continue
        elif m := re.match(r"^layers_(\d+)_downsample$", head):
            lid = int(starts[int(m.group(1)) + 1])
        else:
            lid = total + 1
        out[p] = float(decay ** (total + 1 - lid))
    return out


def param_groups(params, ocfg) -> dict[str, ParamGroup]:
    """The table of what happens to every parameter (see ``ParamGroup``)."""
    flat = _paths(params)
    mask = _paths(decay_mask(params))
    scales = layer_scales(params, float(ocfg.layer_decay))
    frozen_re = [re.compile(r) for r in ocfg.frozen]
    train_re = [re.compile(r) for r in ocfg.trainable]
    groups = {}
    for p, x in flat.items():
        frozen = any(r.search(p) for r in frozen_re)
        if train_re and not any(r.search(p) for r in train_re):
            frozen = True
        groups[p] = ParamGroup(tuple(x.shape), bool(mask[p]), frozen, scales[p])
    if all(g.frozen for g in groups.values()):
        raise ValueError(
            "every parameter is frozen: check config.optimizer.frozen / trainable regexes "
            f"against parameter paths such as {list(groups)[:4]}"
        )
    return groups


def make_schedule(ocfg, num_steps: int, steps_per_epoch: int, global_batch_size: int):
    """Warm-up (linear from 0) followed by cosine / linear / step / constant decay."""
    peak = float(ocfg.lr)
    if ocfg.base_batch_size > 0:
        peak *= global_batch_size / ocfg.base_batch_size  # linear scaling rule (Goyal et al.)
    warm = int(ocfg.warmup_steps)
    if warm < 0:
        warm = round(ocfg.warmup_epochs * steps_per_epoch)
    warm = min(warm, max(num_steps - 1, 0))
    rest = max(num_steps - warm, 1)
    end = peak * float(ocfg.end_lr_factor)
    if ocfg.schedule == "cosine":
        main = optax.cosine_decay_schedule(peak, rest, alpha=float(ocfg.end_lr_factor))
    elif ocfg.schedule == "linear":
        main = optax.linear_schedule(peak, end, rest)
    elif ocfg.schedule == "step":
        bounds = {int(b * num_steps) - warm: ocfg.step_factor for b in ocfg.step_boundaries}
        main = optax.piecewise_constant_schedule(peak, {k: v for k, v in bounds.items() if k > 0})
    elif ocfg.schedule == "constant":
        main = optax.constant_schedule(peak)
    else:
        raise ValueError(
            f"unknown schedule {ocfg.schedule!r}; use cosine, linear, step or constant"
        )
    if warm == 0:
        return main
    return optax.join_schedules([optax.linear_schedule(0.0, peak, warm), main], [warm])


def _pathstr(path) -> str:
    return "/".join(str(getattr(k, "key", k)) for k in path)


def _scale_by_tree(scales: dict):
    """Multiplies each update by a fixed per-parameter scale (layer-wise lr decay).

    ``scales`` maps 'a/b/c' paths to arrays broadcastable to the parameter; looked up by path
    so it also works on the partial trees ``optax.multi_transform`` hands to inner chains.
    """

    def init(params):
        del params
        return optax.EmptyState()

    def update(updates, state, params=None):
        del params

        def f(path, u):
            return u * jnp.asarray(scales[_pathstr(path)], u.dtype)

        return jax.tree_util.tree_map_with_path(f, updates), state

    return optax.GradientTransformation(init, update)


def _base(ocfg, schedule, mask):
    name = ocfg.name
    wd = float(ocfg.weight_decay)
    if name == "sgd":
        return optax.chain(
            optax.add_decayed_weights(wd, mask),
            optax.sgd(schedule, momentum=ocfg.momentum or None, nesterov=bool(ocfg.nesterov)),
        )
    if name == "adamw":
        return optax.adamw(
            schedule, b1=ocfg.b1, b2=ocfg.b2, eps=ocfg.eps, weight_decay=wd, mask=mask
        )
    if name == "lars":
        return optax.lars(
            schedule,
            weight_decay=wd,
            weight_decay_mask=mask,
            trust_ratio_mask=mask,
            momentum=ocfg.momentum,
        )
    if name == "lamb":
        return optax.lamb(
            schedule, b1=ocfg.b1, b2=ocfg.b2, eps=ocfg.eps, weight_decay=wd, mask=mask
        )
    raise ValueError(f"unknown optimizer {name!r}; use sgd, adamw, lars or lamb")


def make_optimizer(ocfg, params, num_steps: int, steps_per_epoch: int, global_batch_size: int):
    """Returns ``(tx, schedule, groups)``; see the module docstring."""
    groups = param_groups(params, ocfg)
    schedule = make_schedule(ocfg, num_steps, steps_per_epoch, global_batch_size)
    unflat = lambda d: traverse_util.unflatten_dict(d, sep="/")
    # Masks as callables of the (possibly partial, under multi_transform) parameter tree.
    mask = decay_mask

    def scale_array(g):
        s = np.asarray(g.lr_scale, np.float32)
        return s.reshape(s.shape + (1,) * (len(g.shape) - s.ndim))

    parts = [_base(ocfg, schedule, mask)]
    if any(g.lr_scale != 1.0 for g in groups.values()):
        parts.append(_scale_by_tree({p: scale_array(g) for p, g in groups.items()}))
    tx = optax.chain(*parts)
    if ocfg.clip_norm > 0:
        tx = optax.chain(optax.clip_by_global_norm(float(ocfg.clip_norm)), tx)
    if any(g.frozen for g in groups.values()):
        labels = unflat({p: "frozen" if g.frozen else "train" for p, g in groups.items()})
        tx = optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()}, labels)
    return tx, schedule, groups


def format_groups(groups: dict[str, ParamGroup], peak_lr: float, max_rows: int = 40) -> str:
    """A table of parameter groups (top-level module) with counts, lr and decay."""
    rows: dict[tuple, list] = {}
    for p, g in groups.items():
        head = p.split("/")[0]
        s = g.lr_scale
        scale = f"{min(s):.3g}..{max(s):.3g}" if isinstance(s, tuple) else f"{s:.3g}"
        key = (head, scale, "frozen" if g.frozen else "train")
        r = rows.setdefault(key, [0, 0, 0])
        n = int(np.prod(g.shape))
        r[0] += n
        r[1 if g.decay else 2] += n
    lines = [f"{'group':<28}{'params':>12}{'decayed':>12}{'lr scale':>14}{'peak lr':>12}  mode"]
    for i, ((head, scale, mode), (n, nd, _)) in enumerate(rows.items()):
        if i == max_rows:
            lines.append(f"... {len(rows) - max_rows} more groups")
            break
        lr = "0" if mode == "frozen" else f"{peak_lr * float(scale.split('..')[-1]):.3g}"
        lines.append(f"{head:<28}{n:>12,}{nd:>12,}{scale:>14}{lr:>12}  {mode}")
    total = sum(int(np.prod(g.shape)) for g in groups.values())
    frozen = sum(int(np.prod(g.shape)) for g in groups.values() if g.frozen)
    lines.append(f"total {total:,} parameters, {total - frozen:,} trainable")
    return "\n".join(lines)
