"""scripts/benchmark.py end to end on a small model: JSON-lines rows with sane fields, the
rendered BENCHMARKS.md (throughput table with the PyTorch ratio, compile-time table, knob
study ratios, machine context). Timings are not asserted (shared CI machines)."""

import json
import math

from scripts import benchmark

# Fields every row written by this version carries (older rows may lack the later ones).
ROW_FIELDS = {
    "date",
    "device",
    "framework",
    "model",
    "mode",
    "dtype",
    "batch",
    "img_size",
    "options",
    "step_ms",
    "images_per_s",
    "compile_s",
    "memory_gb",
    "loadavg",
    "host",
    "versions",
}


def _rows(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def test_benchmark_end_to_end(tmp_path):
    out, md = tmp_path / "b.jsonl", tmp_path / "B.md"
    common = ["--models=resnet18", "--img-size=32", "--batch=2", f"--out={out}", f"--md={md}"]
    # inference, JAX next to PyTorch eager (the cheapest pair to compile on 2 CPU cores)
    benchmark.main([*common, "--modes=infer", "--steps=1", "--warmup=0", "--torch=eager"])
    # a compile-only row of the train step for a reduced-depth variant (no torch row)
    benchmark.main([*common, "--modes=compile", "--torch=eager", "--variants=layers=1/1/1/1"])
    rows = _rows(out)
    assert [(r["framework"], r["mode"]) for r in rows] == [
        ("jax", "infer"),
        ("torch-eager", "infer"),
        ("jax", "compile"),
    ]
    for r in rows:
        assert ROW_FIELDS <= set(r), ROW_FIELDS - set(r)
        assert (r["model"], r["batch"], r["img_size"], r["dtype"]) == ("resnet18", 2, 32, "float32")
        assert r["device"].startswith("cpu:") and "cores" in r["host"] and len(r["loadavg"]) == 3
    jax_row, torch_row, compiled = rows
    for r in (jax_row, torch_row):
        assert r["step_ms"] > 0
        assert math.isclose(r["images_per_s"], 2 / (r["step_ms"] / 1e3), rel_tol=1e-6)
    # resnet18 at 32 px: 2 * 1.82 GFLOP * (32/224)^2 per image (XLA counts a little more)
    assert 0.5 * 2 * 1.82e9 / 49 < jax_row["tflops_per_step"] * 1e12 < 2 * 2 * 1.82e9 / 49
    assert jax_row["memory_gb"] > 11.6e6 * 4 / 2**30  # at least the float32 parameters
    assert "jax" in jax_row["versions"] and "torch" in torch_row["versions"]
    assert compiled["step_ms"] is None and compiled["compile_s"] > compiled["lower_s"] > 0
    assert compiled["hlo_ops"] > 100 and compiled["temp_gb"] > 0
    assert compiled["options"] == "layers=1/1/1/1"

    text = md.read_text()
    for block in text.split("\n\n"):  # every table: header, rule and rows have equal cells
        table = [ln for ln in block.splitlines() if ln.startswith("|")]
        assert len({ln.count("|") for ln in table}) <= 1, table
    ratio = jax_row["images_per_s"] / torch_row["images_per_s"]
    assert "### Throughput" in text and "### Compile time" in text
    assert f"| {ratio:.2f}x |" in text  # JAX / PyTorch, same mode/dtype/batch/resolution
    assert "| resnet18 | float32 | 2 | 32 | layers=1/1/1/1 | " in text
    assert jax_row["host"] in text and "torch " in text


def test_render_knob_study_and_ratio_pairing():
    """Study rows render as ratios to their baseline; the torch ratio only pairs rows of the
    same mode, dtype, batch and resolution; rows from before machine/load recording render."""

    def row(**kw):
        base = {
            "date": "2026-11-23",
            "device": "cpu:cpu",
            "framework": "jax",
            "model": "m",
            "mode": "train",
            "dtype": "float32",
            "batch": 8,
            "img_size": 224,
            "options": "-",
            "step_ms": 100.0,
            "images_per_s": 80.0,
            "images_per_s_per_device": 80.0,
            "compile_s": 10.0,
            "memory_gb": 1.0,
            "tflops_per_step": None,
            "mfu": None,
        }
        return {**base, **kw}

    rows = [
        row(framework="torch-eager", images_per_s=40.0),  # old-format row: no host/load
        row(framework="torch-eager", dtype="bfloat16", images_per_s=10.0),
        row(images_per_s=60.0, host="CPU X, 2 cores", loadavg=[3.0, 2.0, 1.0]),
        row(study="s", knob="-", temp_gb=2.0, loadavg=[1.0, 1.0, 1.0], host="CPU X, 2 cores"),
        row(study="s", knob="remat_policy=full", images_per_s=40.0, temp_gb=0.5, compile_s=12.0),
        row(study="s", knob="xla=--xla_cpu_multi_thread_eigen=false", images_per_s=20.0),
        row(study="s", knob="torch-eager", framework="torch-eager", images_per_s=40.0),
        # a scanned row without flops_from (loop body counted once): no TFLOP shown
        row(model="m2", options="scan=True", tflops_per_step=0.123),
        row(mode="compile", step_ms=None, images_per_s=None, images_per_s_per_device=None),
        row(mode="compile", options="scan=True", step_ms=None, images_per_s=None, compile_s=2.5),
    ]
    text = benchmark.render(rows)
    for block in text.split("\n\n"):
        table = [ln for ln in block.splitlines() if ln.startswith("|")]
        assert len({ln.count("|") for ln in table}) <= 1, table
    assert "| 1.50x | 3.0 |" in text  # 60 / 40 (the bf16 torch row is not its pair)
    assert "0.40x" not in text.split("### Knob studies")[0]  # study rows not in the main table
    study = text.split("### Knob studies")[1]
    assert "| `remat_policy=full` |" in study
    assert "| 0.50x | 12.0 | 1.20x | 0.50 | 0.25x | 1.00x |" in study  # vs base, vs torch
    assert "| PyTorch: torch-eager (-) | float32 | reference | 100.0 | 40.00 | 0.50x |" in study
    assert "single-threaded Eigen" in study and "| 0.25x |" in study
    assert "CPU X, 2 cores" in text and "rows predate machine/load recording" in text
    assert "machine was shared" in text  # load 3.0 > 2 cores
    assert "0.123" not in text
    assert "| m | float32 | 8 | 224 | scan=True | - | 2.5 | 0.25x | - |" in text  # compile table
    assert benchmark._parse_overrides("-") == {}
    assert benchmark._parse_overrides("scan=true,layers=1/2,xla=--a=1 --b=x,y") == {
        "scan": True,
        "layers": (1, 2),
        "xla": "--a=1 --b=x,y",
    }
