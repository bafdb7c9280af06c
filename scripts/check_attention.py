"""cuDNN flash attention against XLA's attention: outputs and speed, for ViT-B and MAE-L.

    python -m scripts.check_attention [--batch 64] [--out benchmarks.jsonl] [--smoke]

Builds each model twice in bf16 with the same parameters, ``attn_implementation='xla'``
and ``'cudnn'``, and reports the largest difference of the outputs relative to their scale
(ViT logits; MAE's loss and per-patch predictions with the same noise) and the forward time
of each. Rows go to the JSON-lines file with ``"framework": "attention-check"``. On a host
without an NVIDIA GPU it runs the 'xla' path against itself (``--smoke``) to test the script.
"""

from __future__ import annotations

import argparse
import datetime
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

import jaxbones


def _time(fn, *args, steps=10):
    jax.block_until_ready(fn(*args))
    t0 = time.perf_counter()
    for _ in range(steps):
        out = fn(*args)
    jax.block_until_ready(out)
    return (time.perf_counter() - t0) / steps


def check(name: str, batch: int, other: str, img_size: int | None) -> dict:
    size = {"img_size": img_size} if img_size else {}
    models = {
        impl: jaxbones.create_model(name, dtype=jnp.bfloat16, attn_implementation=impl, **size)
        for impl in ("xla", other)
    }
    x0 = jnp.zeros((1, *jaxbones.registry.dummy_input(name, models["xla"]).shape[1:]))
    key = jax.random.PRNGKey(0)
    variables = jax.jit(lambda r: models["xla"].init(r, x0, train=False))(key)
    x = jax.random.normal(key, (batch, *x0.shape[1:]), jnp.float32)
    mae = name.startswith("mae_")
    noise = jax.random.uniform(key, (batch, models["xla"].num_patches)) if mae else None

    def forward(model):
        if mae:
            return jax.jit(lambda v, x: model.apply(v, x, train=False, noise=noise)[:2])
        return jax.jit(lambda v, x: model.apply(v, x, train=False))

    outs, times = {}, {}
    for impl, model in models.items():
        fn = forward(model)
        outs[impl] = [
            np.asarray(o, np.float32) for o in jax.tree_util.tree_leaves(fn(variables, x))
        ]
        times[impl] = _time(fn, variables, x)
    rel = max(
        float(np.abs(a - b).max() / max(np.abs(a).max(), 1e-6))
        for a, b in zip(outs["xla"], outs[other], strict=True)
    )
    dev = jax.devices()[0]
    return {
        "date": datetime.date.today().isoformat(),
        "framework": "attention-check",
        "device": f"{dev.platform}:{dev.device_kind}",
        "model": name,
        "batch": batch,
        "compared": f"xla vs {other}",
        "max_rel_diff": rel,
        "xla_ms": times["xla"] * 1e3,
        f"{other}_ms": times[other] * 1e3,
        "speedup": times["xla"] / times[other],
        "versions": f"jax {jax.__version__}",
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--models", default="vit_base_patch16_224,mae_vit_large_patch16_dec512d8b")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--out", default="benchmarks.jsonl")
    p.add_argument("--smoke", action="store_true", help="tiny sizes, xla against xla (CPU)")
    a = p.parse_args(argv)
    other = "xla" if a.smoke else "cudnn"
    for name in a.models.split(","):
        row = check(name, 2 if a.smoke else a.batch, other, 32 if a.smoke else None)
        print(json.dumps(row), flush=True)
        with open(a.out, "a") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
