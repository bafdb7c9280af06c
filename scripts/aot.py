"""Ahead-of-time compilation of a recipe's train step for a TPU topology, on a host without TPUs.

Usage (from the repository root):

    python -m scripts.aot --recipe mae_pretrain --topology v4-256
    python -m scripts.aot --recipe mae_pretrain --topology v4-64 --mesh data=1,fsdp=-1 \\
        --config.model=mae_vit_huge_patch14_dec512d8b
    python -m scripts.aot --recipe mae_pretrain --topology v4-256 --num_slices 2
    python -m scripts.aot --recipe vit_imagenet --topology v4-32 --write   # README row
    python -m scripts.aot --recipe quickstart --topology cpu:8   # fake CPU devices, no libtpu

It builds the recipe's real config (``experiments.<recipe>.get_config()`` plus ``--config.*``
overrides; ``--mesh data=..,fsdp=..,tensor=..`` sets ``config.mesh``), the real train step
and state shardings of ``jaxbones.train.loop`` (through ``abstract_train_step``) on the mesh
``jaxbones.train.sharding.make_mesh`` builds of the topology's devices, lowers the step for
abstract arguments (no data, no device memory) and compiles it. It prints per chip: the
memory of the arguments (state and batch), outputs, temporaries and the total against the
chip's HBM; the FLOPs of one step (XLA's cost analysis of the per-chip program); and the
collectives of the optimized HLO by kind (a collective inside a loop body, as in scanned
blocks, counts once).

Topologies: ``v4-N`` and ``v5p-N`` (N TensorCores, as Cloud TPU names them: N/2 chips),
``v5e-N`` and ``v6e-N`` (N chips), an explicit ``v4:2x2x4``, or ``cpu:N`` (N fake XLA CPU
devices; no memory limit, so no 'fits'). TPU topologies need the ``libtpu`` package
(``pip install -e .[aot]``); libtpu's warnings about missing TPU host variables are harmless
here. ``--num_slices k`` compiles for k such slices joined over the data-centre network (the
DCN part of the mesh: ``config.mesh.dcn_data`` = k unless the overrides set dcn sizes).

``--write`` puts the result as a row into README.md's table between
``<!-- aot:start -->`` / ``<!-- aot:end -->`` (a row of the same recipe, overrides, model,
topology and mesh is replaced); ``--save FILE`` appends the measurements as a JSON line and
``--write_saved FILE`` writes the rows of such a file (compiles run in parallel processes). The total is the arguments, the outputs that do not reuse a
donated argument, the temporaries and the code; the runtime keeps a little HBM for itself,
so a total just under the HBM may still fail on a chip.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import pathlib
import re
import sys
import time

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"
START, END = "<!-- aot:start -->", "<!-- aot:end -->"
COLLECTIVES = ("all-gather", "reduce-scatter", "all-reduce", "all-to-all", "collective-permute")
HEADER = (
    "| recipe | overrides | model | topology | mesh | per-chip GiB (args / temp / total) "
    "| HBM GiB | fits | TFLOP/step/chip | collectives (AG/RS/AR/A2A/CP) | compile s |\n"
    "|---|---|---|---|---|---:|---:|---|---:|---|---:|\n"
)

# Cloud TPU generations: (libtpu's name, TensorCores per chip in the slice name, 3-D torus,
# chip config). v4 and v5p slices are named by TensorCores (v4-8 = 4 chips); v4 runs its
# two cores per chip as one device only in the 'megacore' chip config.
GENERATIONS = {
    "v4": ("v4", 2, True, "megacore"),
    "v5p": ("v5p", 2, True, "default"),
    "v5e": ("v5e", 1, False, "default"),
    "v6e": ("v6e", 1, False, "default"),
}


def chip_shape(chips: int, three_d: bool) -> tuple[int, ...]:
    """The slice shape Cloud TPU gives ``chips`` chips: 2x2x1, 2x2x2, 2x2x4, 2x4x4, 4x4x4, ...
    (3-D) or 1x1, 2x2, 2x4, 4x4, 4x8, ... (2-D)."""
    if chips < 1 or chips & (chips - 1):
        raise ValueError(f"a TPU slice has a power-of-two number of chips, not {chips}")
    shape = [1, 1, 1] if three_d else [1, 1]
    while math.prod(shape) < chips:
        if math.prod(shape) < 4:  # the smallest host: 2x2(x1)
            shape[0 if shape[0] == 1 else 1] *= 2
            continue
        smallest = min(shape)
        i = max(j for j, d in enumerate(shape) if d == smallest)
        shape[i] *= 2
    return tuple(shape)


def parse_topology(name: str) -> dict:
    """``{"platform", "name" (libtpu's), "chips", "chip_config"}`` of a topology name."""
    if name.startswith("cpu:"):
        return {"platform": "cpu", "name": name, "chips": int(name[4:]), "chip_config": ""}
    m = re.fullmatch(r"(v4|v5p|v5e|v6e)-(\d+)", name)
    if m:
        lib, cores, three_d, config = GENERATIONS[m.group(1)]
        chips = int(m.group(2)) // cores
        shape = chip_shape(chips, three_d)
        lib_name = f"{lib}:" + "x".join(map(str, shape))
    else:
        m = re.fullmatch(r"(v4|v5p|v5e|v6e):(\d+(?:x\d+)+)", name)
        if not m:
            raise ValueError(
                f"unknown topology {name!r}: use v4-N / v5p-N (N TensorCores), v5e-N / v6e-N "
                "(N chips), a shape such as v4:2x2x4, or cpu:N"
            )
        lib, _, three_d, config = GENERATIONS[m.group(1)]
        lib_name = name
        shape = tuple(int(d) for d in m.group(2).split("x"))
    return {
        "platform": "tpu",
        "name": lib_name,
        "chips": math.prod(shape),
        "chip_config": config,
        "shape": shape,
    }


def topology_devices(topo: dict, num_slices: int = 1) -> list:
    """The (compile-only) devices of ``num_slices`` slices of ``topo``."""
    import jax

    if topo["platform"] == "cpu":
        n = topo["chips"] * num_slices
        devices = jax.devices("cpu")
        if len(devices) < n:
            raise ValueError(
                f"{topo['name']} x {num_slices} slice(s) needs {n} CPU devices, this process "
                f"has {len(devices)}: run with XLA_FLAGS=--xla_force_host_platform_device_count={n}"
                " (scripts.aot sets it itself when jax is not imported yet)"
            )
        return devices[:n]
    # compile-only: no TPU is opened, so several compiles (and test processes) may load
    # libtpu at once instead of failing on its one-process lock file
    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
    try:
        from jax.experimental import topologies

        shape = topo["shape"] + (1,) * (3 - len(topo["shape"]))
        host = (min(2, shape[0]), min(2, shape[1]), 1)  # 4 chips per host (2x2)
        # a full 4x4x4 cube and larger v4/v5p slices are tori (wrap-around links)
        wrap = (len(topo["shape"]) == 3 and topo["chips"] >= 64,) * 3
        desc = topologies.get_topology_desc(
            topo["name"],
            "tpu",
            chip_config_name=topo["chip_config"],
            chips_per_host_bounds=host,
            num_slices=num_slices,
            wrap=wrap,
        )
    except Exception as e:  # libtpu missing, or the name unknown to it
        raise RuntimeError(
            f"no TPU topology {topo['name']} ({e}); TPU topologies need libtpu: "
            "pip install -e '.[aot]'"
        ) from e
    return list(desc.devices)


def load_config(recipe: str, overrides: list[str]):
    from jaxbones.train.config import apply_overrides

    module = importlib.import_module(f"experiments.{recipe}")
    config = module.get_config()
    config.lock()
    apply_overrides(config, overrides)
    return config


def num_classes_of(config) -> int:
    """The run's class count without reading data: the config's, else the dataset's (tfds
    builder metadata, or the local / in-memory dataset)."""
    if config.num_classes > 0 or config.task in ("mae",):
        return max(config.num_classes, 0)
    from jaxbones.train import inputs

    if config.dataset in inputs.IN_MEMORY_DATASETS:
        return int(inputs.make_iterators(config)[2]["num_classes"])
    from jaxbones.data.datasets import LOCAL_DATASETS, dataset_info

    if config.dataset in LOCAL_DATASETS:
        return int(dataset_info(config.dataset, config.data_dir or None)["num_classes"])
    import tensorflow_datasets as tfds

    features = tfds.builder(config.dataset, data_dir=config.data_dir or None).info.features
    return int(features["label"].num_classes)


def count_collectives(hlo_text: str) -> dict[str, int]:
    """Collective instructions of an HLO module's text by kind (async start/done pairs once)."""
    out = {}
    for kind in COLLECTIVES:
        pattern = r"\s" + re.escape(kind) + r"(?:-start)?\("
        out[kind] = len(re.findall(pattern, hlo_text))
    return out


def _mesh_label(mesh, mesh_cfg) -> str:
    """'data=16,fsdp=1,tensor=1' (mesh axis sizes), with the slices of a multi-slice mesh."""
    label = ",".join(f"{k}={v}" for k, v in mesh.shape.items())
    dcn = [f"{k}={mesh_cfg[k]}" for k in ("dcn_data", "dcn_fsdp") if mesh_cfg[k] > 1]
    return label + (f" ({','.join(dcn)})" if dcn else "")


def mesh_overrides(spec: str) -> list[str]:
    """``data=2,fsdp=-1,tensor=4`` -> the ``--config.mesh.*`` overrides."""
    out = []
    for part in filter(None, spec.split(",")):
        key, _, value = part.partition("=")
        if not value:
            raise ValueError(
                f"--mesh {spec!r}: write axis=size pairs, e.g. data=2,fsdp=-1,tensor=4"
            )
        out.append(f"--config.mesh.{key.strip()}={value.strip()}")
    return out


def compile_recipe(recipe: str, topology: str, overrides=(), num_slices: int = 1) -> dict:
    """Compiles ``recipe``'s train step for ``topology``; the measurements as a dict."""
    import jax

    from jaxbones.hardware import hbm_bytes
    from jaxbones.layers.platform import compile_target
    from jaxbones.train import inputs, pretrained, sharding
    from jaxbones.train.loop import abstract_train_step

    overrides = list(overrides)
    if num_slices > 1 and not any(o.startswith("--config.mesh.dcn_") for o in overrides):
        overrides.append(f"--config.mesh.dcn_data={num_slices}")
    config = pretrained.resolve_config(load_config(recipe, overrides))
    topo = parse_topology(topology)
    devices = topology_devices(topo, num_slices)
    mesh = sharding.make_mesh(config.mesh, devices)
    n = mesh.size
    sharding.check_batch_size(config.global_batch_size, config.accum_steps, mesh)
    num_steps = config.num_steps if config.num_steps > 0 else 1
    t0 = time.perf_counter()
    batch_sh = sharding.batch_sharding(mesh)
    batch = {
        k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=batch_sh)
        for k, v in inputs.batch_shapes(config).items()
    }
    # the layers' CPU-only formulations must not reach a TPU program traced on this CPU host
    with compile_target(topo["platform"]):
        train_step, state = abstract_train_step(config, mesh, num_classes_of(config), 3, num_steps)
        lowered = train_step.lower(state, batch)
    t1 = time.perf_counter()
    kind = devices[0].device_kind
    hbm = hbm_bytes(kind) if topo["platform"] == "tpu" else None
    result = {
        "recipe": recipe,
        "overrides": [o for o in overrides if not o.startswith("--config.model=")],
        "model": config.model,
        "topology": topology + (f" x{num_slices}" if num_slices > 1 else ""),
        "device_kind": kind,
        "devices": n,
        "mesh": _mesh_label(mesh, config.mesh),
        "global_batch_size": config.global_batch_size,
        "hbm_bytes": hbm,
        "lower_seconds": t1 - t0,
    }
    try:
        compiled = lowered.compile()
    except Exception as e:
        # the TPU compiler refuses a program whose temporaries exceed the usable HBM
        oom = re.search(r"temporaries \(([\d.]+)G\) exceeds available HBM \(([\d.]+)G\)", str(e))
        if oom is None:
            raise
        return {
            **result,
            "compile_oom": oom.group(0),
            "temp_bytes": int(float(oom.group(1)) * 2**30),
            "fits": False,
            "compile_seconds": time.perf_counter() - t1,
        }
    mem = compiled.memory_analysis()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list | tuple) else cost
    # everything the program holds at once at most: its arguments, the outputs that do not
    # reuse a donated argument, its temporaries and its code
    total = (
        mem.argument_size_in_bytes
        + mem.output_size_in_bytes
        - mem.alias_size_in_bytes
        + mem.temp_size_in_bytes
        + mem.generated_code_size_in_bytes
    )
    return {
        **result,
        "argument_bytes": mem.argument_size_in_bytes,
        "output_bytes": mem.output_size_in_bytes,
        "alias_bytes": mem.alias_size_in_bytes,
        "temp_bytes": mem.temp_size_in_bytes,
        "code_bytes": mem.generated_code_size_in_bytes,
        "total_bytes": int(total),
        "peak_bytes": int(getattr(mem, "peak_memory_in_bytes", 0)),
        "fits": None if hbm is None else bool(total <= hbm),
        "flops_per_chip": float(cost.get("flops", 0.0)) if cost else None,
        "collectives": count_collectives(compiled.as_text()),
        "compile_seconds": time.perf_counter() - t1,
    }


def _gib(x) -> str:
    return "-" if x is None else f"{x / 2**30:.2f}"


def format_report(r: dict) -> str:
    if "compile_oom" in r:
        return (
            f"recipe {r['recipe']} ({r['model']}), global batch {r['global_batch_size']}\n"
            f"topology {r['topology']}: {r['devices']} x {r['device_kind']}, mesh {r['mesh']}\n"
            f"DOES NOT FIT: the TPU compiler stopped: {r['compile_oom']}\n"
            f"lowered in {r['lower_seconds']:.1f} s, compiled in {r['compile_seconds']:.1f} s"
        )
    c = r["collectives"]
    flops = r["flops_per_chip"]
    lines = [
        f"recipe {r['recipe']} ({r['model']}), global batch {r['global_batch_size']}",
        f"topology {r['topology']}: {r['devices']} x {r['device_kind']}, mesh {r['mesh']}",
        "per chip:",
        f"  arguments   {_gib(r['argument_bytes'])} GiB (state + batch)",
        f"  outputs     {_gib(r['output_bytes'])} GiB "
        + f"({_gib(r['alias_bytes'])} GiB aliased to donated arguments)",
        f"  temporaries {_gib(r['temp_bytes'])} GiB",
        f"  code        {_gib(r['code_bytes'])} GiB",
        f"  total       {_gib(r['total_bytes'])} GiB of {_gib(r['hbm_bytes'])} GiB HBM: "
        + {True: "fits", False: "DOES NOT FIT", None: "no HBM limit (CPU)"}[r["fits"]],
        "FLOPs per step: "
        + (
            f"{flops / 1e12:.4g} TFLOP per chip, {flops * r['devices'] / 1e12:.4g} TFLOP in all"
            if flops
            else "not reported"
        ),
        "collectives in the optimized HLO: " + ", ".join(f"{k} {v}" for k, v in c.items()),
        f"lowered in {r['lower_seconds']:.1f} s, compiled in {r['compile_seconds']:.1f} s",
    ]
    return "\n".join(lines)


def markdown_row(r: dict) -> str:
    fits = {True: "yes", False: "**no**", None: "-"}[r["fits"]]
    if "compile_oom" in r:  # the compiler stopped: only the temporaries are known
        mem, flops, counts = f"- / {_gib(r['temp_bytes'])} / -", "-", "-"
        fits += " (compile-time HBM OOM)"
    else:
        c = r["collectives"]
        mem = f"{_gib(r['argument_bytes'])} / {_gib(r['temp_bytes'])} / {_gib(r['total_bytes'])}"
        flops = "-" if not r["flops_per_chip"] else f"{r['flops_per_chip'] / 1e12:.3g}"
        counts = "/".join(str(c[k]) for k in COLLECTIVES)
    overrides = " ".join(o.removeprefix("--config.") for o in r["overrides"]) or "-"
    return (
        f"| {r['recipe']} | {overrides} | {r['model']} | {r['topology']} | {r['mesh']} | {mem} | "
        f"{_gib(r['hbm_bytes'])} | {fits} | {flops} | {counts} | {r['compile_seconds']:.0f} |"
    )


def write_row(text: str, row: str) -> str:
    """``text`` with ``row`` in the table between the markers, replacing the row with the same
    first five cells (recipe, overrides, model, topology, mesh); the table is created when
    absent."""
    from scripts.model_table import write_between_markers

    key = row.split("|")[1:6]
    rows = []
    if START in text and END in text:
        body = text.split(START, 1)[1].split(END, 1)[0]
        rows = [ln for ln in body.splitlines() if ln.startswith("| ") and ln not in HEADER]
    rows = [ln for ln in rows if ln.split("|")[1:6] != key] + [row]
    return write_between_markers(text, HEADER + "\n".join(rows) + "\n", START, END)


def main(argv: list[str] | None = None) -> dict:
    from scripts.model_table import write_atomically

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--recipe", help="a module of experiments/ (mae_pretrain)")
    p.add_argument("--topology", help="v4-256, v5e-16, v4:2x2x4 or cpu:8")
    p.add_argument("--num_slices", type=int, default=1)
    p.add_argument("--mesh", default="", help="config.mesh sizes: data=1,fsdp=-1,tensor=4")
    p.add_argument("--write", action="store_true", help="put the row into README.md's table")
    p.add_argument("--markdown", action="store_true", help="print the README table row")
    p.add_argument("--json", action="store_true", help="print the measurements as JSON")
    p.add_argument("--save", default="", help="append the measurements as a JSON line here")
    p.add_argument(
        "--write_saved", default="", help="write the README rows of a --save file; no compile"
    )
    args, overrides = p.parse_known_args(argv)
    bad = [a for a in overrides if not a.startswith("--config.")]
    if bad:
        p.error(f"unknown arguments {bad}: config overrides are --config.key=value")
    if args.write_saved:
        text = README.read_text()
        for line in pathlib.Path(args.write_saved).read_text().splitlines():
            text = write_row(text, markdown_row(json.loads(line)))
        write_atomically(README, text)
        return {}
    if not (args.recipe and args.topology):
        p.error("--recipe and --topology are required (or --write_saved FILE)")
    if args.topology.startswith("cpu:") and "jax" not in sys.modules:
        n = int(args.topology[4:]) * args.num_slices
        flag = f"--xla_force_host_platform_device_count={n}"
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + flag).strip()
    overrides = mesh_overrides(args.mesh) + overrides
    result = compile_recipe(args.recipe, args.topology, overrides, args.num_slices)
    print(format_report(result), flush=True)
    if args.markdown or args.write:
        print(markdown_row(result))
    if args.json:
        print(json.dumps(result))
    if args.save:
        with open(args.save, "a") as f:
            f.write(json.dumps(result) + "\n")
    if args.write:
        write_atomically(README, write_row(README.read_text(), markdown_row(result)))
    return result


if __name__ == "__main__":
    main()
