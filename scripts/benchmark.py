"""Throughput, compile time, memory and MFU of jaxbones models, side by side with PyTorch.

    python -m scripts.benchmark --models resnet50,vit_base_patch16_224 --batch 8 \
        --dtypes float32 --torch eager,compile
    python -m scripts.benchmark --render          # BENCHMARKS.md from benchmarks.jsonl only

For each model and setting it measures, on synthetic data:
  * JAX: training step (forward + backward + AdamW update, jitted and donated) and inference
    (jitted eval forward): median step time, images/s, images/s per device, compile time,
    XLA's memory analysis of the compiled step (arguments + temporaries), model FLOPs from
    XLA's cost analysis, and MFU against the device's peak (table below; n/a on CPU);
  * PyTorch: the same step for the reference model (torchvision/timm; MAE via transformers'
    ViTMAEForPreTraining with the same config), eager and ``torch.compile``, autocast to bf16
    when the JAX side runs bf16; and the ratio JAX / PyTorch.
Rows are appended to a JSON-lines file and BENCHMARKS.md is rendered from all rows (never
typed by hand).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import statistics
import time
from typing import Any

# Dense peak FLOP/s per device for MFU (vendor datasheets; bf16 dense, f32 non-tensor-core).
PEAK_FLOPS = {
    ("H100", "bfloat16"): 989e12,
    ("H100", "float32"): 67e12,
    ("H200", "bfloat16"): 989e12,
    ("H200", "float32"): 67e12,
    ("A100", "bfloat16"): 312e12,
    ("A100", "float32"): 19.5e12,
    ("TPU v4", "bfloat16"): 275e12,
    ("TPU v5", "bfloat16"): 459e12,
}


def peak_flops(device_kind: str, dtype: str) -> float | None:
    for (kind, dt), v in PEAK_FLOPS.items():
        if kind.lower() in device_kind.lower() and dt == dtype:
            return v
    return None


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
    step_ms: float
    images_per_s: float
    images_per_s_per_device: float
    compile_s: float | None = None
    memory_gb: float | None = None
    tflops_per_step: float | None = None
    mfu: float | None = None


def _median_time(fn, steps: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


# ----------------------------------------------------------------------------------- JAX


def bench_jax(name, *, batch, dtype, mode, steps, warmup, overrides) -> Row:
    import jax
    import jax.numpy as jnp
    import optax

    import jaxbones

    info = jaxbones.model_info(name)
    h, w, c = info["input_size"]
    cdtype = jnp.bfloat16 if dtype == "bfloat16" else jnp.float32
    model = jaxbones.create_model(name, dtype=cdtype, **overrides)
    x = jax.random.normal(jax.random.PRNGKey(0), (batch, h, w, c), jnp.float32)
    y = jax.random.randint(jax.random.PRNGKey(1), (batch,), 0, 1000)
    variables = jax.jit(lambda r: model.init(r, x[:1], train=False))(jax.random.PRNGKey(0))
    params = variables["params"]
    others = {k: v for k, v in variables.items() if k != "params"}
    is_mae = name.startswith("mae_")
    rngs = {
        "dropout": jax.random.PRNGKey(2),
        "drop_path": jax.random.PRNGKey(3),
        "mask": jax.random.PRNGKey(4),
    }

    def loss_fn(p, others, x, y):
        out, upd = model.apply(
            {"params": p, **others}, x, train=True, mutable=["batch_stats"], rngs=rngs
        )
        if is_mae:
            return out[0].astype(jnp.float32), upd
        logits = out.astype(jnp.float32)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), upd

    tx = optax.adamw(1e-4)
    opt_state = tx.init(params)

    if mode == "train":

        def step(p, o, others, x, y):
            (loss, upd), g = jax.value_and_grad(loss_fn, has_aux=True)(p, others, x, y)
            u, o = tx.update(g, o, p)
            return optax.apply_updates(p, u), o, {**others, **upd}, loss

        fn = jax.jit(step, donate_argnums=(0, 1, 2))
        args = [params, opt_state, others, x, y]
    else:

        def fwd(p, others, x):
            out = model.apply({"params": p, **others}, x, train=False, rngs=rngs)
            return out[0] if is_mae else out

        fn = jax.jit(fwd)
        args = [params, others, x]

    t0 = time.perf_counter()
    compiled = fn.lower(*args).compile()
    compile_s = time.perf_counter() - t0
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    flops = float(cost.get("flops", 0.0)) if cost else 0.0
    mem = compiled.memory_analysis()
    mem_gb = None
    if mem is not None:
        mem_gb = (
            mem.argument_size_in_bytes + mem.output_size_in_bytes + mem.temp_size_in_bytes
        ) / 2**30

    state = {"args": args}

    def run():
        if mode == "train":
            p, o, oth, loss = compiled(*state["args"])
            state["args"] = [p, o, oth, x, y]
            loss.block_until_ready()
        else:
            jax.block_until_ready(compiled(*state["args"]))

    dt = _median_time(run, steps, warmup)
    dev = jax.devices()[0]
    n_dev = 1
    peak = peak_flops(dev.device_kind, dtype)
    return Row(
        date=datetime.date.today().isoformat(),
        device=f"{dev.platform}:{dev.device_kind}",
        framework="jax",
        model=name,
        mode=mode,
        dtype=dtype,
        batch=batch,
        img_size=h,
        options=",".join(f"{k}={v}" for k, v in sorted(overrides.items())) or "-",
        step_ms=dt * 1e3,
        images_per_s=batch / dt,
        images_per_s_per_device=batch / dt / n_dev,
        compile_s=compile_s,
        memory_gb=mem_gb,
        tflops_per_step=flops / 1e12 if flops else None,
        mfu=(flops / dt / peak) if (peak and flops) else None,
    )


# --------------------------------------------------------------------------------- torch


def torch_model(name: str):
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
            image_size=224,
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

        return timm.create_model(ref.rsplit(".", 1)[1], pretrained=False)
    raise ValueError(f"{name}: no PyTorch reference to benchmark ({ref!r})")


def bench_torch(name, *, batch, dtype, mode, steps, warmup, compile_) -> Row:
    import torch

    import jaxbones

    h, w, c = jaxbones.model_info(name)["input_size"]
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    model = torch_model(name).to(dev).to(memory_format=torch.channels_last)
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
            return torch.nn.functional.cross_entropy(fwd(x).float(), y)

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

    t0 = time.perf_counter()
    run()  # first call: torch.compile compiles here
    compile_s = time.perf_counter() - t0
    if dev == "cuda":
        torch.cuda.reset_peak_memory_stats()
    dt = _median_time(run, steps, warmup)
    mem = torch.cuda.max_memory_allocated() / 2**30 if dev == "cuda" else None
    kind = torch.cuda.get_device_name() if dev == "cuda" else "cpu"
    return Row(
        date=datetime.date.today().isoformat(),
        device=f"{dev}:{kind}",
        framework="torch-compile" if compile_ else "torch-eager",
        model=name,
        mode=mode,
        dtype=dtype,
        batch=batch,
        img_size=h,
        options="channels_last" + (",amp" if amp else ""),
        step_ms=dt * 1e3,
        images_per_s=batch / dt,
        images_per_s_per_device=batch / dt,
        compile_s=compile_s if compile_ else None,
        memory_gb=mem,
    )


# -------------------------------------------------------------------------------- render


def _fmt(v, spec):
    return "-" if v is None else format(v, spec)


def render(rows: list[dict]) -> str:
    """BENCHMARKS.md text from benchmark rows: one table per device, JAX next to PyTorch."""
    lines = [
        "# Benchmarks",
        "",
        (
            "Generated by `python -m scripts.benchmark` from `benchmarks.jsonl`; do not edit by "
            "hand. Synthetic data; train = forward + backward + AdamW update. `vs torch` is the "
            "JAX images/s divided by the best PyTorch images/s (eager or `torch.compile`) for the "
            "same model, mode, dtype and batch on the same device. Memory: XLA's memory analysis "
            "of the compiled step for JAX, `max_memory_allocated` for PyTorch on GPU."
        ),
        "",
    ]
    devices = sorted({r["device"].split(":", 1)[1] for r in rows})
    for device in devices:
        drows = [r for r in rows if r["device"].endswith(device)]
        lines += [f"## {device}", ""]
        lines.append(
            "| model | mode | dtype | batch | framework | options | step ms | img/s | "
            "img/s/dev | compile s | mem GB | TFLOP/step | MFU | vs torch |"
        )
        lines.append("|" + "---|" * 14)
        for r in drows:
            best = [
                t["images_per_s"]
                for t in drows
                if t["framework"].startswith("torch")
                and (t["model"], t["mode"], t["dtype"], t["batch"])
                == (r["model"], r["mode"], r["dtype"], r["batch"])
            ]
            ratio = (
                f"{r['images_per_s'] / max(best):.2f}x" if r["framework"] == "jax" and best else "-"
            )
            lines.append(
                f"| {r['model']} | {r['mode']} | {r['dtype']} | {r['batch']} | "
                f"{r['framework']} | {r['options']} | {r['step_ms']:.1f} | "
                f"{r['images_per_s']:.1f} | {r['images_per_s_per_device']:.1f} | "
                f"{_fmt(r['compile_s'], '.1f')} | {_fmt(r['memory_gb'], '.2f')} | "
                f"{_fmt(r['tflops_per_step'], '.3f')} | "
                f"{_fmt(None if r['mfu'] is None else 100 * r['mfu'], '.1f')}"
                f"{'%' if r['mfu'] is not None else ''} | {ratio} |"
            )
        lines.append("")
    return "\n".join(lines)


def _parse_overrides(s: str) -> dict[str, Any]:
    out = {}
    for kv in filter(None, s.split(",")):
        k, v = kv.split("=")
        out[k] = {"true": True, "false": False}.get(v.lower(), v)
        if isinstance(out[k], str) and out[k].isdigit():
            out[k] = int(out[k])
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--models", default="resnet50,vit_base_patch16_224")
    p.add_argument("--modes", default="train,infer")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--dtypes", default="float32")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--torch", default="eager", help="comma list of eager,compile or none")
    p.add_argument(
        "--variants",
        default="",
        help="semicolon-separated JAX override sets, e.g. 'scan=true;remat_policy=full'",
    )
    p.add_argument("--out", default="benchmarks.jsonl")
    p.add_argument("--md", default="BENCHMARKS.md")
    p.add_argument("--render", action="store_true", help="only re-render the markdown")
    a = p.parse_args(argv)

    if not a.render:
        variants = [_parse_overrides(v) for v in a.variants.split(";")] if a.variants else [{}]
        for name in a.models.split(","):
            for dtype in a.dtypes.split(","):
                for mode in a.modes.split(","):
                    rows = []
                    for ov in variants:
                        rows.append(
                            bench_jax(
                                name,
                                batch=a.batch,
                                dtype=dtype,
                                mode=mode,
                                steps=a.steps,
                                warmup=a.warmup,
                                overrides=ov,
                            )
                        )
                    for kind in filter(lambda k: k != "none", a.torch.split(",")):
                        rows.append(
                            bench_torch(
                                name,
                                batch=a.batch,
                                dtype=dtype,
                                mode=mode,
                                steps=a.steps,
                                warmup=a.warmup,
                                compile_=kind == "compile",
                            )
                        )
                    with open(a.out, "a") as f:
                        for r in rows:
                            f.write(json.dumps(dataclasses.asdict(r)) + "\n")
                            print(json.dumps(dataclasses.asdict(r)), flush=True)
    rows = []
    if os.path.exists(a.out):
        with open(a.out) as f:
            rows = [json.loads(line) for line in f if line.strip()]
    with open(a.md, "w") as f:
        f.write(render(rows) + "\n")
    print(f"wrote {a.md} ({len(rows)} rows)")


if __name__ == "__main__":
    main()
