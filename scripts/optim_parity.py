"""Optimiser, schedule and parameter-group parity with the PyTorch code the recipes cite.

The comparisons behind README's optimiser and group tables (``scripts/train_parity.py
--optim`` renders them) and the assertions of ``tests/test_optim_parity.py`` and
``tests/test_param_group_parity.py``:

``optimizer_run(case, scan)``: ``STEPS`` steps of ``jaxbones.train.optim.make_optimizer`` and
of the reference on the same parameters and gradients (a tiny ViT-like tree, unrolled or as a
scanned stack whose layers are separate tensors on the torch side, so weight-decay
exemptions, layer-decay scales and per-layer trust ratios all take part):
  * SGD + Nesterov, AdamW: timm ``create_optimizer_v2`` (``torch.optim.SGD`` /
    ``torch.optim.AdamW``) with timm's ``CosineLRScheduler`` driving per-group ``lr_scale``
    (layer decay) and ``torch.nn.utils.clip_grad_norm_`` (timm ``train.py``, Swin
    ``main.py``) for clipping;
  * LAMB: timm ``Lamb`` (its default ``max_grad_norm=1.0`` is jaxbones' ``clip_norm=1.0``);
  * LARS: MAE ``util/lars.py`` (the linear-probe recipe's reference), restated as
    ``MaeLars``.

``schedule_lrs(case)``: the learning rates of ``make_schedule`` and of timm's
``CosineLRScheduler`` / ``PolyLRScheduler``, ``torch.optim.lr_scheduler.MultiStepLR``
(milestone m applies at step m; timm's ``MultiStepLRScheduler`` applies it at m - 1, its
documented convention, so it is compared with every milestone shifted by one) and MAE's
per-iteration ``util/lr_sched.py`` (fractional epochs).

``group_table(case)``: ``{torch name: (decayed, lr scale)}`` of ``optim.param_groups`` (names
mapped through the family's converter) and of the reference grouping, with the deliberate
differences (``GROUP_CASES``):
  * ViT, ResNet, Swin: timm ``param_groups_layer_decay`` / ``param_groups_weight_decay``
    with the model's ``no_weight_decay()`` (``create_optimizer_v2``'s grouping); the final
    ``norm`` of ViT and Swin shares the head's layer (scale 1) as in MAE ``util/lr_decay.py``
    and SimMIM ``optimizer.py``, where timm puts it one layer below (scale ``layer_decay``);
    Swin's patch merging at the start of stage s takes the id of stage s - 1's last block
    (SimMIM, whose layout ends a stage with its merging), where timm takes stage s's first
    block (one layer later);
  * MAE fine-tuning (a ViT with global pooling + fc_norm): MAE ``param_groups_lrd``
    (``mae_lrd_groups``);
  * MAE pretraining: MAE ``main_pretrain.py``, timm's ``add_weight_decay`` without a skip
    list (``mae_add_weight_decay``): only 1-D parameters and biases are exempt, so
    ``cls_token`` and ``mask_token`` are decayed; the fixed sin-cos tables are not trained.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch
from flax import traverse_util

from jaxbones.registry import FAST_COMPILE

STEPS = 8  # optimiser steps compared
D = 6  # width of the tiny parameter tree


def _vit_groups():
    from jaxbones.registry import get_entry

    return get_entry("vit_base_patch16_224").param_groups


def _params(scan: bool, depth: int = 2) -> dict:
    rng = np.random.default_rng(0)

    def w(*shape):
        return rng.standard_normal(shape).astype(np.float32) * 0.5

    def blk():
        return {
            "attn": {"qkv": {"kernel": w(D, 3 * D), "bias": w(3 * D)}},
            "norm1": {"scale": 1 + w(D), "bias": w(D)},
        }

    p = {
        "cls_token": w(1, 1, D),
        "patch_embed": {"proj": {"kernel": w(2, 2, 3, D), "bias": w(D)}},
        "norm": {"scale": 1 + w(D), "bias": w(D)},
        "head": {"kernel": w(D, 5), "bias": w(5)},
    }
    if scan:
        blocks = [blk() for _ in range(depth)]
        p["blocks"] = jax.tree_util.tree_map(lambda *x: np.stack(x), *blocks)
    else:
        for i in range(depth):
            p[f"blocks_{i}"] = blk()
    return p


def _grads(params, step: int, scale: float) -> dict:
    rng = np.random.default_rng(100 + step)
    return jax.tree_util.tree_map(
        lambda x: (rng.standard_normal(x.shape) * scale).astype(np.float32), params
    )


def _torch_tensors(flat: dict, groups: dict) -> list[tuple[str, int | None, np.ndarray]]:
    """(path, layer of a scanned stack or None, array): a stack's layers are separate tensors,
    as in the torch model."""
    out = []
    for p, x in flat.items():
        if groups[p].stacked:
            out += [(p, i, x[i]) for i in range(x.shape[0])]
        else:
            out.append((p, None, x))
    return out


def _torch_groups(tensors, groups, wd):
    by_key: dict = {}
    for p, i, t in tensors:
        g = groups[p]
        scale = g.lr_scale[i] if isinstance(g.lr_scale, tuple) else g.lr_scale
        by_key.setdefault((g.decay, float(scale)), []).append(t)
    return [
        {"params": ts, "weight_decay": wd if decay else 0.0, "lr_scale": scale}
        for (decay, scale), ts in by_key.items()
    ]


class MaeLars(torch.optim.Optimizer):
    """The rule of MAE ``util/lars.py``: for ndim > 1, d = (g + wd p) * trust, trust =
    0.001 |p| / |g + wd p| (1 where a norm is 0); mu = m mu + d; p -= lr mu."""

    def __init__(self, params, lr=0.0, weight_decay=0.0, momentum=0.9):
        super().__init__(params, {"lr": lr, "weight_decay": weight_decay, "momentum": momentum})

    @torch.no_grad()
    def step(self):
        for g in self.param_groups:
            for p in g["params"]:
                d = p.grad
                if p.ndim > 1:
                    d = d + g["weight_decay"] * p
                    pn, dn = torch.norm(p), torch.norm(d)
                    ok = (pn > 0) & (dn > 0)
                    d = d * torch.where(ok, 0.001 * pn / dn, torch.ones_like(pn))
                mu = self.state[p].setdefault("mu", torch.zeros_like(p))
                mu.mul_(g["momentum"]).add_(d)
                p.add_(mu, alpha=-g["lr"])


def _ocfg(**kw):
    from jaxbones.train import config as config_lib

    c = config_lib.default_config().optimizer
    c.update(kw)
    return c


# recipe-shaped configs (see experiments/): name -> (jaxbones optimizer config, grad scale,
# the reference, as the table names it)
OPTIMIZERS = {
    "sgd_nesterov": (
        {"name": "sgd", "lr": 0.5, "weight_decay": 1e-4, "momentum": 0.9},
        1.0,
        "resnet_imagenet: SGD Nesterov 0.9, wd 1e-4",
        "timm `create_optimizer_v2('sgd')` (`torch.optim.SGD`)",
    ),
    "adamw_layer_decay_clip": (
        {"name": "adamw", "lr": 0.05, "weight_decay": 0.05, "layer_decay": 0.65, "clip_norm": 1.0},
        1.0,
        "vit_imagenet / mae_finetune / swin_imagenet: AdamW wd 0.05, layer decay 0.65, clip 1.0",
        "timm `create_optimizer_v2('adamw')`, `lr_scale` groups, `clip_grad_norm_`",
    ),
    "adamw_b2_0.95": (
        {"name": "adamw", "lr": 0.05, "weight_decay": 0.05, "b2": 0.95},
        1e-2,
        "mae_pretrain: AdamW (0.9, 0.95), wd 0.05",
        "`torch.optim.AdamW`",
    ),
    "lamb": (
        {"name": "lamb", "lr": 0.05, "weight_decay": 0.05, "clip_norm": 1.0},
        1.0,
        "LAMB wd 0.05, clip 1.0",
        "timm `Lamb` (`max_grad_norm=1.0`)",
    ),
    "lars": (
        {"name": "lars", "lr": 2.0, "weight_decay": 0.05, "momentum": 0.9},
        1.0,
        "mae_linprobe: LARS momentum 0.9 (wd 0.05 here to exercise it)",
        "MAE `util/lars.py`",
    ),
}
# scanned stacks matter where layers get their own scale or trust ratio
OPTIMIZER_RUNS = [(c, False) for c in OPTIMIZERS] + [
    (c, True) for c in ("adamw_layer_decay_clip", "lamb", "lars")
]


def _ndim_only():
    """MAE's LARS decays and adapts by ndim alone; jaxbones also leaves the family's no_decay
    names (a ViT's cls_token, pos_embed) alone, which only matters when LARS trains them (the
    linear probe trains the head only), so LARS is compared under the ndim rule."""
    from jaxbones.layers.param_groups import ParamGroups

    vit = _vit_groups()
    return ParamGroups(stacks=vit.stacks, layer_ids=vit.layer_ids)


def _torch_optimizer(name, tgroups, c):
    from timm.optim import create_optimizer_v2

    if name == "lars":
        return MaeLars(tgroups, lr=c.lr, momentum=c.momentum)
    kw = {"lr": c.lr, "weight_decay": c.weight_decay}
    if name in ("adamw", "lamb"):
        kw.update(betas=(c.b1, c.b2), eps=c.eps)
    else:
        kw.update(momentum=c.momentum)
    return create_optimizer_v2(tgroups, opt=name, **kw)


def optimizer_run(case: str, scan: bool, steps: int = STEPS) -> dict:
    """``steps`` steps of the jaxbones optimiser ``OPTIMIZERS[case]`` and of its torch
    reference under warm-up (3 steps) + cosine to 0.1 of the peak.

    Returns ``{"param_diff": largest |ours - ref| over all parameters and steps, "param_rel":
    the largest |ours - ref| / (2e-6 + 2e-5 |ref|) (<= 1: within float32 rounding of a few
    steps), "worst": (path, layer, step) of that one, "lr_diff": largest |lr ours - lr ref|
    over the peak, "moved": the largest distance any reference parameter moved}``.
    """
    from timm.scheduler import CosineLRScheduler

    from jaxbones.train import optim

    kw, gscale = OPTIMIZERS[case][:2]
    c = _ocfg(schedule="cosine", warmup_steps=3, end_lr_factor=0.1, **kw)
    params = _params(scan)
    groups_of = _ndim_only() if c.name == "lars" else _vit_groups()
    tx, schedule, groups = optim.make_optimizer(c, params, steps, steps, 256, groups_of)
    flat = traverse_util.flatten_dict(params, sep="/")
    tensors = _torch_tensors(flat, groups)
    ttensors = [torch.tensor(np.array(t), requires_grad=True) for _, _, t in tensors]
    tparams = [(p, i, t) for (p, i, _), t in zip(tensors, ttensors, strict=True)]
    opt = _torch_optimizer(c.name, _torch_groups(tparams, groups, c.weight_decay), c)
    sched = CosineLRScheduler(
        opt,
        t_initial=steps - 3,
        lr_min=c.lr * 0.1,
        warmup_t=3,
        warmup_lr_init=0.0,
        warmup_prefix=True,
        t_in_epochs=False,
    )
    jp = jax.tree_util.tree_map(jnp.asarray, params)
    state = tx.init(jp)
    update = jax.jit(tx.update, compiler_options=FAST_COMPILE)
    out = {"param_diff": 0.0, "param_rel": 0.0, "worst": None, "lr_diff": 0.0, "moved": 0.0}
    for step in range(steps):
        grads = _grads(params, step, gscale)
        fg = traverse_util.flatten_dict(grads, sep="/")
        sched.step_update(step)
        for p, i, t in tparams:
            t.grad = torch.from_numpy(np.array(fg[p] if i is None else fg[p][i]))
        if c.clip_norm > 0 and c.name != "lamb":  # timm Lamb clips inside its step
            torch.nn.utils.clip_grad_norm_(ttensors, c.clip_norm)
        opt.step()
        upd, state = update(jax.tree_util.tree_map(jnp.asarray, grads), state, jp)
        jp = optax.apply_updates(jp, upd)
        base = [g["lr"] / g["lr_scale"] for g in opt.param_groups if g["lr_scale"] == 1.0]
        out["lr_diff"] = max(out["lr_diff"], abs(float(schedule(step)) - base[0]) / c.lr)
        jflat = traverse_util.flatten_dict(jax.device_get(jp), sep="/")
        for p, i, t in tparams:
            got = np.asarray(jflat[p] if i is None else jflat[p][i])
            ref = t.detach().numpy()
            start = flat[p] if i is None else flat[p][i]
            d = np.abs(got - ref)
            out["param_diff"] = max(out["param_diff"], float(d.max()))
            out["moved"] = max(out["moved"], float(np.abs(ref - start).max()))
            rel = float(np.max(d / (2e-6 + 2e-5 * np.abs(ref))))
            if rel > out["param_rel"]:
                out["param_rel"], out["worst"] = rel, (p, i, step)
    return out


# schedules: N steps, W warm-up steps, peak and end learning rates
N, W, PEAK, END = 50, 7, 0.4, 0.004
MILESTONES = (0.3, 0.6, 0.9)


def _lrs(schedule, n):
    return np.array([float(schedule(t)) for t in range(n)])


def _timm_lrs(cls, n, **kw):
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=PEAK)
    s = cls(opt, t_in_epochs=False, **kw)
    out = []
    for t in range(n):
        s.step_update(t)
        out.append(opt.param_groups[0]["lr"])
    return np.array(out)


def mae_lr(step, steps_per_epoch, lr, min_lr, warmup_epochs, epochs):
    """MAE ``util/lr_sched.py`` at a fractional epoch (set before every iteration)."""
    epoch = step / steps_per_epoch
    if epoch < warmup_epochs:
        return lr * epoch / warmup_epochs
    t = (epoch - warmup_epochs) / (epochs - warmup_epochs)
    return min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * t))


# name -> (the jaxbones schedule, the reference), as the table names them
SCHEDULES = {
    "cosine": ("warm-up 7 + cosine", "timm `CosineLRScheduler` (warmup_prefix, per step)"),
    "linear": ("warm-up 7 + linear", "timm `PolyLRScheduler(power=1)`"),
    "step": ("step at 0.3/0.6/0.9, no warm-up", "`torch.optim.lr_scheduler.MultiStepLR`"),
    "step_warmup": (
        "warm-up 7 + step",
        "timm `MultiStepLRScheduler`, milestones + 1 (it applies m at m - 1)",
    ),
    "mae_2.0": ("warm-up 2 epochs + cosine, 3 steps/epoch", "MAE `util/lr_sched.py`"),
    "mae_2.5": (
        "warm-up 2.5 epochs (7.5 steps, rounded to 8) + cosine",
        "MAE `util/lr_sched.py`",
    ),
}


def schedule_lrs(case: str) -> tuple[np.ndarray, np.ndarray]:
    """(jaxbones lrs, reference lrs) per step for ``SCHEDULES[case]``."""
    from timm.scheduler import CosineLRScheduler, PolyLRScheduler

    from jaxbones.train import optim

    if case in ("cosine", "linear"):
        c = _ocfg(lr=PEAK, schedule=case, warmup_steps=W, end_lr_factor=END / PEAK)
        ours = _lrs(optim.make_schedule(c, N, 10, 256), N)
        cls = CosineLRScheduler if case == "cosine" else PolyLRScheduler
        extra = {} if case == "cosine" else {"power": 1.0}
        ref = _timm_lrs(
            cls, N, t_initial=N - W, lr_min=END, warmup_t=W, warmup_lr_init=0.0,
            warmup_prefix=True, **extra,
        )  # fmt: skip
        return ours, ref
    if case in ("step", "step_warmup"):
        warm = W if case == "step_warmup" else 0
        c = _ocfg(lr=PEAK, schedule="step", warmup_steps=warm, step_boundaries=MILESTONES)
        ours = _lrs(optim.make_schedule(c, N, 10, 256), N)
        milestones = [int(b * N) for b in MILESTONES]
        if case == "step_warmup":
            return ours, timm_multistep(milestones, shift=1)
        opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=PEAK)
        ms = torch.optim.lr_scheduler.MultiStepLR(opt, milestones, gamma=0.1)
        ref = []
        for _ in range(N):
            ref.append(opt.param_groups[0]["lr"])
            opt.step()
            ms.step()
        return ours, np.array(ref)
    if case.startswith("mae_"):
        warmup_epochs = float(case.split("_")[1])
        spe, epochs = 3, 12
        c = _ocfg(lr=PEAK, schedule="cosine", warmup_epochs=warmup_epochs, end_lr_factor=END / PEAK)
        ours = _lrs(optim.make_schedule(c, spe * epochs, spe, 256), spe * epochs)
        ref = [mae_lr(t, spe, PEAK, END, warmup_epochs, epochs) for t in range(spe * epochs)]
        return ours, np.array(ref)
    raise ValueError(f"unknown schedule case {case!r}; use one of {list(SCHEDULES)}")


def timm_multistep(milestones, shift: int) -> np.ndarray:
    """timm ``MultiStepLRScheduler`` (decay 0.1, warm-up W from 0) with every milestone moved
    by ``shift`` steps."""
    from timm.scheduler import MultiStepLRScheduler

    kw = {"decay_rate": 0.1, "warmup_t": W, "warmup_lr_init": 0.0, "warmup_prefix": False}
    return _timm_lrs(MultiStepLRScheduler, N, decay_t=[m + shift for m in milestones], **kw)


LD = 0.65  # layer decay of the group comparisons
WD = 0.05


def mae_lrd_groups(model, weight_decay, layer_decay):
    """MAE util/lr_decay.py ``param_groups_lrd`` for a timm ViT (no decay: 1-D and
    ``model.no_weight_decay()``; layer 0 embeddings, i + 1 block i, depth + 1 the rest)."""
    num_layers = len(model.blocks) + 1
    skip = model.no_weight_decay()
    groups: dict = {}
    for n, p in model.named_parameters():
        if n in ("cls_token", "pos_embed") or n.startswith("patch_embed"):
            lid = 0
        elif n.startswith("blocks"):
            lid = int(n.split(".")[1]) + 1
        else:
            lid = num_layers
        decay = not (p.ndim == 1 or n in skip)
        g = groups.setdefault(
            (lid, decay),
            {
                "params": [],
                "weight_decay": weight_decay if decay else 0.0,
                "lr_scale": layer_decay ** (num_layers - lid),
            },
        )
        g["params"].append(p)
    return list(groups.values())


def mae_add_weight_decay(model, weight_decay):
    """MAE main_pretrain.py: timm's ``add_weight_decay`` without a skip list."""
    decay, no_decay = [], []
    for n, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim == 1 or n.endswith(".bias") else decay).append(p)
    return [
        {"params": no_decay, "weight_decay": 0.0},
        {"params": decay, "weight_decay": weight_decay},
    ]


def jaxbones_groups(name, layer_decay, **kw) -> dict[str, tuple[bool, float]]:
    """{torch name: (decayed, lr scale)} from the jaxbones parameter table."""
    from jaxbones.convert import get_converter
    from jaxbones.registry import get_entry, init_shapes
    from jaxbones.train import optim

    entry = get_entry(name)
    params = init_shapes(name, **kw)["params"]
    c = _ocfg(layer_decay=layer_decay)
    groups = optim.param_groups(params, c, entry.param_groups)
    conv = get_converter(entry.family)
    out = {}
    for path, g in groups.items():
        key = ("params", *path.split("/"))
        out[conv.map(key, len(g.shape)).torch_key] = (g.decay, float(g.lr_scale))
    return out


def torch_groups(model, groups) -> dict[str, tuple[bool, float]]:
    """{name: (decayed, lr scale)} of a torch optimiser's parameter groups."""
    names = {id(p): n for n, p in model.named_parameters()}
    return {
        names[id(p)]: (g["weight_decay"] > 0, float(g.get("lr_scale", 1.0)))
        for g in groups
        for p in g["params"]
    }


def _timm_layer_decay(name, **kw):
    import timm
    from timm.optim import param_groups_layer_decay

    model = timm.create_model(name, **kw)
    return torch_groups(
        model,
        param_groups_layer_decay(
            model, WD, no_weight_decay_list=model.no_weight_decay(), layer_decay=LD
        ),
    )


def _vit_groups_pair():
    return jaxbones_groups("vit_tiny_patch16_224", LD, depth=2), _timm_layer_decay(
        "vit_tiny_patch16_224", depth=2
    )


def _mae_finetune_pair():
    import timm

    kw = {"depth": 2, "global_pool": "avg", "fc_norm": True}
    model = timm.create_model("vit_tiny_patch16_224", **kw)
    return jaxbones_groups("vit_tiny_patch16_224", LD, **kw), torch_groups(
        model, mae_lrd_groups(model, WD, LD)
    )


# MAE's fixed sin-cos tables: requires_grad=False in models_mae.py, not trained there
MAE_FIXED = ("pos_embed", "decoder_pos_embed")


def _mae_pretrain_pair():
    from jaxbones.convert import get_converter
    from jaxbones.registry import init_shapes

    kw = {"depth": 2, "decoder_depth": 1}
    ours = jaxbones_groups("mae_vit_base_patch16_dec512d8b", 1.0, **kw)
    shapes = traverse_util.flatten_dict(
        init_shapes("mae_vit_base_patch16_dec512d8b", **kw)["params"]
    )
    conv = get_converter("mae")

    class Named:  # the MAE model's trained parameters by MAE name, as named_parameters()
        def __init__(self):
            self.params = [
                (name, torch.nn.Parameter(torch.empty(s.shape)))
                for k, s in shapes.items()
                if (name := conv.map(("params", *k), len(s.shape)).torch_key) not in MAE_FIXED
            ]

        def named_parameters(self):
            return iter(self.params)

    model = Named()
    return {n: g for n, g in ours.items() if n not in MAE_FIXED}, torch_groups(
        model, mae_add_weight_decay(model, WD)
    )


def _resnet_pair():
    import timm
    from timm.optim import param_groups_weight_decay

    model = timm.create_model("resnet18")
    return jaxbones_groups("resnet18", 1.0), torch_groups(
        model, param_groups_weight_decay(model, WD)
    )


def _swin_pair():
    depths = (1, 1, 2, 1)
    return jaxbones_groups("swin_tiny_patch4_window7_224", LD, depths=depths), _timm_layer_decay(
        "swin_tiny_patch4_window7_224", depths=depths
    )


def _final_norm_ratio(n):
    return 1 / LD if n.startswith("norm.") else 1.0


def _swin_ratio(n):
    return 1 / LD if n.startswith("norm.") else LD if ".downsample." in n else 1.0


# case -> (the jaxbones model, the reference, the pair builder, deliberate scale ratio
# ours / ref by torch name (None: none), what the deliberate difference is)
GROUP_CASES = {
    "vit": (
        "ViT (`vit_tiny_patch16_224`, depth 2), layer decay 0.65",
        "timm `param_groups_layer_decay`",
        _vit_groups_pair,
        _final_norm_ratio,
        "final `norm` at the head's scale (MAE `lr_decay.py`), timm one layer below",
    ),
    "mae_finetune": (
        "MAE fine-tuning ViT (global pool + fc_norm, depth 2), layer decay 0.65",
        "MAE `param_groups_lrd`",
        _mae_finetune_pair,
        None,
        "",
    ),
    "mae_pretrain": (
        "MAE-B pretraining (depth 2, decoder 1)",
        "MAE `main_pretrain.py` (`add_weight_decay`, no skip list)",
        _mae_pretrain_pair,
        None,
        "",
    ),
    "resnet": (
        "ResNet-18",
        "timm `param_groups_weight_decay`",
        _resnet_pair,
        None,
        "",
    ),
    "swin": (
        "Swin-T (depths 1,1,2,1), layer decay 0.65",
        "timm `param_groups_layer_decay`",
        _swin_pair,
        _swin_ratio,
        "final `norm` at the head's scale; patch merging at the previous stage's last block",
    ),
}


def group_diffs(case: str) -> dict:
    """Compares the jaxbones groups of ``GROUP_CASES[case]`` with the reference's.

    Returns ``{"params": number compared, "groups": (ours, ref) numbers of distinct (decayed,
    lr scale) groups, "names": (only ours, only ref) parameter names, "decay": names whose
    exemption differs, "scale": names whose scale differs beyond the deliberate ratio,
    "deliberate": names whose scale differs by the deliberate ratio}``.
    """
    _, _, pair, ratio, _ = GROUP_CASES[case]
    ours, ref = pair()
    ratio = ratio or (lambda n: 1.0)
    common = sorted(set(ours) & set(ref))
    return {
        "params": len(common),
        "groups": tuple(len({(d, round(s, 9)) for d, s in g.values()}) for g in (ours, ref)),
        "names": (sorted(set(ours) - set(ref)), sorted(set(ref) - set(ours))),
        "decay": [n for n in common if ours[n][0] != ref[n][0]],
        "scale": [n for n in common if not np.isclose(ours[n][1], ref[n][1] * ratio(n))],
        "deliberate": [
            n
            for n in common
            if not np.isclose(ours[n][1], ref[n][1])
            and np.isclose(ours[n][1], ref[n][1] * ratio(n))
        ],
    }


def render_optimizers() -> str:
    """README's optimiser table: every ``OPTIMIZER_RUNS`` entry."""
    lines = [
        (
            "| optimizer (recipe) | reference | steps | largest param diff | over the movement "
            "| largest lr diff / peak |"
        ),
        "|---|---|---:|---:|---:|---:|",
    ]
    for case, scan in OPTIMIZER_RUNS:
        _, _, what, ref = OPTIMIZERS[case]
        r = optimizer_run(case, scan)
        what += " (scanned blocks)" if scan else ""
        lines.append(
            f"| {what} | {ref} | {STEPS} | {r['param_diff']:.1e} "
            f"| {r['param_diff'] / r['moved']:.1e} | {r['lr_diff']:.1e} |"
        )
    return "\n".join(lines) + "\n"


def render_schedules() -> str:
    """README's schedule table: every ``SCHEDULES`` entry (peak 0.4, end 0.004)."""
    lines = [
        "| schedule | reference | steps | largest lr diff / peak |",
        "|---|---|---:|---:|",
    ]
    for case, (what, ref) in SCHEDULES.items():
        ours, theirs = schedule_lrs(case)
        d = float(np.max(np.abs(ours - theirs))) / PEAK
        lines.append(f"| {what} | {ref} | {len(ours)} | {d:.1e} |")
    return "\n".join(lines) + "\n"


def render_groups() -> str:
    """README's parameter-group table: every ``GROUP_CASES`` entry."""
    lines = [
        (
            "| model | reference | parameters | groups: jaxbones / reference "
            "| decay mismatches | lr scale mismatches | deliberate differences |"
        ),
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for case, (what, ref, _, _, why) in GROUP_CASES.items():
        r = group_diffs(case)
        extra = len(r["names"][0]) + len(r["names"][1])
        missing = f" (+{extra} unmatched names)" if extra else ""
        deliberate = f"{len(r['deliberate'])} parameters: {why}" if r["deliberate"] else "none"
        lines.append(
            f"| {what} | {ref} | {r['params']}{missing} | {r['groups'][0]} / {r['groups'][1]} "
            f"| {len(r['decay'])} | {len(r['scale'])} | {deliberate} |"
        )
    return "\n".join(lines) + "\n"
