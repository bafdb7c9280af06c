"""scripts/benchmark.py end to end on a small model: JSON-lines rows with sane fields, JAX and
PyTorch measured interleaved, the rendered BENCHMARKS.md (throughput table with the PyTorch
ratio, compile-time table, knob study ratios, machine context, rows under load left out).
Timings are not asserted (shared CI machines)."""

import json
import math

import pytest

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
TIMED_FIELDS = {"group", "rounds", "load_max", "under_load"}


def _rows(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def test_benchmark_end_to_end(tmp_path):
    out, md = tmp_path / "b.jsonl", tmp_path / "B.md"
    common = ["--models=resnet18", "--img-size=32", "--batch=2", f"--out={out}", f"--md={md}"]
    # inference, JAX next to PyTorch eager (the cheapest pair to compile on 2 CPU cores)
    benchmark.main([*common, "--modes=infer", "--steps=2", "--warmup=0", "--torch=eager"])
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
        assert r["step_ms"] > 0 and TIMED_FIELDS <= set(r)
        assert math.isclose(r["images_per_s"], 2 / (r["step_ms"] / 1e3), rel_tol=1e-6)
        assert r["under_load"] == (r["load_max"] > benchmark._process_cores())
    # one interleaved measurement: same group and rounds, a per-round ratio on the JAX row
    assert jax_row["group"] == torch_row["group"] and jax_row["rounds"] == 2
    assert jax_row["vs_torch"] > 0 and torch_row["vs_torch"] is None
    assert compiled["group"] is None and compiled["vs_torch"] is None
    assert compiled["under_load"] == (compiled["load_max"] > benchmark._process_cores())
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
    # on a busy machine rows are left out of the text, and it says how many
    loaded = sum(r["under_load"] for r in rows)
    assert (f"{loaded} rows measured with the load average above" in text) == (loaded > 0)
    if not jax_row["under_load"]:
        assert f"| {jax_row['vs_torch']:.2f}x | {jax_row['load_max']:.1f} |" in text
    if not compiled["under_load"]:
        assert "### Compile time" in text
    if not compiled["under_load"]:
        assert "| resnet18 | float32 | 2 | 32 | layers=1/1/1/1 | " in text
    assert jax_row["host"] in text and "torch " in text


def test_render_interleaved_ratios_load_and_knob_study():
    """The PyTorch ratio is the one measured interleaved; older rows measured one after the
    other get a marked ratio; rows whose load exceeded the cores are left out and counted, so
    a row under load never enters a ratio; study ratios across separate runs are marked."""

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

    timed = {"load_max": 1.5, "under_load": False, "host": "CPU X, 2 cores"}
    rows = [
        # measured one after the other (no group): a ratio marked as such
        row(framework="torch-eager", images_per_s=40.0),  # old-format row: no host/load
        row(images_per_s=60.0, host="CPU X, 2 cores", loadavg=[1.0, 1.0, 1.0]),
        # one interleaved measurement
        row(model="g", images_per_s=60.0, group="a", vs_torch=1.62, **timed),
        row(model="g", framework="torch-eager", images_per_s=37.0, group="a", **timed),
        # under load: left out, whether recorded as such or (older rows) load > cores
        row(model="busy", group="b", vs_torch=3.59, load_max=12.0, under_load=True),
        row(model="busy", framework="torch-eager", loadavg=[3.0, 2.0, 1.0], host="CPU X, 2 cores"),
        row(study="s", knob="-", temp_gb=2.0, group="s1", vs_torch=2.0, **timed),
        row(
            study="s",
            knob="remat_policy=full",
            images_per_s=40.0,
            temp_gb=0.5,
            compile_s=12.0,
            group="s1",
            vs_torch=1.0,
        ),
        # an xla= variant runs in its own process: its ratio to the baseline is marked
        row(study="s", knob="xla=--xla_cpu_multi_thread_eigen=false", images_per_s=20.0),
        row(study="s", knob="torch-eager", framework="torch-eager", images_per_s=40.0, group="s1"),
        # a scanned row without flops_from (loop body counted once): no TFLOP shown
        row(model="m2", options="scan=True", tflops_per_step=0.123),
        row(mode="compile", step_ms=None, images_per_s=None, images_per_s_per_device=None),
        row(mode="compile", options="scan=True", step_ms=None, images_per_s=None, compile_s=2.5),
        # scripts.bench_input rows: their own table, not throughput rows; loaded ones left out
        *(
            row(
                framework="input-pipeline",
                model="synthetic_jpeg 500x375",
                mode="train rrc+flip uint8",
                dtype=None,
                batch=32,
                options=f"workers=1,cores={cores}",
                images_per_s=rate,
                best_images_per_s=rate + 1,
                vs_torch=1.25,
                loadavg=[1.0],
                **{**timed, "under_load": cores == 2},
            )
            for cores, rate in ((1, 250.0), (2, 999.0))
        ),
    ]
    text = benchmark.render(rows)
    for block in text.split("\n\n"):
        table = [ln for ln in block.splitlines() if ln.startswith("|")]
        assert len({ln.count("|") for ln in table}) <= 1, table
    main = text.split("### Knob studies")[0]
    assert "| 1.62x | 1.5 |" in main  # the interleaved ratio and the load while measuring
    assert "| 1.50x† |" in main  # 60 / 40 from separate measurements: marked
    assert "busy" not in text and "3.59x" not in text
    inputs = text.split("### Input pipeline")[1]
    assert (
        "| synthetic_jpeg 500x375 | train rrc+flip uint8 | 32 | 224 | workers=1,cores=1 | "
        in inputs
    )
    assert "| 250.0 | 251.0 | 1.25x | 1.0 |" in inputs and "999.0" not in text
    assert "synthetic_jpeg" not in text.split("### Input pipeline")[0]  # not a model row
    assert "2 rows measured with the load average above the core count are left out" in text
    study = text.split("### Knob studies")[1]
    assert "| `remat_policy=full` |" in study
    assert "| 0.50x | 12.0 | 1.20x | 0.50 | 0.25x | 1.00x |" in study  # vs base, vs torch
    assert "| PyTorch: torch-eager (-) | float32 | reference | 100.0 | 40.00 | 0.50x |" in study
    assert "single-threaded Eigen" in study and "| 0.25x† |" in study
    assert "†: measured in another process" in study
    assert "CPU X, 2 cores" in text and "rows predate machine/load recording" in text
    assert "0.123" not in text
    assert "| m | float32 | 8 | 224 | scan=True | - | 2.5 | 0.25x | - |" in text  # compile table
    assert benchmark._parse_overrides("-") == {}
    assert benchmark._parse_overrides("scan=true,layers=1/2,xla=--a=1 --b=x,y") == {
        "scan": True,
        "layers": (1, 2),
        "xla": "--a=1 --b=x,y",
    }


def test_rows_with_the_tuned_xla_flags_replace_and_are_marked():
    """A row measured with tune_xla_cpu's flags is a re-measurement of the default setting:
    it replaces the row measured before them, is marked, and names the flags; a study's
    own XLA flags still make a setting of their own."""
    tuned = benchmark._tuned_flags()
    if not tuned:
        pytest.skip("no tuned XLA flags on any jaxlib")
    base = {
        "date": "2026-12-02", "device": "cpu:cpu", "framework": "jax", "model": "m",
        "mode": "train", "dtype": "float32", "batch": 8, "img_size": 224, "options": "-",
        "images_per_s": 1.0, "images_per_s_per_device": 1.0, "group": "g", "vs_torch": 1.0,
        "load_max": 1.0, "under_load": False, "host": "CPU X, 2 cores",
    }  # fmt: skip
    old = {**base, "step_ms": 111.0}
    new = {**base, "step_ms": 222.0, "xla_flags": " ".join(tuned)}
    study = {**base, "step_ms": 333.0, "xla_flags": " ".join(["--xla_other=1", *tuned])}
    assert benchmark.latest_per_setting([old, new, study]) == [new, study]
    text = benchmark.render([old, new])
    assert "111.0" not in text and "| - § | 222.0 |" in text
    assert all(f"`{f}`" in text for f in tuned)


def test_profile_step_buckets_compiled_instructions():
    """scripts/profile_step.py's reading of the optimised HLO: the instructions of a small
    conv + dense gradient get a phase (forward/backward from the ``jvp``/``transpose`` in
    their op_name), a kind and a layer."""
    import flax.linen as nn
    import jax
    import jax.numpy as jnp

    from scripts import profile_step

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.relu(nn.Conv(4, (3, 3), name="conv1")(x))
            return nn.Dense(3, name="fc")(x.reshape(x.shape[0], -1))

    net, x = Net(), jnp.ones((2, 8, 8, 3))
    p = net.init(jax.random.PRNGKey(0), x)
    text = jax.jit(jax.grad(lambda p: net.apply(p, x).sum())).lower(p).compile().as_text()
    instrs = profile_step._parse_hlo(text)
    kinds = {(profile_step._phase(d["op_name"]), profile_step._kind(d)) for d in instrs.values()}
    assert ("forward", "conv 3x3") in kinds
    assert ("backward", "dot") in kinds  # the Dense kernel's gradient
    layers = {profile_step._layer(d["op_name"]) for d in instrs.values()}
    assert {"conv", "fc"} <= layers

    def fwd(p):  # the inference program's name in scripts.benchmark (--mode infer)
        return net.apply(p, x)

    infer = profile_step._parse_hlo(jax.jit(fwd).lower(p).compile().as_text())
    assert ("forward", "conv 3x3") in {
        (profile_step._phase(d["op_name"]), profile_step._kind(d)) for d in infer.values()
    }
