"""Training parity: the jaxbones train step against the PyTorch reference step, side by side.

From the same converted initial weights and the same batches (random images and labels; no
augmentation, dropout or drop path; float32 on CPU) each case runs ``--steps`` steps of
``jaxbones.train.step.make_train_step`` with its recipe's optimiser (``experiments/``) and
of the reference's training step, and reports the largest relative loss difference over the
steps, the one at the last step and the parameter difference at the end: the largest
absolute one, and that over the largest distance any parameter of the reference moved from
its initial value (the share of the movement on which the two disagree):

  resnet50   experiments.resnet_imagenet: SGD Nesterov + BatchNorm in training mode, label
             smoothing 0.1; timm ``resnet50``, ``create_optimizer_v2('sgd')``.
  vit_s16    experiments.vit_imagenet + layer decay 0.65 and clipping at 1.0: AdamW; timm
             ``vit_small_patch16_224``, MAE ``param_groups_lrd`` groups,
             ``clip_grad_norm_``.
  swin_t     experiments.swin_imagenet: AdamW, clipping 5.0; timm ``swin_tiny_...``
             (window 4 at 128 px).
  mae_b      experiments.mae_pretrain: AdamW (0.9, 0.95), norm_pix_loss, the same masking
             noise fed to both; transformers ``ViTMAEForPreTraining`` (MAE's
             ``add_weight_decay`` groups and per-iteration schedule).

Schedules: warm-up over the first fifth of the steps, then the recipe's cosine; the torch
side sets each group's lr from timm's ``CosineLRScheduler`` (per step, warm-up prefix) or
MAE's ``lr_sched`` formula. The learning rates are the recipes' peaks (linear scaling to
the batch where the recipe has it).

``--bf16`` adds the mixed-precision table (``bf16_errors``): for ViT-B/16 and ResNet-50 at
224 px the largest and the root-mean-square logit difference of the bf16 forward from the
float32 one, over the largest logit, in jaxbones (``dtype=bfloat16``, float32 parameters) and
in PyTorch (``torch.autocast('cpu', torch.bfloat16)``), same inputs and weights.

Next to jaxbones' difference from the reference stands the reference's own float32 spread:
the same torch recipe rerun on one thread (another summation order, an equally valid float32
run) against the first run (``--no-spread`` skips it). ``--float64`` runs both sides in
float64 (``jax_enable_x64``), which leaves only differences in what the two steps compute.
Rows of separate runs (other cases, other step counts) are merged into one table.

``--optim`` adds the optimiser, schedule and parameter-group tables computed by
``scripts/optim_parity.py`` (the comparisons tests/test_optim_parity.py and
tests/test_param_group_parity.py assert; seconds to run).

Usage: python -m scripts.train_parity [--steps 100] [--small] [--float64] [--bf16] [--optim]
[--cases ...] [--no-spread] [--no-write] (``--small``: reduced depth/width, the CI version in
tests/test_train_parity.py; ``--cases ''`` with ``--bf16`` / ``--optim``: those tables only).
Writes each table into its README.md block (``MARKERS``): the full-size and the reduced
curves, the bf16 table, the optimiser, schedule and group tables separately.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import torch

from jaxbones.convert.mae import from_transformers_layout
from jaxbones.registry import FAST_COMPILE
from scripts.optim_parity import mae_add_weight_decay, mae_lrd_groups

# README blocks: the full-size curves, the reduced (--small) ones and the bf16 table
MARKERS = {
    "full": "train-parity",
    "small": "train-parity-small",
    "bf16": "train-parity-bf16",
    "optim": "train-parity-optim",
    "schedules": "train-parity-schedules",
    "groups": "train-parity-groups",
}
README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


@dataclasses.dataclass
class Result:
    name: str
    setup: str
    steps: int
    losses_jax: list
    losses_torch: list
    param_diff: float
    param_abs: float
    stats_diff: float | None = None
    seconds: float = 0.0
    losses_twin: list | None = None  # the reference on one thread (``SPREAD``)

    @property
    def loss_diffs(self) -> np.ndarray:
        a, b = np.asarray(self.losses_jax), np.asarray(self.losses_torch)
        return np.abs(a - b) / np.abs(b)

    @property
    def spread_diffs(self) -> np.ndarray | None:
        """Relative loss differences of the one-thread reference run from the reference."""
        if self.losses_twin is None:
            return None
        a, b = np.asarray(self.losses_twin), np.asarray(self.losses_torch)
        return np.abs(a - b) / np.abs(b)


# Also run the reference a second time on one thread (float32 sums in another order: an
# equally valid float32 run of the same recipe) and report how far it is from the first: the
# reference's own rounding spread, next to jaxbones' distance from it. main() turns it on;
# the CI runs leave it off.
SPREAD = False
# Both sides in float64 (``--float64``, with ``jax_enable_x64``): what remains is a difference
# in what the two steps compute, not float32 rounding.
FLOAT64 = False


def _float64(tree):
    """Floating-point numpy leaves as float64 (others unchanged)."""
    return jax.tree_util.tree_map(
        lambda x: np.asarray(x, np.float64) if np.issubdtype(np.asarray(x).dtype, np.floating)
        else x, tree,
    )  # fmt: skip


def _twin(model, opt):
    """A copy of a torch model and of its optimiser over the copy's parameters (one deepcopy:
    the memo maps each parameter to its copy); call before the first step."""
    import copy

    return copy.deepcopy((model, opt))


def _rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-12))


def _images(n, b, size, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((b, size, size, 3)).astype(np.float32) for _ in range(n)]


def _nchw(x):
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def _config(recipe: str, steps: int, batch: int, size: int):
    import importlib

    c = importlib.import_module(f"experiments.{recipe}").get_config()
    c.image_size = size
    c.global_batch_size = batch
    c.num_steps = steps
    c.optimizer.warmup_steps = max(steps // 5, 1)
    c.mixup_alpha = c.cutmix_alpha = 0.0
    c.dtype = "float32"
    c.model_kwargs.drop_path_rate = 0.0
    return c


def _cosine_lrs(c, steps):
    from jaxbones.train.optim import make_schedule

    sched = make_schedule(c.optimizer, steps, steps, c.global_batch_size)
    return sched, [float(sched(t)) for t in range(steps)]


def _run(name, setup, config, task, model, variables, batches, torch_model, opt, torch_loss,
         lr_at, clip, to_torch_sd, torch_sd, stats=None, fast=False):  # fmt: skip
    """Runs both sides; ``lr_at(t)`` sets the torch groups' lr before step t."""
    from jaxbones.train.loop import build_optimizer
    from jaxbones.train.sharding import make_mesh
    from jaxbones.train.step import create_state, make_train_step

    steps = len(batches)
    if FLOAT64:
        name += " (float64)"
        variables, batches = _float64(variables), _float64(batches)
        torch_model.double()  # in place: the optimiser keeps the same parameters
    tx, schedule, _ = build_optimizer(config, task, variables["params"], steps, steps)
    state = create_state(variables, tx, jax.random.PRNGKey(0), ema=False)
    # the reduced (CI) runs skip XLA's backend optimisations: faster compiles, same maths
    opts = FAST_COMPILE if fast else None
    mesh = make_mesh({"data": 1}, jax.devices()[:1])  # one device, as the torch side runs
    step_fn = jax.jit(
        make_train_step(task, model, tx, schedule, config, mesh), compiler_options=opts
    )
    lj, lt, l1 = [], [], []
    start = {k: np.array(v) for k, v in torch_sd(torch_model).items()}
    twin = _twin(torch_model, opt) if SPREAD else None
    t0 = time.time()

    def torch_step(m, o, batch):
        o.zero_grad()
        loss = torch_loss(m, batch)
        loss.backward()
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(m.parameters(), clip)
        o.step()
        return float(loss.detach())

    for t, batch in enumerate(batches):
        state, m = step_fn(state, jax.tree_util.tree_map(jnp.asarray, batch))
        lj.append(float(m["loss"]))
        lr_at(t)
        lt.append(torch_step(torch_model, opt, batch))
        if twin is not None:
            for a, b in zip(opt.param_groups, twin[1].param_groups, strict=True):
                b["lr"] = a["lr"]
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            l1.append(torch_step(*twin, batch))
            torch.set_num_threads(threads)
    ours = to_torch_sd(jax.device_get(state.variables()))
    ref = torch_sd(torch_model)
    ref = {k: v for k, v in ref.items() if not k.endswith("num_batches_tracked")}
    params = [k for k in ref if k in ours and (stats is None or not stats(k))]
    pabs = max(float(np.max(np.abs(ours[k] - ref[k]))) for k in params)
    pdiff = pabs / max(float(np.max(np.abs(ref[k] - start[k]))) for k in params)
    sdiff = None
    if stats is not None:
        sdiff = max(_rel(ours[k], ref[k]) for k in ref if stats(k) and k in ours)
    return Result(
        name, setup, steps, lj, lt, pdiff, pabs, sdiff, time.time() - t0, l1 if twin else None
    )


def _timm_cosine(opt, c, steps):
    from timm.scheduler import CosineLRScheduler

    w = int(c.optimizer.warmup_steps)
    s = CosineLRScheduler(
        opt,
        t_initial=steps - w,
        lr_min=float(c.optimizer.end_lr_factor) * _peak(c),
        warmup_t=w,
        warmup_lr_init=0.0,
        warmup_prefix=True,
        t_in_epochs=False,
    )
    return s.step_update


def _peak(c):
    lr = float(c.optimizer.lr)
    if c.optimizer.base_batch_size > 0:
        lr *= c.global_batch_size / c.optimizer.base_batch_size
    return lr


def _classification_case(name, setup, recipe, jname, timm_model, steps, batch, size,
                         jkw, extra_opt=None, groups_fn=None, stats=None, fast=False):  # fmt: skip

    import jaxbones
    from jaxbones.train.tasks import get_task

    c = _config(recipe, steps, batch, size)
    c.model = jname
    for k, v in (extra_opt or {}).items():
        c.optimizer[k] = v
    c.model_kwargs.update(jkw)
    num_classes = 10
    torch.manual_seed(0)
    tm = timm_model(num_classes)
    tm.train()
    variables = jaxbones.convert.from_torch(
        jname, tm.state_dict(), strict=True, num_classes=num_classes, **jkw
    )
    task = get_task(c.task)
    model = task.build_model(c, num_classes)
    rng = np.random.default_rng(1)
    imgs = _images(steps, batch, size)
    batches = [
        {"image": x, "label": rng.integers(0, num_classes, batch).astype(np.int32)} for x in imgs
    ]
    from timm.optim import create_optimizer_v2

    o = c.optimizer
    params = groups_fn(tm, float(o.weight_decay)) if groups_fn else tm
    kw = {"momentum": o.momentum} if o.name == "sgd" else {"betas": (o.b1, o.b2), "eps": o.eps}
    opt = create_optimizer_v2(params, opt=o.name, lr=_peak(c), weight_decay=o.weight_decay, **kw)
    lr_at = _timm_cosine(opt, c, steps)
    ce = torch.nn.CrossEntropyLoss(label_smoothing=float(c.label_smoothing))

    def torch_loss(m, b):
        return ce(m(_nchw(b["image"])), torch.from_numpy(b["label"]).long())

    return _run(
        name, setup, c, task, model, variables, batches, tm, opt, torch_loss, lr_at,
        float(o.clip_norm),
        lambda v: jaxbones.convert.to_torch(jname, v, num_classes=num_classes, **jkw),
        lambda m: {k: v.detach().numpy() for k, v in m.state_dict().items()},
        stats, fast,
    )  # fmt: skip


def resnet50(steps, small):
    import timm.models.resnet as tr

    layers = (1, 1, 1, 1) if small else (3, 4, 6, 3)
    kw = {"layers": layers} if small else {}

    def build(nc):
        return tr.ResNet(block=tr.Bottleneck, layers=layers, num_classes=nc)

    return _classification_case(
        "ResNet-50" + (" layers (1,1,1,1), 32 px" if small else ""),
        "SGD Nesterov 0.9, wd 1e-4, BN train mode, label smoothing 0.1",
        "resnet_imagenet", "resnet50", build, steps, 4 if small else 8, 32 if small else 64, kw,
        stats=lambda k: k.endswith(("running_mean", "running_var")),
        fast=small,
    )  # fmt: skip


def vit_s16(steps, small):
    import timm

    kw = {"img_size": 64, **({"depth": 2, "embed_dim": 64, "num_heads": 2} if small else {})}

    def build(nc):
        return timm.create_model("vit_small_patch16_224", num_classes=nc, **kw)

    return _classification_case(
        "ViT-S/16" + (" depth 2, width 64" if small else ""),
        "AdamW, layer decay 0.65 (MAE param_groups_lrd), clip 1.0, label smoothing 0.1",
        "vit_imagenet", "vit_small_patch16_224", build, steps, 8, 64, kw,
        extra_opt={"layer_decay": 0.65, "clip_norm": 1.0},
        groups_fn=lambda m, wd: mae_lrd_groups(m, wd, 0.65),
        fast=small,
    )  # fmt: skip


def swin_t(steps, small):
    import timm

    tiny = {"depths": (1, 1, 2, 1), "embed_dim": 16, "num_heads": (1, 2, 4, 8)}
    kw = (
        {"img_size": 64, "window_size": 2, **tiny} if small else {"img_size": 128, "window_size": 4}
    )

    def build(nc):
        return timm.create_model(
            "swin_tiny_patch4_window7_224", num_classes=nc, drop_path_rate=0.0, **kw
        )

    return _classification_case(
        "Swin-T" + (" depths (1,1,2,1), width 16, window 2 at 64 px" if small else ""),
        "AdamW, clip 5.0, label smoothing 0.1 (window 4 at 128 px)",
        "swin_imagenet", "swin_tiny_patch4_window7_224", build, steps, 4, kw["img_size"], kw,
        fast=small,
    )  # fmt: skip


def mae_b(steps, small):
    from transformers import ViTMAEConfig, ViTMAEForPreTraining

    import jaxbones
    from jaxbones.train.tasks import MAE

    size, batch = 64, 8
    jkw = {"img_size": size, "norm_pix_loss": True}
    hf = {"image_size": size, "patch_size": 16, "norm_pix_loss": True, "layer_norm_eps": 1e-6}
    if small:
        jkw.update(
            depth=2, embed_dim=64, num_heads=2, decoder_depth=1, decoder_embed_dim=32,
            decoder_num_heads=2,
        )  # fmt: skip
        hf.update(
            num_hidden_layers=2, hidden_size=64, num_attention_heads=2, intermediate_size=256,
            decoder_num_hidden_layers=1, decoder_hidden_size=32, decoder_num_attention_heads=2,
            decoder_intermediate_size=128,
        )  # fmt: skip
    torch.manual_seed(0)
    tm = ViTMAEForPreTraining(ViTMAEConfig(attn_implementation="eager", **hf))
    tm.train()
    name = "mae_vit_base_patch16_dec512d8b"
    variables = jaxbones.convert.from_torch(
        name, from_transformers_layout(tm.state_dict()), strict=True, **jkw
    )
    c = _config("mae_pretrain", steps, batch, size)
    c.model_kwargs.update(jkw)

    class FedNoise(MAE):
        """The MAE task with the masking noise read from the batch (both sides get it)."""

        def loss(self, model, variables, b, rng, config):
            loss, _, _ = model.apply(variables, b["image"], train=True, noise=b["noise"])
            return loss.astype(jnp.float32), {}, {}

    task = FedNoise()
    model = task.build_model(c, 0)
    n = (size // 16) ** 2
    rng = np.random.default_rng(1)
    batches = [
        {"image": x, "noise": rng.random((batch, n)).astype(np.float32)}
        for x in _images(steps, batch, size)
    ]
    o = c.optimizer
    opt = torch.optim.AdamW(
        mae_add_weight_decay(tm, float(o.weight_decay)), lr=_peak(c), betas=(o.b1, o.b2)
    )
    w = int(o.warmup_steps)

    def lr_at(t):  # util/lr_sched.py with one step per "epoch"
        peak = _peak(c)
        if t < w:
            lr = peak * t / w
        else:
            lr = peak * 0.5 * (1.0 + math.cos(math.pi * (t - w) / (steps - w)))
        for g in opt.param_groups:
            g["lr"] = lr

    def torch_loss(m, b):
        return m(_nchw(b["image"]), noise=torch.from_numpy(b["noise"])).loss

    return _run(
        "MAE-B" + (" depth 2 x 64, decoder 1 x 32" if small else ""),
        "AdamW (0.9, 0.95), wd 0.05 (cls/mask tokens decayed), norm_pix_loss, same noise",
        c, task, model, variables, batches, tm, opt, torch_loss, lr_at, 0.0,
        lambda v: jaxbones.convert.to_torch(name, v, **jkw),
        lambda m: {k: v.detach().numpy() for k, v in from_transformers_layout(m.state_dict()).items()},
        fast=small,
    )  # fmt: skip


CASES = {"resnet50": resnet50, "vit_s16": vit_s16, "swin_t": swin_t, "mae_b": mae_b}


def bf16_errors(name: str, size: int = 224, batch: int = 4, **kw) -> dict[str, float]:
    """The bf16 forward's distance from the float32 one in jaxbones (``dtype=bfloat16``,
    float32 parameters) and in PyTorch (``torch.autocast('cpu', torch.bfloat16)``), same
    weights and inputs: the largest and the root-mean-square logit difference, both over the
    largest float32 logit. ``kw`` reduces the model (the test's tiny ViT)."""
    import timm

    import jaxbones

    torch.manual_seed(0)
    tm = timm.create_model(name, num_classes=1000, **kw).eval()
    variables = jaxbones.convert.from_torch(name, tm.state_dict(), strict=True, **kw)
    x = np.random.default_rng(0).standard_normal((batch, size, size, 3)).astype(np.float32)
    with torch.no_grad():
        t32 = tm(_nchw(x)).numpy()
        with torch.autocast("cpu", torch.bfloat16):
            t16 = tm(_nchw(x)).float().numpy()
    outs = {}
    for dt in (jnp.float32, jnp.bfloat16):
        m = jaxbones.create_model(name, dtype=dt, **kw)
        outs[dt] = np.asarray(jax.jit(lambda v, x, m=m: m.apply(v, x))(variables, x), np.float32)

    def dist(a, b):
        d, s = np.asarray(a, np.float64) - b, float(np.abs(b).max())
        return float(np.abs(d).max()) / s, float(np.sqrt(np.mean(d**2))) / s

    (jmax, jrms), (tmax, trms) = dist(outs[jnp.bfloat16], outs[jnp.float32]), dist(t16, t32)
    return {"jax_max": jmax, "jax_rms": jrms, "torch_max": tmax, "torch_rms": trms}


def render(results: list[Result]) -> str:
    lines = [
        (
            "| model | recipe step | steps | max rel. loss diff | reference on 1 thread "
            "| at last step | loss first → last | final param diff: abs. / of the movement "
            "| wall |"
        ),
        "|---|---|---:|---:|---:|---:|---|---:|---:|",
    ]
    for r in results:
        d, sp = r.loss_diffs, r.spread_diffs
        p = f"{r.param_abs:.1e} / {r.param_diff:.1e}"
        if r.stats_diff is not None:
            p += f" (BN stats {r.stats_diff:.1e})"
        spread = "—" if sp is None else f"{sp.max():.1e} (step {int(sp.argmax())})"
        lines.append(
            f"| {r.name} | {r.setup} | {r.steps} | {d.max():.1e} (step {int(d.argmax())}) "
            f"| {spread} | {d[-1]:.1e} | {r.losses_torch[0]:.4f} → {r.losses_torch[-1]:.4f} "
            f"| {p} | {_duration(r.seconds)} |"
        )
    return "\n".join(lines) + "\n"


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def merge_rows(old: str, new: str) -> str:
    """``new`` (a rendered table) with the rows of ``old`` whose model it does not have kept
    before its own, so runs of different cases (and step counts) fill one table; an old row's
    cells are placed by column name, "—" where ``old`` has no such column."""

    def cells(line):
        return [c.strip() for c in line.strip().strip("|").split("|")]

    new_lines, old_lines = new.splitlines(), [x for x in old.splitlines() if x.startswith("|")]
    header = cells(new_lines[0])
    names = {cells(r)[0] for r in new_lines[2:]}
    kept = []
    if old_lines:
        old_header = cells(old_lines[0])
        for r in old_lines[2:]:
            row = dict(zip(old_header, cells(r), strict=False))
            if row.get(header[0]) not in names:
                kept.append("| " + " | ".join(row.get(h, "—") for h in header) + " |")
    return "\n".join(new_lines[:2] + kept + new_lines[2:]) + "\n"


def render_bf16(bf16: dict) -> str:
    lines = [
        (
            "| model (224 px, batch 4) | bf16 vs f32, largest: jaxbones | torch autocast "
            "| root-mean-square: jaxbones | torch autocast |"
        ),
        "|---|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {n} | {e['jax_max']:.2e} | {e['torch_max']:.2e} | {e['jax_rms']:.2e} "
        f"| {e['torch_rms']:.2e} |"
        for n, e in bf16.items()
    ]
    return "\n".join(lines) + "\n"


def write_readme(table: str, block: str, path: str = README, merge: bool = False) -> None:
    """Writes ``table`` into README's ``MARKERS[block]`` block (``merge``: keeping the rows
    of other models already there, ``merge_rows``)."""
    from scripts.model_table import write_atomically, write_between_markers

    with open(path) as f:
        text = f.read()
    name = MARKERS[block]
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    if merge and start in text and end in text:
        table = merge_rows(text.split(start, 1)[1].split(end, 1)[0].strip("\n"), table)
    write_atomically(path, write_between_markers(text, table, start, end))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--cases", default=",".join(CASES))
    p.add_argument("--small", action="store_true", help="reduced depth (the CI version)")
    p.add_argument("--bf16", action="store_true", help="also measure the bf16 forwards")
    p.add_argument(
        "--optim", action="store_true", help="also the optimiser, schedule and group tables"
    )
    p.add_argument("--no-spread", action="store_true", help="skip the reference's one-thread rerun")
    p.add_argument("--float64", action="store_true", help="both sides in float64 (jax_enable_x64)")
    p.add_argument("--no-write", action="store_true", help="print only, leave README.md")
    args = p.parse_args(argv)
    jax.config.update("jax_default_matmul_precision", "highest")
    torch.set_num_threads(max(os.cpu_count() or 1, 1))
    global SPREAD, FLOAT64
    SPREAD = not args.no_spread
    FLOAT64 = args.float64
    if FLOAT64:
        jax.config.update("jax_enable_x64", True)
    results = []
    for case in [c for c in args.cases.split(",") if c]:
        r = CASES[case](args.steps, args.small)
        print(f"{r.name}: max loss diff {r.loss_diffs.max():.2e}, params {r.param_diff:.2e}, "
              f"{r.seconds:.0f} s", flush=True)  # fmt: skip
        results.append(r)
        table = render(results)
        print(table, flush=True)
        if not args.no_write:  # after every case, keeping the other models' rows
            write_readme(table, "small" if args.small else "full", merge=True)
    bf16 = None
    if args.bf16:
        bf16 = {n: bf16_errors(n) for n in ("vit_base_patch16_224", "resnet50")}
        table = render_bf16(bf16)
        print(table)
        if not args.no_write:
            write_readme(table, "bf16")
    if args.optim:
        from scripts import optim_parity

        for block, fn in (
            ("optim", optim_parity.render_optimizers),
            ("schedules", optim_parity.render_schedules),
            ("groups", optim_parity.render_groups),
        ):
            table = fn()
            print(table)
            if not args.no_write:
                write_readme(table, block)
    return results, bf16


if __name__ == "__main__":
    main()
