"""Throughput, compile time, memory and MFU of jaxbones models, side by side with PyTorch.

    python -m scripts.benchmark --models resnet50,vit_base_patch16_224 --batch 8 \
        --dtypes float32 --torch eager,compile
    python -m scripts.benchmark --render          # BENCHMARKS.md from benchmarks.jsonl only
    # compile time only (lower + XLA compile of the train step, HLO size, memory analysis):
    python -m scripts.benchmark --models vit_large_patch16_224,resnet152 --modes compile \
        --variants 'scan=false;scan=true' --torch none
    # a knob study: the first variant ('-': defaults) is the baseline; rows render as ratios
    python -m scripts.benchmark --models resnet50 --modes train --torch eager --study r50 \
        --variants="-;scan=true;remat_policy=full;donate=false;"\
"xla=--xla_cpu_multi_thread_eigen=false"

For each model and setting it measures, on synthetic data:
  * JAX: training step (forward + backward + AdamW update, jitted and donated) and inference
    (jitted eval forward): median step time, images/s, images/s per device, compile time,
    XLA's memory analysis of the compiled step (arguments + temporaries), model FLOPs from
    XLA's cost analysis, and MFU against the device's peak for the run's dtype
    (``jaxbones.hardware.PEAK_FLOPS``; n/a on CPU);
  * PyTorch: the same step for the reference model (torchvision/timm; MAE via transformers'
    ViTMAEForPreTraining with the same config), eager and ``torch.compile``, autocast to bf16
    when the JAX side runs bf16; and the ratio JAX / PyTorch.
Rows are appended to a JSON-lines file and BENCHMARKS.md is rendered from all rows (never
typed by hand). Every row records the machine (CPU model and cores or accelerator), library
versions and the 1/5/15-minute load average when it was measured.

All timed rows of one model, mode and dtype (every variant and every PyTorch kind) are built
first and then measured interleaved (``measure_interleaved``: one step of each in turn per
round), so a comparison never mixes two loads: the JAX row's ``vs_torch`` is the median over
rounds of the per-round ratio. The highest 1-minute load sampled during the rounds is kept
(``load_max``); above the core count the row is ``under_load`` and left out of BENCHMARKS.md.
On a shared machine the ratio stays meaningful longer than the absolute times do.

Variants (``--variants``, semicolon-separated; ``-`` is the default setting) are comma lists
of ``key=value``: any model field (``scan``, ``remat_policy``, ``attn_implementation``,
``drop_path_rate``, ...) plus the step-level knobs ``dtype=bfloat16|float32`` (compute dtype;
overrides ``--dtypes``), ``donate=false`` (no buffer donation in the train step) and
``xla=FLAGS`` (XLA_FLAGS, space-separated; such a variant runs in a fresh subprocess since XLA
reads its flags once per process). ``--modes compile`` only lowers and compiles the train
step: compile time, optimised-HLO instruction count and XLA's memory analysis.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from typing import Any


@dataclasses.dataclass
class Row:
    date: str
    device: str
    framework: str  # jax | torch-eager | torch-compile
    model: str
    mode: str  # train | infer
    dtype: str
    batch: int
    img_size: int
    options: str  # scan/remat/attention settings
    step_ms: float | None  # None for compile-only rows
    images_per_s: float | None
    images_per_s_per_device: float | None
    compile_s: float | None = None  # trace + lower + XLA compile (JAX); first call (torch)
    memory_gb: float | None = None  # XLA: arguments + outputs + temporaries
    tflops_per_step: float | None = None
    mfu: float | None = None
    # Added with compile-only rows and knob studies (older rows lack them: rendered as -).
    lower_s: float | None = None  # trace + lower to StableHLO (part of compile_s)
    temp_gb: float | None = None  # XLA temporaries (activations kept for backward etc.)
    hlo_ops: int | None = None  # instructions in the optimised HLO module
    study: str | None = None  # knob-study name (rows of one study render as ratios)
    knob: str | None = None  # the variant label within the study ('-' is the baseline)
    xla_flags: str | None = None
    loadavg: list[float] | None = None  # os.getloadavg() just before the measurement
    host: str | None = None  # CPU model and cores, or accelerator
    versions: str | None = None  # jax / jaxlib / flax / torch
    flops_from: str | None = None  # set when FLOPs do not come from the compiled step itself
    # Interleaved measurement (rows without ``group`` predate it and get no PyTorch ratio):
    group: str | None = None  # rows measured together, one step of each per round, in turn
    rounds: int | None = None  # measured rounds (one step of every row of the group each)
    vs_torch: float | None = None  # JAX rows: median over rounds of torch step / JAX step
    load_max: float | None = None  # highest 1-minute load average sampled while measuring
    under_load: bool | None = None  # load_max above this process's cores: times inflated
    # "retained": measured in a process with jaxbones.hardware.retain_host_memory (all rows
    # of a comparison share the process, so PyTorch's rows have it too)
    host_memory: str | None = None


def host_info() -> str:
    """CPU model and the cores this process may use, from /proc/cpuinfo (Linux)."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{model}, {cores} cores"


def wait_for_idle(cores: int, limit: float) -> float:
    """Seconds waited (at most `limit`) for the 1-minute load average to fall below `cores`:
    it decays over about a minute after an earlier run, whose threads it still counts."""
    start = time.perf_counter()
    while os.getloadavg()[0] >= cores and time.perf_counter() - start < limit:
        time.sleep(5)
    return time.perf_counter() - start


def versions(*mods: str) -> str:
    import importlib.metadata as md

    out = []
    for m in mods:
        try:
            out.append(f"{m} {md.version(m)}")
        except md.PackageNotFoundError:
            pass
    return ", ".join(out)


def loadavg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


# Knob keys that are not model fields: handled by the step / the process.
STEP_KNOBS = ("dtype", "donate", "xla")


def _process_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


@dataclasses.dataclass
class Pending:
    """A row whose step is built (compiled, first call done) but not yet timed."""

    row: Row
    run: Any  # one step, synchronised
    flops: float = 0.0
    peak: float | None = None
    trace: Any = None  # trace(dir): profile TRACE_STEPS steps into dir (``--trace``)


TRACE_STEPS = 3


def trace_rows(pending: list[Pending], root: str) -> None:
    """Profiles each row's step after timing (``--trace``): JAX rows with ``jax.profiler``
    (Perfetto trace, optimised HLO and ``scripts.trace_summary``'s table in ``summary.md``),
    PyTorch rows with ``torch.profiler`` (its kernel table in ``summary.md``)."""
    for p in pending:
        r = p.row
        name = f"{r.model}-{r.mode}-{r.dtype}-{r.framework}-{r.knob or r.options}"
        path = os.path.join(root, re.sub(r"[^A-Za-z0-9_.=-]+", "_", name))
        os.makedirs(path, exist_ok=True)
        summary = p.trace(path)
        with open(os.path.join(path, "summary.md"), "w") as f:
            f.write(summary + "\n")
        print(f"--- {name}\n{summary}", flush=True)


def measure_interleaved(pending: list[Pending], steps: int, warmup: int) -> list[Row]:
    """Times every pending step in turn, ``steps`` rounds of one step each (order reversed
    every other round, so none always runs first), and fills the rows: median step time,
    the JAX rows' ``vs_torch`` as the median over rounds of (fastest PyTorch row's step /
    JAX step), and the highest load average sampled before each round and after the last.

    Interleaving exposes every row of a comparison to the same load: a load change between
    two separately measured rows no longer shows up as a speed ratio."""
    from jaxbones import hardware

    for p in pending:
        for _ in range(warmup):
            p.run()
    times: list[list[float]] = [[] for _ in pending]
    loads = []
    for i in range(steps):
        loads.append(os.getloadavg()[0])
        order = range(len(pending)) if i % 2 == 0 else reversed(range(len(pending)))
        for j in order:
            t = time.perf_counter()
            pending[j].run()
            times[j].append(time.perf_counter() - t)
    loads.append(os.getloadavg()[0])
    group = f"{datetime.datetime.now().isoformat(timespec='seconds')}/{os.getpid()}"
    load_max = round(max(loads), 2)
    torch_times = [t for p, t in zip(pending, times) if p.row.framework.startswith("torch")]
    best_torch = min(torch_times, key=statistics.median) if torch_times else None
    for p, ts in zip(pending, times):
        r, dt = p.row, statistics.median(ts)
        r.step_ms = dt * 1e3
        r.images_per_s = r.batch / dt
        r.images_per_s_per_device = r.batch / dt  # one device per row
        r.mfu = p.flops / dt / p.peak if (p.peak and p.flops) else None
        r.group, r.rounds, r.load_max = group, steps, load_max
        r.host_memory = "retained" if hardware.host_memory_retained() else None
        r.under_load = load_max > _process_cores()
        if r.framework == "jax" and best_torch:
            r.vs_torch = statistics.median(b / a for a, b in zip(ts, best_torch))
    return [p.row for p in pending]


# ----------------------------------------------------------------------------------- JAX


def bench_jax(
    name,
    *,
    batch,
    dtype,
    mode,
    steps,
    warmup,
    overrides,
    img_size=None,
    donate=True,
    flops_only=False,
    **tags,
) -> Pending | Row | float:
    """One JAX row. ``mode``: 'train' or 'infer' (a ``Pending`` row: compiled, to be timed by
    ``measure_interleaved``) or 'compile' (train step, compiled only: a finished ``Row``).
    ``tags`` (study, knob, xla_flags) are recorded as given. ``flops_only``: return the step's
    model FLOPs from lowering alone (shapes only; nothing is compiled or run). ``steps`` and
    ``warmup`` are unused (timing is ``measure_interleaved``'s)."""
    import jax
    import jax.numpy as jnp
    import optax

    import jaxbones
    from jaxbones.hardware import peak_flops, xla_cpu_tuned

    info = jaxbones.model_info(name)
    h, w, c = info["input_size"]
    if img_size:
        h = w = img_size
    cdtype = jnp.bfloat16 if dtype == "bfloat16" else jnp.float32
    size_ov = {}
    if img_size and "img_size" in jaxbones.registry.model_fields(name):
        size_ov = {"img_size": img_size}  # position tables / windows follow the resolution
    model = jaxbones.create_model(name, dtype=cdtype, **size_ov, **overrides)
    x = jax.random.normal(jax.random.PRNGKey(0), (batch, h, w, c), jnp.float32)
    y = jax.random.randint(jax.random.PRNGKey(1), (batch,), 0, 1000)
    # init at the benchmark resolution (models with an img_size field get it as an override)
    variables = jax.eval_shape(lambda r: model.init(r, x[:1], train=False), jax.random.PRNGKey(0))
    is_mae = name.startswith("mae_")
    rngs = {
        "dropout": jax.random.PRNGKey(2),
        "drop_path": jax.random.PRNGKey(3),
        "mask": jax.random.PRNGKey(4),
    }

    tx = optax.adamw(1e-4)
    train = mode in ("train", "compile")

    def build(model):
        def loss_fn(p, others, x, y):
            out, upd = model.apply(
                {"params": p, **others}, x, train=True, mutable=["batch_stats"], rngs=rngs
            )
            if is_mae:
                return out[0].astype(jnp.float32), upd

            def ce(logits):
                logits = logits.astype(jnp.float32)
                return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

            if isinstance(out, tuple):  # Inception-v3 in training: (logits, aux_logits)
                return ce(out[0]) + AUX_LOSS_WEIGHT * ce(out[1]), upd
            return ce(out), upd

        if train:

            def step(p, o, others, x, y):
                (loss, upd), g = jax.value_and_grad(loss_fn, has_aux=True)(p, others, x, y)
                u, o = tx.update(g, o, p)
                return optax.apply_updates(p, u), o, {**others, **upd}, loss

            fn = jax.jit(step, donate_argnums=(0, 1, 2) if donate else ())
        else:

            def fwd(p, others, x):
                out = model.apply({"params": p, **others}, x, train=False, rngs=rngs)
                return out[0] if is_mae else out

            fn = jax.jit(fwd)
        return fn

    fn = build(model)

    def make_args():
        v = jax.jit(lambda r: model.init(r, x[:1], train=False))(jax.random.PRNGKey(0))
        p = v["params"]
        others = {k: a for k, a in v.items() if k != "params"}
        return [p, tx.init(p), others, x, y] if train else [p, others, x]

    if mode == "compile" or flops_only:  # shapes only: nothing is allocated or run
        params = variables["params"]
        others = {k: a for k, a in variables.items() if k != "params"}
        args = [params, jax.eval_shape(tx.init, params), others, x, y]
        if flops_only and not train:
            args = [params, others, x]
    else:
        args = make_args()
    load = loadavg()
    t0 = time.perf_counter()
    lowered = fn.lower(*args)
    lower_s = time.perf_counter() - t0
    # Model FLOPs from the lowered (unoptimised) program: every dot and convolution counted
    # once. The compiled program's analysis misses what XLA hands to cuBLAS/cuDNN on GPU (it
    # reported 1% "MFU" for ViT-B on an H200) and counts rematerialised work on any backend.
    cost = lowered.cost_analysis()
    if overrides.get("scan"):
        # XLA's cost analysis counts a while-loop body once, not once per iteration: model
        # FLOPs of a scanned model come from lowering (not compiling) its unrolled twin.
        twin = jaxbones.create_model(name, dtype=cdtype, **size_ov, **{**overrides, "scan": False})
        tv = jax.eval_shape(lambda r: twin.init(r, x[:1], train=False), jax.random.PRNGKey(0))
        tp, to = tv["params"], {k: a for k, a in tv.items() if k != "params"}
        targs = [tp, jax.eval_shape(tx.init, tp), to, x, y] if train else [tp, to, x]
        cost = build(twin).lower(*targs).cost_analysis()
        tags = {**tags, "flops_from": "unrolled twin (lowered)"}
    cost = cost[0] if isinstance(cost, list) else cost
    flops = float(cost.get("flops", 0.0)) if cost else 0.0
    if flops_only:
        return flops
    compiled = lowered.compile()
    compile_s = time.perf_counter() - t0
    mem = compiled.memory_analysis()
    mem_gb = temp_gb = None
    if mem is not None:
        mem_gb = (
            mem.argument_size_in_bytes + mem.output_size_in_bytes + mem.temp_size_in_bytes
        ) / 2**30
        temp_gb = mem.temp_size_in_bytes / 2**30
    hlo_ops = None
    if mode == "compile":
        # instructions of the optimised module: lines "name = type op(...)" in HLO text
        hlo_ops = len(re.findall(r"^\s*(?:ROOT )?\S+ = ", compiled.as_text(), re.MULTILINE))

    state = {"args": args}

    def run():
        if train:
            p, o, oth, loss = compiled(*state["args"])
            state["args"] = [p, o, oth, x, y]
            loss.block_until_ready()
        else:
            jax.block_until_ready(compiled(*state["args"]))

    def trace(path):
        from scripts.trace_summary import summarize

        with jax.profiler.trace(path, create_perfetto_trace=True):
            for _ in range(TRACE_STEPS):
                run()
        with open(os.path.join(path, "hlo.txt"), "w") as f:
            f.write(compiled.as_text())
        return summarize(path, steps=TRACE_STEPS)

    dev = jax.devices()[0]
    peak = peak_flops(dev.device_kind, dtype)
    opts = {k: "/".join(map(str, v)) if isinstance(v, tuple) else v for k, v in overrides.items()}
    opts = dict(sorted(opts.items()))
    if not donate:
        opts["donate"] = False
    row = Row(
        date=datetime.date.today().isoformat(),
        device=f"{dev.platform}:{dev.device_kind}",
        framework="jax",
        model=name,
        mode=mode,
        dtype=dtype,
        batch=batch,
        img_size=h,
        options=",".join(f"{k}={v}" for k, v in opts.items()) or "-",
        step_ms=None,
        images_per_s=None,
        images_per_s_per_device=None,
        compile_s=compile_s,
        memory_gb=mem_gb,
        tflops_per_step=flops / 1e12 if flops else None,
        mfu=None,
        lower_s=lower_s,
        temp_gb=temp_gb,
        hlo_ops=hlo_ops,
        loadavg=load,
        host=host_info() if dev.platform == "cpu" else dev.device_kind,
        versions=versions("jax", "jaxlib", "flax"),
        **tags,
    )
    # the XLA_FLAGS the program was compiled with: a variant's own and tune_xla_cpu's
    given = (row.xla_flags or "").split()
    row.xla_flags = " ".join(given + [f for f in xla_cpu_tuned() if f not in given]) or None
    if mode == "compile":  # compile time suffers from load too
        row.load_max = round(max(load[0], os.getloadavg()[0]), 2) if load else None
        row.under_load = row.load_max is not None and row.load_max > _process_cores()
        return row
    return Pending(row, run, flops, peak, trace)


# --------------------------------------------------------------------------------- torch


def torch_model(name: str, img_size: int = 224):
    import jaxbones

    ref = jaxbones.model_info(name)["reference"]
    if name.startswith("mae_"):
        from transformers import ViTMAEConfig, ViTMAEForPreTraining

        size = {"base": (768, 12, 12), "large": (1024, 24, 16), "huge": (1280, 32, 16)}
        kind = name.split("_")[2]
        d, depth, heads = size[kind]
        patch = 14 if "patch14" in name else 16
        cfg = ViTMAEConfig(
            hidden_size=d,
            num_hidden_layers=depth,
            num_attention_heads=heads,
            intermediate_size=4 * d,
            patch_size=patch,
            image_size=img_size,
            decoder_hidden_size=512,
            decoder_num_hidden_layers=8,
            decoder_num_attention_heads=16,
            decoder_intermediate_size=2048,
            mask_ratio=0.75,
            norm_pix_loss=True,
        )
        return ViTMAEForPreTraining(cfg)
    if ref.startswith("torchvision.models."):
        import torchvision

        return getattr(torchvision.models, ref.rsplit(".", 1)[1])(weights=None)
    if ref.startswith("timm."):
        import timm

        kw = {"img_size": img_size} if img_size != 224 else {}
        try:
            return timm.create_model(ref.rsplit(".", 1)[1], pretrained=False, **kw)
        except TypeError:  # CNNs take any resolution and have no img_size argument
            return timm.create_model(ref.rsplit(".", 1)[1], pretrained=False)
    raise ValueError(f"{name}: no PyTorch reference to benchmark ({ref!r})")


def bench_torch(name, *, batch, dtype, mode, compile_, img_size=None) -> Pending:
    """The PyTorch reference step (first call done: ``torch.compile`` compiles there), to be
    timed by ``measure_interleaved`` next to the JAX rows."""
    import torch

    import jaxbones

    h, w, c = jaxbones.model_info(name)["input_size"]
    if img_size:
        h = w = img_size
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    model = torch_model(name, h).to(dev).to(memory_format=torch.channels_last)
    x = torch.randn(batch, c, h, w, device=dev).to(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (batch,), device=dev)
    is_mae = name.startswith("mae_")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    amp = dtype == "bfloat16"
    fwd = torch.compile(model) if compile_ else model

    def loss_of():
        with torch.autocast(dev, dtype=torch.bfloat16, enabled=amp):
            if is_mae:
                return fwd(pixel_values=x).loss
            out = fwd(x)
            if isinstance(out, tuple):  # torchvision's Inception-v3 in training
                return ce(out[0]) + AUX_LOSS_WEIGHT * ce(out[1])
            return ce(out)

    def ce(logits):
        return torch.nn.functional.cross_entropy(logits.float(), y)

    def sync():
        if dev == "cuda":
            torch.cuda.synchronize()

    if mode == "train":
        model.train()

        def run():
            opt.zero_grad(set_to_none=True)
            loss_of().backward()
            opt.step()
            sync()
    else:
        model.eval()

        def run():
            with torch.no_grad(), torch.autocast(dev, dtype=torch.bfloat16, enabled=amp):
                fwd(pixel_values=x) if is_mae else fwd(x)
            sync()

    load = loadavg()
    t0 = time.perf_counter()
    run()  # first call: torch.compile compiles here
    compile_s = time.perf_counter() - t0
    if dev == "cuda":
        torch.cuda.reset_peak_memory_stats()
        run()  # peak memory of a steady-state step
    mem = torch.cuda.max_memory_allocated() / 2**30 if dev == "cuda" else None
    kind = torch.cuda.get_device_name() if dev == "cuda" else "cpu"
    row = Row(
        date=datetime.date.today().isoformat(),
        device=f"{dev}:{kind}",
        framework="torch-compile" if compile_ else "torch-eager",
        model=name,
        mode=mode,
        dtype=dtype,
        batch=batch,
        img_size=h,
        options="channels_last" + (",amp" if amp else ""),
        step_ms=None,
        images_per_s=None,
        images_per_s_per_device=None,
        compile_s=compile_s if compile_ else None,
        memory_gb=mem,
        loadavg=load,
        host=host_info() if dev == "cpu" else kind,
        versions=versions("torch", "torchvision", "timm"),
    )

    def trace(path):
        from torch.profiler import ProfilerActivity, profile

        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev == "cuda" else [])
        with profile(activities=acts) as prof:
            for _ in range(TRACE_STEPS):
                run()
        sort = "cuda_time_total" if dev == "cuda" else "cpu_time_total"
        return f"{TRACE_STEPS} steps\n" + prof.key_averages().table(sort_by=sort, row_limit=40)

    return Pending(row, run, trace=trace)


# -------------------------------------------------------------------------------- render

# What each knob does (static text; the measured effects are rendered from the rows).
KNOB_DOCS = {
    "scan": "`nn.scan` over identical blocks: one compiled block body per stack instead of one "
    "per block. Cuts trace/compile time and HLO size roughly by the depth; the step itself "
    "can lose some cross-block fusion.",
    "remat_policy": "`jax.checkpoint` policy per block (`full`: save nothing, recompute the "
    "block in backward; `dots`: keep matmul/conv outputs; `dots_no_batch`). Trades "
    "activation memory (temp GB) for recompute (step time).",
    "attn_implementation": "kernel behind `dot_product_attention`: default (`None`: cuDNN flash "
    "attention for bf16/fp16 attention without bias or mask on NVIDIA GPUs, else XLA), `xla` "
    "(explicit einsum-softmax-einsum), `cudnn` (flash attention on NVIDIA GPUs only). On CPU "
    "`None` resolves to `xla`, so there the row measures run-to-run noise.",
    "dtype": "compute dtype (parameters stay float32, norms/softmax/loss in float32). bf16 "
    "pays off on tensor-core/MXU hardware; on CPU it is emulated and usually slower.",
    "donate": "`donate_argnums` on params/optimizer state/batch_stats: XLA updates them in "
    "place; without it each step allocates a second copy of the state.",
    "dense": "`dense=autodiff` marks a row measured with the `Dense` of commit c9a9d05, whose "
    "bf16 backward was autodiff of a float32-accumulated product: float32 x bf16 products, which "
    "XLA runs as TF32 GEMMs on GPUs (the profile of that row: 59 of its 171 ms per step). The "
    "current `Dense` has a custom VJP with bf16 products; the option no longer exists.",
    "xla": "XLA_FLAGS for the whole process (set before the backend starts; run in a "
    "subprocess). Only flags jax 0.10's XLA accepts are listed below.",
}
XLA_FLAG_DOCS = {
    "--xla_cpu_multi_thread_eigen=false": "single-threaded Eigen matmul/conv kernels on CPU",
    "--xla_backend_optimization_level=0": "no LLVM optimisation of the generated code "
    "(faster compile, slower step)",
    "--xla_llvm_disable_expensive_passes=true": "skip LLVM's expensive passes (faster compile)",
    "--xla_cpu_enable_fast_math=true": "LLVM fast-math (reassociation, approximate "
    "reciprocals): changes results slightly",
    "--xla_cpu_use_fusion_emitters=false": "the older loop emitters for CPU fusions",
}
# One-line effect per knob setting for the study tables (key=value first, then key).
KNOB_SHORT = {
    "scan=true": "one scanned block body per stack",
    "scan": "scan over identical blocks",
    "remat_policy=full": "recompute every block in backward",
    "remat_policy=dots": "keep matmul/conv outputs, recompute the rest",
    "remat_policy": "rematerialisation policy",
    "attn_implementation=xla": "explicit XLA attention (CPU default anyway: noise)",
    "attn_implementation": "attention kernel",
    "donate=false": "no buffer donation (state copied each step)",
    "dtype=bfloat16": "bf16 compute",
    "dtype": "compute dtype",
}
LAYOUT_NOTE = (
    "Layout is not a knob: every model is NHWC end to end (Flax's `nn.Conv` layout and the "
    "layout XLA's CPU and GPU convolution emitters prefer; on TPU XLA chooses its own tiled "
    "layouts whatever the logical one is), so a transpose per layer is never paid. The "
    "PyTorch side runs `channels_last` for a like-for-like comparison."
)


def _fmt(v, spec):
    return "-" if v is None else format(v, spec)


def _load(r) -> str:
    if r.get("load_max") is not None:
        return f"{r['load_max']:.1f}"
    return "-" if not r.get("loadavg") else f"{r['loadavg'][0]:.1f}"


def _under_load(r) -> bool:
    """Measured with the load average above the cores (rows before ``under_load`` was
    recorded: the load sampled at their start against the host's cores)."""
    if r.get("under_load") is not None:
        return r["under_load"]
    cores = _cores(r.get("host") or "")
    return bool(cores and r.get("loadavg") and r["loadavg"][0] > cores)


def _same_run(a, b) -> bool:
    return a.get("group") is not None and a.get("group") == b.get("group")


# the auxiliary classifier's share of the loss in torchvision's Inception-v3 recipe
AUX_LOSS_WEIGHT = 0.4


def _tuned_flags() -> list[str]:
    """Every flag ``tune_xla_cpu`` adds on some jaxlib version: rows carrying one are marked."""
    from jaxbones.hardware import XLA_CPU_FLAGS

    return sorted({f for by_flag in XLA_CPU_FLAGS.values() for f in by_flag})


def _key(r) -> tuple:
    return (r["model"], r["mode"], r["dtype"], r["batch"], r.get("img_size"))


def _throughput_table(drows: list[dict]) -> list[str]:
    lines = [
        (
            "| model | mode | dtype | batch | px | framework | options | step ms | img/s | "
            "img/s/dev | compile s | mem GB | TFLOP/step | MFU | vs torch | load |"
        ),
        "|" + "---|" * 16,
    ]
    tuned_flags = _tuned_flags()
    for r in drows:
        ratio = "-" if r.get("vs_torch") is None else f"{r['vs_torch']:.2f}x"
        if r["framework"] == "jax" and not r.get("group"):
            # rows from before interleaving: the best PyTorch row measured separately, marked
            best = [
                t["images_per_s"]
                for t in drows
                if t["framework"].startswith("torch") and _key(t) == _key(r) and not t.get("group")
            ]
            ratio = _ratio(r["images_per_s"], max(best) if best else None, interleaved=False)
        mfu, tflops = r.get("mfu"), r.get("tflops_per_step")
        retained = " ‡" if r.get("host_memory") == "retained" else ""
        if any(f in (r.get("xla_flags") or "") for f in tuned_flags):
            retained += " §"
        if "scan=True" in r["options"] and not r.get("flops_from"):
            # FLOPs of a scanned row without flops_from count the loop body once: not shown
            mfu = tflops = None
        lines.append(
            f"| {r['model']} | {r['mode']} | {r['dtype']} | {r['batch']} | "
            f"{r.get('img_size', '-')} | {r['framework']} | {r['options']}{retained} | "
            f"{_fmt(r['step_ms'], '.1f')} | {_fmt(r['images_per_s'], '.1f')} | "
            f"{_fmt(r['images_per_s_per_device'], '.1f')} | "
            f"{_fmt(r.get('compile_s'), '.1f')} | {_fmt(r.get('memory_gb'), '.2f')} | "
            f"{_fmt(tflops, '.3f')} | "
            f"{'-' if mfu is None else format(100 * mfu, '.1f') + '%'} | {ratio} | {_load(r)} |"
        )
    if any("†" in ln for ln in lines):
        lines += ["", "†: JAX and PyTorch measured one after the other, not interleaved."]
    if any("‡" in ln for ln in lines):
        lines += [
            "",
            (
                "‡: measured in a process with `jaxbones.hardware.retain_host_memory` (glibc"
                " keeps freed memory for reuse; both frameworks' rows of a comparison share it)."
            ),
        ]
    if any("§" in ln for ln in lines):
        lines += [
            "",
            (
                "§: JAX row measured with `jaxbones.hardware.tune_xla_cpu`'s XLA flags ("
                + ", ".join(f"`{f}`" for f in tuned_flags)
                + "); `jaxbones.launch` adds them for the model families listed in "
                "`jaxbones.hardware.XLA_CPU_FLAGS`."
            ),
        ]
    return lines


def _compile_table(crows: list[dict]) -> list[str]:
    lines = [
        (
            "Train step (forward + backward + AdamW), lowered and compiled only (`--modes compile`). "
            "`vs first` compares compile time with the first variant listed for the model."
        ),
        "",
        (
            "| model | dtype | batch | px | options | trace+lower s | compile s (total) | vs first | "
            "HLO instructions | temp GB | args+out+temp GB | load |"
        ),
        "|" + "---|" * 12,
    ]
    first: dict[tuple, float] = {}
    for r in crows:
        k = _key(r)
        first.setdefault(k, r["compile_s"])
        lines.append(
            f"| {r['model']} | {r['dtype']} | {r['batch']} | {r.get('img_size', '-')} | "
            f"{r['options']} | {_fmt(r.get('lower_s'), '.1f')} | {r['compile_s']:.1f} | "
            f"{r['compile_s'] / first[k]:.2f}x | {_fmt(r.get('hlo_ops'), 'd')} | "
            f"{_fmt(r.get('temp_gb'), '.2f')} | {_fmt(r.get('memory_gb'), '.2f')} | "
            f"{_load(r)} |"
        )
    return lines


def _ratio(a, b, interleaved: bool = True) -> str:
    # a ratio between rows not measured interleaved is marked (different loads possible)
    return "-" if a is None or not b else f"{a / b:.2f}x" + ("" if interleaved else "†")


def _knob_doc(label: str) -> str:
    if label in ("-", "", None):
        return "baseline (defaults)"
    docs = []
    for kv in label.split(","):
        k, _, v = kv.partition("=")
        if k == "xla":
            docs += [XLA_FLAG_DOCS.get(f, f) for f in v.split()]
        elif f"{k}={v.lower()}" in KNOB_SHORT or k in KNOB_SHORT:
            docs.append(KNOB_SHORT.get(f"{k}={v.lower()}", KNOB_SHORT.get(k)))
        else:
            docs.append(f"model option {k}")
    return "; ".join(docs)


def _study_tables(srows: list[dict]) -> list[str]:
    lines = []
    groups: dict[tuple, list[dict]] = {}
    for r in srows:
        groups.setdefault((r["study"], r["model"], r["mode"], r["batch"], r.get("img_size")), [])
        groups[(r["study"], r["model"], r["mode"], r["batch"], r.get("img_size"))].append(r)
    for (study, model, mode, batch, px), grows in groups.items():
        rows = [r for r in grows if r["framework"] == "jax"]
        torch_rows = [r for r in grows if r["framework"] != "jax"]
        if not rows:
            continue
        base = next((r for r in rows if r.get("knob") in ("-", "")), rows[0])
        lines += [
            (
                f"**{study}**: {model}, {mode}, batch {batch}, {px} px; ratios are to the "
                f"baseline (`{base.get('knob') or '-'}`, {base['dtype']}): img/s > 1x is faster, "
                "compile and memory < 1x are smaller."
            ),
            "",
            (
                "| knob | dtype | what it changes | step ms | img/s | img/s vs base | compile s | "
                "compile vs base | temp GB | temp vs base | vs torch | load |"
            ),
            "|" + "---|" * 12,
        ]
        for r in rows:
            same = _same_run(r, base)
            vs_torch = r.get("vs_torch")
            lines.append(
                f"| `{r.get('knob') or '-'}` | {r['dtype']} | {_knob_doc(r.get('knob'))} | "
                f"{_fmt(r['step_ms'], '.1f')} | {_fmt(r['images_per_s'], '.2f')} | "
                f"{_ratio(r['images_per_s'], base['images_per_s'], same)} | "
                f"{_fmt(r.get('compile_s'), '.1f')} | "
                f"{_ratio(r.get('compile_s'), base.get('compile_s'))} | "
                f"{_fmt(r.get('temp_gb'), '.2f')} | "
                f"{_ratio(r.get('temp_gb'), base.get('temp_gb'))} | "
                f"{'-' if vs_torch is None else format(vs_torch, '.2f') + 'x'} | {_load(r)} |"
            )
        for t in torch_rows:
            lines.append(
                f"| PyTorch: {t['framework']} ({t['options']}) | {t['dtype']} | reference | "
                f"{_fmt(t['step_ms'], '.1f')} | {_fmt(t['images_per_s'], '.2f')} | "
                f"{_ratio(t['images_per_s'], base['images_per_s'], _same_run(t, base))} | "
                "- | - | - | - | - | "
                f"{_load(t)} |"
            )
        if any("†" in ln for ln in lines[-len(rows) - len(torch_rows) :]):
            lines += ["", "†: measured in another process or invocation, not interleaved."]
        lines.append("")
    return lines


def _machine(drows: list[dict], loaded: int = 0) -> list[str]:
    hosts = sorted({r["host"] for r in drows if r.get("host")})
    vers = sorted({r["versions"] for r in drows if r.get("versions")})
    loads = [
        r["load_max"] if r.get("load_max") is not None else r["loadavg"][0]
        for r in drows
        if r.get("load_max") is not None or r.get("loadavg")
    ]
    out = [f"Machine: {'; '.join(hosts) or 'not recorded'}."]
    if vers:
        out.append(f"Software: {'; '.join(vers)}.")
    if loads:
        out.append(
            f"1-minute load average while measuring (highest sample; older rows: at the "
            f"start): {min(loads):.1f} to {max(loads):.1f} (`load` column)"
            + (
                "; above the core count the machine was shared with other jobs and absolute "
                "times are inflated, compare rows measured at similar load."
                if any(_cores(h) and max(loads) > _cores(h) for h in hosts)
                else "."
            )
        )
    missing = sum(1 for r in drows if not r.get("host"))
    if missing:
        out.append(f"{missing} rows predate machine/load recording (shown as -).")
    if loaded:
        out.append(
            f"{loaded} rows measured with the load average above the core count are left out "
            "(kept in the JSON-lines file with `under_load`)."
        )
    return [" ".join(out), ""]


def _cores(host: str) -> int | None:
    m = re.search(r"(\d+) cores", host)
    return int(m[1]) if m else None


NOT_MODEL_ROWS = ("attention-check", "input-pipeline")  # frameworks with their own tables


def render(rows: list[dict]) -> str:
    """BENCHMARKS.md text from benchmark rows: per device, the throughput table (JAX next to
    PyTorch), the compile-time table and the knob studies; the knob explanations first."""
    lines = [
        "# Benchmarks",
        "",
        (
            "Generated by `python -m scripts.benchmark` from `benchmarks.jsonl`; do not edit by "
            "hand. Synthetic data; train = forward + backward + AdamW update. `vs torch` is "
            "measured interleaved in one invocation (one JAX step, one step of each PyTorch "
            "row, in turn, for `--steps` rounds): the median over rounds of the fastest PyTorch "
            "row's step time (eager or `torch.compile`) over the JAX step time, > 1x is JAX "
            "faster; rows measured on their own get no ratio. Of rows repeating a setting only the "
            "newest is shown. `load` is the highest 1-minute "
            "load average sampled during the measurement; rows where it exceeded the core count "
            "are left out. Memory: XLA's "
            "memory analysis of the compiled step for JAX (arguments + outputs + temporaries; "
            "outputs aliased to donated arguments count twice), `max_memory_allocated` for "
            "PyTorch on GPU."
        ),
        "",
        "## Knobs",
        "",
        (
            "Each knob is a `--variants` entry; `--study NAME` renders its rows as ratios to the "
            "first (baseline) variant, per device below."
        ),
        "",
    ]
    lines += [f"- `{k}`: {v}" for k, v in KNOB_DOCS.items()]
    lines += ["", "XLA flags used in studies (verified accepted by jax 0.10's XLA):", ""]
    lines += [f"- `{k}`: {v}" for k, v in XLA_FLAG_DOCS.items()]
    lines += ["", LAYOUT_NOTE, ""]
    # a row measured under load is no result: it neither shows nor hides an older measurement
    loaded = [r for r in rows if _under_load(r)]
    rows = latest_per_setting([r for r in rows if not _under_load(r)])
    device_of = lambda r: r["device"].split(":", 1)[1]
    devices = sorted({device_of(r) for r in rows + loaded})
    for device in devices:
        drows = [r for r in rows if device_of(r) == device]
        arows = [r for r in drows if r.get("framework") == "attention-check"]
        irows = [r for r in drows if r.get("framework") == "input-pipeline"]
        drows = [r for r in drows if r.get("framework") not in NOT_MODEL_ROWS]
        dloaded = [
            r for r in loaded if device_of(r) == device and r.get("framework") not in NOT_MODEL_ROWS
        ]
        lines += [f"## {device}", ""] + _machine(drows + dloaded, len(dloaded))
        trows = [r for r in drows if r["mode"] != "compile" and not r.get("study")]
        crows = [r for r in drows if r["mode"] == "compile" and not r.get("study")]
        srows = [r for r in drows if r.get("study")]
        if trows:
            lines += ["### Throughput", ""] + _throughput_table(trows) + [""]
        if crows:
            lines += ["### Compile time", ""] + _compile_table(crows) + [""]
        if srows:
            lines += ["### Knob studies", ""] + _study_tables(srows)
        if arows:
            lines += ["### cuDNN flash attention against XLA's", ""] + _attention_table(arows)
        if irows:
            lines += ["### Input pipeline", ""] + _input_table(irows)
    return "\n".join(lines)


def _noted_table(note: str, columns: list[str], cells: list[list[str]]) -> list[str]:
    """A paragraph, then a markdown table with ``columns`` and one row per ``cells`` entry."""
    out = [note, "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return out + ["| " + " | ".join(row) + " |" for row in cells] + [""]


def _input_table(irows: list[dict]) -> list[str]:
    """``scripts.bench_input`` rows: images/s of each transform, jaxbones and torchvision."""
    note = (
        "`python -m scripts.bench_input --torch`: synthetic JPEGs read through the tfds + "
        "grain pipeline (jaxbones) and torchvision's `ImageFolder` + `DataLoader` over the "
        "same files, the same batch and worker processes, interleaved; `cores`: the cores "
        "the whole benchmark was pinned to. `vs torch`: the median over rounds of the "
        "jaxbones rate over that of the torchvision setting doing the same work in the same "
        "round (the `draft`, `opencv` and `uint8` options against plain torchvision). "
        "`uint8` rows leave normalisation to the train step on the device. The pipelines' "
        "own threads raise the load average while they run, so the load at the start (after "
        "waiting for the machine to be idle) is the test for other jobs; rows that started "
        "above the core count are left out."
    )
    columns = ["source", "transform", "batch", "px", "options", "img/s (median)", "best"]
    cells = [
        [
            r["model"],
            r["mode"],
            str(r["batch"]),
            str(r["img_size"]),
            r["options"],
            f"{r['images_per_s']:.1f}",
            f"{r['best_images_per_s']:.1f}",
            _ratio(r["vs_torch"], 1.0),
            f"{r['loadavg'][0]:.1f}",
        ]
        for r in irows
    ]
    return _noted_table(note, [*columns, "vs torch", "load at start"], cells)


def latest_per_setting(rows: list[dict]) -> list[dict]:
    """The newest row of each setting (device, model, mode, dtype, batch, resolution,
    framework, options, study knob), in file order: a re-measurement replaces the row it
    repeats in BENCHMARKS.md, and the JSON-lines file keeps both. The flags
    ``tune_xla_cpu`` adds are the default setting, not a setting of their own: a row
    measured with them replaces the row measured before them."""
    tuned = set(_tuned_flags())
    latest = {}
    for r in rows:
        flags = " ".join(f for f in (r.get("xla_flags") or "").split() if f not in tuned)
        setting = (
            r["device"], r["model"], r.get("mode"), r.get("dtype"), r.get("batch"),
            r.get("img_size"), r["framework"], r.get("options"), r.get("compared"),
            r.get("study"), r.get("knob"), flags or None,
        )  # fmt: skip
        latest.pop(setting, None)
        latest[setting] = r
    return list(latest.values())


def _attention_table(arows: list[dict]) -> list[str]:
    """``scripts.check_attention`` rows: bf16 eval forward with each attention kernel."""
    note = (
        "`python -m scripts.check_attention`: the bf16 eval forward of one model with the "
        "same parameters and inputs, `attn_implementation='xla'` against `'cudnn'`; the "
        "difference is the largest over the outputs, relative to the output's largest "
        "magnitude."
    )
    columns = ["model", "batch", "compared", "max rel diff", "xla ms", "other ms", "speedup"]
    cells = []
    for r in arows:
        other = next((v for k, v in r.items() if k.endswith("_ms") and k != "xla_ms"), None)
        cells.append(
            [
                r["model"],
                str(r["batch"]),
                r["compared"],
                f"{r['max_rel_diff']:.1e}",
                f"{r['xla_ms']:.1f}",
                _fmt(other, ".1f"),
                f"{r['speedup']:.2f}x",
            ]
        )
    return _noted_table(note, columns, cells)


def _parse_overrides(s: str) -> dict[str, Any]:
    """``'scan=true,remat_policy=full'`` -> dict; ``'-'`` or ``''`` -> {}. ``xla=`` keeps its
    value verbatim (space-separated flags); ``layers=1/1/1/1`` is a tuple of ints."""
    out: dict[str, Any] = {}
    s = s.strip()
    if s in ("", "-"):
        return out
    if "xla=" in s:  # flags may contain commas/equals: everything after xla= is the value
        s, flags = s.split("xla=", 1)
        out["xla"] = flags.strip()
        s = s.rstrip(",")
    for kv in filter(None, s.split(",")):
        k, v = kv.split("=", 1)
        k, v = k.strip(), v.strip()
        if "/" in v:
            out[k] = tuple(int(t) for t in v.split("/"))
            continue
        out[k] = {"true": True, "false": False, "none": None}.get(v.lower(), v)
        if isinstance(out[k], str) and out[k].isdigit():
            out[k] = int(out[k])
    return out


def _run_subprocess(a, name, mode, dtype, variant: str, flags: str, label: str) -> None:
    """Runs one variant in a fresh process with ``XLA_FLAGS`` (XLA reads them once)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cmd = [
        sys.executable,
        "-m",
        "scripts.benchmark",
        f"--models={name}",
        f"--modes={mode}",
        f"--dtypes={dtype}",
        f"--batch={a.batch}",
        f"--steps={a.steps}",
        f"--warmup={a.warmup}",
        "--torch=none",
        f"--variants={variant or '-'}",
        f"--out={os.path.abspath(a.out)}",
        f"--label={label}",
        f"--xla-flags-applied={flags}",
        "--no-render",
    ]
    if a.img_size:
        cmd.append(f"--img-size={a.img_size}")
    if a.study:
        cmd.append(f"--study={a.study}")
    env = {**os.environ, "XLA_FLAGS": (os.environ.get("XLA_FLAGS", "") + " " + flags).strip()}
    print(f"$ XLA_FLAGS='{env['XLA_FLAGS']}' {' '.join(cmd[1:])}", flush=True)
    res = subprocess.run(cmd, check=False, cwd=root, env=env, capture_output=True, text=True)
    sys.stdout.write(res.stdout)
    if res.returncode != 0:
        raise RuntimeError(
            f"variant {label!r} failed (exit {res.returncode}); an 'Unknown flag in XLA_FLAGS' "
            f"means this XLA does not accept the flag:\n{res.stderr[-3000:]}"
        )


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--models", default="resnet50,vit_base_patch16_224")
    p.add_argument(
        "--modes", default="train,infer", help="comma list of train, infer, compile (train step)"
    )
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--img-size", type=int, default=None, help="resolution (default: model's)")
    p.add_argument("--dtypes", default="float32")
    p.add_argument(
        "--steps",
        type=int,
        default=5,
        help="timed rounds; each round runs one step of every variant and PyTorch row in turn",
    )
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--torch", default="eager", help="comma list of eager,compile or none")
    p.add_argument(
        "--variants",
        default="",
        help="semicolon-separated variants ('-' = defaults), each a comma list of model "
        "overrides and dtype=, donate=, xla=FLAGS knobs, e.g. '-;scan=true;remat_policy=full'",
    )
    p.add_argument("--study", default=None, help="knob-study name: rows render as ratios")
    p.add_argument("--out", default="benchmarks.jsonl")
    p.add_argument("--md", default="BENCHMARKS.md")
    p.add_argument("--render", action="store_true", help="only re-render the markdown")
    p.add_argument("--no-render", action="store_true", help="only append rows")
    p.add_argument("--no-jax", action="store_true", help="only the PyTorch rows")
    p.add_argument(
        "--trace",
        default=None,
        metavar="DIR",
        help=f"after timing, profile {TRACE_STEPS} steps of every row into DIR/<row>/",
    )
    p.add_argument(
        "--recount-flops",
        default=None,
        metavar="ROWS.jsonl",
        help="append ROWS' JAX rows to --out with FLOPs (and MFU) from lowering here",
    )
    # internal: set by the parent for a variant run in a subprocess with XLA_FLAGS
    p.add_argument("--label", default=None, help=argparse.SUPPRESS)
    p.add_argument("--xla-flags-applied", default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    from jaxbones.hardware import retain_host_memory, tune_xla_cpu
    from jaxbones.registry import get_entry

    retain_host_memory()  # both frameworks' steps reuse freed host memory (see Row)
    # the XLA flags jaxbones.launch would run these models with (recorded in JAX rows);
    # families from the registry entries, as model_info would start the backend first
    tune_xla_cpu([get_entry(m).family for m in a.models.split(",")])

    if a.recount_flops:
        recount_flops(a.recount_flops, a.out)
    elif not a.render:
        variants = [v.strip() for v in a.variants.split(";")] if a.variants else ["-"]
        for name in a.models.split(","):
            for dtype in a.dtypes.split(","):
                for mode in a.modes.split(","):
                    pending = []
                    for variant in [] if a.no_jax else variants:
                        ov = _parse_overrides(variant)
                        label = a.label or variant or "-"
                        vdtype = ov.pop("dtype", dtype)
                        donate = ov.pop("donate", True)
                        flags = ov.pop("xla", None)
                        if flags and a.xla_flags_applied is None:
                            rest = ",".join(
                                kv for kv in variant.split("xla=", 1)[0].split(",") if kv.strip()
                            )
                            _run_subprocess(a, name, mode, vdtype, rest, flags, label)
                            continue
                        tags = {}
                        if a.study:
                            tags.update(study=a.study, knob=label)
                        if a.xla_flags_applied:
                            tags["xla_flags"] = a.xla_flags_applied
                        res = bench_jax(
                            name,
                            batch=a.batch,
                            dtype=vdtype,
                            mode=mode,
                            steps=a.steps,
                            warmup=a.warmup,
                            overrides=ov,
                            img_size=a.img_size,
                            donate=donate,
                            **tags,
                        )
                        if isinstance(res, Row):  # compile-only: nothing to time
                            _append(a.out, [res])
                        else:
                            pending.append(res)
                    if mode == "compile":
                        continue  # no PyTorch counterpart of a compile-only row
                    for kind in filter(lambda k: k != "none", a.torch.split(",")):
                        pending.append(
                            bench_torch(
                                name,
                                batch=a.batch,
                                dtype=dtype,
                                mode=mode,
                                compile_=kind == "compile",
                                img_size=a.img_size,
                            )
                        )
                        if a.study:  # the study's own PyTorch reference, measured alongside
                            pending[-1].row.study = a.study
                            pending[-1].row.knob = pending[-1].row.framework
                    if pending:
                        _append(a.out, measure_interleaved(pending, a.steps, a.warmup))
                        if a.trace:
                            trace_rows(pending, a.trace)
    if a.no_render:
        return
    rows = []
    if os.path.exists(a.out):
        with open(a.out) as f:
            rows = [json.loads(line) for line in f if line.strip()]
    from scripts.model_table import write_atomically

    write_atomically(a.md, render(rows) + "\n")
    print(f"wrote {a.md} ({len(rows)} rows)")


def recount_flops(src: str, out: str) -> None:
    """Appends ``src``'s JAX rows to ``out`` with model FLOPs from lowering the same step on
    this machine (the count does not depend on the device) and MFU against the row's device;
    for rows measured where the benchmark counted FLOPs from the compiled program."""
    from jaxbones.hardware import peak_flops

    with open(src) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    for r in rows:
        if r["framework"] == "jax" and r.get("mode") in ("train", "infer"):
            ov = _parse_overrides(r["options"])
            if "attn_implementation" in ov:
                # model FLOPs do not depend on the attention kernel, and XLA counts none for
                # cuDNN's custom call (which does not lower without a GPU either)
                ov["attn_implementation"] = "xla"
            flops = bench_jax(
                r["model"],
                batch=r["batch"],
                dtype=r["dtype"],
                mode=r["mode"],
                steps=0,
                warmup=0,
                overrides=ov,
                img_size=r["img_size"],
                flops_only=True,
            )
            peak = peak_flops(r["device"].split(":", 1)[-1], r["dtype"])
            r["tflops_per_step"] = flops / 1e12
            r["mfu"] = flops / (r["step_ms"] / 1e3) / peak if peak and r["step_ms"] else None
            r["flops_from"] = "lowered step (recounted)"
        with open(out, "a") as f:
            f.write(json.dumps(r) + "\n")


def _append(path: str, rows: list[Row]) -> None:
    # one row at a time, right after it is measured: a later failure keeps earlier rows
    with open(path, "a") as f:
        for r in rows:
            f.write(json.dumps(dataclasses.asdict(r)) + "\n")
            print(json.dumps(dataclasses.asdict(r)), flush=True)


if __name__ == "__main__":
    main()
