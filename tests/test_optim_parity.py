"""Optimiser and schedule parity with the PyTorch code the recipes in experiments/ come from.

N steps of ``jaxbones.train.optim.make_optimizer`` on the same parameters and gradients give
the same parameters, and ``make_schedule`` the same learning rates, as:
  * SGD + Nesterov, AdamW (timm ``create_optimizer_v2``: ``torch.optim.SGD`` /
    ``torch.optim.AdamW``) with timm's ``CosineLRScheduler`` / ``PolyLRScheduler`` driving
    per-group ``lr_scale`` (layer decay) and ``torch.nn.utils.clip_grad_norm_`` (timm
    ``train.py``, Swin ``main.py``) for clipping;
  * LAMB: timm ``Lamb`` (its default ``max_grad_norm=1.0`` is jaxbones' ``clip_norm=1.0``);
  * LARS: MAE ``util/lars.py`` (the linear-probe recipe's reference), restated below;
  * the MAE per-iteration schedule (``util/lr_sched.py``, fractional epochs);
  * the step schedule: ``torch.optim.lr_scheduler.MultiStepLR`` (milestone m applies at step
    m); timm's ``MultiStepLRScheduler`` applies milestone m at step m - 1 (its documented
    convention), so it matches with every milestone shifted by one.
Parameters are a tiny ViT-like tree (unrolled and as a scanned stack, whose layers are
separate tensors on the torch side), so weight-decay exemptions, layer-decay scales and
per-layer trust ratios all take part.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from flax import traverse_util
from helpers import fast_jit
from timm.optim import create_optimizer_v2
from timm.scheduler import CosineLRScheduler, MultiStepLRScheduler, PolyLRScheduler

from jaxbones.layers.param_groups import ParamGroups
from jaxbones.registry import get_entry
from jaxbones.train import config as config_lib
from jaxbones.train import optim

VIT = get_entry("vit_base_patch16_224").param_groups
STEPS = 8
D = 6


def _params(scan: bool, depth: int = 2) -> dict:
    rng = np.random.default_rng(0)

    def w(*shape):
        return rng.standard_normal(shape).astype(np.float32) * 0.5

    blk = lambda: {
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
        key = (g.decay, float(scale))
        by_key.setdefault(key, []).append(t)
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
    c = config_lib.default_config().optimizer
    c.update(kw)
    return c


# recipe-shaped configs (see experiments/): name -> (jaxbones optimizer config, grad scale)
CASES = {
    # resnet_imagenet: SGD Nesterov 0.9, wd 1e-4, warm-up + cosine
    "sgd_nesterov": ({"name": "sgd", "lr": 0.5, "weight_decay": 1e-4, "momentum": 0.9}, 1.0),
    # vit_imagenet / mae_finetune / swin_imagenet: AdamW wd 0.05, layer decay 0.65, clipping
    "adamw_layer_decay_clip": (
        {"name": "adamw", "lr": 0.05, "weight_decay": 0.05, "layer_decay": 0.65, "clip_norm": 1.0},
        1.0,
    ),
    # mae_pretrain: AdamW (0.9, 0.95), wd 0.05
    "adamw_b2_0.95": ({"name": "adamw", "lr": 0.05, "weight_decay": 0.05, "b2": 0.95}, 1e-2),
    # LAMB as timm: global-norm clipping at 1.0 built in
    "lamb": ({"name": "lamb", "lr": 0.05, "weight_decay": 0.05, "clip_norm": 1.0}, 1.0),
    # mae_linprobe: LARS (MAE util/lars.py), momentum 0.9; wd > 0 here to exercise it
    "lars": ({"name": "lars", "lr": 2.0, "weight_decay": 0.05, "momentum": 0.9}, 1.0),
}
# MAE's LARS decays and adapts by ndim alone; jaxbones also leaves the family's no_decay
# names (a ViT's cls_token, pos_embed) alone, which only matters when LARS trains them (the
# linear probe trains the head only), so LARS is compared under the ndim rule
NDIM_ONLY = ParamGroups(stacks=VIT.stacks, layer_ids=VIT.layer_ids)


def _torch_optimizer(name, tgroups, c):
    if name == "lars":
        return MaeLars(tgroups, lr=c.lr, momentum=c.momentum)
    kw = {"lr": c.lr, "weight_decay": c.weight_decay}
    if name in ("adamw", "lamb"):
        kw.update(betas=(c.b1, c.b2), eps=c.eps)
    else:
        kw.update(momentum=c.momentum)
    return create_optimizer_v2(tgroups, opt=name, **kw)


# scanned stacks matter where layers get their own scale or trust ratio
@pytest.mark.parametrize(
    "case,scan",
    [(c, False) for c in CASES] + [(c, True) for c in ("adamw_layer_decay_clip", "lamb", "lars")],
)
def test_optimizer_steps_equal_the_torch_reference(case, scan):
    kw, gscale = CASES[case]
    c = _ocfg(schedule="cosine", warmup_steps=3, end_lr_factor=0.1, **kw)
    params = _params(scan)
    groups_of = NDIM_ONLY if c.name == "lars" else VIT
    tx, schedule, groups = optim.make_optimizer(c, params, STEPS, STEPS, 256, groups_of)
    flat = traverse_util.flatten_dict(params, sep="/")
    tensors = _torch_tensors(flat, groups)
    ttensors = [torch.tensor(np.array(t), requires_grad=True) for _, _, t in tensors]
    tparams = [(p, i, t) for (p, i, _), t in zip(tensors, ttensors, strict=True)]
    opt = _torch_optimizer(c.name, _torch_groups(tparams, groups, c.weight_decay), c)
    sched = CosineLRScheduler(
        opt,
        t_initial=STEPS - 3,
        lr_min=c.lr * 0.1,
        warmup_t=3,
        warmup_lr_init=0.0,
        warmup_prefix=True,
        t_in_epochs=False,
    )
    jp = jax.tree_util.tree_map(jnp.asarray, params)
    state = tx.init(jp)
    update = fast_jit(tx.update)
    for step in range(STEPS):
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
        np.testing.assert_allclose(float(schedule(step)), base[0], rtol=1e-6, atol=1e-7)
        jflat = traverse_util.flatten_dict(jax.device_get(jp), sep="/")
        for p, i, t in tparams:
            got = jflat[p] if i is None else jflat[p][i]
            np.testing.assert_allclose(
                got, t.detach().numpy(), rtol=2e-5, atol=2e-6, err_msg=f"{case} {p} step {step}"
            )


def test_optax_lars_order_differs_from_mae_under_a_schedule():
    """Why optim.py does not use ``optax.lars``: it scales by the lr before the momentum, so
    the buffer holds lr-scaled steps; under warm-up the parameters part from MAE's LARS
    (which ``test_optimizer_steps_equal_the_torch_reference[lars]`` matches)."""
    c = _ocfg(name="lars", lr=2.0, weight_decay=0.05, schedule="cosine", warmup_steps=3)
    params = _params(False)
    ours, schedule, groups = optim.make_optimizer(c, params, STEPS, STEPS, 256, VIT)
    mask_tree = traverse_util.unflatten_dict({p: g.decay for p, g in groups.items()}, sep="/")
    theirs = optax.lars(
        schedule, weight_decay=0.05, weight_decay_mask=mask_tree, trust_ratio_mask=mask_tree
    )
    out = []
    for tx in (ours, theirs):
        p, s, update = params, tx.init(params), fast_jit(tx.update)
        for step in range(STEPS):
            u, s = update(_grads(params, step, 1.0), s, p)
            p = optax.apply_updates(p, u)
        out.append(p["head"]["kernel"])
    assert np.max(np.abs(np.asarray(out[0]) - np.asarray(out[1]))) > 1e-3


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


N, W, PEAK, END = 50, 7, 0.4, 0.004


@pytest.mark.parametrize("name", ["cosine", "linear"])
def test_warmup_cosine_and_linear_equal_timm(name):
    c = _ocfg(lr=PEAK, schedule=name, warmup_steps=W, end_lr_factor=END / PEAK)
    ours = _lrs(optim.make_schedule(c, N, 10, 256), N)
    cls, extra = (CosineLRScheduler, {}) if name == "cosine" else (PolyLRScheduler, {"power": 1.0})
    ref = _timm_lrs(
        cls,
        N,
        t_initial=N - W,
        lr_min=END,
        warmup_t=W,
        warmup_lr_init=0.0,
        warmup_prefix=True,
        **extra,
    )
    np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-7)


def test_step_schedule_equals_torch_multistep_and_shifted_timm():
    c = _ocfg(lr=PEAK, schedule="step", warmup_steps=0, step_boundaries=(0.3, 0.6, 0.9))
    ours = _lrs(optim.make_schedule(c, N, 10, 256), N)
    milestones = [int(b * N) for b in c.step_boundaries]
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=PEAK)
    ms = torch.optim.lr_scheduler.MultiStepLR(opt, milestones, gamma=0.1)
    ref = []
    for _ in range(N):
        ref.append(opt.param_groups[0]["lr"])
        opt.step()
        ms.step()
    np.testing.assert_allclose(ours, ref, rtol=1e-6)
    # with warm-up: timm's MultiStepLRScheduler, milestones shifted by its m - 1 convention
    c.warmup_steps = W
    ours = _lrs(optim.make_schedule(c, N, 10, 256), N)
    kw = {"decay_rate": 0.1, "warmup_t": W, "warmup_lr_init": 0.0, "warmup_prefix": False}
    shifted = _timm_lrs(MultiStepLRScheduler, N, decay_t=[m + 1 for m in milestones], **kw)
    np.testing.assert_allclose(ours, shifted, rtol=1e-6, atol=1e-7)
    timm = _timm_lrs(MultiStepLRScheduler, N, decay_t=milestones, **kw)
    assert np.flatnonzero(~np.isclose(ours, timm)).tolist() == [m - 1 for m in milestones]


def mae_lr(step, steps_per_epoch, lr, min_lr, warmup_epochs, epochs):
    """MAE ``util/lr_sched.py`` at a fractional epoch (set before every iteration)."""
    epoch = step / steps_per_epoch
    if epoch < warmup_epochs:
        return lr * epoch / warmup_epochs
    t = (epoch - warmup_epochs) / (epochs - warmup_epochs)
    return min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * t))


@pytest.mark.parametrize("warmup_epochs", [2.0, 2.5])
def test_cosine_equals_mae_per_iteration_schedule(warmup_epochs):
    """mae_pretrain / mae_finetune: warm-up epochs x steps per epoch steps; at a fractional
    number of warm-up steps (2.5 x 3 = 7.5) jaxbones rounds it (to 8), which moves the
    schedule by at most peak / warm-up steps at a single step."""
    spe, epochs = 3, 12
    c = _ocfg(lr=PEAK, schedule="cosine", warmup_epochs=warmup_epochs, end_lr_factor=END / PEAK)
    ours = _lrs(optim.make_schedule(c, spe * epochs, spe, 256), spe * epochs)
    ref = np.array([mae_lr(t, spe, PEAK, END, warmup_epochs, epochs) for t in range(spe * epochs)])
    if float(warmup_epochs * spe).is_integer():
        np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-7)
    else:
        assert np.max(np.abs(ours - ref)) < PEAK / (warmup_epochs * spe)
