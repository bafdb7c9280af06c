"""Optimiser recipes: schedules, weight-decay masks, layer-wise lr decay, frozen groups.

``make_optimizer(ocfg, params, num_steps, steps_per_epoch, global_batch_size, groups_of=None,
prefix=())`` returns ``(tx, schedule, groups)``: an optax transformation (SGD+Nesterov,
AdamW, LARS or LAMB with optional global-norm clipping, a weight-decay mask, layer-wise lr
scales and frozen groups through ``optax.multi_transform`` + ``set_to_zero``), the
learning-rate schedule (for logging) and a per-parameter table ``{path: ParamGroup}`` that
``format_groups`` prints.

What a parameter is (exempt from weight decay, inside a scanned stack, which layer for
layer-wise lr decay) is declared by its model family as a
``jaxbones.layers.param_groups.ParamGroups`` in the registry entry (``groups_of``); ``prefix``
says where the model's tree sits inside the task's parameters (a linear probe's
``backbone``). Rules (MAE ``util/lr_decay.py``, timm ``param_groups_weight_decay``):
  * no weight decay on params with ndim <= 1 (a scanned stack's leading [depth] axis does
    not count) and on the family's ``no_decay`` names;
  * lr scale = layer_decay ** (L - id) with the family's layer ids and L layers; parameters
    outside the model's tree (a probe's head) count as layer L.

The optimisers and schedules step as the PyTorch code the recipes cite (timm
``create_optimizer_v2`` / ``timm.scheduler``, MAE ``util/lars.py`` and ``util/lr_sched.py``,
``torch.optim.lr_scheduler.MultiStepLR``); ``tests/test_optim_parity.py`` checks it step by
step and names the deliberate differences.
"""

from __future__ import annotations

import dataclasses
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import traverse_util

from jaxbones.layers.param_groups import ParamGroups

_NO_FACTS = ParamGroups()


@dataclasses.dataclass(frozen=True)
class ParamGroup:
    """What the optimiser does to one parameter.

    Attributes:
      shape: the array shape; decay: whether weight decay applies (and, for LARS and LAMB,
      the trust ratio); frozen: never updated; lr_scale: a float, or a tuple over the
      leading axis of a scanned stack; stacked: the leading axis is a scanned stack's
      [depth] (per-layer norms for the trust ratio).
    """

    shape: tuple
    decay: bool
    frozen: bool
    lr_scale: float | tuple
    stacked: bool = False


def _paths(params) -> dict[str, np.ndarray]:
    flat = traverse_util.flatten_dict(params, sep="/")
    return dict(flat)


def flat_shapes(params) -> dict[str, tuple]:
    """``{'a/b/c': shape}`` of a parameter tree (arrays or ShapeDtypeStructs)."""
    return {p: tuple(x.shape) for p, x in _paths(params).items()}


def decay_mask(params, groups_of: ParamGroups | None = None):
    """True where weight decay applies (same tree structure as ``params``)."""
    facts = groups_of or _NO_FACTS
    return jax.tree_util.tree_map_with_path(
        lambda path, x: facts.decays(_pathstr(path), tuple(x.shape)), params
    )


def layer_scales(params, decay: float, groups_of: ParamGroups | None = None, prefix=()):
    """Per-parameter lr scale (float, or a tuple over a scanned stack's leading axis)."""
    flat = _paths(params)
    if decay == 1.0:
        return {p: 1.0 for p in flat}
    if groups_of is None or groups_of.layer_ids is None:
        top = sorted({p.split("/")[0] for p in flat})
        raise ValueError(
            f"layer_decay={decay} needs the model family's layer ids (ParamGroups.layer_ids in "
            f"its register_model call; ViT, MAE and Swin declare them); this model (top-level "
            f"modules {top[:8]}) has none: set config.optimizer.layer_decay=1.0"
        )
    pre = "/".join(prefix) + "/" if prefix else ""
    own = {p[len(pre) :]: tuple(x.shape) for p, x in flat.items() if p.startswith(pre)}
    ids, num_layers = groups_of.layer_ids(own)
    out = {}
    for p in flat:
        lid = ids[p[len(pre) :]] if p.startswith(pre) else num_layers
        if isinstance(lid, tuple):
            out[p] = tuple(float(decay ** (num_layers - i)) for i in lid)
        else:
            out[p] = float(decay ** (num_layers - lid))
    return out


def param_groups(params, ocfg, groups_of=None, prefix=()) -> dict[str, ParamGroup]:
    """The table of what happens to every parameter (see ``ParamGroup``)."""
    flat = _paths(params)
    mask = _paths(decay_mask(params, groups_of))
    scales = layer_scales(params, float(ocfg.layer_decay), groups_of, prefix)
    frozen_re = [re.compile(r) for r in ocfg.frozen]
    train_re = [re.compile(r) for r in ocfg.trainable]
    groups = {}
    for p, x in flat.items():
        frozen = any(r.search(p) for r in frozen_re)
        if train_re and not any(r.search(p) for r in train_re):
            frozen = True
        stacked = groups_of is not None and groups_of.stacked(p)  # as decay_mask reads it
        groups[p] = ParamGroup(tuple(x.shape), bool(mask[p]), frozen, scales[p], stacked)
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
    sched = main
    if warm:
        sched = optax.join_schedules([optax.linear_schedule(0.0, peak, warm), main], [warm])

    def schedule(step):
        # the step as a float: an int32 step count makes optax compute the lr in float32
        # even under jax_enable_x64 (whole steps are exact either way)
        return sched(jnp.asarray(step, jnp.result_type(float)))

    return schedule


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


def _scale_by_trust_ratio(coefficient: float, groups: dict[str, ParamGroup]):
    """LARS/LAMB layer adaptation: scales the update of each parameter with ``decay`` by
    ``coefficient * |p| / |u|`` (1 where either norm is 0); a scanned stack's layers get one
    ratio each (norms over all axes but the leading [depth] one).

    optax's ``scale_by_trust_ratio`` takes one norm over a whole leaf, which would mix the
    layers of a scanned stack, and ``optax.lamb`` adapts every parameter where the references
    (timm ``Lamb``, the LAMB paper's BERT code, MAE ``util/lars.py``) leave the parameters
    without weight decay (biases, norms) unadapted.
    """

    def init(params):
        del params
        return optax.EmptyState()

    def update(updates, state, params):
        def f(path, u, p):
            g = groups[_pathstr(path)]
            if not g.decay:
                return u
            axes = tuple(range(1, u.ndim)) if g.stacked else None
            pn = jnp.sqrt(jnp.sum(jnp.square(p.astype(jnp.float32)), axes, keepdims=True))
            un = jnp.sqrt(jnp.sum(jnp.square(u.astype(jnp.float32)), axes, keepdims=True))
            ratio = jnp.where((pn > 0) & (un > 0), coefficient * pn / un, 1.0)
            return u * ratio.astype(u.dtype)

        return jax.tree_util.tree_map_with_path(f, updates, params), state

    return optax.GradientTransformation(init, update)


def _base(ocfg, schedule, mask, groups):
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
        # MAE util/lars.py (MoCo v3): momentum accumulates the adapted gradients and the lr
        # multiplies the buffer (optax.lars scales by the lr before the momentum, which
        # differs as soon as the lr changes: under warm-up and cosine)
        return optax.chain(
            optax.add_decayed_weights(wd, mask),
            _scale_by_trust_ratio(0.001, groups),
            optax.trace(decay=float(ocfg.momentum), nesterov=False),
            optax.scale_by_learning_rate(schedule),
        )
    if name == "lamb":
        return optax.chain(
            optax.scale_by_adam(b1=ocfg.b1, b2=ocfg.b2, eps=ocfg.eps),
            optax.add_decayed_weights(wd, mask),
            _scale_by_trust_ratio(1.0, groups),
            optax.scale_by_learning_rate(schedule),
        )
    raise ValueError(f"unknown optimizer {name!r}; use sgd, adamw, lars or lamb")


def make_optimizer(
    ocfg,
    params,
    num_steps: int,
    steps_per_epoch: int,
    global_batch_size: int,
    groups_of: ParamGroups | None = None,
    prefix: tuple[str, ...] = (),
):
    """The optimiser of a run: ``(tx, schedule, groups)``.

    Args:
      ocfg: ``config.optimizer`` (name 'sgd' | 'adamw' | 'lars' | 'lamb', lr, base_batch_size,
        schedule, warm-up, weight_decay, layer_decay, clip_norm, frozen, ...).
      params: the parameter tree (arrays or ``jax.ShapeDtypeStruct``; only paths and shapes
        are read).
      num_steps, steps_per_epoch, global_batch_size: for the schedule (epoch-based warm-up,
        lr x global_batch_size / base_batch_size).
      groups_of: the model family's ``ParamGroups`` (None: only the ndim <= 1 weight-decay
        rule, no layer ids).
      prefix: where the model's tree sits inside ``params`` (``('backbone',)`` for a probe).

    Returns:
      tx: the optax transformation: optional global-norm clipping (``clip_norm > 0``), the
        optimiser with its weight-decay mask, layer-wise lr scales when any differs from 1,
        and ``set_to_zero`` for frozen parameters through ``optax.multi_transform``.
      schedule: step -> learning rate (for logging).
      groups: ``{path: ParamGroup}``, the table ``format_groups`` prints.
    """
    groups = param_groups(params, ocfg, groups_of, prefix)
    schedule = make_schedule(ocfg, num_steps, steps_per_epoch, global_batch_size)
    unflat = lambda d: traverse_util.unflatten_dict(d, sep="/")

    # The mask as a callable of the (possibly partial, under multi_transform) parameter tree,
    # read from the table by path.
    def mask(tree):
        return jax.tree_util.tree_map_with_path(lambda p, _: groups[_pathstr(p)].decay, tree)

    def scale_array(g):
        s = np.asarray(g.lr_scale, np.float32)
        return s.reshape(s.shape + (1,) * (len(g.shape) - s.ndim))

    parts = [_base(ocfg, schedule, mask, groups)]
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
